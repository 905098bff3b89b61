"""``Session``, ``create_session`` and ``BasicSession`` on the real MLX provider: the history is sent each
turn and grows by both turns (images included), the next turn reuses the prompt cache, streaming and async
turns are recorded when they end, save/load round-trips through JSON, and bad input leaves the session as
it was."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest

from abstractllm import (
    AbstractLLMError,
    BasicSession,
    FileProcessingError,
    InvalidParameterError,
    MessageRole,
    ModelParameter,
    Session,
    create_llm,
    create_session,
)
from abstractllm.testing.media import png_bytes


@pytest.fixture()
def llm(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=6) as provider:
        yield provider


def test_turns_are_sent_with_the_history_and_recorded(llm):
    s = Session(system_prompt="You are kind.", provider=llm)
    first = s.generate("My name is Ada.")
    second = s.generate("What is my name?")
    assert [m.role for m in s.get_history()] == ["system", "user", "assistant", "user", "assistant"]
    assert [m.content for m in s.get_history(include_system=False)] == [
        "My name is Ada.", first.content, "What is my name?", second.content]
    direct = llm.generate(messages=[{"role": "system", "content": "You are kind."},
                                    {"role": "user", "content": "My name is Ada."},
                                    {"role": "assistant", "content": first.content},
                                    {"role": "user", "content": "What is my name?"}])
    assert second.token_ids == direct.token_ids
    assert second.usage.cached_tokens > 0  # the first turn's prefix came from the prompt cache
    assert s.get_messages()[0] == {"role": "system", "content": "You are kind."}
    s.get_history()[1].content = "changed"  # copies: the session is not changed through them
    assert s.messages[1].content == "My name is Ada."


def test_images_stay_in_the_history_and_the_cache_is_reused(vision_model, tmp_path):
    img = tmp_path / "red.png"
    img.write_bytes(png_bytes(32, 32))
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=4) as vlm:
        s = Session(provider=vlm)
        first = s.generate("Describe the image.", files=[str(img)])
        assert s.messages[0].images == [str(img)] and first.image_paths == [str(img)]
        text_only = vlm.generate("What colour is it?")
        second = s.generate("What colour is it?")
        assert second.usage.prompt_tokens > text_only.usage.prompt_tokens + 4  # the image is still sent
        assert second.usage.cached_tokens > 0


def test_streamed_and_async_turns_are_recorded(llm):
    s = Session(provider=llm)
    chunks = list(s.generate("Hello there.", stream=True))
    assert s.messages[-1].content == "".join(c.content for c in chunks) and len(s.messages) == 2

    stream = s.generate("Tell me more.", stream=True, max_tokens=1000)
    next(stream)
    stream.close()  # stopped early: the partial reply is what the model said
    assert len(s.messages) == 4 and s.messages[-1].role == "assistant" and s.messages[-1].content

    async def main():
        r = await s.generate_async("And then?")
        got = [c async for c in await s.agenerate("Finally?", stream=True)]
        return r, got

    r, got = asyncio.run(main())
    assert s.messages[5].content == r.content and s.messages[7].content == "".join(c.content for c in got)
    assert len(s.messages) == 8


def test_a_failed_turn_leaves_the_history_unchanged(llm, tmp_path):
    s = Session(provider=llm)
    s.generate("Hi.")
    with pytest.raises(InvalidParameterError):
        s.generate("Again.", temperature=-1)
    with pytest.raises(FileProcessingError):
        s.generate("Read this.", files=[str(tmp_path / "missing.txt")])
    assert len(s.messages) == 2
    with pytest.raises(AbstractLLMError, match="no provider"):
        Session().generate("Hi")
    with pytest.raises(InvalidParameterError, match="Unknown Session option"):
        Session(provider=llm, enable_memroy=True)


def test_add_clear_and_1x_options(llm):
    s = Session(system_prompt="Sys.", provider=llm, enable_memory=True, max_tool_calls=5)  # 1.x options: ignored
    s.add_message(MessageRole.USER, "Hello", name="ada")
    s.add_message("assistant", "Hi Ada")
    assert s.get_history()[1].name == "ada" and "timestamp" in s.get_history()[1].metadata
    with pytest.raises(InvalidParameterError):
        s.add_message("wizard", "x")
    s.clear_history()
    assert [m.role for m in s.messages] == ["system"]
    s.clear_history(keep_system_prompt=False)
    assert s.messages == []


def test_save_and_load_round_trip(llm, tiny_model, tmp_path):
    s = Session(system_prompt="Sys.", provider=llm, metadata={"user": "ada"})
    s.generate("My name is Ada.")
    s.add_message("user", "Look at these.", files=[png_bytes(8, 8), str(tmp_path / "a.png")])
    s.add_message("assistant", "Nice.")
    path = tmp_path / "session.json"
    s.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "abstractllm.session/1" and data["metadata"] == {"user": "ada"}
    assert data["messages"][3]["images"][0].startswith("data:image/png;base64,")
    assert data["provider_state"]["provider_name"] == "mlx" and data["provider_state"]["model_name"] == str(tiny_model)
    assert "api_key" not in json.dumps(data)

    restored = Session.load(path)  # the saved provider is recreated
    try:
        assert [(m.role, m.content) for m in restored.messages] == [(m.role, m.content) for m in s.messages]
        assert restored.id == s.id and restored.system_prompt == "Sys."
        assert restored.messages[3].images[1] == str(tmp_path / "a.png")
        restored.messages = restored.messages[:3]
        s.messages = s.messages[:3]
        assert restored.generate("What is my name?", temperature=0.0, max_tokens=6).content == \
            s.generate("What is my name?").content
    finally:
        restored.close()
    with pytest.raises(FileProcessingError):
        Session.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"messages": [{"role": "wizard", "content": 1}]}')
    with pytest.raises(FileProcessingError):
        Session.load(tmp_path / "bad.json")


def test_saving_does_not_keep_the_api_key(tiny_model, tmp_path):
    with create_llm("mlx", model=str(tiny_model), api_key="sk-secret", max_tokens=2) as llm:
        s = Session(provider=llm)
        s.save(tmp_path / "s.json")
    assert "sk-secret" not in (tmp_path / "s.json").read_text()


def test_create_session_and_basic_session(tiny_model, llm):
    s = create_session("mlx", **{ModelParameter.MODEL: str(tiny_model), ModelParameter.SYSTEM_PROMPT: "Be brief.",
                                 ModelParameter.TEMPERATURE: 0.0, ModelParameter.MAX_TOKENS: 4},
                       enable_memory=False)
    try:
        r = s.generate("Hello!")
        assert s.system_prompt == "Be brief." and r.usage.completion_tokens == 4
    finally:
        s.close()
    with pytest.raises(AbstractLLMError):  # the session created the provider: it closed it
        s.provider.generate("Hi")

    b = BasicSession(llm, system_prompt="Sys.", temperature=1.0, seed=3)
    a1 = b.generate("Pick a word.")
    b2 = BasicSession(llm, system_prompt="Sys.", temperature=1.0, seed=3)
    assert b2.generate("Pick a word.").content == a1.content  # the session-wide seed applies
    assert b.get_history()[0] == {"role": "system", "content": "Sys."}
    assert llm.generate("Hi", max_tokens=2).usage.completion_tokens == 2  # not closed: the caller owns it


# ---------------------------------------------------------------------------------------- the tool loop
def _weather_tool(log: list, fail_on: int | None = None):
    def get_weather(city: Literal["Paris", "Rome"]) -> dict:
        """The weather in a city.

        Args:
            city: the city
        """
        log.append(city)
        if fail_on is not None and len(log) == fail_on:
            raise ValueError("the weather service is down")
        return {"city": city, "sky": "clear"}

    return get_weather


@pytest.fixture()
def tool_llm(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=80) as provider:
        yield provider


def test_session_runs_the_tools_and_keeps_calls_and_results(tool_llm):
    """A forced first call (tool_choice is reset to auto after it, so a random model then answers in
    text); the call, its result and the final reply are in the history, sent as the model's template
    renders them."""
    log: list = []
    s = Session(provider=tool_llm, tools=[_weather_tool(log)])
    r = s.generate("Weather in Paris?", tool_choice="required", execute_tools=True)
    assert len(log) == 1 and log[0] in ("Paris", "Rome")
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant"]
    call_msg, result = s.messages[1], s.messages[2]
    assert call_msg.tool_calls[0].name == "get_weather" and result.tool_call_id == call_msg.tool_calls[0].id
    assert json.loads(result.content) == {"city": log[0], "sky": "clear"}
    assert r.content == s.messages[3].content and not r.tool_calls
    # the last round saw the whole history: the same reply as sending it by hand
    direct = tool_llm.generate(messages=s.get_messages()[:3], tools=[_weather_tool([])], tool_choice="auto")
    assert direct.content == r.content


def test_a_tool_exception_is_reported_to_the_model(tool_llm):
    log: list = []
    s = Session(provider=tool_llm, tools=[_weather_tool(log, fail_on=1)])
    s.generate("Weather?", tool_choice="get_weather", execute_tools=True)
    result = s.messages[2]
    assert json.loads(result.content) == {"error": "ValueError: the weather service is down"}
    assert isinstance(result.metadata["exception"], ValueError)


def test_without_execute_tools_the_reply_carries_the_calls(tool_llm):
    log: list = []
    s = Session(provider=tool_llm, tools=[_weather_tool(log)])
    r = s.generate("Weather?", tool_choice="required", execute_tools=False)
    assert r.tool_calls and not log and [m.role for m in s.messages] == ["user", "assistant"]
    s.add_message("tool", '{"sky": "rain"}', tool_call_id=r.tool_calls[0].id)  # the app ran it itself
    s.generate("And tomorrow?", max_tokens=4)
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "user", "assistant"]
    with pytest.raises(InvalidParameterError, match="tool_call_id"):
        s.add_message("tool", "x")


def test_rounds_are_bounded(tool_llm):
    log: list = []
    s = Session(provider=tool_llm, tools=[_weather_tool(log)])
    # a dict tool_choice stays forced only in round one, so force every round by a config default
    with create_llm("mlx", model=tool_llm.spec.path, temperature=0.0, max_tokens=80) as forced:
        s.set_provider(forced)
        original = forced.generate

        def always_required(*a, **kw):
            kw["tool_choice"] = "required"
            return original(*a, **kw)

        forced.generate = always_required
        r = s.generate("Weather?", execute_tools=True, max_tool_rounds=2)
    assert len(log) == 2 and r.tool_calls and r.metadata["tool_rounds_exhausted"] is True
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    with pytest.raises(InvalidParameterError, match="max_tool_rounds"):
        s.generate("x", execute_tools=True, max_tool_rounds=0)
    with pytest.raises(InvalidParameterError, match="needs tools"):
        Session(provider=tool_llm).generate("x", execute_tools=True)


def test_streamed_and_async_tool_loops(tool_llm):
    log: list = []

    async def aget_weather(city: Literal["Oslo"]) -> str:
        """Async weather."""
        log.append(("async", city))
        return "sunny"

    s = Session(provider=tool_llm, tools=[_weather_tool(log)])
    chunks = list(s.generate("Weather?", tool_choice="required", execute_tools=True, stream=True))
    assert sum(len(c.tool_calls or []) for c in chunks) == 1 and len(log) == 1
    events = [c for c in chunks if isinstance(c, dict)]  # 1.x's tool-result event, between the rounds
    assert [e["type"] for e in events] == ["tool_result"] and events[0]["tool_call"]["name"] == "get_weather"
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant"]

    async def main():
        s2 = Session(provider=tool_llm, tools=[aget_weather])
        r = await s2.generate_async("Weather?", tool_choice="required", execute_tools=True)
        stream = await s2.generate_async("Again?", tool_choice="required", execute_tools=True, stream=True)
        n = [c async for c in stream]
        return s2, r, n

    s2, r, n = asyncio.run(main())
    assert [e for e in log if e[0] == "async"] and len([e for e in log if e[0] == "async"]) == 2
    assert [m.role for m in s2.messages] == ["user", "assistant", "tool", "assistant"] * 2
    assert s2.messages[2].content == "sunny"


def test_tool_history_saves_and_loads(tool_llm, tmp_path):
    s = Session(provider=tool_llm, tools=[_weather_tool([], fail_on=1)])
    s.generate("Weather?", tool_choice="required", execute_tools=True)
    s.save(tmp_path / "s.json")
    back = Session.load(tmp_path / "s.json", provider=tool_llm)
    assert [(m.role, [c.name for c in m.tool_calls], m.tool_call_id) for m in back.messages] == \
        [(m.role, [c.name for c in m.tool_calls], m.tool_call_id) for m in s.messages]
    assert back.messages[2].metadata["error"].startswith("ValueError")
    assert back.generate("Thanks.", max_tokens=3).usage.completion_tokens == 3
