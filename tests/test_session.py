"""``Session``, ``create_session`` and ``BasicSession`` on the real MLX provider: the history is sent each
turn and grows by both turns (images included), the next turn reuses the prompt cache, streaming and async
turns are recorded when they end, save/load round-trips through JSON, and bad input leaves the session as
it was."""

from __future__ import annotations

import asyncio
import json

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
