"""Lazy imports of the MLX stack, with a missing or broken install turned into a clear error, and the
backend's speed setup on Linux CPUs.

Fast BLAS on Linux: the ``mlx-cpu`` wheel links a bundled *reference* BLAS (about 5-7 GFLOP/s float32
matrix multiply on a modern x86 core). Loading an OpenBLAS with ``RTLD_GLOBAL`` before the first
``import mlx.core`` makes MLX's ``cblas_sgemm`` calls resolve to it instead: float32 matmuls get about
20-30x faster, prompt processing (prefill) of a float32 model too. The library comes from, in order:

1. the system: Debian/Ubuntu ``apt-get install libopenblas0-pthread`` (Fedora: ``openblas-threads``);
2. else pip: the OpenBLAS that a wheel vendors next to its extension modules
   (``site-packages/<wheel>.libs/libopenblas*.so``). ``pip install "abstractllm[mlx]"`` brings one:
   mlx-vlm requires opencv-python, whose wheel ships ``opencv_python.libs/libopenblasp-r0-*.so``. The
   file is found on disk (``cv2`` is located, never imported). numpy's and scipy's vendored OpenBLAS
   rename their symbols (``scipy_cblas_sgemm64_``...) and cannot serve MLX: they are not candidates.

``ABSTRACTLLM_FAST_BLAS`` chooses: unset, ``1`` or ``auto`` as above; ``0`` (``false``, ``off``) none;
``system`` only the system library; ``pip`` only a pip-installed one; anything else is the library
file (or soname) to load. A library is loaded only if it exports the plain ``cblas_sgemm``.

Checked once: when ``mlx.core`` is imported (the first ``import_backend`` call, or ``fast_blas_status()``),
one small float32 matmul runs through MLX on the CPU, on a short-lived thread, and is compared with the
exact product of small integers. A library that gets it wrong cannot be unloaded: the status says so, a
warning is logged, and ``import_backend`` raises ``UnsupportedProviderError`` telling to restart with
``ABSTRACTLLM_FAST_BLAS=0``. ``fast_blas_status()`` says which library is active (system or pip, with its
path) or why none is.

All of this happens once per process, the first time the provider needs MLX (never at
``import abstractllm``), and the preload only if ``mlx.core`` is not imported yet. bfloat16, float16 and
quantized matmuls use MLX's own CPU kernels either way; Apple (Accelerate) and CUDA builds are unaffected.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Callable, TypeVar

from ...exceptions import UnsupportedProviderError

__all__ = ["import_backend", "on_own_thread", "on_gpu", "enable_fast_blas", "fast_blas_status", "BlasStatus",
           "FAST_BLAS_ENV"]

T = TypeVar("T")
log = logging.getLogger("abstractllm.providers.mlx")
_INSTALL = 'pip install "abstractllm[mlx]"'

#: Environment variable: ``0``/``false``/``off`` disables the OpenBLAS preload; ``system`` or ``pip``
#: limits the search to one origin; any other value (but ``1``/``auto``) is the library to load.
FAST_BLAS_ENV = "ABSTRACTLLM_FAST_BLAS"
_OFF = ("0", "false", "no", "off")
_AUTO = ("", "1", "true", "yes", "on", "auto")
# Sonames dlopen finds through the linker cache (Debian's alternatives point libopenblas.so.0 at the
# pthread, openmp or serial build, whichever is installed), then the usual Debian/RHEL locations.
_SYSTEM = (
    "libopenblas.so.0",
    "libopenblas.so",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
)
_HINT = ("install the system one (Debian/Ubuntu: apt-get install libopenblas0-pthread) or opencv-python, "
         f"whose wheel vendors one ({_INSTALL} brings it)")


@dataclass(frozen=True)
class BlasStatus:
    """Whether MLX's float32 matmuls run on an OpenBLAS loaded ahead of it.

    ``active``: they do (and, once ``checked``, gave exact results). ``library``: the library's path.
    ``reason``: where it came from, or why there is none. ``source``: ``"system"``, ``"pip"`` (vendored
    by a wheel), ``"env"`` (named by ``ABSTRACTLLM_FAST_BLAS``), ``"external"`` (already in the process
    when ``mlx.core`` was imported), or None. ``checked``: the one-matmul check ran; ``incorrect``: it
    failed (then ``active`` is False although the library stays loaded).
    """

    active: bool
    library: str | None
    reason: str
    source: str | None = None
    checked: bool = False

    @property
    def incorrect(self) -> bool:
        """The loaded library gave wrong float32 matmul results through MLX."""
        return self.checked and not self.active and self.library is not None

    def __str__(self) -> str:
        if not self.active:
            return f"OpenBLAS inactive ({self.reason})"
        check = "float32 matmul checked" if self.checked else "not checked yet"
        return f"OpenBLAS active ({self.reason}: {self.library}; {check})"


_blas_lock = threading.Lock()
_blas: BlasStatus | None = None
_check_ran = False  # the one-matmul check, once per process


def _sgemm_provider() -> str | None:
    """Path of the library whose ``cblas_sgemm`` the process's global scope resolves to (the one MLX's
    calls bind to: the bundled reference BLAS is not global), or None."""
    import ctypes

    class _DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        process = ctypes.CDLL(None)
        symbol = process.cblas_sgemm
        dladdr = process.dladdr
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    if not dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname))


def _site_dirs() -> list[str]:
    """Folders where pip installs packages: cv2's first (located, not imported), then the path's."""
    dirs = []
    try:
        spec = importlib.util.find_spec("cv2")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(os.path.dirname(os.path.abspath(location)))
    dirs += [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    return [d for i, d in enumerate(dirs) if d not in dirs[:i] and os.path.isdir(d)]


def _pip_candidates() -> list[tuple[str, str]]:
    """``(path, wheel)`` of every OpenBLAS vendored in a ``<wheel>.libs`` folder, opencv's first."""
    found = []
    for site in _site_dirs():
        for path in sorted(glob.glob(os.path.join(site, "*.libs", "libopenblas*.so*"))):
            wheel = os.path.basename(os.path.dirname(path))[: -len(".libs")]
            found.append((path, wheel))
    return sorted(found, key=lambda c: not c[1].startswith("opencv"))


def _load(name: str) -> str | None:
    """dlopen ``name`` locally, and make it global only if it exports ``cblas_sgemm``; None or the error."""
    import ctypes

    try:
        if not hasattr(ctypes.CDLL(name, mode=ctypes.RTLD_LOCAL), "cblas_sgemm"):
            return f"{name}: no cblas_sgemm symbol"
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)  # promotes the loaded library to the global scope
    except OSError as exc:
        return str(exc)
    return None


def _preload() -> BlasStatus:
    setting = os.environ.get(FAST_BLAS_ENV, "").strip()
    mode = setting.lower()
    if mode in _OFF:
        return BlasStatus(False, None, f"disabled by {FAST_BLAS_ENV}={setting}")
    if not sys.platform.startswith("linux"):
        return BlasStatus(False, None, "not Linux (MLX uses the platform BLAS)")
    if "mlx.core" in sys.modules:
        loaded = _sgemm_provider()
        if loaded:
            return BlasStatus(True, loaded, "loaded before mlx.core by someone else", "external")
        return BlasStatus(False, None, "mlx.core was imported before the backend could preload OpenBLAS")
    candidates: list[tuple[str, str, str]] = []  # (name, source, reason)
    if mode in _AUTO or mode == "system":
        candidates += [(name, "system", "system") for name in _SYSTEM]
    if mode in _AUTO or mode == "pip":
        candidates += [(path, "pip", f"pip, from the {wheel} wheel") for path, wheel in _pip_candidates()]
    if mode not in _AUTO and mode not in ("system", "pip"):
        candidates = [(setting, "env", f"named by {FAST_BLAS_ENV}")]
    errors = []
    for name, source, reason in candidates:
        error = _load(name)
        if error:
            errors.append(error)
            continue
        return BlasStatus(True, _sgemm_provider() or name, reason, source)
    if candidates and candidates[0][1] == "env":
        return BlasStatus(False, None, f"{FAST_BLAS_ENV}={setting} could not be loaded: {errors[-1]}")
    if mode == "system":
        return BlasStatus(False, None, f"no system OpenBLAS found ({FAST_BLAS_ENV}=system); {_HINT}")
    if mode == "pip":
        return BlasStatus(False, None, f"no pip-installed OpenBLAS found ({FAST_BLAS_ENV}=pip); {_HINT}")
    return BlasStatus(False, None, f"no OpenBLAS found; {_HINT}")


def _matmul_error(mx: ModuleType) -> float:
    """Largest error of two float32 matmuls on MLX's CPU stream (plain and transposed operand; m*n*k
    past OpenBLAS's threading threshold) against the exact product of small integers (every partial sum
    is an integer below 2**24, so any correct summation order is exact)."""
    m, k, n = 64, 96, 80
    worst = 0.0
    with mx.stream(mx.cpu):
        a = (mx.arange(m * k) % 7 - 3).reshape(m, k).astype(mx.float32)
        b = (mx.arange(k * n) * 5 % 9 - 4).reshape(k, n).astype(mx.float32)
        bt = (mx.arange(n * k) * 3 % 11 - 5).reshape(n, k).astype(mx.float32)
        for x, y in ((a, b), (a, bt.T)):
            exact = (x[:, :, None] * y[None, :, :]).sum(axis=1)  # no BLAS: MLX's own kernels
            worst = max(worst, mx.abs(mx.matmul(x, y) - exact).max().item())
    return worst


def _check(status: BlasStatus) -> BlasStatus:
    """Run ``_matmul_error`` on a short-lived thread (MLX streams are per thread, and a thread that
    used MLX must clear them before it ends or the process aborts at exit)."""
    mx = sys.modules["mlx.core"]
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["error"] = _matmul_error(mx)
        except Exception as exc:  # the check could not run: say so, do not block the backend
            result["failed"] = f"{type(exc).__name__}: {exc}"
        finally:
            if hasattr(mx, "clear_streams"):
                mx.clear_streams()

    worker = threading.Thread(target=work, name="abstractllm-blas-check", daemon=True)
    worker.start()
    worker.join()
    if "failed" in result:
        log.warning("the OpenBLAS check could not run: %s", result["failed"])
        return replace(status, reason=f"{status.reason}, its check could not run ({result['failed']})")
    error = float(result["error"])  # type: ignore[arg-type]
    if error == 0.0:
        return replace(status, checked=True)
    fix = ("stop loading it before mlx.core (LD_PRELOAD?)" if status.source == "external"
           else f"restart with {FAST_BLAS_ENV}=0")
    reason = (f"{status.library} ({status.reason}) gave wrong float32 matmul results through MLX "
              f"(max error {error:g}); {fix}")
    log.warning("OpenBLAS %s", reason)
    return replace(status, active=False, reason=reason, checked=True)


def enable_fast_blas() -> BlasStatus:
    """Load an OpenBLAS ahead of MLX on Linux (once; see the module docstring). Call it before anything
    imports ``mlx.core`` (scripts that also use raw mlx-lm do, to get the same BLAS). It does not import
    MLX, so the result is not checked yet: ``fast_blas_status()`` is, once ``mlx.core`` is imported."""
    global _blas
    with _blas_lock:
        if _blas is None:
            _blas = _preload()
        return _blas


def _checked_status() -> BlasStatus:
    """The status, with the one-matmul check run now if an OpenBLAS is active and ``mlx.core`` is in."""
    global _blas, _check_ran
    status = enable_fast_blas()
    if _check_ran or not status.active or "mlx.core" not in sys.modules:
        return status
    with _blas_lock:
        if not _check_ran:
            _blas = _check(status)
            _check_ran = True
        return _blas


def fast_blas_status() -> BlasStatus:
    """Which OpenBLAS MLX's float32 matmuls use (system or pip, with its path), or why none: runs
    ``enable_fast_blas`` if it has not run yet and, when a library is active, imports ``mlx.core`` and
    checks one small matmul (once per process, milliseconds)."""
    status = enable_fast_blas()
    if status.active and not status.checked and "mlx.core" not in sys.modules:
        try:
            importlib.import_module("mlx.core")
        except ImportError:
            return status
    return _checked_status()


def import_backend(name: str) -> ModuleType:
    """Import ``mlx.core``, ``mlx_lm``, ``mlx_vlm``...; say which ``pip install`` fixes a failure.
    Raises ``UnsupportedProviderError`` too when the preloaded OpenBLAS failed its check."""
    if _blas is None:
        enable_fast_blas()
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        hint = _INSTALL
        if "libmlx" in str(exc):
            hint += ' (on Linux the backend is the "mlx[cpu]" or "mlx[cuda12]" package)'
        raise UnsupportedProviderError(f"The MLX provider cannot import {name}: {exc}. Install it with: {hint}") from exc
    status = _checked_status()
    if status.incorrect:
        raise UnsupportedProviderError(f"The MLX provider cannot run on this BLAS: OpenBLAS {status.reason}.")
    return module


def on_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a short-lived thread that clears its MLX streams as it ends; returns its result.

    For what is asked of mlx-lm / mlx-vlm before a model loads (the capabilities): importing them makes an
    MLX stream on the importing thread (their module-level ``generation_stream``), and a stream left on the
    caller's thread makes MLX abort the process at exit now and then ("terminate called without an active
    exception"). The provider's worker could do it too, but a busy one (loading a model) would keep the
    caller waiting."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(("ok", fn(*args)))
        except BaseException as exc:  # delivered to the caller
            result.append(("error", exc))
        finally:
            mx = sys.modules.get("mlx.core")
            if mx is not None:
                mx.clear_streams()

    thread = threading.Thread(target=run, name="abstractllm-inspect", daemon=True)
    thread.start()
    thread.join()
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


def on_gpu() -> bool:
    """True when MLX's default device is a GPU (Apple Metal or CUDA): half precision is fast there."""
    mx = import_backend("mlx.core")
    try:
        return mx.default_device().type == mx.DeviceType.gpu
    except Exception:
        return False


def warm_cpu_compiler(mx: ModuleType) -> None:
    """Make MLX's first compiled call now (at load), on the CPU backend.

    There, ``mx.compile``'d functions (mlx-lm's activations, samplers) are built by the system C++ compiler
    through libc's ``system()``: the process's first compiled call runs ``g++ --version``, and each kernel
    missing from MLX's cache (a temp folder) a ``g++`` build. While ``system()`` runs, POSIX has the whole
    process ignore SIGINT, so a Ctrl-C landing then is lost (``abstractllm chat`` would miss it). Making
    the first compiled call at load keeps that check out of the first reply; kernels already cached cost
    no compiler call at all. A failure here is no load failure (MLX then runs uncompiled)."""
    try:
        mx.eval(mx.compile(lambda x: x * mx.sigmoid(x))(mx.ones((8,))))
    except Exception:  # noqa: BLE001 - an optimisation only; generation reports real errors itself
        return

