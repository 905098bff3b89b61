"""The prompt (KV) cache of the MLX text provider: a multi-turn conversation gives identical greedy
output with and without it (and equal to raw mlx-lm), later turns report ``cached_tokens``, a turn
that edits history is still correct, and the byte budget bounds the cache (LRU eviction)."""

from __future__ import annotations

import pytest

from abstractllm import create_llm
from text_oracle import raw_generate, raw_prompt_ids

QUESTIONS = [
    "What is the capital of France?",
    "And what color is the sky?",
    "Please describe this picture of a red square.",
    "Write a letter to a friend in the city.",
]
MAX = 20


@pytest.fixture(scope="module", params=["tiny", "llama"])
def pair(request, tiny_model, llama_model):
    """(path, provider with the prompt cache, provider without it)."""
    path = tiny_model if request.param == "tiny" else llama_model
    warm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX)
    cold = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0)
    yield path, warm, cold
    warm.close()
    cold.close()


def _converse(llm, questions, *, system="You are brief.", stop=None):
    history, results = [], []
    for q in questions:
        history.append({"role": "user", "content": q})
        r = llm.generate(messages=list(history), system_prompt=system, stop=stop)
        history.append({"role": "assistant", "content": r.content})
        results.append(r)
    return history, results


def test_multi_turn_identical_with_and_without_cache(pair):
    path, warm, cold = pair
    warm.clear_cache()
    h_warm, r_warm = _converse(warm, QUESTIONS)
    h_cold, r_cold = _converse(cold, QUESTIONS)
    assert h_warm == h_cold
    for i, (a, b) in enumerate(zip(r_warm, r_cold)):
        assert a.token_ids == b.token_ids and a.content == b.content, f"turn {i}"
        assert a.usage.prompt_tokens == b.usage.prompt_tokens
        assert b.usage.cached_tokens == 0
    assert r_warm[0].usage.cached_tokens == 0
    for i, r in enumerate(r_warm[1:], 1):
        # every earlier turn's prompt (and most of its reply) is reused
        assert r_warm[i - 1].usage.prompt_tokens <= r.usage.cached_tokens < r.usage.prompt_tokens, f"turn {i}"
    # and each turn equals raw mlx-lm on the same templated prompt
    sys_msg = [{"role": "system", "content": "You are brief."}]
    for i, r in enumerate(r_warm):
        ids = raw_prompt_ids(path, sys_msg + h_warm[: 2 * i + 1])
        assert r.token_ids == raw_generate(path, ids, max_tokens=MAX).tokens
    info = warm.get_model_info()["prompt_cache"]
    assert info["entries"] >= 1 and info["bytes"] > 0 and info["hits"] >= 3
    assert cold.get_model_info()["prompt_cache"] == {"entries": 0, "bytes": 0, "hits": 0}


def test_turn_that_edits_history_equals_cold(pair):
    path, warm, cold = pair
    history, _ = _converse(warm, QUESTIONS[:3])
    edits = [
        # change an earlier assistant reply
        history[:1] + [{"role": "assistant", "content": "Paris, of course."}] + history[2:],
        # change the first user message
        [{"role": "user", "content": "What is the capital of Spain?"}] + history[1:],
        # drop the last exchange and ask something else
        history[:2] + [{"role": "user", "content": "Tell me about the sea."}],
        # regenerate the same last turn (exact prefix of a cached entry)
        history[:5],
    ]
    for i, msgs in enumerate(edits):
        a = warm.generate(messages=msgs, system_prompt="You are brief.")
        b = cold.generate(messages=msgs, system_prompt="You are brief.")
        assert a.token_ids == b.token_ids and a.content == b.content, f"edit {i}"
    assert a.usage.cached_tokens > 0  # the regenerated turn was served from the cache


def test_cache_with_stops_and_sampling_stays_exact(pair):
    path, warm, cold = pair
    _, greedy = _converse(cold, QUESTIONS[:2])
    stop = greedy[1].content[4:7]
    if not stop.strip():
        stop = greedy[1].content[-3:]
    h_warm, r_warm = _converse(warm, QUESTIONS, stop=stop)
    h_cold, r_cold = _converse(cold, QUESTIONS, stop=stop)
    assert [r.token_ids for r in r_warm] == [r.token_ids for r in r_cold]
    assert any(r.finish_reason == "stop" for r in r_warm)
    # seeded sampling with a repetition penalty over a cached prefix equals the cold call
    kw = dict(temperature=0.9, top_k=10, repetition_penalty=1.3, seed=4)
    msgs = h_cold[:5]
    a = warm.generate(messages=msgs, **kw)
    b = cold.generate(messages=msgs, **kw)
    assert a.usage.cached_tokens > 0 and a.token_ids == b.token_ids


def test_max_kv_size_bypasses_the_cache_and_matches_raw(tiny_model):
    """A rotating KV cache of 16 tokens, shorter than the prompt: the provider's batch follows mlx-lm's
    own batch API (``mlx_lm.batch_generate``) token for token. (mlx-lm's single-sequence
    ``stream_generate`` fills a rotating cache differently when the prompt is longer than the window.)"""
    from mlx_lm import batch_generate

    from text_oracle import raw_load

    ids = raw_prompt_ids(tiny_model, [{"role": "user", "content": QUESTIONS[0]}])
    model, tok = raw_load(tiny_model)
    raw = batch_generate(model, tok, [ids], max_tokens=30, max_kv_size=16, return_token_ids=True).token_ids[0]
    with create_llm("mlx", model=str(tiny_model), temperature=0.0) as llm:
        a = llm.generate(QUESTIONS[0], max_tokens=30, max_kv_size=16)
        b = llm.generate(QUESTIONS[0], max_tokens=30, max_kv_size=16)
        assert a.token_ids == list(raw) == b.token_ids
        assert b.usage.cached_tokens == 0
        # a short prompt, within the window: also equal to mlx-lm's single-sequence stream_generate
        short = raw_prompt_ids(tiny_model, [{"role": "user", "content": "Hi"}])
        assert len(short) < 64
        c = llm.generate("Hi", max_tokens=40, max_kv_size=64)
        assert c.token_ids == raw_generate(tiny_model, short, max_tokens=40, max_kv_size=64).tokens


def test_byte_budget_is_honoured_with_lru_eviction(tiny_model):
    prompts = QUESTIONS
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=8) as probe:
        sizes = []
        for p in prompts:
            probe.clear_cache()
            probe.generate(p)
            sizes.append(probe.get_model_info()["prompt_cache"]["bytes"])
    entry = max(sizes)  # the KV cache of one of these prompts (+ 8 generated tokens)
    budget = int(2.5 * entry)  # holds the two most recent entries, not three
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=8, prompt_cache_bytes=budget) as llm:
        for p in prompts:
            llm.generate(p)
            stats = llm.get_model_info()["prompt_cache"]
            assert 0 < stats["bytes"] <= budget and 1 <= stats["entries"] <= 2, stats
        assert llm.get_model_info()["prompt_cache"]["entries"] == 2
        # the two most recent prompts are cached, the oldest were evicted: only the template's
        # shared opening ("<|im_start|>user\n...") of a cached entry can serve it
        ids = [raw_prompt_ids(tiny_model, [{"role": "user", "content": p}]) for p in prompts]
        shared = _common(ids[0], ids[-1])
        assert 0 < shared < len(ids[0]) - 5
        assert llm.generate(prompts[-1]).usage.cached_tokens == len(ids[-1]) - 1
        assert llm.generate(prompts[0]).usage.cached_tokens == shared
        llm.clear_cache()
        assert llm.get_model_info()["prompt_cache"]["entries"] == 0
        assert llm.generate(prompts[-1]).usage.cached_tokens == 0
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=8,
                    prompt_cache_bytes=min(sizes) // 2) as llm:  # smaller than one entry: nothing is kept
        llm.generate(prompts[0])
        assert llm.get_model_info()["prompt_cache"]["bytes"] == 0
        assert llm.generate(prompts[0]).usage.cached_tokens == 0


def _common(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_cancelled_stream_leaves_a_correct_cache(pair):
    path, warm, cold = pair
    msgs = [{"role": "user", "content": QUESTIONS[2]}]
    stream = warm.generate(messages=msgs, max_tokens=5000, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    a = warm.generate(messages=msgs)
    b = cold.generate(messages=msgs)
    assert a.usage.cached_tokens > 0 and a.token_ids == b.token_ids
    # continuing the conversation from the cancelled turn's cached tokens is exact too
    msgs2 = msgs + [{"role": "assistant", "content": a.content}, {"role": "user", "content": QUESTIONS[3]}]
    assert warm.generate(messages=msgs2).token_ids == cold.generate(messages=msgs2).token_ids
