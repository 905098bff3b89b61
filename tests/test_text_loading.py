"""Loading the MLX text provider: memory guard (refused before any allocation, with the numbers),
quantize on load (4 | 8 | True, vs mlx-lm's own quantization; already-quantized models left as is),
hub repo ids resolved from a fake Hugging Face cache offline, load / unload / close, and processes that
use the provider (main thread, a thread, asyncio) exiting with code 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from abstractllm import (AbstractLLMError, InvalidParameterError, MemoryLimitError, ModelNotFoundError,
                         create_llm)
from abstractllm.testing import build_text_model
from text_oracle import chat, raw_generate, raw_prompt_ids

PROMPT = "What is the capital of France?"


def _estimate(path, **config):
    from abstractllm.providers.mlx.memory import estimate_load_bytes
    from abstractllm.providers.mlx.source import inspect_model

    spec = inspect_model(Path(path))
    itemsize = None if spec.is_quantized else 4  # dtype "auto" on CPU: float32
    return estimate_load_bytes(spec, quantize_bits=config.get("quantize"), float_itemsize=itemsize)


# ------------------------------------------------------------------ memory guard
def test_memory_limit_below_model_size_refuses_before_loading(tiny_model):
    import mlx.core as mx

    need = _estimate(tiny_model).total
    llm = create_llm("mlx", model=str(tiny_model), memory_limit=need - 1)
    before = mx.get_active_memory()
    try:
        with pytest.raises(MemoryLimitError) as err:
            llm.generate(PROMPT, max_tokens=2)
        assert not llm.is_loaded
        e = err.value
        assert isinstance(e, MemoryError)
        assert e.required_bytes == need and e.available_bytes == need - 1
        msg = str(e)
        assert "memory_limit" in msg and "MB" in msg and "needs about" in msg
        with pytest.raises(MemoryLimitError):
            llm.load()
        assert not llm.is_loaded
        # nothing was allocated by the refused loads
        assert mx.get_active_memory() == before
    finally:
        llm.close()
    with create_llm("mlx", model=str(tiny_model), memory_limit=need + 1, temperature=0.0) as ok:
        assert ok.generate(PROMPT, max_tokens=3).usage.completion_tokens == 3


def test_memory_limit_string_forms(tiny_model):
    with create_llm("mlx", model=str(tiny_model), memory_limit="8GB", temperature=0.0) as llm:
        assert llm.config["memory_limit"] == 8_000_000_000
        assert llm.generate(PROMPT, max_tokens=2).content is not None
    with create_llm("mlx", model=str(tiny_model), memory_limit="10 MiB") as llm:
        with pytest.raises(MemoryLimitError, match="10.49 MB"):
            llm.load()


@pytest.mark.parametrize("bad", ["lots", "8 parsecs", -1, True, [8], {"gb": 8}, float("nan"), ""])
def test_bad_memory_limit_values(tiny_model, bad):
    with pytest.raises(InvalidParameterError) as err:
        create_llm("mlx", model=str(tiny_model), memory_limit=bad)
    assert err.value.param == "memory_limit"


# ------------------------------------------------------------------ quantize on load
@pytest.fixture(scope="module")
def deep_tiny(tmp_path_factory):
    """The tiny preset with 6 layers: the embedding is no longer most of the weights, so quantizing
    shrinks the whole estimate (transient float tensor included)."""
    return build_text_model(tmp_path_factory.mktemp("deep") / "m", "tiny", overrides={"num_hidden_layers": 6})


def _quantized_leaves(llm):
    def look():
        from mlx.utils import tree_flatten

        return {k: v.dtype for k, v in tree_flatten(llm._adapter.model.parameters())}

    return llm.worker.call(look)


@pytest.mark.parametrize("quantize,bits", [(4, 4), (8, 8), (True, 4)])
def test_quantize_on_load_matches_mlx_lm_quantization(tiny_model, quantize, bits):
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.utils import quantize_model

    with create_llm("mlx", model=str(tiny_model), quantize=quantize, temperature=0.0) as llm:
        info = llm.get_model_info()
        assert info["quantize_on_load"] == bits and info["loaded"] is False
        resp = llm.generate(PROMPT, max_tokens=20)
        info = llm.get_model_info()
        assert info["quantization"]["bits"] == bits and info["quantized_on_load"] == bits
        leaves = _quantized_leaves(llm)
        assert any(k.endswith(".scales") for k in leaves)
        assert leaves["model.layers.0.mlp.down_proj.weight"] == mx.uint32
        assert info["estimated_memory_bytes"] == _estimate(tiny_model, quantize=bits).total
    # the same quantization done by hand with mlx-lm gives the same tokens
    model, tok = load(str(tiny_model))
    model, _ = quantize_model(model, {}, group_size=64, bits=bits)
    ids = raw_prompt_ids(tiny_model, chat(PROMPT))
    raw = [int(r.token) for r in stream_generate(model, tok, mx.array(ids), max_tokens=20)]
    assert resp.token_ids == raw


def test_quantize_estimate_is_smaller_and_guard_reflects_it(deep_tiny):
    tiny_model = deep_tiny
    flt, q4, q8 = _estimate(tiny_model), _estimate(tiny_model, quantize=4), _estimate(tiny_model, quantize=8)
    assert q4.weights_bytes < q8.weights_bytes < flt.weights_bytes / 3
    assert q4.total < flt.total
    limit = (q4.total + flt.total) // 2  # enough for 4-bit, not for float
    with create_llm("mlx", model=str(tiny_model), memory_limit=limit) as llm:
        with pytest.raises(MemoryLimitError):
            llm.load()
    with create_llm("mlx", model=str(tiny_model), memory_limit=limit, quantize=4) as llm:
        assert llm.load().is_loaded
        assert llm.get_model_info()["estimated_memory_bytes"] == q4.total < flt.total


def test_already_quantized_model_is_left_as_is(tmp_path_factory):
    path = build_text_model(tmp_path_factory.mktemp("q") / "m", "tiny", quantize=4)
    ids = raw_prompt_ids(path, chat(PROMPT))
    raw = raw_generate(path, ids, max_tokens=16)
    with create_llm("mlx", model=str(path), quantize=8, temperature=0.0) as llm:
        info = llm.get_model_info()
        assert info["quantization"]["bits"] == 4 and info["quantize_on_load"] is None
        resp = llm.generate(PROMPT, max_tokens=16)
        assert resp.token_ids == raw.tokens
        info = llm.get_model_info()
        assert info["quantization"]["bits"] == 4 and "quantized_on_load" not in info


# ------------------------------------------------------------------ hub resolution, offline
def _fake_hub_cache(root: Path, repo: str, model: Path, sha: str = "0" * 40) -> Path:
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / sha
    shutil.copytree(model, snap)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(sha)
    return snap


def test_repo_id_found_in_fake_hub_cache_offline(tiny_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snap = _fake_hub_cache(cache, "tiny-org/tiny-model", tiny_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with create_llm("mlx", model="tiny-org/tiny-model", temperature=0.0) as llm:
        assert Path(llm.get_model_info()["path"]) == snap.resolve()
        resp = llm.generate(PROMPT, max_tokens=12)
    ids = raw_prompt_ids(tiny_model, chat(PROMPT))
    assert resp.token_ids == raw_generate(tiny_model, ids, max_tokens=12).tokens
    # a repo that is not cached: ModelNotFoundError naming the repo and the cache folder
    llm = create_llm("mlx", model="tiny-org/not-there")
    with pytest.raises(ModelNotFoundError) as err:
        llm.generate(PROMPT, max_tokens=2)
    assert "tiny-org/not-there" in str(err.value) and str(cache) in str(err.value)
    assert "HF_HUB_OFFLINE" in str(err.value)
    # a revision that is not cached
    with pytest.raises(ModelNotFoundError):
        create_llm("mlx", model="tiny-org/tiny-model", revision="v9").get_model_info()


def _run_py(code: str, env: dict | None = None, timeout: float = 120, drop=()) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in drop}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def test_hub_resolution_in_subprocess_with_env_only(tiny_model, tmp_path):
    cache = tmp_path / "hfhome" / "hub"
    _fake_hub_cache(cache, "org/name", tiny_model)
    proc = _run_py("""
        from abstractllm import create_llm
        llm = create_llm("mlx", model="org/name", temperature=0.0)
        print("TOKENS", llm.generate("hi", max_tokens=5).usage.completion_tokens)
    """, env={"HF_HOME": str(tmp_path / "hfhome"), "HF_HUB_OFFLINE": "1"}, drop=("HF_HUB_CACHE",))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TOKENS 5" in proc.stdout


# ------------------------------------------------------------------ load / unload / close
def test_load_unload_reload_and_close(tiny_model):
    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0)
    assert not llm.is_loaded
    assert llm.load() is llm and llm.is_loaded
    info = llm.get_model_info()
    assert info["loaded"] and info["load_time_s"] > 0 and info["estimated_memory_bytes"] > 0
    first = llm.generate(PROMPT, max_tokens=10)
    assert llm.memory_status()["mlx_active"] > 0
    llm.unload()
    assert not llm.is_loaded and llm.get_model_info()["loaded"] is False
    second = llm.generate(PROMPT, max_tokens=10)  # reloads lazily
    assert llm.is_loaded and second.token_ids == first.token_ids
    assert second.usage.cached_tokens == 0  # the prompt cache went with the model
    llm.unload()
    llm.unload()  # idempotent
    llm.close()
    llm.close()
    with pytest.raises(AbstractLLMError, match="closed"):
        llm.generate(PROMPT, max_tokens=2)
    with pytest.raises(AbstractLLMError):
        llm.load()


def test_context_manager_closes(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0) as llm:
        llm.generate(PROMPT, max_tokens=2)
        thread = llm.worker.thread
    assert not llm.is_loaded and not thread.is_alive()
    with pytest.raises(AbstractLLMError):
        llm.generate(PROMPT, max_tokens=2)


@pytest.mark.parametrize("mode", ["main", "thread", "asyncio", "no-close"])
def test_processes_using_the_provider_exit_zero(tiny_model, mode):
    proc = _run_py(f"""
        import asyncio, threading, sys
        from abstractllm import create_llm
        llm = create_llm("mlx", model={str(tiny_model)!r}, temperature=0.0, max_tokens=6)
        mode = {mode!r}
        if mode == "main":
            out = [llm.generate("hi").content, "".join(c.content for c in llm.generate("hi", stream=True))]
        elif mode == "thread":
            out = []
            t = threading.Thread(target=lambda: out.append(llm.generate("hi").content))
            t.start(); t.join()
        elif mode == "asyncio":
            async def main():
                r = await llm.generate_async("hi")
                s = await llm.generate_async("hi", stream=True)
                return [r.content, "".join([c.content async for c in s])]
            out = asyncio.run(main())
        else:  # left open: the atexit hook must still clear MLX streams on the worker
            out = [llm.generate("hi").content]
        if mode != "no-close":
            llm.close()
        print("OK", len(out))
    """)
    assert proc.returncode == 0, f"rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    assert "OK" in proc.stdout


def test_hub_revision_selects_the_snapshot(tiny_model, llama_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/multi", tiny_model, sha="a" * 40)
    repo_dir = cache / "models--org--multi"
    shutil.copytree(llama_model, repo_dir / "snapshots" / ("b" * 40))
    (repo_dir / "refs" / "v2").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    main = create_llm("mlx", model="org/multi")
    v2 = create_llm("mlx", model="org/multi", revision="v2")
    by_sha = create_llm("mlx", model="org/multi", revision="b" * 40)
    assert main.get_model_info()["model_type"] == "qwen3"
    assert v2.get_model_info()["model_type"] == "llama" == by_sha.get_model_info()["model_type"]
    for llm in (main, v2, by_sha):
        llm.close()


@pytest.mark.parametrize("mode", ["open-stream", "open-stream-closed-provider", "with-block", "async-stream"])
def test_exit_with_a_generation_still_running_is_prompt_and_clean(tiny_model, mode):
    """A script that leaves with a long stream unread must neither wait for the whole generation nor
    abort at exit (134): the provider's streams are cancelled before its worker stops."""
    proc_t = time.perf_counter()
    proc = _run_py(f"""
        import asyncio
        from abstractllm import create_llm
        mode = {mode!r}
        llm = create_llm("mlx", model={str(tiny_model)!r}, temperature=0.0)
        if mode == "open-stream":
            s = llm.generate("hi", max_tokens=1_000_000, stream=True); next(s)
        elif mode == "open-stream-closed-provider":
            s = llm.generate("hi", max_tokens=1_000_000, stream=True); next(s); llm.close()
        elif mode == "with-block":
            with llm:
                s = llm.generate("hi", max_tokens=1_000_000, stream=True); next(s)
        else:
            async def main():
                s = await llm.generate_async("hi", max_tokens=1_000_000, stream=True)
                await s.__anext__()
                return s
            keep = asyncio.run(main())
        print("LEFT")
    """, timeout=60)
    took = time.perf_counter() - proc_t
    assert proc.returncode == 0, f"rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    assert "LEFT" in proc.stdout
    # hang detection: the uncancelled generation of a million tokens would run for hours
    assert took < 60, f"exit took {took:.1f} s: the generation kept running"


def test_close_cancels_a_stream_running_in_another_thread(tiny_model):
    import threading

    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0)
    got, started = [], threading.Event()

    def consume():
        for chunk in llm.generate("hi", max_tokens=1_000_000, stream=True):
            got.append(chunk)
            started.set()

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    t0 = time.perf_counter()
    llm.close()
    t.join(10)
    # the reader's stream ended (hang detection: uncancelled, a million tokens would take hours)
    assert not t.is_alive() and time.perf_counter() - t0 < 15
    last = got[-1]  # and it says so, with exact usage
    assert last.finish_reason == "cancelled"
    n = sum(len(c.token_ids) for c in got)
    assert last.usage.completion_tokens == n > 0
    assert not llm.is_loaded


def test_close_cancels_a_blocking_generate_in_another_thread(tiny_model):
    import threading

    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0)
    llm.load()
    out = []
    t = threading.Thread(target=lambda: out.append(llm.generate("hi", max_tokens=1_000_000)))
    t.start()
    time.sleep(0.3)
    llm.close()
    t.join(10)
    assert not t.is_alive()
    r = out[0]
    assert r.finish_reason == "cancelled" and r.usage.completion_tokens == len(r.token_ids) > 0


def test_unload_frees_the_memory(tiny_llm):
    import gc

    import mlx.core as mx
    from abstractllm.testing import demo_model

    path = demo_model("text", "small")  # ~44 MB of float32 weights
    with create_llm("mlx", model=str(path), temperature=0.0) as llm:
        weights = llm.get_model_info()["weight_bytes"]
        before = mx.get_active_memory()
        llm.generate(PROMPT, max_tokens=8)
        llm.generate(PROMPT + " Again.", max_tokens=8)  # a prompt-cache entry too
        loaded = mx.get_active_memory()
        assert loaded - before >= weights
        llm.unload()
        gc.collect()
        assert mx.get_active_memory() - before < 0.05 * weights
        llm.generate(PROMPT, max_tokens=2)
        assert mx.get_active_memory() - before >= weights
    assert mx.get_active_memory() - before < 0.05 * weights
