"""Guards against known mlx-lm defects (abstractllm.providers.mlx.guards), on the zoo's nemotron_h model: a
batch of prompts of different lengths gives each prompt the tokens it gets alone, through the provider; raw
mlx-lm without the guard does not (so this file fails if the guard goes); the guard routes by model_type
and falls back to no batching when it cannot fix."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from abstractllm import create_llm

#: different lengths once templated (25, 31 and 56 tokens on the zoo's tokenizer)
PROMPTS = ["Hi", "Tell me a long story about a dragon who lived in a mountain by the sea.", "What is two plus two?"]
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def nemotron_h():
    from abstractllm.testing.zoo import family_model

    return family_model("nemotron_h")


def _raw(path):
    """A fresh mlx-lm load (the guard never touched it), the prompts' ids and each prompt's tokens alone."""
    import mlx_lm
    from mlx_lm.generate import stream_generate

    model, tok, config = mlx_lm.load(str(path), return_config=True)
    ids = [list(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True))
           for p in PROMPTS]
    alone = [[r.token for r in stream_generate(model, tok, p, max_tokens=MAX_TOKENS)] for p in ids]
    return model, tok, config, ids, alone


def _batched(model, tok, ids) -> list[list[int]]:
    from mlx_lm.generate import batch_generate

    out = batch_generate(model, tok, ids, max_tokens=MAX_TOKENS, return_token_ids=True, prefill_step_size=16)
    return [[int(t) for t in row] for row in out.token_ids]


def test_provider_batch_of_different_lengths_equals_each_alone(nemotron_h):
    with create_llm("mlx", model=str(nemotron_h), temperature=0.0, max_tokens=MAX_TOKENS, max_batch_size=8) as llm:
        alone = [llm.generate(p).token_ids for p in PROMPTS]
        llm.clear_stats()
        together = [r.token_ids for r in llm.generate(PROMPTS)]  # one batch: one mixed-length prefill
        assert llm.get_stats()["average_batch_size"] > 2
        assert together == alone

        results: dict[int, list[int]] = {}
        start = threading.Barrier(2)

        def run(i: int) -> None:
            start.wait()
            results[i] = llm.generate(PROMPTS[i]).token_ids

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [results[0], results[1]] == alone[:2]

        from abstractllm.providers.mlx.guards import nemotron_h_loses_lengths

        guards = llm.get_model_info()["guards"]
        assert [g["action"] for g in guards] == (["fixed"] if nemotron_h_loses_lengths() else [])


def test_raw_mlx_lm_without_the_guard_gets_the_shorter_prompts_wrong(nemotron_h):
    from abstractllm.providers.mlx.guards import apply_guards, installed_mlx_lm, nemotron_h_loses_lengths

    if not nemotron_h_loses_lengths():
        pytest.skip(f"mlx-lm {installed_mlx_lm()} passes the batch lengths to nemotron_h's SSM: nothing to guard")
    model, tok, config, ids, alone = _raw(nemotron_h)
    longest = max(range(len(ids)), key=lambda i: len(ids[i]))
    unguarded = _batched(model, tok, ids)
    assert unguarded[longest] == alone[longest]
    assert all(unguarded[i] != alone[i] for i in range(len(ids)) if i != longest)

    adapter = SimpleNamespace(model=model, spec=SimpleNamespace(config=config), config={}, info={})
    assert [g["action"] for g in apply_guards(adapter)] == ["fixed"]
    assert _batched(model, tok, ids) == alone


def test_guards_route_by_model_type_and_fall_back_to_no_batching(monkeypatch):
    from abstractllm.providers.mlx import guards

    calls = []
    defect = guards.Defect("probe", "nemotron_h", ("0.0",), "test", present=lambda: True,
                           fix=lambda model: calls.append(model), fixed=lambda: True)
    monkeypatch.setattr(guards, "DEFECTS", (defect,))
    settings = {"max_batch_size": 8}
    other = SimpleNamespace(model="m", spec=SimpleNamespace(config={"model_type": "qwen3"}), config=settings, info={})
    assert guards.apply_guards(other) == [] and calls == [] and other.config is settings

    unfixable = SimpleNamespace(model="m", spec=SimpleNamespace(config={"model_type": "nemotron_h"}),
                                config=settings, info={})
    assert [g["action"] for g in guards.apply_guards(unfixable)] == ["no batching"]
    assert unfixable.config["max_batch_size"] == 1 and settings["max_batch_size"] == 8  # its own copy
