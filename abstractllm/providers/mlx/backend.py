"""Lazy imports of the MLX stack, with a missing or broken install turned into a clear error, and the
backend's speed setup on Linux CPUs.

Fast BLAS on Linux: the ``mlx-cpu`` wheel links a bundled *reference* BLAS (about 5-7 GFLOP/s float32
matrix multiply on a modern x86 core). When the system's OpenBLAS is present (Debian/Ubuntu:
``apt-get install libopenblas0-pthread``), loading it with ``RTLD_GLOBAL`` before the first
``import mlx.core`` makes MLX's ``cblas_sgemm`` calls resolve to OpenBLAS instead: float32 matmuls get
about 30x faster, prompt processing (prefill) of a float32 model too. This happens once, the first time
the provider imports the backend (never at ``import abstractllm``), and only if ``mlx.core`` is not
imported yet. Opt out with ``ABSTRACTLLM_FAST_BLAS=0``; point ``ABSTRACTLLM_FAST_BLAS`` at a library
file to choose another one. ``fast_blas_status()`` says what happened. bfloat16, float16 and quantized
matmuls use MLX's own CPU kernels either way; Apple (Accelerate) and CUDA builds are unaffected.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

from ...exceptions import UnsupportedProviderError

__all__ = ["import_backend", "on_gpu", "enable_fast_blas", "fast_blas_status", "BlasStatus",
           "FAST_BLAS_ENV"]

_INSTALL = 'pip install "abstractllm[mlx]"'

#: Environment variable: ``0``/``false``/``off`` disables the OpenBLAS preload; a path picks the library.
FAST_BLAS_ENV = "ABSTRACTLLM_FAST_BLAS"
# Sonames dlopen finds through the linker cache (Debian's alternatives point libopenblas.so.0 at the
# pthread, openmp or serial build, whichever is installed), then the usual Debian/RHEL locations.
_CANDIDATES = (
    "libopenblas.so.0",
    "libopenblas.so",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
)


@dataclass(frozen=True)
class BlasStatus:
    """Whether a fast BLAS was loaded ahead of MLX: ``active``, the ``library`` path, and why (``reason``)."""

    active: bool
    library: str | None
    reason: str

    def __str__(self) -> str:
        return f"OpenBLAS {'active' if self.active else 'inactive'} ({self.library or self.reason})"


_blas_lock = threading.Lock()
_blas: BlasStatus | None = None


def _loaded_openblas() -> str | None:
    """Path of an OpenBLAS library already mapped into this process (Linux), if any."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                if "libopenblas" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return None


def _preload() -> BlasStatus:
    setting = os.environ.get(FAST_BLAS_ENV, "").strip()
    if setting.lower() in ("0", "false", "no", "off"):
        return BlasStatus(False, None, f"disabled by {FAST_BLAS_ENV}={setting}")
    if not sys.platform.startswith("linux"):
        return BlasStatus(False, None, "not Linux (MLX uses the platform BLAS)")
    if "mlx.core" in sys.modules:
        loaded = _loaded_openblas()
        if loaded:
            return BlasStatus(True, loaded, "loaded before mlx.core by someone else")
        return BlasStatus(False, None, "mlx.core was imported before the backend could preload OpenBLAS")
    import ctypes

    candidates = (setting,) if setting and setting.lower() not in ("1", "true", "yes", "on") else _CANDIDATES
    errors = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            errors.append(str(exc))
            continue
        if not hasattr(lib, "cblas_sgemm"):
            errors.append(f"{name}: no cblas_sgemm")
            continue
        return BlasStatus(True, _loaded_openblas() or name, "preloaded before mlx.core")
    hint = "install the system OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread)"
    if setting and candidates == (setting,):
        return BlasStatus(False, None, f"{FAST_BLAS_ENV}={setting} could not be loaded: {errors[-1]}")
    return BlasStatus(False, None, f"no OpenBLAS found; {hint}")


def enable_fast_blas() -> BlasStatus:
    """Load the system OpenBLAS ahead of MLX on Linux (once; see the module docstring). Call it before
    anything imports ``mlx.core`` (scripts that also use raw mlx-lm do, to get the same BLAS)."""
    global _blas
    with _blas_lock:
        if _blas is None:
            _blas = _preload()
        return _blas


def fast_blas_status() -> BlasStatus:
    """What ``enable_fast_blas`` did (it runs now if it has not run yet)."""
    return enable_fast_blas()


def import_backend(name: str) -> ModuleType:
    """Import ``mlx.core``, ``mlx_lm``, ``mlx_vlm``...; say which ``pip install`` fixes a failure."""
    if _blas is None:
        enable_fast_blas()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = _INSTALL
        if "libmlx" in str(exc):
            hint += ' (on Linux the backend is the "mlx[cpu]" or "mlx[cuda12]" package)'
        raise UnsupportedProviderError(f"The MLX provider cannot import {name}: {exc}. Install it with: {hint}") from exc


def on_gpu() -> bool:
    """True when MLX's default device is a GPU (Apple Metal or CUDA): half precision is fast there."""
    mx = import_backend("mlx.core")
    try:
        return mx.default_device().type == mx.DeviceType.gpu
    except Exception:
        return False
