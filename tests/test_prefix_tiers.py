"""The prefix cache's disk tier and KV-cache quantization through the provider (issue 24, items 3 and 5): a
restart over ``prompt_cache_dir`` reuses what the previous process computed, damaged files are skipped and
deleted, an unwritable folder is refused at load; ``kv_bits`` works with batching, the prefix cache (RAM and
disk) and ``quantized_kv_start``, and holds its promised size."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from abstractllm import create_llm
from abstractllm.exceptions import InvalidParameterError
from abstractllm.testing import demo_model
from abstractllm.testing.zoo import family_model

SYSTEM = ("You are a careful assistant for a coding agent. Follow the repository's conventions, explain each "
          "change briefly, never invent files, run the tests after every edit, and keep answers short. ") * 3
MAX = 8


def _ask(llm, question, system=SYSTEM):
    return llm.generate(messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])


@pytest.fixture(scope="module")
def small():
    """A Qwen3-shaped model with a head size of 64 (KV quantization needs a multiple of its group size)."""
    return demo_model("text", "small")


@pytest.mark.parametrize("name", ["qwen3", "qwen3_5"])
def test_a_restart_reuses_the_disk_tier(name, tmp_path):
    path = family_model(name)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_dir=str(tmp_path)) as llm:
        _ask(llm, "What is a list?")
    assert list(tmp_path.glob("*.safetensors"))  # written before close returned
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_dir=str(tmp_path)) as llm:
        warm = _ask(llm, "Name a colour.")  # a new process's first request, another conversation
        disk = llm.get_model_info()["prompt_cache"]["disk"]
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold_llm:
        cold = _ask(cold_llm, "Name a colour.")
    assert warm.token_ids == cold.token_ids
    assert warm.usage.cached_tokens >= warm.usage.prompt_tokens // 3
    assert disk["reads"] >= 1 and disk["hits"] >= 1


def test_damaged_files_are_skipped_with_one_warning_and_deleted(tmp_path, caplog):
    path = family_model("qwen3")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_dir=str(tmp_path)) as llm:
        _ask(llm, "What is a list?")
    files = list(tmp_path.glob("*.safetensors"))
    damaged = {}
    for f in files:  # a byte flipped in the middle of each
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        damaged[f] = bytes(data)
    with caplog.at_level(logging.WARNING):
        with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0,
                        prompt_cache_dir=str(tmp_path)) as llm:
            r = _ask(llm, "Name a colour.")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold_llm:
        assert r.token_ids == _ask(cold_llm, "Name a colour.").token_ids and r.usage.cached_tokens == 0
    # the entries this prompt could use were read, found damaged, deleted (some written again, whole, by this
    # run), each with one warning; the others, not prefixes of it, were never read
    deleted = [f for f in files if not f.exists() or f.read_bytes() != damaged[f]]
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING and "skipped" in rec.getMessage()]
    assert deleted and len(warned) == len(deleted)


def test_an_unwritable_cache_folder_is_refused_and_the_server_does_not_start(tmp_path):
    import subprocess
    import sys

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "below"):
        with pytest.raises(InvalidParameterError) as info:
            create_llm("mlx", model=str(family_model("qwen3")), prompt_cache_dir=str(folder))
        assert info.value.param == "prompt_cache_dir" and "folder" in str(info.value)
    out = subprocess.run([sys.executable, "-m", "abstractllm.cli", "serve", "--model", str(family_model("qwen3")),
                          "--port", "0", "--prompt-cache-dir", str(blocker)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "prompt_cache_dir" in out.stderr and "Uvicorn running" not in out.stderr


@pytest.mark.parametrize("config", [{"kv_bits": 3}, {"kv_bits": 4, "kv_group_size": 48},
                                    {"quantized_kv_start": -1}, {"prompt_cache_disk_bytes": -5}])
def test_bad_kv_and_cache_settings_are_refused(config):
    with pytest.raises(InvalidParameterError):
        create_llm("mlx", model=str(family_model("qwen3")), **config)


def test_kv_bits_on_a_head_size_it_cannot_group_is_refused_at_load():
    with create_llm("mlx", model=str(family_model("qwen3")), kv_bits=4) as llm:  # head size 16 < group 64
        with pytest.raises(InvalidParameterError) as info:
            llm.load()
    assert "group" in str(info.value)


def _together(llm, prompts):
    results: dict[int, list[int]] = {}
    start = threading.Barrier(len(prompts))

    def run(i):
        start.wait()
        results[i] = llm.generate(prompts[i]).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return [results[i] for i in range(len(prompts))]


@pytest.mark.parametrize("config", [{"kv_bits": 4}, {"kv_bits": 8, "quantized_kv_start": 30}])
def test_kv_bits_batched_equals_solo_and_reuses_prefixes(small, config, tmp_path, monkeypatch):
    from abstractllm.providers.mlx import kv_attention

    monkeypatch.setattr(kv_attention, "MIN_ELEMENTS", 0)  # every quantized attention split across the cores
    prompts = ["Hi", "Tell me about the sea, the waves, and the ships that sail on it at night.", "Why?"]
    with create_llm("mlx", model=str(small), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0, **config) as cold:
        solo = [cold.generate(p).token_ids for p in prompts]
        cold_turn = _ask(cold, "Name a colour.")
    with create_llm("mlx", model=str(small), temperature=0.0, max_tokens=MAX, prompt_cache_dir=str(tmp_path),
                    **config) as llm:
        assert _together(llm, prompts) == solo  # quantized and (with quantized_kv_start) full-precision rows
        assert llm.get_model_info()["kv_bits"] == config["kv_bits"]
        _ask(llm, "What is a list?")
        warm = _ask(llm, "Name a colour.")
    assert warm.token_ids == cold_turn.token_ids and warm.usage.cached_tokens >= warm.usage.prompt_tokens // 3
    with create_llm("mlx", model=str(small), temperature=0.0, max_tokens=MAX, prompt_cache_dir=str(tmp_path),
                    prompt_cache_bytes=0, **config) as restarted:
        again = _ask(restarted, "Name a colour.")  # from the disk tier, quantized entries included
    assert again.token_ids == cold_turn.token_ids and again.usage.cached_tokens >= again.usage.prompt_tokens // 3


def test_a_4_bit_kv_cache_holds_under_a_third_of_float32s_bytes(small):
    sizes = {}
    for bits in (None, 4):
        with create_llm("mlx", model=str(small), temperature=0.0, max_tokens=MAX, kv_bits=bits) as llm:
            llm.generate("Tell me about the sea, the waves, and the ships that sail on it at night.")
            sizes[bits] = llm.get_model_info()["prompt_cache"]["bytes"]
    assert 0 < sizes[4] <= 0.3 * sizes[None]


def test_kv_bits_on_a_vision_model_equals_raw_mlx_vlm(tmp_path):
    """Requests with media use mlx-vlm's own quantized cache with our settings: the tokens raw mlx-vlm gives with
    the same kv_bits; the vision tiny model's head size (16) is refused at load."""
    import mlx.core as mx
    from mlx_vlm import load, stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template
    from PIL import Image

    picture = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 10)).save(picture)
    path = demo_model("vision", "small")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, kv_bits=4, prompt_cache_bytes=0) as llm:
        ours = llm.generate("Describe.", media=[str(picture)]).token_ids
        assert llm.get_model_info()["kv_bits"] == 4
    model, processor = load(str(path))
    templated = apply_chat_template(processor, model.config, "Describe.", num_images=1)
    raw = [int(r.token) for r in stream_generate(model, processor, templated, image=[str(picture)], max_tokens=MAX,
                                                 temperature=0.0, kv_bits=4, kv_group_size=64, quantized_kv_start=0)
           if r.finish_reason is None]
    mx.clear_cache()
    assert ours[:len(raw)] == raw and len(ours) - len(raw) in (0, 1)
    with create_llm("mlx", model=str(demo_model("vision", "tiny")), kv_bits=4) as tiny:
        with pytest.raises(InvalidParameterError):
            tiny.load()


def test_the_server_reports_the_prefix_cache_and_reuses_it_after_a_restart(tmp_path):
    """``abstractllm serve --prompt-cache-dir``: /metrics and /stats count the reuse and the disk traffic; a new
    server process over the same folder serves a new conversation's system prompt from disk."""
    import time

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from test_server_support import ServerProcess

    model = family_model("qwen3")
    body = lambda q: {"model": "m", "max_tokens": MAX, "temperature": 0, "messages": [  # noqa: E731
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]}

    def metrics(srv):
        text = httpx.get(srv.url + "/metrics", timeout=30).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    srv = ServerProcess(model, "--prompt-cache-dir", str(tmp_path))
    try:
        for q in ("What is a list?", "Name a colour."):
            second = httpx.post(srv.base_url + "/chat/completions", json=body(q), timeout=120).json()
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        deadline = time.monotonic() + 60
        while metrics(srv)[("abstractllm_prompt_cache_disk_operations_total", (("op", "write"),))] < 1:
            assert time.monotonic() < deadline, "nothing written to disk"
            time.sleep(0.2)
        m = metrics(srv)
        assert m[("abstractllm_prefill_tokens_total", (("source", "reused"),))] == \
            second["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert m[("abstractllm_prompt_cache_disk_bytes_total", (("direction", "written"),))] > 0
        assert srv.stats()["prompt_cache"]["disk"]["writes"] >= 1
    finally:
        assert srv.stop() == 0, "".join(srv.log)
    srv = ServerProcess(model, "--prompt-cache-dir", str(tmp_path))
    try:
        third = httpx.post(srv.base_url + "/chat/completions", json=body("Why test code?"), timeout=120).json()
        assert third["usage"]["prompt_tokens_details"]["cached_tokens"] >= third["usage"]["prompt_tokens"] // 3
        assert metrics(srv)[("abstractllm_prompt_cache_disk_operations_total", (("op", "read"),))] >= 1
    finally:
        srv.stop()


def test_two_servers_share_one_cache_folder_without_corruption(tmp_path):
    """Two ``abstractllm serve`` processes on one ``--prompt-cache-dir`` with a disk budget of a few entries
    answer different system prompts at the same time (both write and evict under the folder's lock): every
    file left is whole and valid, no temp file stays, the folder keeps its budget, and a third server serves
    a stored prompt from it with the tokens a server without a cache gives."""
    import concurrent.futures

    import httpx

    from abstractllm.providers.mlx.prefix_disk import list_entries
    from abstractllm.providers.mlx.prefix_disk_format import verify
    from test_server_support import ServerProcess

    model = family_model("qwen3")
    systems = [f"{SYSTEM} Project {i}: answer in the voice of team {i}." for i in range(6)]

    def body(system):
        return {"model": "m", "max_tokens": MAX, "temperature": 0, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": "What is a list?"}]}

    def ask(srv, system):
        r = httpx.post(srv.base_url + "/chat/completions", json=body(system), timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    probe = ServerProcess(model, "--prompt-cache-dir", str(tmp_path / "probe"))
    try:
        ask(probe, systems[0])
        probe_files = list_entries(tmp_path / "probe")
    finally:
        assert probe.stop() == 0
    budget = 3 * max(e["bytes"] for e in probe_files)  # a few entries: both servers must evict
    shared = tmp_path / "shared"
    servers = [ServerProcess(model, "--prompt-cache-dir", str(shared), "--prompt-cache-disk-size", str(budget))
               for _ in range(2)]
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(ask, servers[i % 2], s) for i, s in enumerate(systems + systems[::-1])]
            [job.result() for job in jobs]
        disk = [srv.stats()["prompt_cache"]["disk"] for srv in servers]
        assert all(d["corrupt"] == 0 and d["writes"] > 0 for d in disk), disk
        assert sum(d["evicted"] for d in disk) > 0, disk  # the budget was hit: both wrote, somebody evicted
    finally:
        assert all(srv.stop() == 0 for srv in servers), "".join(servers[0].log + servers[1].log)
    entries = list_entries(shared)
    assert entries and {p.name for p in shared.iterdir()} == {Path(e["path"]).name for e in entries} | {".lock"}
    for e in entries:  # whole and valid: the checksum over the header and every tensor byte
        verify(Path(e["path"]).read_bytes(), Path(e["path"]).name, e["model_key"])
    assert sum(e["bytes"] for e in entries) <= budget
    with create_llm("mlx", model=str(model), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold:
        expected = [_ask(cold, "What is a list?", system=s).content for s in systems]
    third = ServerProcess(model, "--prompt-cache-dir", str(shared), "--prompt-cache-disk-size", str(budget))
    try:
        served = [ask(third, s) for s in systems]
        assert third.stats()["prompt_cache"]["disk"]["corrupt"] == 0
    finally:
        third.stop()
    assert any(r["usage"]["prompt_tokens_details"]["cached_tokens"] > 0 for r in served)
    assert [r["choices"][0]["message"]["content"] for r in served] == expected


def test_a_cancelled_full_precision_request_never_serves_a_quantized_one(small):
    """With quantized_kv_start, short prompts keep full-precision caches: one ended early (cancelled) is stored
    apart from the quantized entries, so later quantized requests (together in one batch) never meet it."""
    import time

    config = {"temperature": 0.0, "max_tokens": 12, "kv_bits": 8, "quantized_kv_start": 40}
    long_q = "Hi " + "tell me about the sea, the waves and the ships that sail on it at night. " * 2
    other = "Please " + "describe the mountains, the rivers and the forests of a far away land in detail. " * 2
    with create_llm("mlx", model=str(small), **config) as llm:
        llm.generate(other)  # quantized: its entry is a quantized one
        stream = llm.generate("Hi", stream=True, max_tokens=200)  # full precision, cancelled after one chunk
        next(iter(stream))
        stream.close()
        deadline = time.monotonic() + 60
        while llm.get_stats()["requests_cancelled"] < 1:
            assert time.monotonic() < deadline, "the cancellation never ended the request"
            time.sleep(0.05)
        together = llm.generate([long_q, other + " And more."])  # both quantized, one batch
    with create_llm("mlx", model=str(small), prompt_cache_bytes=0, **config) as cold:
        assert [r.token_ids for r in together] == [cold.generate(p).token_ids for p in (long_q, other + " And more.")]


def test_the_memory_guard_counts_the_quantized_kv_size(small):
    """A request whose float32 KV cache would not fit the memory limit is refused; with kv_bits=4 the same
    request fits (the guard counts ~0.16x the bytes per token) and is served."""
    from abstractllm.exceptions import MemoryLimitError

    config = {"temperature": 0.0, "memory_limit": "120MB", "max_tokens": 30000}
    with create_llm("mlx", model=str(small), **config) as llm:
        with pytest.raises(MemoryLimitError) as info:
            llm.generate("Hi")
    with create_llm("mlx", model=str(small), kv_bits=4, **config) as llm:
        stream = llm.generate("Hi", stream=True)  # admitted with the same 30,000-token budget
        first = next(iter(stream))
        stream.close()
    assert first.content is not None
    assert info.value.required_bytes > 0
