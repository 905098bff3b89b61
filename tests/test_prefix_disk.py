"""The disk tier of the prefix cache (``abstractllm.providers.mlx.prefix_disk``) on real MLX caches: prompts
prefilled by raw mlx-lm on the zoo's tiny models (plain KV ``qwen3``, hybrid ``qwen3_5`` with ArraysCache,
sliding-window ``gemma3_text`` with RotatingKVCache). Round trips give identical arrays and the cold greedy
continuation; lookups find the longest prefix of this model only; bad files are skipped with one warning and
deleted; a full disk drops the entry; writes happen on the store's thread; two processes share a folder;
eviction keeps the folder under its budget; ``abstractllm cache ls|clear`` shows and empties it."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_lm import load
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import KVCache, RotatingKVCache, load_prompt_cache, make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from abstractllm.cli import main as cli
from abstractllm.exceptions import InvalidParameterError
from abstractllm.providers.mlx import prefix_disk, prefix_disk_format
from abstractllm.providers.mlx.prefix_disk import DIR_ENV, DiskPrefixStore
from abstractllm.testing.zoo import family_model

LOGGER = "abstractllm.providers.mlx.prefix_disk"
PROMPT = list(range(5, 45))  # 40 tokens: past gemma3_text's 16-token sliding window
OTHER = list(range(300, 340))
_MODELS: dict[str, object] = {}


def _model(family: str):
    if family not in _MODELS:
        _MODELS[family] = load(str(family_model(family)))[0]
    return _MODELS[family]


def _prefill(model, tokens: list[int]) -> list:
    cache = make_prompt_cache(model)
    model(mx.array(tokens)[None], cache=cache)
    mx.eval([c.state for c in cache])
    return cache


def _greedy(model, prompt: list[int], cache: list, n: int = 8) -> list[int]:
    steps = generate_step(mx.array(prompt), model, prompt_cache=cache, sampler=make_sampler(0.0))
    return [int(token) for (token, _), _ in zip(steps, range(n))]


def _assert_same_state(original: list, loaded: list) -> None:
    assert [type(c) for c in loaded] == [type(c) for c in original]
    for a, b in zip(original, loaded):
        fa, fb = tree_flatten(a.state), tree_flatten(b.state)
        assert [k for k, _ in fa] == [k for k, _ in fb]
        for (_, x), (_, y) in zip(fa, fb):
            if not isinstance(x, mx.array):
                assert x == y
                continue
            assert x.dtype == y.dtype
            if x.shape != y.shape:  # the unused tail of a preallocated KV buffer is not stored
                assert x.shape[:2] == y.shape[:2] and x.shape[2] > y.shape[2] == a.offset
                x = x[..., : y.shape[2], :]
            assert mx.array_equal(x, y).item()


def _store(path: Path, key: str = "qwen3", max_bytes: int = 1 << 30) -> DiskPrefixStore:
    return DiskPrefixStore(path, max_bytes, key)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("family", ["qwen3", "qwen3_5", "gemma3_text"])
def test_round_trip_gives_identical_arrays_and_the_cold_greedy_continuation(tmp_path, family):
    model = _model(family)
    cache = _prefill(model, PROMPT[:-1])
    if family == "gemma3_text":  # the sliding-window layers have wrapped
        assert any(getattr(c, "max_size", None) and c.offset > c.max_size for c in cache)
    store = _store(tmp_path, family)
    store.save(PROMPT[:-1], cache, cache_type="system")
    assert store.flush(30)
    n, handle = store.lookup(PROMPT)
    assert n == len(PROMPT) - 1
    loaded = store.load(handle)
    _assert_same_state(cache, loaded)
    cold = _greedy(model, PROMPT, make_prompt_cache(model))
    assert _greedy(model, PROMPT[-1:], loaded) == cold
    assert _greedy(model, PROMPT[-1:], load_prompt_cache(handle.path)) == cold  # mlx-lm reads the format too
    stats = store.stats
    assert (stats["writes"], stats["reads"], stats["hits"], stats["corrupt"]) == (1, 1, 1, 0)
    assert stats["written_bytes"] == stats["read_bytes"] == os.path.getsize(handle.path)
    (entry,) = store.entries()
    assert (entry["model_key"], entry["tokens"], entry["cache_type"]) == (family, n, "system")


def test_bfloat16_and_quantized_caches_round_trip(tmp_path):
    kv = KVCache()
    keys = mx.random.normal((1, 2, 10, 64), key=mx.random.key(0))
    kv.update_and_fetch(keys.astype(mx.bfloat16), (keys * 2).astype(mx.bfloat16))
    quant = KVCache()
    quant.update_and_fetch(keys, -keys)
    quant = quant.to_quantized(group_size=64, bits=4)
    rotating = RotatingKVCache(max_size=32)  # not wrapped yet, its buffer preallocated past the offset
    rotating.update_and_fetch(keys[..., :9, :], keys[..., :9, :])
    rotating.update_and_fetch(keys[..., 9:, :], keys[..., 9:, :])
    store = _store(tmp_path, "synthetic")
    store.save(list(range(10)), [kv, quant, rotating])
    assert store.flush(30)
    loaded = store.load(store.lookup(list(range(12)))[1])
    assert loaded[0].keys.dtype == mx.bfloat16
    _assert_same_state([kv, quant, rotating], loaded)
    step = mx.ones((1, 2, 1, 64))
    for c in (rotating, loaded[2]):  # both go on the same way
        c.update_and_fetch(step, step)
    assert all(mx.array_equal(a, b).item() for a, b in zip(rotating.keys_and_values(), loaded[2].keys_and_values()))


def test_lookup_finds_the_longest_stored_prefix(tmp_path):
    model = _model("qwen3")
    store = _store(tmp_path)
    for tokens in (PROMPT[:10], PROMPT[:20], OTHER[:15]):
        store.save(tokens, _prefill(model, tokens))
    assert store.flush(30)
    fresh = _store(tmp_path)  # another process: its index comes from the files
    for s in (store, fresh):
        assert s.lookup(PROMPT + [7])[0] == 20
        assert s.lookup(PROMPT[:20])[0] == 20
        assert s.lookup(PROMPT[:15])[0] == 10
        assert s.lookup(OTHER)[0] == 15
        assert s.lookup(PROMPT[:9]) is None and s.lookup([]) is None
        assert s.lookup([5, 6, 99] + PROMPT[3:]) is None
    assert fresh.stats["misses"] == 3
    store.save(PROMPT[:30], _prefill(model, PROMPT[:30]))
    assert store.flush(30)
    assert fresh.lookup(PROMPT)[0] == 30  # written after fresh's index was built


def test_another_models_entries_are_ignored_not_deleted(tmp_path, caplog):
    model = _model("qwen3")
    mine, theirs = _store(tmp_path, "model-a"), _store(tmp_path, "model-b")
    theirs.save(PROMPT, _prefill(model, PROMPT))
    assert theirs.flush(30)
    assert mine.lookup(PROMPT) is None
    mine.save(PROMPT[:10], _prefill(model, PROMPT[:10]))
    assert mine.flush(30)
    assert mine.lookup(PROMPT)[0] == 10 and theirs.lookup(PROMPT)[0] == 40
    assert sorted((e["model_key"], e["tokens"]) for e in mine.entries()) == [("model-a", 10), ("model-b", 40)]
    assert _warnings(caplog) == [] and mine.stats["corrupt"] == 0


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated", "truncated-header", "old-format", "garbage",
                                    "renamed"])
def test_a_bad_file_is_skipped_with_one_warning_and_deleted(tmp_path, caplog, monkeypatch, damage):
    model = _model("qwen3")
    store = _store(tmp_path)
    with monkeypatch.context() as m:
        if damage == "old-format":
            m.setattr(prefix_disk_format, "FORMAT_VERSION", 0)
        store.save(PROMPT, _prefill(model, PROMPT))
        assert store.flush(30)
    (path,) = tmp_path.glob("*.safetensors")
    if damage == "flipped-byte":
        _corrupt(path)
    elif damage == "truncated":
        os.truncate(path, path.stat().st_size - 64)
    elif damage == "truncated-header":
        os.truncate(path, 40)
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "renamed":  # a valid file under another entry's name
        path.rename(tmp_path / prefix_disk.entry_name("qwen3", PROMPT[:5]))
        path = tmp_path / prefix_disk.entry_name("qwen3", PROMPT[:5])
    caplog.set_level(logging.WARNING, logger=LOGGER)
    reader = _store(tmp_path)
    for _ in range(2):  # the second time the file is gone: no second warning
        hit = reader.lookup(PROMPT)
        assert hit is None or reader.load(hit[1]) is None
    assert len(_warnings(caplog)) == 1, _warnings(caplog)
    assert not path.exists() and reader.stats["corrupt"] == 1 and reader.entries() == []


def test_an_unwritable_directory_is_refused_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidParameterError, match="not a writable folder") as info:
        DiskPrefixStore(blocker / "cache", 1 << 20, "m")
    assert info.value.param == "prompt_cache_dir" and str(blocker / "cache") in str(info.value)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InvalidParameterError, match="not a writable folder"):
            DiskPrefixStore(locked, 1 << 20, "m")
    with pytest.raises(InvalidParameterError):
        DiskPrefixStore(tmp_path, -1, "m")
    with pytest.raises(InvalidParameterError):
        DiskPrefixStore(tmp_path, 1 << 20, "")


def test_a_full_disk_drops_the_entry_and_the_caller_goes_on(tmp_path, caplog, monkeypatch):
    model = _model("qwen3")
    store = _store(tmp_path)
    original = prefix_disk._write_chunk
    calls = []

    def disk_full(f, chunk):
        calls.append(len(chunk))
        if len(calls) > 1:  # the header went out, then the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        original(f, chunk)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr(prefix_disk, "_write_chunk", disk_full)
    store.save(PROMPT, _prefill(model, PROMPT))  # returns normally
    store.save(PROMPT[:20], _prefill(model, PROMPT[:20]))
    assert store.flush(30)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no entry, no temp file left
    assert store.stats["dropped"] == 2 and store.stats["writes"] == 0
    assert len(_warnings(caplog)) == 1 and "disk is full" in _warnings(caplog)[0]
    assert store.lookup(PROMPT) is None
    monkeypatch.setattr(prefix_disk, "_write_chunk", original)
    store.save(PROMPT, _prefill(model, PROMPT))
    assert store.flush(30) and store.lookup(PROMPT)[0] == 40


def test_save_returns_before_the_copy_and_the_write_which_run_on_another_thread(tmp_path, monkeypatch):
    """The caller (the MLX worker) only evaluates views of the cache: the host copy and the write both run on
    the store's thread, so a save never holds up decoding."""
    store = _store(tmp_path)
    original, gate, writers, copiers = prefix_disk._write_chunk, threading.Event(), [], []
    host_state = prefix_disk.host_state

    def gated(f, chunk):
        writers.append(threading.get_ident())
        assert gate.wait(30)
        original(f, chunk)

    def copy(state):
        copiers.append(threading.get_ident())
        return host_state(state)

    monkeypatch.setattr(prefix_disk, "_write_chunk", gated)
    monkeypatch.setattr(prefix_disk, "host_state", copy)
    store.save(PROMPT, _prefill(_model("qwen3"), PROMPT))  # the write is held at the gate: save returned anyway
    assert store.flush(timeout=0) is False and store.lookup(PROMPT) is None
    deadline = time.monotonic() + 30
    while not writers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writers and writers[0] != threading.get_ident() and copiers == writers[:1]
    gate.set()
    assert store.flush(30) and store.lookup(PROMPT)[0] == 40


def test_a_cache_updated_after_save_is_written_as_it_was_saved(tmp_path, monkeypatch):
    """The writer copies the arrays later, on its thread: an in-place update of the cache in between (a
    ``KVCache`` writes its buffer with ``keys[..., i:j, :] = ...``) does not reach the file."""
    model = _model("qwen3")
    prompt = list(range(5, 5 + 256))  # fills KVCache's first 256-slot buffer: its state is the buffer itself
    cache = _prefill(model, prompt)
    assert cache[0].keys.shape[2] == cache[0].offset == 256
    expected = [mx.contiguous(x) for _, x in tree_flatten([c.state for c in cache]) if isinstance(x, mx.array)]
    mx.eval(expected)
    store, gate = _store(tmp_path), threading.Event()
    original = prefix_disk._write_chunk
    monkeypatch.setattr(prefix_disk, "_write_chunk", lambda f, chunk: (gate.wait(30), original(f, chunk))[1])
    store.save(prompt, cache)
    for c in cache:  # overwrite the saved positions in place, as a cache that went on decoding could
        c.keys[..., :4, :] = 0.0
        c.values[..., :4, :] = 0.0
    mx.eval([c.state for c in cache])
    gate.set()
    assert store.flush(30)
    loaded = store.load(store.lookup(prompt)[1])
    got = [x for _, x in tree_flatten([c.state for c in loaded]) if isinstance(x, mx.array)]
    assert len(got) == len(expected)
    for x, y in zip(expected, got):
        assert mx.array_equal(x[..., : y.shape[2], :] if x.ndim == 4 else x, y).item()


def test_eviction_keeps_the_folder_under_max_bytes_least_recently_used_first(tmp_path):
    model = _model("qwen3")
    a, b, c = ([t + k for t in PROMPT[:20]] for k in (0, 100, 200))
    probe = _store(tmp_path / "probe")
    probe.save(a, _prefill(model, a))
    assert probe.flush(30)
    size = probe.entries()[0]["bytes"]
    store = _store(tmp_path / "cache", max_bytes=int(size * 2.5))
    for tokens in (a, b):
        store.save(tokens, _prefill(model, tokens))
    assert store.flush(30)
    now = time.time()
    os.utime(store.directory / prefix_disk.entry_name("qwen3", a), (now - 100, now - 100))
    os.utime(store.directory / prefix_disk.entry_name("qwen3", b), (now - 50, now - 50))
    assert store.load(store.lookup(a)[1]) is not None  # a is used again: b is now the least recently used
    store.save(c, _prefill(model, c))
    assert store.flush(30)
    assert store.lookup(a)[0] == 20 and store.lookup(c)[0] == 20 and store.lookup(b) is None
    assert store.stats["evicted"] == 1 and sum(e["bytes"] for e in store.entries()) <= store.max_bytes


_WORKER = """
import json, sys
import mlx.core as mx
from mlx_lm.models.cache import KVCache
from abstractllm.providers.mlx.prefix_disk import DiskPrefixStore

folder, seed = sys.argv[1], int(sys.argv[2])
store = DiskPrefixStore(folder, 60_000, "shared")
query, bad, loads = list(range(1, 30)), 0, 0
for i in range(40):
    tokens = query[: 1 + (i * 7 + seed) % 20]  # both processes write (some of) the same entries
    value = mx.full((1, 2, len(tokens), 32), float(sum(tokens)))
    cache = KVCache()
    cache.update_and_fetch(value, value + 1)
    store.save(tokens, [cache])
    store.flush(60)  # then read while the other process writes and evicts
    hit = store.lookup(query)
    loaded = store.load(hit[1]) if hit else None
    if loaded is not None:
        loads += 1
        keys, values, _ = loaded[0].state
        expected = float(sum(query[: hit[0]]))
        bad += not (keys.shape[2] == hit[0] and mx.all(keys == expected).item()
                    and mx.all(values == expected + 1).item())
store.flush(60)
print(json.dumps({"bad": bad, "loads": loads, **store.stats}))
"""


def test_two_processes_share_one_directory_without_corruption(tmp_path):
    folder = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (0, 3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        assert r["bad"] == 0 and r["corrupt"] == 0 and r["loads"] > 0 and r["writes"] > 0, r
    assert sum(r["evicted"] for r in results) > 0  # the budget was hit: eviction ran under both processes
    entries = prefix_disk.list_entries(folder)
    assert entries and all(e["model_key"] == "shared" and "error" not in e for e in entries)
    assert sum(e["bytes"] for e in entries) <= 60_000
    assert not list(folder.glob(".tmp-*"))
    reader = _store(folder, "shared")
    for e in entries:
        hit = reader.lookup(list(range(1, 1 + e["tokens"])))
        assert hit[0] == e["tokens"] and reader.load(hit[1]) is not None
    assert reader.stats["corrupt"] == 0


def test_cli_cache_ls_and_clear(tmp_path, monkeypatch, capsys):
    model = _model("qwen3")
    folder = tmp_path / "pc"
    for key, tokens in (("model-a", PROMPT[:12]), ("model-b", PROMPT)):
        store = _store(folder, key)
        store.save(tokens, _prefill(model, tokens))
        assert store.flush(30)
    (folder / ("0" * 64 + ".safetensors")).write_bytes(b"not a cache")
    assert cli(["cache", "ls", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "model-a" in out and "model-b" in out and "unreadable" in out and "3 entries" in out
    monkeypatch.setenv(DIR_ENV, str(folder))  # the default folder
    assert cli(["cache", "ls", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["dir"] == str(folder)
    assert sorted((e["model_key"] or "?", e["tokens"] or 0) for e in listing["entries"]) == [
        ("?", 0), ("model-a", 12), ("model-b", 40)]
    assert cli(["cache", "clear"]) == 0
    assert "removed 3" in capsys.readouterr().out
    assert cli(["cache", "ls", "-d", str(folder)]) == 0
    assert "no prompt-cache entries" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # an action is required
        cli(["cache"])
    assert exit_info.value.code == 2
