"""Lifecycle and robustness of the MLX provider on real MLX execution: close / unload / clear_cache races,
exit with a generation running, the per-request memory check, typed errors at every boundary."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from abstractllm import AbstractLLMError, MemoryLimitError, Message, UnsupportedFeatureError, create_llm


def test_close_while_the_first_load_is_queued_never_loads(tiny_model):
    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=4)
    gate = threading.Event()
    llm.worker.submit(gate.wait, 60)  # the worker is busy until the test says so: the stream stays queued
    stream = llm.generate("hello", stream=True)
    closer = threading.Thread(target=llm.close)
    closer.start()
    deadline = time.monotonic() + 30
    while not stream.cancelled and time.monotonic() < deadline:  # close() cancels what is queued first
        time.sleep(0.01)
    gate.set()
    closer.join(30)
    results = list(stream)
    assert not llm.is_loaded
    assert results and results[-1].finish_reason == "cancelled"
    with pytest.raises(AbstractLLMError, match="closed"):
        llm.generate("again")
    llm.close()  # idempotent
    llm.unload()  # a no-op once closed
    llm.clear_cache()


def test_unload_then_clear_cache_and_reload(tiny_model):
    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=4)
    first = llm.generate("hi").content
    llm.unload()
    llm.clear_cache()  # nothing loaded: no error
    assert not llm.is_loaded
    assert llm.generate("hi").content == first
    llm.close()


def test_one_worker_thread_even_when_threads_race_to_create_it(tiny_model):
    for _ in range(20):
        llm = create_llm("mlx", model=str(tiny_model))
        seen, barrier = [], threading.Barrier(4)

        def grab():
            barrier.wait()
            seen.append(llm.worker)

        threads = [threading.Thread(target=grab) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len({id(w) for w in seen}) == 1
        llm.close()


def test_request_kv_cache_beyond_the_memory_limit_is_refused_before_generating(tiny_model):
    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0, memory_limit="68MB")
    with pytest.raises(MemoryLimitError) as exc:
        llm.generate("hi", max_tokens=200_000)
    assert exc.value.required_bytes > exc.value.available_bytes
    assert "max_kv_size" in str(exc.value)
    # a bounded cache fits, and the provider keeps working
    assert llm.generate("hi", max_tokens=6, max_kv_size=512).usage.completion_tokens == 6
    assert llm.generate("hi", max_tokens=5).usage.completion_tokens == 5
    llm.close()


def test_caller_messages_are_never_modified(tiny_llm):
    msg = Message(role="user", text="hello")
    with pytest.raises(UnsupportedFeatureError):
        tiny_llm.generate(messages=[msg], files=[b"not an image"])
    assert msg.images == []
    with pytest.raises(AbstractLLMError):
        tiny_llm.generate(messages=[Message(role="robot", text="x")])


def test_quantize_on_a_vision_model_is_refused_clearly(vision_model):
    llm = create_llm("mlx", model=str(vision_model), quantize=4)
    with pytest.raises(UnsupportedFeatureError, match="pre-quantized"):
        llm.load()
    assert not llm.is_loaded
    llm.close()


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_inspecting_a_model_does_not_import_mlx_until_capabilities(tiny_model):
    """Creating a provider and inspecting the folder (what ``abstractllm models`` does) imports no mlx;
    the capabilities ask mlx-lm about the chat template's tool-call format, after the backend's fast-BLAS
    setup (so mlx is imported then, with the preload in place)."""
    out = _run(f"""
        import sys
        from abstractllm import create_llm
        from abstractllm.providers.mlx.source import inspect_model
        llm = create_llm("mlx", model={str(tiny_model)!r})
        spec = inspect_model(llm.spec.path)
        print("mlx.core" in sys.modules, spec.kind)
        caps = llm.get_capabilities(); info = llm.get_model_info()
        from abstractllm.providers.mlx.backend import fast_blas_status
        print("mlx.core" in sys.modules, "function_calling" in info["capabilities"], fast_blas_status().reason != "mlx.core was imported before the backend could preload OpenBLAS")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "text", "True", "True", "True"]


@pytest.mark.parametrize("which", ["text", "vision"])
def test_capabilities_before_load_import_the_backend_off_the_callers_thread(tiny_model, vision_model, which):
    """Importing mlx-lm / mlx-vlm makes MLX streams on the importing thread (their ``generation_stream``);
    one made on the caller's thread is never cleared, and MLX then aborts the process at exit now and then
    ("terminate called without an active exception"). So the capabilities, asked before any load, import
    them on a thread of abstractllm's that clears its streams as it ends (not the worker: a busy one, loading
    a model, would keep the caller waiting)."""
    model = tiny_model if which == "text" else vision_model
    out = _run(f"""
        import sys, threading
        seen = []
        def hook(event, args):
            if event == "import" and args[0] in ("mlx_lm.generate", "mlx_vlm.generate.common"):
                seen.append(threading.current_thread().name)
        sys.addaudithook(hook)
        from abstractllm import create_llm
        llm = create_llm("mlx", model={str(model)!r})
        caps = llm.get_capabilities()
        print("VISION" in str(caps) or "vision" in caps, seen)
        llm.close()
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    vision, threads = out.stdout.strip().split(" ", 1)
    assert vision == str(which == "vision")
    names = eval(threads)
    assert names and all(name.startswith("abstractllm-") for name in names), names


@pytest.mark.parametrize("early_finalizer", [False, True])
def test_exit_with_a_generation_running_in_a_thread_is_prompt_and_clean(tiny_model, early_finalizer):
    setup = "import tempfile; _keep = tempfile.TemporaryDirectory()" if early_finalizer else ""
    started = time.monotonic()
    out = _run(f"""
        {setup}
        import threading, time
        from abstractllm import create_llm
        llm = create_llm("mlx", model={str(tiny_model)!r}, max_tokens=1_000_000, temperature=1.0)
        llm.load()
        def consume():
            for _ in llm.generate("hello", stream=True):
                pass
        threading.Thread(target=consume, daemon=True).start()
        time.sleep(0.5)
        print("main exits", flush=True)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "main exits" in out.stdout
    assert time.monotonic() - started < 60  # hang detection: the million-token generation would take hours


def test_hub_python_files_are_fetched_only_with_trust_remote_code(monkeypatch):
    import huggingface_hub

    from abstractllm.providers.mlx import source

    asked = []

    def fake_snapshot(repo, revision=None, allow_patterns=None, local_files_only=False):
        asked.append(list(allow_patterns))
        raise FileNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for trust in (False, True):
        with pytest.raises(AbstractLLMError):
            source.resolve_model("org/some-model", trust_remote_code=trust)
    assert "*.py" not in asked[0] and "*.py" in asked[-1]
