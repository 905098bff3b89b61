"""The provider contract (see the package docstring). Every test takes the shared greedy ``llm`` or makes
its own with ``make_llm``; the target comes from ``contract_target``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from abstractllm import (
    AbstractLLMError,
    AbstractLLMInterface,
    InvalidParameterError,
    ModelCapability,
    ModelParameter,
    Response,
    UnsupportedFeatureError,
)
from abstractllm.testing.media import mp4_header_bytes, png_bytes, wav_bytes, write_video

C = ModelCapability
PROMPT = "Count from 1 to 100, separated by commas."
OTHER = "Write a long story about a lighthouse keeper."
LONG = 4000  # tokens asked for by the cancellation tests (they stop after a few)


def _usage_ok(r: Response) -> None:
    u = r.usage
    assert u is not None, "the reply (the last chunk of a stream) carries usage"
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 0 <= u.cached_tokens <= u.prompt_tokens
    assert u["prompt_tokens"] == u.prompt_tokens and dict(u)["total_tokens"] == u.total_tokens


# ---------------------------------------------------------------------------------------------- generation
def test_generate_returns_a_response(llm):
    r = llm.generate(PROMPT)
    # a reasoning model cut by max_tokens may have only reasoning so far: text in one or the other
    assert isinstance(r, Response) and isinstance(r.content, str) and (r.content or r.reasoning)
    assert r.finish_reason in ("stop", "length")
    _usage_ok(r)
    assert r.input_tokens == r.usage.prompt_tokens and r.output_tokens == r.usage.completion_tokens
    assert r.tool_calls is None and not r.has_tool_calls()
    assert str(r) == r.content


def test_stream_joined_equals_generate(llm):
    whole = llm.generate(PROMPT)
    chunks = list(llm.generate(PROMPT, stream=True))
    assert all(isinstance(c, Response) for c in chunks)
    assert "".join(c.content for c in chunks) == whole.content
    assert all(c.finish_reason is None for c in chunks[:-1]) and chunks[-1].finish_reason == whole.finish_reason
    _usage_ok(chunks[-1])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_async_generate_equals_generate(llm):
    whole = llm.generate(PROMPT)
    r = asyncio.run(llm.generate_async(PROMPT))
    assert r.content == whole.content and r.finish_reason == whole.finish_reason
    _usage_ok(r)
    assert asyncio.run(llm.agenerate(PROMPT)).content == whole.content  # the AbstractCore name


def test_async_stream_joined_equals_generate(llm):
    whole = llm.generate(PROMPT)

    async def main():
        return [c async for c in await llm.generate_async(PROMPT, stream=True)]

    chunks = asyncio.run(main())
    assert "".join(c.content for c in chunks) == whole.content
    assert chunks[-1].finish_reason == whole.finish_reason
    _usage_ok(chunks[-1])


def test_positional_arguments_in_the_1x_order(llm):
    by_name = llm.generate(prompt=PROMPT, system_prompt="Answer in French.")
    positional = llm.generate(PROMPT, "Answer in French.", None, False)
    assert positional.content == by_name.content
    assert isinstance(llm, AbstractLLMInterface)


# ---------------------------------------------------------------------------------------------- conversation
def test_system_prompt(llm):
    caps = llm.get_capabilities()
    if C.SYSTEM_PROMPT not in caps:
        with pytest.raises(UnsupportedFeatureError):
            llm.generate(PROMPT, system_prompt="Be brief.")
        return
    plain = llm.generate(PROMPT)
    with_system = llm.generate(PROMPT, system_prompt="You are a terse assistant. Answer in one line.")
    _usage_ok(with_system)
    # the system prompt was sent (a template with a default system prompt may replace a longer one: SmolLM3)
    assert with_system.usage.prompt_tokens != plain.usage.prompt_tokens


def test_chat_history(llm):
    caps = llm.get_capabilities()
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."},
               {"role": "user", "content": "What is my name?"}]
    if C.CHAT_HISTORY not in caps:
        with pytest.raises(UnsupportedFeatureError):
            llm.generate(messages=history)
        return
    last_only = llm.generate(messages=history[-1:])
    r = llm.generate(messages=history)
    _usage_ok(r)
    assert r.usage.prompt_tokens > last_only.usage.prompt_tokens  # the earlier turns were sent
    assert llm.generate(messages=history[:2], prompt=history[2]["content"]).content == r.content


def _stop_string(text: str) -> str | None:
    """A two-character piece from the middle of ``text`` that is not whitespace."""
    for start in range(len(text) // 3, len(text) - 2):
        piece = text[start:start + 2]
        if piece.strip() and "\ufffd" not in piece and text.index(piece) > 0:
            return piece
    return None


def test_stop_strings(llm):
    caps = llm.get_capabilities()
    if C.STOP_SEQUENCES not in caps:
        with pytest.raises(UnsupportedFeatureError):
            llm.generate(PROMPT, stop=["x"])
        return
    full = llm.generate(PROMPT, max_tokens=24).content
    stop = _stop_string(full)
    if stop is None:
        pytest.skip(f"the reply is too short to pick a stop string from: {full!r}")
    cut = llm.generate(PROMPT, max_tokens=24, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.content == full[: full.index(stop)]
    streamed = list(llm.generate(PROMPT, max_tokens=24, stop=[stop], stream=True))
    assert "".join(c.content for c in streamed) == cut.content and streamed[-1].finish_reason == "stop"


def test_max_tokens_ends_with_length(llm):
    r = llm.generate(OTHER, max_tokens=5)
    if r.finish_reason == "stop" and r.usage.completion_tokens < 5:
        pytest.skip("the model ended its reply within 5 tokens")
    assert r.finish_reason == "length" and r.usage.completion_tokens == 5
    last = list(llm.generate(OTHER, max_tokens=5, stream=True))[-1]
    assert last.finish_reason == "length" and last.usage.completion_tokens == 5
    assert llm.generate(OTHER, max_output_tokens=5).usage.completion_tokens == 5  # the 1.x name


def test_seed_gives_the_same_sample(llm):
    if C.SEED not in llm.get_capabilities():
        with pytest.raises(UnsupportedFeatureError):
            llm.generate(PROMPT, seed=1)
        return
    a = llm.generate(OTHER, temperature=1.0, seed=7)
    b = llm.generate(OTHER, temperature=1.0, seed=7)
    assert a.content == b.content


# ---------------------------------------------------------------------------------------------- reasoning
THINK_TOKENS = 128  # tokens a thinking reply may take (reasoning and answer together)


def _thinking_reply(llm, **params) -> Response:
    """A greedy reply with ``thinking=True``, or a skip where the provider or its model cannot think."""
    try:
        r = llm.generate(PROMPT, thinking=True, max_tokens=THINK_TOKENS, **params)
    except UnsupportedFeatureError as exc:
        pytest.skip(f"the provider or model cannot think (thinking=True raised UnsupportedFeatureError: {exc})")
    if r.reasoning is None:
        pytest.skip("thinking=True gave no reasoning: the model does not think, or its server does not return "
                    "the reasoning")
    return r


def _reasoning_usage_ok(r: Response) -> None:
    _usage_ok(r)
    assert isinstance(r.usage.reasoning_tokens, int) and r.usage["reasoning_tokens"] == r.usage.reasoning_tokens
    assert 0 <= r.usage.reasoning_tokens <= r.usage.completion_tokens


def test_a_thinking_reply_has_reasoning_apart(llm):
    """With ``thinking=True`` a reasoning model's reply carries its thinking in ``reasoning`` and the answer
    in ``content`` (both text); ``usage.reasoning_tokens`` counts within ``completion_tokens``; the reply
    goes back in the history with its reasoning."""
    r = _thinking_reply(llm)
    assert isinstance(r.reasoning, str) and isinstance(r.content, str)
    _reasoning_usage_ok(r)
    history = [{"role": "user", "content": PROMPT},
               {"role": "assistant", "content": r.content, "reasoning_content": r.reasoning},
               {"role": "user", "content": "Again, shorter."}]
    assert isinstance(llm.generate(messages=history, max_tokens=4), Response)


def test_thinking_stream_joined_equals_generate(llm):
    """The stream's reasoning pieces joined equal the non-streamed reasoning (and the answer's pieces the
    answer), sync and async; a chunk's ``reasoning`` is its new thinking or ``None``."""
    whole = _thinking_reply(llm)
    chunks = list(llm.generate(PROMPT, thinking=True, max_tokens=THINK_TOKENS, stream=True))
    assert all(c.reasoning is None or isinstance(c.reasoning, str) for c in chunks)
    assert "".join(c.reasoning or "" for c in chunks) == whole.reasoning
    assert "".join(c.content for c in chunks) == whole.content
    assert chunks[-1].finish_reason == whole.finish_reason
    _reasoning_usage_ok(chunks[-1])
    assert chunks[-1].usage.reasoning_tokens == whole.usage.reasoning_tokens

    async def main():
        return [c async for c in await llm.generate_async(PROMPT, thinking=True, max_tokens=THINK_TOKENS,
                                                          stream=True)]

    achunks = asyncio.run(main())
    assert "".join(c.reasoning or "" for c in achunks) == whole.reasoning
    assert "".join(c.content for c in achunks) == whole.content


# ---------------------------------------------------------------------------------------------- capabilities
def test_capabilities_answer_both_styles(llm):
    caps = llm.get_capabilities()
    assert isinstance(caps, Mapping)
    assert C.TEXT in caps and caps[C.STREAMING] is True and caps.get(C.ASYNC) is True
    for cap in C:
        if cap is C.MAX_TOKENS:
            value = caps.get(cap)
            assert value is None or (isinstance(value, int) and value > 0)
        elif cap in caps:
            assert caps.get(cap) is True and caps[cap] is True and cap in list(caps)
        else:
            assert caps.get(cap) is False and cap not in list(caps)
    assert (C.VISION in caps) == (caps.get("supports_vision") is True)  # 1.x spellings


def _probe(llm, declared: bool, call) -> None:
    if declared:
        r = call()
        assert isinstance(r, Response)
    else:
        with pytest.raises(UnsupportedFeatureError):
            call()


def test_vision_is_honest(llm, tmp_path):
    img = tmp_path / "red.png"
    img.write_bytes(png_bytes(32, 32))
    caps = llm.get_capabilities()
    _probe(llm, C.VISION in caps, lambda: llm.generate("Describe the image.", files=[str(img)], max_tokens=4))
    if C.VISION in caps:
        two = [str(img), png_bytes(32, 32, (20, 40, 200))]
        _probe(llm, C.MULTI_IMAGE in caps, lambda: llm.generate("Compare.", files=two, max_tokens=4))
        r = llm.generate("Describe the image.", files=[str(img)], max_tokens=4)
        assert r.image_paths == [str(img)]


def test_video_is_honest(llm, tmp_path):
    caps = llm.get_capabilities()
    if C.VIDEO in caps:
        pytest.importorskip("av")
        clip = write_video(tmp_path / "clip.mp4")
    else:
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(mp4_header_bytes())
    _probe(llm, C.VIDEO in caps, lambda: llm.generate("What happens?", files=[str(clip)], max_tokens=4))


def test_audio_is_honest(llm, tmp_path):
    clip = tmp_path / "sound.wav"
    clip.write_bytes(wav_bytes())
    if C.AUDIO_PROCESSING in llm.get_capabilities():
        pytest.skip("the provider declares audio: no generic probe of it here")
    with pytest.raises(UnsupportedFeatureError):
        llm.generate("Transcribe.", files=[str(clip)])


def test_tools_are_honest(llm):
    tool = {"type": "function", "function": {"name": "get_time", "description": "The current time.",
                                             "parameters": {"type": "object", "properties": {}}}}
    _probe(llm, C.FUNCTION_CALLING in llm.get_capabilities(),
           lambda: llm.generate("What time is it?", tools=[tool], max_tokens=8))


_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                   "required": ["city"]}}}


def test_a_forced_tool_call_comes_back_parsed(llm):
    """A provider that declares FUNCTION_CALLING returns a forced call as a ToolCall (streamed: whole, in
    one chunk), and takes the call and its result back in the history."""
    if C.FUNCTION_CALLING not in llm.get_capabilities():
        pytest.skip("the provider does not declare FUNCTION_CALLING")
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    r = llm.generate(messages=ask, tools=[_WEATHER], tool_choice="required", max_tokens=96)
    assert r.finish_reason == "tool_calls" and r.has_tool_calls()
    call = r.tool_calls[0]
    assert call.name == "get_weather" and call.arguments.get("city") in ("Paris", "Oslo") and call.id
    chunks = list(llm.generate(messages=ask, tools=[_WEATHER], tool_choice="get_weather", max_tokens=96,
                               stream=True))
    assert [c.name for ch in chunks for c in (ch.tool_calls or [])] == ["get_weather"]
    assert chunks[-1].finish_reason == "tool_calls"
    history = ask + [
        {"role": "assistant", "content": r.content, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "Cold and clear."}]
    assert isinstance(llm.generate(messages=history, tools=[_WEATHER], max_tokens=8), Response)


def test_structured_output_parses(llm):
    """A provider that declares JSON_MODE returns ``parsed``: the pydantic instance of the reply."""
    if C.JSON_MODE not in llm.get_capabilities():
        pytest.skip("the provider does not declare JSON_MODE")
    from typing import Literal

    from pydantic import BaseModel

    class Weather(BaseModel):
        city: Literal["Paris", "Oslo"]
        cold: bool

    r = llm.generate("The weather in Oslo, as JSON.", response_format=Weather, max_tokens=96)
    assert r.finish_reason == "stop" and isinstance(r.parsed, Weather)
    assert Weather.model_validate_json(r.content) == r.parsed


def test_text_files_are_inlined(llm, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("The launch code is 0000.\n", encoding="utf-8")
    plain = llm.generate("Summarize the notes.")
    r = llm.generate("Summarize the notes.", files=[str(notes)])
    assert r.usage.prompt_tokens > plain.usage.prompt_tokens


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params", [
    {"temperature": -1}, {"temprature": 0.2}, {"max_tokens": 0}, {"stop": [""]}, {"top_p": 0},
    {"logit_bias": {"not-a-token": 1}},
], ids=lambda p: next(iter(p)))
def test_bad_parameters_raise_invalid_parameter(llm, params):
    with pytest.raises(InvalidParameterError) as info:
        llm.generate(PROMPT, **params)
    assert info.value.provider == llm.name
    if "temprature" in params:
        assert "temperature" in str(info.value)  # did you mean


def test_bad_config_raises_invalid_parameter(make_llm):
    with pytest.raises(InvalidParameterError):
        make_llm(not_a_config_key=1)
    with pytest.raises(InvalidParameterError):
        make_llm(temperature="hot")


def test_config_api(make_llm):
    llm = make_llm(**{ModelParameter.TEMPERATURE: 0.0, ModelParameter.MAX_TOKENS: 6})
    assert llm.get_config()["temperature"] == 0.0 and llm.get_param(ModelParameter.MAX_TOKENS) == 6
    assert llm.get_param("seed", 123) == 123
    llm.set_config(max_tokens=3)
    assert llm.generate(OTHER).usage.completion_tokens <= 3
    llm.update_config({ModelParameter.MAX_TOKENS: 4})
    assert llm.get_param("max_tokens") == 4
    with pytest.raises(InvalidParameterError):
        llm.update_config({"max_tokens": -1})
    assert llm.get_param("max_tokens") == 4  # a refused update changes nothing


# ---------------------------------------------------------------------------------------------- cancellation
def test_cancelling_a_stream_stops_it_and_the_provider_goes_on(llm):
    stream = llm.generate(OTHER, max_tokens=LONG, stream=True)
    first = [next(stream), next(stream)]
    stream.cancel()
    rest = list(stream)
    last = (first + rest)[-1]
    if last.finish_reason == "stop":
        pytest.skip("the model ended its reply before the cancel")
    assert last.finish_reason == "cancelled"
    assert llm.generate(PROMPT, max_tokens=3).usage.completion_tokens <= 3


def test_closing_a_stream_early_and_async_cancel(llm):
    stream = llm.generate(OTHER, max_tokens=LONG, stream=True)
    for i, _ in enumerate(stream):
        if i == 1:
            break
    stream.close()
    assert llm.generate(PROMPT, max_tokens=3).usage.completion_tokens <= 3

    async def main():
        task = asyncio.create_task(llm.generate_async(OTHER, max_tokens=LONG))
        await asyncio.sleep(0)  # started, not finished: a reply that ends early must not race the cancel
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        agen = await llm.generate_async(OTHER, max_tokens=LONG, stream=True)
        await agen.__anext__()
        await agen.aclose()
        return await llm.generate_async(PROMPT, max_tokens=3)

    assert asyncio.run(main()).usage.completion_tokens <= 3


# ---------------------------------------------------------------------------------------------- lifecycle
def test_reuse_after_an_error_and_close(make_llm):
    llm = make_llm(temperature=0.0, max_tokens=4)
    with pytest.raises(InvalidParameterError):
        llm.generate(PROMPT, temperature=5000)
    with pytest.raises(UnsupportedFeatureError if C.AUDIO_PROCESSING not in llm.get_capabilities() else Exception):
        llm.generate(PROMPT, files=[wav_bytes()])
    r = llm.generate(PROMPT)
    assert r.usage.completion_tokens <= 4
    llm.close()
    llm.close()  # idempotent
    with pytest.raises(AbstractLLMError):
        llm.generate(PROMPT)


def test_async_context_manager_closes(make_llm):
    async def main():
        async with make_llm(temperature=0.0, max_tokens=3) as llm:
            r = await llm.generate_async(PROMPT)
        return llm, r

    llm, r = asyncio.run(main())
    assert r.usage.completion_tokens <= 3
    with pytest.raises(AbstractLLMError):
        llm.generate(PROMPT)
