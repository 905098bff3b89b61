"""The backend's OpenBLAS preload (Linux) and the text benchmark, each in a fresh process: the preload
must happen before the first ``import mlx.core``, so it cannot be tested in this (already MLX-using)
process."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
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
                      "mapped": "libopenblas" in maps}}))
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
        assert out["active"] and out["mapped"] and "openblas" in out["library"]
    else:
        assert not out["active"] and "apt-get install libopenblas0-pthread" in out["reason"]


@linux_only
def test_preload_opt_out_and_too_late():
    off = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS="0")
    assert not off["active"] and "disabled" in off["reason"] and not off["mapped"] and off["err"] < 1e-3
    late = _run(_STATUS.format(before="import mlx.core"))
    assert not late["active"] and "imported before" in late["reason"] and not late["mapped"]
    bad = _run(_STATUS.format(before=""), ABSTRACTLLM_FAST_BLAS="/nonexistent/libblas.so")
    assert not bad["active"] and "could not be loaded" in bad["reason"]


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
