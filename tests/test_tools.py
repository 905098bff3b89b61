"""Tool calling on the MLX provider, run for real on random-weight models.

A random model never decides to call a tool, so the calls here are forced with ``tool_choice``
("required" or a tool's name): decoding is then constrained to the model's own tool-call format, and the
call must come out parsed, by the backend's parser, whatever the weights. Parity checks show that tools
reach the model through its own chat template exactly as mlx-lm renders them; the extractor is checked on
the markup the model's format uses, fed in arbitrary pieces."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest

from abstractllm import create_llm
from abstractllm.exceptions import InvalidParameterError
from abstractllm.tools import ToolDefinition, function_to_tool_definition, register, registered_tools
from abstractllm.types import ToolCall
from text_oracle import raw_generate, raw_load

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                   "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris for three days?"}]


def _valid_weather(call: ToolCall) -> bool:
    a = call.arguments
    return call.name == "get_weather" and a.get("city") in ("Paris", "Rome", "Oslo") and 1 <= a.get("days", 0) <= 7


@pytest.fixture(scope="module", params=["tiny", "llama"])
def llm(request, tiny_model, llama_model):
    """A greedy provider on the Qwen3 preset (Hermes-style <tool_call> markup, mlx-lm's parser) and on
    the Llama preset (Llama 3.1 JSON calls, our parser)."""
    path = tiny_model if request.param == "tiny" else llama_model
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=96) as provider:
        provider.path = path
        yield provider


def test_required_tool_call_parses_from_random_weights(llm):
    r = llm.generate(messages=ASK, tools=[WEATHER, TIME], tool_choice="required")
    assert r.finish_reason == "tool_calls" and r.tool_calls
    assert all(c.name in ("get_weather", "get_time") and c.id for c in r.tool_calls)
    assert "<tool_call>" not in r.content and '"name"' not in r.content
    assert llm.get_capabilities()["function_calling"] is True


def test_named_tool_choice_forces_that_tool_in_both_spellings(llm):
    for choice in ("get_time", {"type": "function", "function": {"name": "get_time"}}):
        r = llm.generate(messages=ASK, tools=[WEATHER, TIME], tool_choice=choice)
        assert [c.name for c in r.tool_calls] == ["get_time"] and r.tool_calls[0].arguments["zone"] in ("UTC", "CET")
    r = llm.generate(messages=ASK, tools=[WEATHER, TIME], tool_choice="get_weather")
    assert len(r.tool_calls) == 1 and _valid_weather(r.tool_calls[0])


def test_streamed_tool_call_arrives_whole_in_one_chunk(llm):
    whole = llm.generate(messages=ASK, tools=[WEATHER], tool_choice="required")
    chunks = list(llm.generate(messages=ASK, tools=[WEATHER], tool_choice="required", stream=True))
    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1 and with_calls[0].tool_calls == whole.tool_calls[:1] or \
        [c.name for c in with_calls[0].tool_calls] == [c.name for c in whole.tool_calls]
    assert [c.arguments for ch in with_calls for c in ch.tool_calls] == [c.arguments for c in whole.tool_calls]
    assert "".join(c.content for c in chunks) == whole.content
    assert chunks[-1].finish_reason == "tool_calls"


def test_tools_reach_the_model_through_its_own_template(llm):
    """tool_choice 'auto' is unconstrained: greedy tokens equal raw mlx-lm's on the ids its tokenizer
    renders with ``tools=``. 'none' leaves the tools out of the prompt (the model is not to call any)."""
    _, tok = raw_load(llm.path)
    ids = list(tok.apply_chat_template(ASK, tools=[WEATHER], add_generation_prompt=True))
    raw = raw_generate(llm.path, ids, max_tokens=16)
    r = llm.generate(messages=ASK, tools=[WEATHER], tool_choice="auto", max_tokens=16)
    assert r.usage.prompt_tokens == len(ids) and r.token_ids == raw.tokens
    plain = list(tok.apply_chat_template(ASK, add_generation_prompt=True))
    assert len(plain) < len(ids)  # the tools were really in the prompt
    none = llm.generate(messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=16)
    assert none.usage.prompt_tokens == len(plain) and none.token_ids == raw_generate(llm.path, plain, max_tokens=16).tokens


def test_tool_calls_and_results_in_the_history(llm):
    first = llm.generate(messages=ASK, tools=[WEATHER], tool_choice="required")
    call = first.tool_calls[0]
    history = ASK + [{"role": "assistant", "content": first.content, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'}]
    r = llm.generate(messages=history, tools=[WEATHER], max_tokens=8)
    assert r.usage.completion_tokens > 0
    _, tok = raw_load(llm.path)
    rendered = tok.apply_chat_template(
        [*ASK, {"role": "assistant", "content": first.content, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
         {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'}],
        tools=[WEATHER], add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(rendered)


def test_a_python_function_is_a_tool():
    def convert(amount: float, currency: Literal["EUR", "USD"] = "EUR", round_to: int | None = None) -> str:
        """Convert money.

        Args:
            amount: how much
            currency: the target currency
        """
        return f"{amount} {currency}"

    d = function_to_tool_definition(convert)
    assert d.name == "convert" and d.description == "Convert money."
    props = d.parameters["properties"]
    assert props["amount"]["type"] == "number" and props["amount"]["description"] == "how much"
    assert props["currency"]["enum"] == ["EUR", "USD"] and d.parameters["required"] == ["amount"]
    assert d(amount=2.0) == "2.0 EUR"

    @register
    def ping(host: str) -> str:
        """Ping a host."""
        return "pong"

    assert any(t.name == "ping" for t in registered_tools())


def test_python_function_tool_on_the_model(tiny_llm):
    def lookup(code: Literal["A", "B"]) -> str:
        """Look a code up."""
        return code

    r = tiny_llm.generate(messages=ASK, tools=[lookup], tool_choice="lookup", max_tokens=60, temperature=0)
    assert [c.name for c in r.tool_calls] == ["lookup"] and r.tool_calls[0].arguments["code"] in ("A", "B")
    definition = ToolDefinition("lookup2", "Look up.", {"type": "object", "properties": {
        "code": {"type": "string", "enum": ["C"]}}, "required": ["code"]})
    r = tiny_llm.generate(messages=ASK, tools=[definition], tool_choice="required", max_tokens=60, temperature=0)
    assert r.tool_calls[0].arguments == {"code": "C"}


def test_tools_as_a_config_default(tiny_model):
    with create_llm("mlx", model=str(tiny_model), tools=[WEATHER], tool_choice="required", max_tokens=96) as llm:
        assert _valid_weather(llm.generate(messages=ASK).tool_calls[0])


def test_async_tool_call(tiny_llm):
    async def main():
        r = await tiny_llm.generate_async(messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=96)
        stream = await tiny_llm.generate_async(messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=96,
                                               stream=True)
        return r, [c async for c in stream]

    r, chunks = asyncio.run(main())
    assert _valid_weather(r.tool_calls[0])
    assert sum(len(c.tool_calls or []) for c in chunks) == len(r.tool_calls)


def test_truncated_call_is_length_not_an_error(tiny_llm):
    r = tiny_llm.generate(messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=6)
    assert r.finish_reason == "length" and not r.tool_calls
    assert r.metadata.get("unparsed_tool_calls")  # what the model had started, kept for the caller


@pytest.mark.parametrize("kwargs, param", [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                              "properties": {"x": {"type": "blob"}}}}}]},
     "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}, "tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [42]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "get_wether"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
])
def test_bad_tool_inputs_are_typed_errors(tiny_llm, kwargs, param):
    with pytest.raises(InvalidParameterError) as info:
        tiny_llm.generate(messages=ASK, max_tokens=4, **kwargs)
    assert info.value.param == param
    assert tiny_llm.generate(messages=ASK, max_tokens=2).usage.completion_tokens == 2  # still working


@pytest.mark.parametrize("messages", [
    ASK + [{"role": "tool", "tool_call_id": "call_nope", "content": "x"}],
    ASK + [{"role": "tool", "content": "x"}],
    ASK + [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                   "function": {"name": "f", "arguments": "{oops"}}]}],
])
def test_bad_tool_history_is_a_typed_error(tiny_llm, messages):
    with pytest.raises(InvalidParameterError) as info:
        tiny_llm.generate(messages=messages, max_tokens=4)
    assert "tool" in str(info.value).lower() and info.value.param == "messages"
    assert tiny_llm.generate(messages=ASK, max_tokens=2).usage.completion_tokens == 2


def test_vision_model_tool_call(vision_model):
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=96) as vlm:
        r = vlm.generate(messages=ASK, tools=[WEATHER], tool_choice="get_weather")
        assert r.finish_reason == "tool_calls" and _valid_weather(r.tool_calls[0])
        assert vlm.get_capabilities()["function_calling"] is True


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_extractor_takes_calls_out_of_text_fed_in_pieces(tiny_model, llama_model, piece):
    """The extractor over each preset's real format (mlx-lm's parser for Qwen's <tool_call> markup; ours
    for Llama 3 JSON): text passes through, each call comes out once, parsed, whatever the split."""
    from abstractllm.providers.mlx.toolcalls import ToolCallExtractor, text_tool_format

    def run(fmt, text):
        ex = ToolCallExtractor(fmt, [WEATHER])
        out, calls = [], []
        for i in range(0, len(text), piece):
            t, c = ex.feed(text[i:i + piece])
            out.append(t)
            calls += c
        t, c = ex.finish()
        return "".join(out) + t, calls + c, ex.unparsed

    qwen = text_tool_format(raw_load(tiny_model)[1])
    assert (qwen.start, qwen.end) == ("<tool_call>", "</tool_call>")
    call = '{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}'
    text, calls, bad = run(qwen, f"Let me check <tool_ the <tool_call>\n{call}\n</tool_call>")
    assert text == "Let me check <tool_ the " and [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Rome", "days": 2})] and not bad
    text, calls, bad = run(qwen, f"<tool_call>\n{call}\n</tool_call><tool_call>\n{call[:20]}")
    assert text == "" and len(calls) == 1 and bad == [f"\n{call[:20]}"]  # the second call was cut short

    llama = text_tool_format(raw_load(llama_model)[1])
    assert llama.name == "llama3_json" and llama.start is None
    text, calls, _ = run(llama, '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 1}}')
    assert text == "" and calls[0].arguments == {"city": "Oslo", "days": 1}
    text, calls, _ = run(llama, "Just text {not a call}")
    assert text == "Just text {not a call}" and not calls


def test_tools_with_a_response_format_give_a_call_or_valid_json(tiny_model, llama_model, vision_model):
    """tool_choice auto with a response_format: every reply is one valid call or JSON of the schema; seeded
    samples of the random models give both. A forced call is the call (the schema is for text replies)."""
    from typing import Literal

    from pydantic import BaseModel

    class City(BaseModel):
        city: Literal["Paris", "Rome"]
        big: bool

    for path in (tiny_model, llama_model, vision_model):
        with create_llm("mlx", model=str(path), max_tokens=120) as llm:
            kinds = set()
            for seed in range(8):
                r = llm.generate(messages=ASK, tools=[WEATHER], response_format=City, temperature=1.0, seed=seed)
                if r.tool_calls:
                    assert r.finish_reason == "tool_calls" and _valid_weather(r.tool_calls[0]) and r.parsed is None
                    kinds.add("call")
                else:
                    assert isinstance(r.parsed, City) and r.finish_reason == "stop"
                    kinds.add("json")
            assert kinds == {"call", "json"}, path
            forced = llm.generate(messages=ASK, tools=[WEATHER], response_format=City, tool_choice="required",
                                  temperature=0.0)
            assert _valid_weather(forced.tool_calls[0]) and forced.parsed is None
