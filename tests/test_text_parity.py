"""THE correctness test of the MLX text provider: its greedy (and seeded) output equals raw mlx-lm's,
token for token, on two architectures (Qwen3 and Llama presets), plus the chat-template variants."""

from __future__ import annotations

import pytest

from abstractllm import create_llm
from abstractllm.testing import build_text_model
from text_oracle import chat, raw_generate, raw_load, raw_prompt_ids

PROMPTS = [
    "Hello! What is the capital of France?",
    "Write a short poem about the sea and the sky.",
    "def generate(prompt: str) -> str:",
    "Быстрая коричневая лиса? 你好，世界！ 🙂",
]
HISTORY = [
    {"role": "user", "content": "What color is the sky?"},
    {"role": "assistant", "content": "It is blue."},
    {"role": "user", "content": "And the sea?"},
]


@pytest.fixture(scope="module", params=["tiny", "llama"])
def arch(request, tiny_model, llama_model):
    """(model path, a greedy provider on it) for the Qwen3 and the Llama presets."""
    path = tiny_model if request.param == "tiny" else llama_model
    llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=40)
    yield path, llm
    llm.close()


def _check_equal(path, llm, *, prompt=None, system=None, messages=None, max_tokens=40, **sampling):
    ids = raw_prompt_ids(path, chat(prompt, system, messages))
    raw_kw = dict(sampling)
    if "top_p" in raw_kw and raw_kw["top_p"] >= 1.0:
        raw_kw["top_p"] = 0.0
    raw = raw_generate(path, ids, max_tokens=max_tokens, **raw_kw)
    resp = llm.generate(prompt, system_prompt=system, messages=messages, max_tokens=max_tokens, **sampling)
    assert resp.token_ids == raw.tokens
    assert resp.content == raw.text
    assert resp.usage.completion_tokens == len(raw.tokens)
    assert resp.usage.prompt_tokens == len(ids)
    assert resp.usage.total_tokens == len(ids) + len(raw.tokens)
    assert resp.finish_reason == raw.finish_reason
    return resp, raw


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_parity_prompts(arch, prompt):
    path, llm = arch
    resp, raw = _check_equal(path, llm, prompt=prompt)
    assert len(raw.tokens) == 40 and resp.finish_reason == "length"


def test_greedy_parity_system_prompt_and_history(arch):
    path, llm = arch
    _check_equal(path, llm, prompt="Tell me a story.", system="You are a helpful robot who paints.")
    _check_equal(path, llm, messages=HISTORY)
    _check_equal(path, llm, messages=[{"role": "system", "content": "Be brief."}, *HISTORY], max_tokens=17)


def test_greedy_parity_is_stable_across_repeats_and_prompt_cache(arch):
    # The second identical call is served from the prompt cache: output must not change.
    path, llm = arch
    first, _ = _check_equal(path, llm, prompt=PROMPTS[0], max_tokens=30)
    second, _ = _check_equal(path, llm, prompt=PROMPTS[0], max_tokens=30)
    assert second.usage.cached_tokens > 0
    assert first.token_ids == second.token_ids


@pytest.mark.parametrize("sampling", [
    dict(temperature=0.8, seed=7),
    dict(temperature=1.0, top_k=5, seed=3),
    dict(temperature=0.9, top_p=0.8, seed=11),
    dict(temperature=0.7, min_p=0.1, seed=5),
    dict(temperature=0.0, repetition_penalty=1.5),
    dict(temperature=0.0, repetition_penalty=1.3, repetition_context_size=5),
    dict(temperature=1.2, top_k=20, top_p=0.95, repetition_penalty=1.2, seed=42),
    dict(temperature=0.0, presence_penalty=1.5),
    dict(temperature=0.0, frequency_penalty=1.0, repetition_context_size=8),
    dict(temperature=0.8, frequency_penalty=0.5, presence_penalty=0.5, seed=7),
    dict(temperature=0.0, logit_bias={11: 6.0, 400: -100.0}),
])
def test_sampling_parity_with_seed(arch, sampling):
    path, llm = arch
    resp, raw = _check_equal(path, llm, prompt=PROMPTS[1], max_tokens=30, **sampling)
    greedy = raw_generate(path, raw_prompt_ids(path, chat(PROMPTS[1])), max_tokens=30)
    if any(sampling.get(k) for k in ("temperature", "repetition_penalty", "presence_penalty", "frequency_penalty",
                                     "logit_bias")):
        # The option changed something, or this test could not tell it apart from greedy.
        assert raw.tokens != greedy.tokens


def test_logit_bias_token_ids_as_numeric_strings(arch):
    """OpenAI sends logit_bias keys as strings: the same bias, the same tokens as raw mlx-lm's int keys."""
    path, llm = arch
    bias = {11: 8.0, 22: 7.5}
    raw = raw_generate(path, raw_prompt_ids(path, chat(PROMPTS[0])), max_tokens=12, logit_bias=bias)
    resp = llm.generate(PROMPTS[0], max_tokens=12, logit_bias={str(k): v for k, v in bias.items()})
    assert resp.token_ids == raw.tokens and set(raw.tokens) & set(bias)


def test_repetition_penalty_breaks_greedy_loops(arch):
    path, llm = arch
    plain = llm.generate(PROMPTS[0], max_tokens=40)
    penal = llm.generate(PROMPTS[0], max_tokens=40, repetition_penalty=2.0)
    assert len(set(penal.token_ids)) > len(set(plain.token_ids))


# ------------------------------------------------------------------ chat templates
def test_template_in_tokenizer_config_is_used(tiny_model, tiny_llm):
    _, tok = raw_load(tiny_model)
    ids = raw_prompt_ids(tiny_model, chat("Hi there", "Sys"))
    text = tok.decode(ids)
    assert text == "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    resp = tiny_llm.generate("Hi there", system_prompt="Sys", max_tokens=5)
    assert resp.usage.prompt_tokens == len(ids)


def test_separate_chat_template_file(tmp_path_factory):
    path = build_text_model(tmp_path_factory.mktemp("sep") / "m", "tiny", separate_chat_template_file=True)
    assert (path / "chat_template.jinja").is_file()
    assert "chat_template" not in (path / "tokenizer_config.json").read_text()
    with create_llm("mlx", model=str(path), temperature=0.0) as llm:
        assert llm.get_model_info()["has_chat_template"] is True
        resp = llm.generate("Hi there", system_prompt="Sys", max_tokens=12)
        _, tok = raw_load(path)
        assert tok.has_chat_template
        ids = raw_prompt_ids(path, chat("Hi there", "Sys"))
        assert tok.decode(ids).startswith("<|im_start|>system\nSys<|im_end|>")
        assert llm._adapter.encode_messages(llm._prepare("Hi there", "Sys", None, None, {}).messages) == ids
        raw = raw_generate(path, ids, max_tokens=12)
        assert resp.token_ids == raw.tokens and resp.content == raw.text


def test_base_model_without_template_uses_plain_fallback(tmp_path_factory):
    from abstractllm.providers.mlx.text import plain_prompt
    from abstractllm.types import Message

    path = build_text_model(tmp_path_factory.mktemp("base") / "m", "tiny", chat_template=False)
    with create_llm("mlx", model=str(path), temperature=0.0) as llm:
        assert llm.get_model_info()["has_chat_template"] is False
        resp = llm.generate(messages=HISTORY, system_prompt="Be brief.", max_tokens=12)
        expected_text = "Be brief.\n\nUser: What color is the sky?\nAssistant: It is blue.\nUser: And the sea?\nAssistant:"
        msgs = [Message("system", "Be brief."), Message("user", "What color is the sky?"),
                Message("assistant", "It is blue."), Message("user", "And the sea?")]
        assert plain_prompt(msgs) == expected_text
        _, tok = raw_load(path)
        assert not tok.has_chat_template
        ids = list(tok.encode(expected_text, add_special_tokens=True))
        assert llm._adapter.encode_messages(msgs) == ids
        raw = raw_generate(path, ids, max_tokens=12)
        assert resp.token_ids == raw.tokens and resp.content == raw.text
        assert resp.usage.prompt_tokens == len(ids)


# ------------------------------------------------------------------ loading options that must not change the math
def test_chunked_prefill_matches_raw(tiny_model):
    """A long prompt prefilled in small steps (prefill_step_size) gives raw mlx-lm's tokens."""
    long_prompt = " ".join(PROMPTS * 12)
    ids = raw_prompt_ids(tiny_model, chat(long_prompt))
    assert len(ids) > 100
    raw = raw_generate(tiny_model, ids, max_tokens=20)
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, prefill_step_size=7) as llm:
        resp = llm.generate(long_prompt, max_tokens=20)
    assert resp.token_ids == raw.tokens and resp.usage.prompt_tokens == len(ids)


@pytest.mark.parametrize("stored,dtype,expected", [
    ("bfloat16", "auto", "float32"),  # auto on CPU: half-precision weights are cast to float32
    ("bfloat16", "bfloat16", "bfloat16"),
    ("float32", "float16", "float16"),
])
def test_dtype_on_load_matches_raw_with_the_same_cast(tmp_path_factory, stored, dtype, expected):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load, stream_generate

    path = build_text_model(tmp_path_factory.mktemp("dt") / "m", "tiny", dtype=stored)
    with create_llm("mlx", model=str(path), temperature=0.0, dtype=dtype) as llm:
        resp = llm.generate(PROMPTS[0], max_tokens=16)
        dtypes = llm.worker.call(lambda: {str(v.dtype) for _, v in tree_flatten(llm._adapter.model.parameters())})
    assert dtypes == {f"mlx.core.{expected}"}
    model, tok = load(str(path))
    model.set_dtype(getattr(mx, expected), lambda t: mx.issubdtype(t, mx.floating))
    ids = raw_prompt_ids(path, chat(PROMPTS[0]))
    raw = [int(r.token) for r in stream_generate(model, tok, mx.array(ids), max_tokens=16)]
    assert resp.token_ids == raw


@pytest.mark.slow
def test_greedy_parity_small_preset():
    """The same oracle on the 'small' Qwen3 preset (6 layers, 4096-token vocabulary)."""
    from abstractllm.testing import demo_model

    path = demo_model("text", "small")
    with create_llm("mlx", model=str(path), temperature=0.0) as llm:
        for prompt, system in ((PROMPTS[0], None), (PROMPTS[3], "You are brief.")):
            _check_equal(path, llm, prompt=prompt, system=system, max_tokens=24)
        _check_equal(path, llm, messages=HISTORY, max_tokens=24, temperature=0.8, top_k=50, seed=1)


def test_prompt_after_messages_and_merged_system_prompt(arch):
    """prompt is appended after messages; system_prompt is merged ahead of a leading system message."""
    path, llm = arch
    a = llm.generate("And the sea?", messages=HISTORY[:2], max_tokens=12)
    b = llm.generate(messages=HISTORY, max_tokens=12)
    assert a.token_ids == b.token_ids
    msgs = [{"role": "system", "content": "Be brief."}, *HISTORY]
    resp = llm.generate(messages=msgs, system_prompt="You paint.", max_tokens=12)
    merged = [{"role": "system", "content": "You paint.\n\nBe brief."}, *HISTORY]
    raw = raw_generate(path, raw_prompt_ids(path, merged), max_tokens=12)
    assert resp.token_ids == raw.tokens
