"""KV-cache quantization under continuous batching (abstractllm/providers/mlx/kv_quant.py), on real MLX
execution with mlx-lm's own ``BatchGenerator``: batched = alone (requests joining and leaving mid-decode),
exact parity with mlx-lm's single-stream quantized cache, extract / merge / trim / save / load round trips,
the quantized size, hybrid (Gated DeltaNet, Mamba) and sliding-window families, and bad input.

Models are built in memory from the zoo's configs with a head dimension of 64 (mx.quantize needs a multiple of
its group size; the zoo's tiny models have 16)."""

from __future__ import annotations

import copy
import random
import sys

import pytest

from abstractllm.exceptions import InvalidParameterError, UnsupportedFeatureError

N = 12  # tokens generated per request
LENGTHS = (5, 37, 150)  # 150 > prefill_step_size: prefilled in chunks, alone and batched


@pytest.fixture(scope="module")
def kvq():
    from abstractllm.providers.mlx.backend import enable_fast_blas

    enable_fast_blas()  # before mlx.core is first imported, as the provider does
    from abstractllm.providers.mlx import kv_quant

    return kv_quant


def _model(config: dict, seed: int = 0):
    """A random-weight mlx-lm model of ``config`` (a zoo family's or a preset's)."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    from abstractllm.testing.weights import randomize_weights

    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    randomize_weights(model, seed, 1.0)
    mx.eval(model.parameters())
    return model


def _family(name: str, **text_overrides):
    from abstractllm.testing.zoo import FAMILIES

    config = copy.deepcopy(FAMILIES[name].config)
    config.get("text_config", config).update(text_overrides)
    return _model(config)


@pytest.fixture(scope="module")
def qwen(kvq):
    from abstractllm.testing.text import TEXT_PRESETS

    config = {**TEXT_PRESETS["tiny"][0], "head_dim": 64}
    return config, _model(config)


def _prompts(lengths=LENGTHS, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(1000) for _ in range(n)] for n in lengths]


def _run(model, prompts, caches, *, max_tokens=N, late=0):
    """Greedy tokens and final caches of ``prompts`` through mlx-lm's BatchGenerator; the last ``late`` requests
    join after the others have decoded 3 steps (the batch cache is then extended and filtered)."""
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, max_tokens=max_tokens, prefill_step_size=64)
    uids, first = [], len(prompts) - late
    out, done = {}, {}

    def insert(idx):
        new = gen.insert([prompts[i] for i in idx], caches=[caches[i] for i in idx])
        uids.extend(new)
        out.update({u: [] for u in new})

    insert(range(first))
    steps = 0
    while len(done) < len(prompts):
        if steps == 3 and late:
            insert(range(first, len(prompts)))
        for r in gen.next_generated():
            out[r.uid].append(r.token)
            if r.finish_reason:
                done[r.uid] = r.prompt_cache
        steps += 1
    gen.close()
    return [out[u] for u in uids], [done[u] for u in uids]


def _alone(model, prompts, make):
    return [_run(model, [p], [make()])[0][0] for p in prompts]


@pytest.mark.parametrize("bits", [4, 8])
def test_batched_equals_alone_with_requests_joining_mid_decode(kvq, qwen, bits):
    _, model = qwen
    prompts = _prompts()
    make = lambda: kvq.make_quantized_cache(model, bits, 64)  # noqa: E731
    together, caches = _run(model, prompts, [make() for _ in prompts], late=1)
    assert together == _alone(model, prompts, make)
    for p, cache in zip(prompts, caches):  # the quantized path ran: every layer holds quantized prompt + reply
        assert all(isinstance(c, kvq.MergeableQuantizedKVCache) and c.bits == bits for c in cache)
        assert cache[0].offset == len(p) + N  # the last reply token was fed too


@pytest.mark.parametrize("bits", [4, 8])
def test_parity_with_mlx_lm_single_stream(kvq, qwen, bits):
    """Exact with mlx-lm's own QuantizedKVCache; exact with its kv_bits path (quantized_kv_start=0) once our
    cache starts where that path does: its first prefill chunk at full precision, then quantized."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import QuantizedKVCache, make_prompt_cache

    _, model = qwen

    def mlx_lm(prompt, **kw):
        steps = generate_step(mx.array(prompt), model, max_tokens=N, kv_group_size=64, **kw)
        return [t for t, _ in steps]

    for prompt in _prompts():
        ours = _run(model, [prompt], [kvq.make_quantized_cache(model, bits, 64)])[0][0]
        assert ours == mlx_lm(prompt, prompt_cache=[QuantizedKVCache(64, bits) for _ in model.layers])
        full = make_prompt_cache(model)
        mx.eval(model(mx.array([prompt[:-1]]), cache=full))
        switched = kvq.quantize_cache(full, bits, 64)
        assert _run(model, [prompt[-1:]], [switched])[0][0] == mlx_lm(prompt, kv_bits=bits, quantized_kv_start=0)


def test_extract_merge_trim_save_load_round_trips(kvq, qwen, tmp_path):
    import mlx.core as mx
    from mlx_lm.models.cache import load_prompt_cache as mlx_load, save_prompt_cache, trim_prompt_cache

    _, model = qwen
    prompts = _prompts()
    tokens, caches = _run(model, prompts, [kvq.make_quantized_cache(model, 4, 64) for _ in prompts])
    layer = [c[0] for c in caches]
    batch = kvq.MergeableQuantizedKVCache.merge(layer)
    assert isinstance(batch, kvq.BatchQuantizedKVCache) and batch.size() == max(c.offset for c in layer)
    for i, c in enumerate(layer):
        back = batch.extract(i)
        assert back.offset == c.offset and all(mx.array_equal(a, b) for a, b in zip(back.keys + back.values,
                                                                                    c.keys + c.values))
    assert batch.nbytes == sum(x.nbytes for x in batch.keys + batch.values) > 0

    for prompt, cache in zip(prompts, caches):  # prefix-cache hits: cut back to the prompt, batch them again
        assert trim_prompt_cache(cache, N + 1) == N + 1 and cache[0].offset == len(prompt) - 1
    assert _run(model, [p[-1:] for p in prompts], caches)[0] == tokens

    _, caches = _run(model, prompts[:1], [kvq.make_quantized_cache(model, 8, 64)])
    path = str(tmp_path / "entry.safetensors")
    save_prompt_cache(path, caches[0], {"k": "v"})
    loaded, meta = kvq.load_prompt_cache(path, return_metadata=True)
    assert meta == {"k": "v"} and all(type(c) is kvq.MergeableQuantizedKVCache for c in loaded)
    assert [type(c) for c in mlx_load(path)] == [type(c) for c in loaded]  # mlx-lm's own loader resolves ours
    for a, b in zip(loaded, caches[0]):
        assert (a.offset, a.bits, a.group_size) == (b.offset, 8, 64)
        assert all(mx.array_equal(x, y) for x, y in zip(a.keys + a.values, b.keys + b.values))
    assert trim_prompt_cache(loaded, N + 1) == N + 1
    assert _run(model, [prompts[0][-1:]], [loaded])[0][0] == _run(model, prompts[:1], [
        kvq.make_quantized_cache(model, 8, 64)])[0][0]


@pytest.mark.parametrize("head_dim", [64, 128])
def test_four_bit_cache_is_under_a_third_of_float32(kvq, head_dim):
    from abstractllm.providers.mlx.memory import kv_bytes_per_token
    from abstractllm.testing.text import TEXT_PRESETS

    config = {**TEXT_PRESETS["tiny"][0], "head_dim": head_dim}
    model = _model(config)
    prompt = _prompts((40,))[0]
    quant = _run(model, [prompt], [kvq.make_quantized_cache(model, 4, 64)])[1][0]
    full = _run(model, [prompt], [None])[1][0]
    tokens = quant[0].offset
    quant_per_token = sum(c.nbytes for c in quant) / tokens
    full_per_token = sum(c.nbytes for c in full) / tokens  # BatchKVCache.extract: exactly the tokens held
    assert quant_per_token <= 0.3 * full_per_token
    assert quant_per_token == kv_bytes_per_token(config, 4, kv_bits=4, kv_group_size=64)
    assert full_per_token == kv_bytes_per_token(config, 4)


@pytest.mark.parametrize("name", ["qwen3_5", "gemma3_text", "nemotron_h"])
def test_hybrid_and_sliding_window_families_keep_their_other_layers(kvq, name):
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    model = _family(name, head_dim=64)
    kinds = [type(c) for c in make_prompt_cache(model)]
    cache = kvq.make_quantized_cache(model, 4, 64)
    assert [type(c) for c in cache] == [kvq.MergeableQuantizedKVCache if k is KVCache else k for k in kinds]
    assert set(kinds) - {KVCache} and KVCache in kinds
    # nemotron_h: mlx-lm 0.32.2's Mamba mixer ignores the lengths of a mixed-length batch (its own bug)
    lengths = (21, 21, 21) if name == "nemotron_h" else (5, 37, 150)  # gemma3_text: window 16 < prompts
    prompts = _prompts(lengths, seed=1)
    make = lambda: kvq.make_quantized_cache(model, 4, 64)  # noqa: E731
    together, caches = _run(model, prompts, [make() for _ in prompts])
    assert together == _alone(model, prompts, make)
    for cache in caches:
        got = [type(c) for c in cache]
        assert [k for k, g in zip(kinds, got) if g is not kvq.MergeableQuantizedKVCache] == \
            [k for k in kinds if k is not KVCache]


def test_conversion_and_kind(kvq, qwen):
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache, QuantizedKVCache, make_prompt_cache

    config, model = qwen
    full = make_prompt_cache(model)
    mx.eval(model(mx.array([_prompts((9,))[0]]), cache=full))
    quant = kvq.quantize_cache(full, 4, 64)
    assert all(type(c) is KVCache and c.offset == 9 for c in full)  # the input is left as it was
    assert [c.offset for c in quant] == [9, 9] and kvq.is_quantized_cache(quant)
    assert not kvq.is_quantized_cache(full)
    assert kvq.quantize_cache(quant, 4, 64)[0] is quant[0]
    plain = QuantizedKVCache(64, 4)
    assert type(kvq.quantize_cache([plain], 4, 64)[0]) is kvq.MergeableQuantizedKVCache
    with pytest.raises(ValueError, match="group_size=64, bits=4"):
        kvq.quantize_cache(quant, 8, 64)
    with pytest.raises(ValueError, match="one cache kind"):  # a batch never mixes full precision and quantized
        kvq.MergeableQuantizedKVCache.merge([quant[0], full[0]])
    assert kvq.MergeableQuantizedKVCache.merge([quant[0], KVCache()]).size() == 9  # an empty one is fine
    assert kvq.use_quantized_kv(100, 4, 100) and not kvq.use_quantized_kv(99, 4, 100)
    assert kvq.use_quantized_kv(1, 8, 0) and not kvq.use_quantized_kv(10**6, None, 0)


def test_bad_settings_are_refused(kvq, qwen):
    _, model = qwen
    for bits, group, start, param in ((3, 64, 0, "kv_bits"), (True, 64, 0, "kv_bits"), (4, 16, 0, "kv_group_size"),
                                      (8, 64, -1, "quantized_kv_start")):
        with pytest.raises(InvalidParameterError) as err:
            kvq.check_kv_quantization(bits, group, start)
        assert err.value.param == param
    with pytest.raises(InvalidParameterError, match="kv_bits"):
        kvq.make_quantized_cache(model, 2, 64)
    kvq.probe_kv_quantization(model, 4, 64)  # fine
    with pytest.raises(InvalidParameterError, match="head dimension"):
        kvq.probe_kv_quantization(model, 4, 128)
    with pytest.raises(UnsupportedFeatureError, match="sinks"):  # gpt-oss: attention sinks
        kvq.probe_kv_quantization(_family("gpt_oss", head_dim=64), 4, 64)


# ------------------------------------------------------------------ attention split across the CPU cores
@pytest.fixture()
def split_everything(kvq, monkeypatch):
    """kv_attention with its threshold at 0: every quantized attention call of an installed model is split;
    ``kv_attention.splits`` counts the calls that were."""
    from abstractllm.providers.mlx import kv_attention

    if kv_attention.parallel_parts(2) < 2:
        pytest.skip("one CPU core: nothing to split")
    monkeypatch.setattr(kv_attention, "MIN_ELEMENTS", 0)
    split, calls = kv_attention._split_attention, []

    def counted(*args, **kwargs):
        calls.append(args[-1])
        return split(*args, **kwargs)

    monkeypatch.setattr(kv_attention, "_split_attention", counted)
    monkeypatch.setattr(kv_attention, "splits", calls, raising=False)
    return kv_attention


def test_split_attention_is_bit_for_bit_the_unsplit_one(split_everything):
    """Every mask kind mlx-lm's models pass (none, "causal", a left-padded batch's boolean array), queries of
    one token and of a chunk, GQA: the split output equals mlx-lm's function exactly."""
    import mlx.core as mx
    from mlx_lm.models.base import create_causal_mask

    ka = split_everything
    cache = ka.BatchQuantizedKVCache([0, 3], group_size=64, bits=4)
    keys, values = cache.update_and_fetch(mx.random.normal((2, 4, 40, 64)), mx.random.normal((2, 4, 40, 64)))
    padded = create_causal_mask(5, offset=35, left_padding=mx.array([0, 3]))
    for length, mask in ((1, None), (5, "causal"), (5, padded)):
        queries = mx.random.normal((2, 8, length, 64))
        split = ka.attention(mx.array(queries), keys, values, cache, 0.125, mask)
        whole = ka._ORIGINAL(mx.array(queries), keys, values, cache=cache, scale=0.125, mask=mask)
        assert split.shape == whole.shape == (2, 8, length, 64) and mx.array_equal(split, whole).item()
    assert len(ka.splits) == 3 and all(parts >= 2 for parts in ka.splits)


def test_a_per_head_mask_is_not_split(split_everything):
    """A mask with a head axis (MLA models' position scores, 3-D or 4-D) goes through mlx-lm's path whole."""
    import mlx.core as mx

    ka = split_everything
    cache = ka.BatchQuantizedKVCache([0], group_size=64, bits=4)
    keys, values = cache.update_and_fetch(mx.random.normal((1, 4, 40, 64)), mx.random.normal((1, 4, 40, 64)))
    queries = mx.random.normal((1, 4, 3, 64))
    for mask in (mx.random.normal((1, 4, 3, 40)), mx.random.normal((4, 3, 40))):
        got = ka.attention(mx.array(queries), keys, values, cache, 0.125, mask)
        assert mx.array_equal(got, ka._ORIGINAL(mx.array(queries), keys, values, cache=cache, scale=0.125,
                                                 mask=mask)).item()
    assert ka.splits == []


def test_installed_model_generates_the_same_tokens(kvq, qwen, split_everything):
    """A model whose attention is routed through kv_attention: batched, alone and mlx-lm's single-stream
    QuantizedKVCache (which the router leaves to mlx-lm) give the same greedy tokens."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import QuantizedKVCache

    ka = split_everything
    _, model = qwen
    assert ka.install(model) in (0, 1) and ka.install(model) == 0  # idempotent
    assert sys.modules[type(model).__module__].scaled_dot_product_attention is ka.attention
    prompts = _prompts()
    make = lambda: kvq.make_quantized_cache(model, 4, 64)  # noqa: E731
    together, _ = _run(model, prompts, [make() for _ in prompts], late=1)
    assert ka.splits  # the split path ran
    assert together == _alone(model, prompts, make)
    for prompt, tokens in zip(prompts, together):
        steps = generate_step(mx.array(prompt), model, max_tokens=N,
                              prompt_cache=[QuantizedKVCache(64, 4) for _ in model.layers])
        assert tokens == [t for t, _ in steps]


def test_router_leaves_other_caches_and_sinks_to_mlx_lm(kvq, split_everything):
    """Full-precision and mlx-lm's own caches take mlx-lm's path; attention sinks on a quantized cache still
    raise mlx-lm's error (the probe turns it into UnsupportedFeatureError for gpt-oss)."""
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    ka = split_everything
    cache = KVCache()
    keys, values = cache.update_and_fetch(mx.random.normal((1, 2, 9, 64)), mx.random.normal((1, 2, 9, 64)))
    queries = mx.random.normal((1, 4, 9, 64))
    assert mx.array_equal(ka.attention(queries, keys, values, cache, 0.125, "causal"),
                          mx.fast.scaled_dot_product_attention(queries, keys, values, scale=0.125,
                                                               mask="causal")).item()
    quant = ka.BatchQuantizedKVCache([0], group_size=64, bits=4)
    qk, qv = quant.update_and_fetch(mx.random.normal((1, 2, 9, 64)), mx.random.normal((1, 2, 9, 64)))
    with pytest.raises(ValueError, match="sinks"):
        ka.attention(queries, qk, qv, quant, 0.125, "causal", sinks=mx.zeros((4,)))
