"""The prefix cache shared across requests and conversations (issue 24, items 1, 2 and 4): a new conversation
over a cached system prompt reuses it, concurrent requests sharing a prefix compute it once, recurrent and
sliding-window families are served from message-boundary snapshots, and every reuse gives the cold output.
Entries are keyed by what changes the KV (``prefix_cache.model_key``)."""

from __future__ import annotations

import threading

import pytest

from abstractllm import create_llm
from abstractllm.providers.mlx.prefix_cache import message_bounds, model_key
from abstractllm.testing.zoo import family_model

SYSTEM = ("You are a careful assistant for a coding agent. Follow the repository's conventions, explain each "
          "change briefly, never invent files, run the tests after every edit, and keep answers short. ") * 3
QUESTIONS = ["What is a list?", "Name a colour.", "Say hello to the team.", "Why test code?"]
MAX = 8


def _ask(llm, question, system=SYSTEM):
    return llm.generate(messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])


@pytest.fixture(scope="module", params=["qwen3", "qwen3_5", "gemma3_text"])
def family(request):
    """(name, path) of a trimmable (qwen3), recurrent (qwen3_5) and sliding-window (gemma3_text) family."""
    return request.param, family_model(request.param)


def _cold(path, question, system=SYSTEM):
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold:
        return _ask(cold, question, system)


def test_a_new_conversation_reuses_the_cached_system_prompt(family):
    name, path = family
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX) as llm:
        first = _ask(llm, QUESTIONS[0])
        second = _ask(llm, QUESTIONS[1])  # another conversation, same system prompt
        other = _ask(llm, QUESTIONS[1], system="Answer in French. " + SYSTEM)  # another system prompt
        stats = llm.get_stats()
    cold = _cold(path, QUESTIONS[1])
    assert first.usage.cached_tokens == 0
    assert second.token_ids == cold.token_ids and second.usage.prompt_tokens == cold.usage.prompt_tokens
    # the system prompt is at least a third of the prompt, and all of it is reused
    assert second.usage.cached_tokens >= second.usage.prompt_tokens // 3
    # a different system prompt shares only the tokens before its first difference (the role header)
    assert other.usage.cached_tokens < 8
    assert other.token_ids == _cold(path, QUESTIONS[1], "Answer in French. " + SYSTEM).token_ids
    assert stats["prefill_tokens_reused"] == second.usage.cached_tokens + other.usage.cached_tokens
    assert stats["prefill_tokens_computed"] == sum(r.usage.prompt_tokens - r.usage.cached_tokens
                                                   for r in (first, second, other))


def test_concurrent_requests_sharing_a_prefix_compute_it_once(family):
    name, path = family
    solo = [_cold(path, q) for q in QUESTIONS]
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX) as llm:
        results: dict[int, object] = {}
        start = threading.Barrier(len(QUESTIONS))

        def run(i):
            start.wait()
            results[i] = _ask(llm, QUESTIONS[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(QUESTIONS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        stats = llm.get_stats()
    got = [results[i] for i in range(len(QUESTIONS))]
    assert [r.token_ids for r in got] == [r.token_ids for r in solo]
    prompts = [r.usage.prompt_tokens for r in got]
    shared = min(r.usage.cached_tokens for r in got if r.usage.cached_tokens) if any(
        r.usage.cached_tokens for r in got) else 0
    # however the requests arrived, the shared system prompt was computed once: every request but the first
    # that computed it was served it from the cache
    assert sum(1 for r in got if r.usage.cached_tokens >= shared > 0) >= len(QUESTIONS) - 1
    assert stats["prefill_tokens_computed"] <= sum(prompts) - (len(QUESTIONS) - 1) * shared
    assert shared >= min(prompts) // 3


def test_message_bounds_are_exact_prefixes_of_the_prompt():
    from mlx_lm import load

    path = family_model("qwen3")
    _, tok = load(str(path))
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"}]

    def render(part, gen):
        return list(tok.apply_chat_template([m or {"role": "user", "content": ""} for m in part],
                                            add_generation_prompt=gen))

    prompt = render(msgs, True)
    bounds = message_bounds(render, msgs, prompt, lambda m: m["role"] == "system")
    assert bounds == sorted(set(bounds)) and all(0 < b < len(prompt) for b in bounds)
    texts = [tok.decode(prompt[:b]) for b in bounds]
    assert texts[0].rstrip().endswith(SYSTEM.strip()) or "user" in texts[0][-20:]  # the system prompt's end
    # the history before the last message: Qwen3's template writes its last assistant turn with an empty think
    # block, so the shared prefix stops at that turn's header
    assert texts[-2].endswith(("Hello.<|im_end|>\n", "Hi<|im_end|>\n<|im_start|>assistant\n"))
    assert texts[-1].endswith("Again?<|im_end|>\n")  # the conversation before the generation prompt

    def refuses(part, gen):
        raise ValueError("roles must alternate")

    assert message_bounds(refuses, msgs, prompt, lambda m: m["role"] == "system") == []


def test_the_model_key_changes_with_what_changes_the_kv(tmp_path):
    import shutil

    src = family_model("qwen3")
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    base = model_key(folder, {"dtype": "float32", "kv_bits": None})
    assert model_key(folder, {"dtype": "float32", "kv_bits": None}) == base
    assert model_key(folder, {"dtype": "float16", "kv_bits": None}) != base
    assert model_key(folder, {"dtype": "float32", "kv_bits": 4}) != base
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # rewritten: another revision (modification time)
    import os

    os.utime(weights, ns=(1, 1))
    assert model_key(folder, {"dtype": "float32", "kv_bits": None}) != base
    assert model_key(src, {"dtype": "float32", "kv_bits": None}) != base  # another folder


def test_a_waiting_request_survives_its_leader_leaving_before_a_batch_of_another_shape():
    """The lock-step loop ends cancelled requests before it admits: a request waiting for a cancelled leader's
    snapshot must not be dropped when the next request needs another batch shape (it waits instead)."""
    from abstractllm.providers.worker import CancelToken

    with create_llm("mlx", model=str(family_model("qwen3_5")), temperature=0.0, max_tokens=MAX) as llm:
        llm.load()
        engine = llm.engine

        def request(question, **params):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            return engine.new_request(llm._prepare(None, None, None, messages, params), lambda item: None,
                                      CancelToken())

        leader, waiting, other = request("What is a list?"), request("Name a colour."), request("Hi", max_kv_size=512)

        def scenario():
            adapter = llm._adapter
            assert adapter.admit(leader) and adapter.admit(waiting)
            deferred = [p.state.req for p in adapter._deferred]
            adapter.release(leader)  # cancelled before its snapshot
            admitted_other = adapter.admit(other)  # another batch shape
            tokens = []
            for _ in range(60):
                tokens += [step.token for req, step in adapter.step() if req is waiting]
                if len(tokens) >= MAX:
                    break
            adapter.reset()
            return deferred, admitted_other, tokens

        deferred, admitted_other, tokens = engine.call(scenario)
    assert deferred == [waiting] and admitted_other is False and len(tokens) == MAX
