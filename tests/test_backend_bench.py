"""The backend's OpenBLAS preload (Linux) and the text benchmark, each in a fresh process: the preload
must happen before the first ``import mlx.core``, so it cannot be tested in this (already MLX-using)
process. The system OpenBLAS is installed here and in CI: ``ABSTRACTLLM_FAST_BLAS=pip`` (or a subprocess
that empties the system candidates) shows what a machine with only ``pip install "abstractllm[mlx]"`` gets."""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is Linux-only")


def _openblas_installed() -> bool:
    try:
        ctypes.CDLL("libopenblas.so.0")
        return True
    except OSError:
        return False


def _pip_openblas() -> list[str]:
    """The OpenBLAS files that pip wheels vendor here (opencv-python's, brought by mlx-vlm)."""
    site = sysconfig.get_paths()["purelib"]
    return sorted(glob.glob(os.path.join(site, "opencv*.libs", "libopenblas*.so*")))


needs_pip_openblas = pytest.mark.skipif(not _pip_openblas(), reason="no pip-installed (opencv-vendored) OpenBLAS")


def _run(code: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_STATUS = """
    import json, sys
    {before}
    from abstractllm.providers.mlx.backend import fast_blas_status, import_backend
    mx = import_backend("mlx.core")
    import numpy as np
    a = np.random.default_rng(0).standard_normal((200, 300)).astype("float32")
    b = np.random.default_rng(1).standard_normal((300, 100)).astype("float32")
    err = float(np.abs(np.array(mx.array(a) @ mx.array(b)) - a @ b).max())
    maps = open("/proc/self/maps").read()
    s = fast_blas_status()
    print(json.dumps({{"active": s.active, "reason": s.reason, "library": s.library, "err": err,
                      "mapped": "libopenblas" in maps, "source": s.source, "checked": s.checked,
                      "text": str(s), "lib_mapped": bool(s.library) and s.library in maps}}))
"""


@linux_only
def test_import_and_create_llm_load_no_blas_and_no_mlx(tiny_model):
    out = _run(f"""
        import json, sys
        import abstractllm
        from abstractllm import create_llm
        llm = create_llm("mlx", model={str(tiny_model)!r})
        print(json.dumps({{"mlx": "mlx.core" in sys.modules, "blas": "libopenblas" in open("/proc/self/maps").read()}}))
    """)
    assert out == {"mlx": False, "blas": False}


@linux_only
def test_backend_preloads_openblas_before_mlx_and_matmuls_stay_correct():
    out = _run(_STATUS.format(before=""))
    assert out["err"] < 1e-3
    if _openblas_installed():
        assert out["active"] and out["mapped"] and "openblas" in out["library"] and out["source"] == "system"
    elif _pip_openblas():
        assert out["active"] and out["mapped"] and out["source"] == "pip"
    else:
        assert not out["active"] and "apt-get install libopenblas0-pthread" in out["reason"]
    assert out["checked"] == out["active"]


@linux_only
def test_preload_opt_out_and_too_late():
    off = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS="0")
    assert not off["active"] and "disabled" in off["reason"] and not off["mapped"] and off["err"] < 1e-3
    late = _run(_STATUS.format(before="import mlx.core"))
    assert not late["active"] and "imported before" in late["reason"] and not late["mapped"]
    bad = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS="/nonexistent/libblas.so")
    assert not bad["active"] and "could not be loaded" in bad["reason"]


_NO_SYSTEM = "import abstractllm.providers.mlx.backend as b; b._SYSTEM = ('/nonexistent/libopenblas.so.0',)"


@linux_only
@needs_pip_openblas
def test_pip_openblas_serves_the_provider_without_the_system_library(tiny_model):
    """What a machine with only ``pip install "abstractllm[mlx]"`` gets: opencv-python's OpenBLAS."""
    out = _run(f"""
        import json
        import numpy as np
        from abstractllm import create_llm
        from abstractllm.providers.mlx.backend import fast_blas_status
        llm = create_llm("mlx", model={str(tiny_model)!r}, temperature=0.0)
        reply = llm.generate("Hello", max_tokens=4)
        s = fast_blas_status()
        import mlx.core as mx
        a = np.random.default_rng(0).standard_normal((200, 300)).astype("float32")
        b = np.random.default_rng(1).standard_normal((300, 100)).astype("float32")
        err = float(np.abs(np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu)) - a @ b).max())
        mapped = sorted({{l.split()[-1] for l in open("/proc/self/maps") if "libopenblas" in l}})
        print(json.dumps({{"active": s.active, "source": s.source, "library": s.library, "checked": s.checked,
                          "text": str(s), "same": fast_blas_status() is s, "mapped": mapped, "err": err,
                          "tokens": reply.usage.completion_tokens}}))
        llm.close()
    """, ABSTRACTLLM_FAST_BLAS="pip")
    pip_libs = [os.path.realpath(p) for p in _pip_openblas()]
    assert out["active"] and out["source"] == "pip" and out["checked"] and out["same"], out
    assert out["library"] in pip_libs and out["mapped"] == [out["library"]]  # the system one is not loaded
    assert out["err"] < 1e-3 and out["tokens"] == 4
    assert out["text"].startswith("OpenBLAS active (pip, from the opencv") and "matmul checked" in out["text"]


@linux_only
@needs_pip_openblas
def test_auto_falls_back_to_the_pip_openblas_when_no_system_one():
    out = _run(_STATUS.format(before=_NO_SYSTEM))
    assert out["active"] and out["source"] == "pip" and out["checked"] and out["lib_mapped"], out
    assert "opencv" in out["reason"] and out["err"] < 1e-3


@linux_only
def test_fallback_reasons_none_found_system_only_explicit_library():
    none = _run(_STATUS.format(before=_NO_SYSTEM + "; b._pip_candidates = lambda: []"))
    assert not none["active"] and not none["mapped"] and none["source"] is None and none["err"] < 1e-3
    assert none["reason"].startswith("no OpenBLAS found") and "apt-get install libopenblas0-pthread" in none["reason"]
    assert "opencv-python" in none["reason"] and none["text"] == f"OpenBLAS inactive ({none['reason']})"
    system = _run(_STATUS.format(before=_NO_SYSTEM), ABSTRACTLLM_FAST_BLAS="system")
    assert not system["active"] and not system["mapped"] and "no system OpenBLAS found" in system["reason"]
    pip = _run(_STATUS.format(before="import abstractllm.providers.mlx.backend as b; b._pip_candidates = list"),
               ABSTRACTLLM_FAST_BLAS="pip")
    assert not pip["active"] and not pip["mapped"] and "no pip-installed OpenBLAS found" in pip["reason"]
    nosym = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS="libm.so.6")
    assert not nosym["active"] and "no cblas_sgemm symbol" in nosym["reason"] and not nosym["mapped"]
    if _pip_openblas():
        named = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS=_pip_openblas()[0])
        assert named["active"] and named["source"] == "env" and named["checked"] and named["lib_mapped"]
        assert "named by ABSTRACTLLM_FAST_BLAS" in named["text"] and named["err"] < 1e-3


_WRONG_SGEMM = """
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) c[i * ldc + j] = 1.0f;
}
"""


@linux_only
@pytest.mark.skipif(not shutil.which("cc"), reason="needs a C compiler to build a wrong BLAS")
def test_a_library_with_wrong_results_is_reported_and_refused(tmp_path):
    (tmp_path / "wrong.c").write_text(_WRONG_SGEMM)
    lib = tmp_path / "libwrongblas.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "wrong.c")], check=True)
    out = _run("""
        import json
        from abstractllm.exceptions import UnsupportedProviderError
        from abstractllm.providers.mlx.backend import fast_blas_status, import_backend
        try:
            import_backend("mlx.core")
            error = None
        except UnsupportedProviderError as exc:
            error = str(exc)
        s = fast_blas_status()
        print(json.dumps({"error": error, "active": s.active, "incorrect": s.incorrect, "text": str(s),
                          "library": s.library}))
    """, ABSTRACTLLM_FAST_BLAS=str(lib))
    assert out["error"] and "wrong float32 matmul results" in out["error"] and "ABSTRACTLLM_FAST_BLAS=0" in out["error"]
    assert not out["active"] and out["incorrect"] and out["library"] == str(lib)
    assert out["text"].startswith("OpenBLAS inactive (") and "wrong" in out["text"]


def test_blas_status_reads_well():
    from abstractllm.providers.mlx.backend import BlasStatus

    on = BlasStatus(True, "/site/opencv_python.libs/libopenblasp.so", "pip, from the opencv_python wheel", "pip", True)
    assert str(on) == ("OpenBLAS active (pip, from the opencv_python wheel: /site/opencv_python.libs/libopenblasp.so; "
                       "float32 matmul checked)") and not on.incorrect
    assert "not checked yet" in str(BlasStatus(True, "/usr/lib/libopenblas.so.0", "system", "system"))
    off = BlasStatus(False, None, "disabled by ABSTRACTLLM_FAST_BLAS=0")
    assert str(off) == "OpenBLAS inactive (disabled by ABSTRACTLLM_FAST_BLAS=0)" and not off.incorrect


def test_bench_text_runs_and_provider_matches_raw(tmp_path):
    """The benchmark end to end on the tiny preset: the table, equal tokens, a warm second turn."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "text.py"), "--preset", "tiny", "--rounds", "1", "--prompts", "1",
         "--max-tokens", "6", "--history-tokens", "300", "--turn-rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| decode tokens/s |" in proc.stdout and "| TTFT (ms) |" in proc.stdout and "dtype" in proc.stdout
    result = json.loads(out.read_text())
    assert result["same_tokens"] is True
    turn = result["second_turn"]
    assert turn["same_tokens"] is True and turn["cached_tokens"] > 200 and turn["warm_s"] > 0
    assert result["env"]["dtype_provider"] == result["env"]["dtype_raw"] == "float32"


@linux_only
def test_bench_blas_runs(tmp_path):
    """bench/blas.py on tiny sizes: one row per mode, results that agree with numpy."""
    out = tmp_path / "blas.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "blas.py"), "--modes", "0", "auto", "--sizes", "64",
         "--vector-sizes", "64", "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| `0` | mlx-cpu's bundled reference BLAS |" in proc.stdout
    results = json.loads(out.read_text())["results"]
    assert not results["0"]["active"] and results["0"]["gflops"]["64"] > 0
    assert all(r["matmul_err"] < 1e-3 and r["inv_err"] < 1e-3 for r in results.values())
