"""Reasoning models on the MLX provider, with scripted models of each thinking format so every assertion is
exact: <think> written by the model (qwen3), <think> opened by the generation prompt (qwen3_thinking), gpt-oss's
harmony channels. Separation, streaming joins, reasoning_tokens, thinking=False, levels, budgets, truncation
inside the reasoning, tools after thinking, a forced tool call on a thinking model, sessions, bad inputs; and the
splitters themselves, fed in arbitrary pieces."""

from __future__ import annotations

import json
import random

import pytest

from abstractllm import Session, create_llm
from abstractllm.enums import ModelParameter
from abstractllm.exceptions import InvalidParameterError, UnsupportedFeatureError
from abstractllm.providers.mlx.reasoning import HarmonySplitter, ReasoningFormat, ThinkSplitter
from abstractllm.testing.zoo import family_model
from text_oracle import raw_load

THINK = "<think>\nA B C\n</think>\n\nD E F"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                   "required": ["city"]}}}
HARMONY = "<|channel|>analysis<|message|>Think first.<|end|><|start|>assistant<|channel|>final<|message|>Done now."


def _llm(name: str, script: str | None = None, **config):
    return create_llm("mlx", model=str(family_model(name, script=script)), temperature=0.0,
                      **{"max_tokens": 48, **config})


@pytest.fixture(scope="module")
def qwen3():
    with _llm("qwen3", THINK) as llm:
        yield llm


# ---------------------------------------------------------------------------------------------- splitters
def _feed(splitter, text: str, seed: int):
    rnd, i, parts = random.Random(seed), 0, []
    while i < len(text):
        n = rnd.randint(1, 5)
        parts.append(splitter.feed(text[i:i + n]))
        i += n
    parts.append(splitter.finish())
    return "".join(p[0] for p in parts), "".join(p[1] for p in parts), [c for p in parts for c in p[2]]


@pytest.mark.parametrize("seed", range(12))
def test_splitters_in_arbitrary_pieces(seed):
    think = ReasoningFormat("think", "<think>", "</think>")
    assert _feed(ThinkSplitter(think), THINK, seed)[:2] == ("A B C", "D E F")
    assert _feed(ThinkSplitter(think, inside=True), "x\n\ny\n</think>\n\nz\n\nw", seed)[:2] == ("x\n\ny", "z\n\nw")
    assert _feed(ThinkSplitter(think), "Plain <think> text", seed)[:2] == ("", "Plain <think> text")
    assert _feed(ThinkSplitter(think), "<think>\ncut sho", seed)[:2] == ("cut sho", "")
    assert _feed(HarmonySplitter(), HARMONY, seed)[:2] == ("Think first.", "Done now.")
    reasoning, content, calls = _feed(HarmonySplitter(), "<|channel|>analysis<|message|>T<|end|><|start|>assistant"
                                      "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                                      '{"city": "Paris"}', seed)
    assert (reasoning, content) == ("T", "") and [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert _feed(HarmonySplitter(), "unmarked answer", seed)[:2] == ("", "unmarked answer")


# ---------------------------------------------------------------------------------------------- <think>
def test_reasoning_apart_from_the_answer_streamed_and_counted(qwen3):
    r = qwen3.generate("Hi")
    assert (r.reasoning, r.content, r.finish_reason) == ("A B C", "D E F", "stop")
    _, tok = raw_load(family_model("qwen3", script=THINK))
    close = tok.convert_tokens_to_ids("</think>")
    assert r.usage.reasoning_tokens == r.token_ids.index(close) + 1  # <think> .. </think>, markers included
    assert r.usage.completion_tokens == len(r.token_ids) > r.usage.reasoning_tokens
    chunks = list(qwen3.generate("Hi", stream=True))
    assert "".join(c.reasoning or "" for c in chunks) == r.reasoning
    assert "".join(c.content for c in chunks) == r.content
    assert not any(c.reasoning and c.content for c in chunks)  # each delta is one or the other
    assert chunks[-1].usage.reasoning_tokens == r.usage.reasoning_tokens


def test_async_stream_joins_equal(qwen3):
    import asyncio

    async def run():
        whole = await qwen3.generate_async("Hi")
        parts = [c async for c in await qwen3.generate_async("Hi", stream=True)]
        return whole, parts

    whole, parts = asyncio.run(run())
    assert "".join(c.reasoning or "" for c in parts) == whole.reasoning == "A B C"


def _prompt_ids(name: str, script: str | None, **template_kwargs):
    _, tok = raw_load(family_model(name, script=script))
    return list(tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        **template_kwargs))


def test_thinking_switch_renders_the_template_as_asked(qwen3):
    off = qwen3.generate("Hi", thinking=False)
    assert off.usage.prompt_tokens == len(_prompt_ids("qwen3", THINK, enable_thinking=False))
    on = qwen3.generate("Hi", thinking=True)
    assert on.usage.prompt_tokens == len(_prompt_ids("qwen3", THINK, enable_thinking=True))
    assert off.usage.prompt_tokens > on.usage.prompt_tokens  # the empty think block
    same = qwen3.generate("Hi", chat_template_kwargs={"enable_thinking": False})
    assert same.usage.prompt_tokens == off.usage.prompt_tokens
    ignored = qwen3.generate("Hi", chat_template_kwargs={"not_read_by_the_template": 1})
    assert ignored.usage.prompt_tokens == on.usage.prompt_tokens
    assert qwen3.generate("Hi", thinking="high").usage.prompt_tokens == on.usage.prompt_tokens
    configured = _llm("qwen3", THINK, **{str(ModelParameter.THINKING): False})
    with configured:
        assert configured.generate("Hi").usage.prompt_tokens == off.usage.prompt_tokens


def test_thinking_budget_ends_the_reasoning_then_the_model_answers(qwen3):
    full = qwen3.generate("Hi")
    _, tok = raw_load(family_model("qwen3", script=THINK))
    close = tok.convert_tokens_to_ids("</think>")
    for budget in (1, 2):  # <think>, then `budget` tokens of reasoning, then </think> is forced
        r = qwen3.generate("Hi", thinking_budget=budget)
        assert r.token_ids[:budget + 1] == full.token_ids[:budget + 1] and r.token_ids[budget + 1] == close
        assert r.reasoning == (tok.decode(full.token_ids[1:budget + 1]).strip("\n") or None)
        assert r.content == "D E F" and r.usage.reasoning_tokens == budget + 2
    assert not qwen3.generate("Hi", thinking_budget=0).reasoning
    assert qwen3.generate("Hi", thinking_budget=50).reasoning == "A B C"


def test_a_reply_cut_inside_the_reasoning(qwen3):
    r = qwen3.generate("Hi", max_tokens=3)
    assert r.finish_reason == "length" and r.content == "" and r.reasoning and "A B C".startswith(r.reasoning)


def test_tool_call_after_the_reasoning():
    with _llm("qwen3", "<think>\nNeed the weather.\n</think>\n\n" + CALL) as llm:
        r = llm.generate("Weather in Paris?", tools=[WEATHER])
        assert r.reasoning == "Need the weather." and r.content == "" and r.finish_reason == "tool_calls"
        assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_forced_tool_call_on_a_switchable_model_thinks_off(qwen3):
    r = qwen3.generate("Weather?", tools=[WEATHER], tool_choice="required")
    assert r.tool_calls and r.reasoning is None or r.reasoning == ""
    _, tok = raw_load(family_model("qwen3", script=THINK))
    off = tok.apply_chat_template([{"role": "user", "content": "Weather?"}], tools=[WEATHER],
                                  add_generation_prompt=True, enable_thinking=False)
    assert r.usage.prompt_tokens == len(off)


# ---------------------------------------------------------------------------------------------- opened by the prompt
def test_reasoning_opened_by_the_generation_prompt():
    with _llm("qwen3_thinking", "Let me see.\n</think>\n\nIt is sunny.") as llm:
        r = llm.generate("Hi")
        assert (r.reasoning, r.content) == ("Let me see.", "It is sunny.")
        with pytest.raises(UnsupportedFeatureError, match="cannot be switched off"):
            llm.generate("Hi", thinking=False)
        assert llm.generate("Hi", thinking_budget=1).content == "It is sunny."


def test_forced_tool_call_after_reasoning_the_prompt_opened():
    """No switch: the grammar lets the reasoning come first, then the call."""
    with _llm("qwen3_thinking", "Need the weather.\n</think>\n\n" + CALL) as llm:
        r = llm.generate("Weather in Paris?", tools=[WEATHER], tool_choice="required")
        assert r.reasoning == "Need the weather." and r.content == ""
        assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_weather", {"city": "Paris"})]
        structured = llm.generate("Weather in Paris?", tools=[WEATHER], tool_choice="get_weather", stream=True)
        assert [c.name for ch in structured for c in (ch.tool_calls or [])] == ["get_weather"]


# ---------------------------------------------------------------------------------------------- harmony
def test_harmony_channels_levels_and_no_switch():
    with _llm("gpt_oss", HARMONY) as llm:
        r = llm.generate("Hi")
        assert (r.reasoning, r.content) == ("Think first.", "Done now.")
        assert 0 < r.usage.reasoning_tokens < r.usage.completion_tokens
        _, tok = raw_load(family_model("gpt_oss", script=HARMONY))
        for level in ("low", "high"):
            expected = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                               reasoning_effort=level)
            assert llm.generate("Hi", thinking=level).usage.prompt_tokens == len(expected)
        with pytest.raises(UnsupportedFeatureError):
            llm.generate("Hi", thinking=False)
        chunks = list(llm.generate("Hi", stream=True))
        assert "".join(c.reasoning or "" for c in chunks) == "Think first."
        short = llm.generate("Hi", thinking_budget=1)  # the analysis ends, a final message is opened
        assert len(short.reasoning or "") < len(r.reasoning) and short.content
        assert short.usage.reasoning_tokens < r.usage.reasoning_tokens


# ---------------------------------------------------------------------------------------------- sessions, errors
def test_session_keeps_each_turns_reasoning_and_the_template_decides_what_is_resent(tmp_path):
    with _llm("qwen3", THINK) as llm:
        session = Session(provider=llm)
        session.generate("Hi")
        assert session.messages[-1].reasoning == "A B C" and session.messages[-1].content == "D E F"
        second = session.generate("And then?")
        _, tok = raw_load(family_model("qwen3", script=THINK))
        history = [{"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "D E F", "reasoning_content": "A B C"},
                   {"role": "user", "content": "And then?"}]
        # Qwen3's template drops the reasoning of turns before the last user query
        assert second.usage.prompt_tokens == len(tok.apply_chat_template(history, add_generation_prompt=True))
        session.save(tmp_path / "s.json")
        assert json.loads((tmp_path / "s.json").read_text())["messages"][1]["reasoning"] == "A B C"
        loaded = Session.load(tmp_path / "s.json", provider=llm)
        assert [m.reasoning for m in loaded.messages] == [m.reasoning for m in session.messages]


@pytest.mark.parametrize("kwargs, param", [
    ({"thinking": "extreme"}, "thinking"), ({"thinking": 1}, "thinking"), ({"thinking_budget": -1}, "thinking_budget"),
    ({"thinking_budget": 2.5}, "thinking_budget"), ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ({"chat_template_kwargs": "x"}, "chat_template_kwargs"),
])
def test_bad_reasoning_inputs_are_typed_errors(qwen3, kwargs, param):
    with pytest.raises(InvalidParameterError) as err:
        qwen3.generate("Hi", **kwargs)
    assert err.value.param == param
    assert qwen3.generate("Hi").content == "D E F"  # still works


def test_thinking_on_a_model_without_a_reasoning_format_names_it():
    path = family_model("llama")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=4) as llm:
        with pytest.raises(UnsupportedFeatureError, match="no reasoning format") as err:
            llm.generate("Hi", thinking=True)
        assert str(path) in str(err.value)
        r = llm.generate("Hi", thinking=False)  # nothing to switch off
        assert r.reasoning is None and r.usage.reasoning_tokens == 0
