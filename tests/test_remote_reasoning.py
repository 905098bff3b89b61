"""Reasoning over the remote providers: ``openai`` (chat completions: ``reasoning_content`` in the message and
the stream's deltas, ``reasoning_effort`` / ``thinking`` / ``thinking_budget`` / ``chat_template_kwargs`` in
the body) and ``anthropic`` (Messages: ``thinking`` blocks and ``thinking_delta`` events, ``thinking:
{"type": "enabled", "budget_tokens": N}``), against the project's own server on loopback serving a scripted
Qwen3 model (it thinks "A B C", then answers "D E F"). The replies equal the local provider's; what the
providers send is checked on the request they build; SDK objects stand in for other servers' fields."""

from __future__ import annotations

import asyncio

import pytest

from abstractllm import Message, UnsupportedFeatureError, create_llm
from abstractllm.server import ServerConfig, start_server
from abstractllm.testing.contract.fixtures import llm, make_llm  # noqa: F401  (the contract suite's fixtures)
from abstractllm.testing.contract.test_contract import (  # noqa: F401  (its reasoning cases, on a thinking model)
    test_a_thinking_reply_has_reasoning_apart,
    test_thinking_stream_joined_equals_generate,
)

SCRIPT = "<think>\nA B C\n</think>\n\nD E F"
REASONING, ANSWER = "A B C", "D E F"


@pytest.fixture(scope="module")
def qwen3_thinking():
    from abstractllm.testing.zoo import family_model

    return family_model("qwen3", script=SCRIPT)


@pytest.fixture(scope="module")
def server(qwen3_thinking):
    with start_server(ServerConfig(model=str(qwen3_thinking), port=0)) as running:
        yield running


@pytest.fixture(scope="module", params=["mlx", "openai", "anthropic"])
def contract_target(request, server, qwen3_thinking):
    """The contract suite's reasoning cases over the scripted thinking model: local, and both remote
    providers through our server."""
    if request.param == "mlx":
        return {"provider": "mlx", "model": str(qwen3_thinking)}
    return {"provider": request.param, "model": "local",
            "base_url": server.base_url if request.param == "openai" else server.url}


@pytest.fixture(scope="module")
def local(qwen3_thinking):
    with create_llm("mlx", model=str(qwen3_thinking), temperature=0.0, max_tokens=64) as llm:
        yield llm


@pytest.fixture(scope="module")
def openai_llm(server):
    with create_llm("openai", model="local", base_url=server.base_url, temperature=0.0, max_tokens=64) as llm:
        yield llm


@pytest.fixture(scope="module")
def anthropic_llm(server):
    with create_llm("anthropic", model="local", base_url=server.url, temperature=0.0, max_tokens=64) as llm:
        yield llm


def _joined(chunks):
    """(reasoning, content) of a stream's chunks joined."""
    chunks = list(chunks)
    return "".join(c.reasoning or "" for c in chunks), "".join(c.content for c in chunks)


async def _achunks(llm, **params):
    return [c async for c in await llm.generate_async("Hi", stream=True, **params)]


def _cut_short(reasoning):
    """Whether a reasoning is the scripted one ended early by a thinking budget."""
    return bool(reasoning) and reasoning != REASONING and REASONING.startswith(reasoning)


def _request(llm, **params):
    """The SDK call's keyword arguments the provider builds for a generation."""
    messages = params.pop("messages", None)
    return llm._create_kwargs(llm._prepare(None if messages else "Hi", None, None, messages, params))


# ---------------------------------------------------------------------------------------------- openai
@pytest.mark.parametrize("params", [{"thinking": True}, {}, {"thinking": "low"}], ids=["true", "default", "level"])
def test_openai_reasoning_apart_from_the_answer(openai_llm, local, params):
    expected = local.generate("Hi", **params)
    r = openai_llm.generate("Hi", **params)
    assert (r.reasoning, r.content) == (REASONING, ANSWER) == (expected.reasoning, expected.content)
    assert r.usage.reasoning_tokens == expected.usage.reasoning_tokens > 0
    assert r.usage.reasoning_tokens <= r.usage.completion_tokens == expected.usage.completion_tokens
    assert r.usage.prompt_tokens == expected.usage.prompt_tokens
    assert r.raw_response.choices[0].message.model_extra["reasoning_content"] == REASONING
    chunks = list(openai_llm.generate("Hi", stream=True, **params))
    assert _joined(chunks) == (REASONING, ANSWER)
    first_answer = next(i for i, c in enumerate(chunks) if c.content)
    assert all(c.reasoning is None for c in chunks[first_answer:])  # the thinking comes first, apart
    assert chunks[-1].usage.reasoning_tokens == r.usage.reasoning_tokens
    assert _joined(asyncio.run(_achunks(openai_llm, **params))) == (REASONING, ANSWER)
    assert asyncio.run(openai_llm.generate_async("Hi", **params)).reasoning == REASONING


def test_openai_thinking_budget_and_switch_reach_the_model(openai_llm, local):
    for params in ({"thinking": True, "thinking_budget": 2}, {"thinking_budget": 2}):
        expected = local.generate("Hi", **params)
        assert _cut_short(expected.reasoning) and expected.content == ANSWER
        r = openai_llm.generate("Hi", **params)
        assert (r.reasoning, r.content) == (expected.reasoning, expected.content)
        assert r.usage.reasoning_tokens == expected.usage.reasoning_tokens
        assert _joined(openai_llm.generate("Hi", stream=True, **params)) == (expected.reasoning, ANSWER)
    on = openai_llm.generate("Hi", thinking=True).usage.prompt_tokens
    for params in ({"thinking": False}, {"chat_template_kwargs": {"enable_thinking": False}}):
        r = openai_llm.generate("Hi", **params)  # the template's empty reasoning block: a longer prompt
        assert r.usage.prompt_tokens == local.generate("Hi", **params).usage.prompt_tokens > on


def test_openai_request_fields(openai_llm):
    assert _request(openai_llm, thinking="high")["extra_body"] == {"reasoning_effort": "high"}
    kw = _request(openai_llm, thinking=False, thinking_budget=0, chat_template_kwargs={"enable_thinking": False})
    assert kw["extra_body"] == {"thinking": False, "thinking_budget": 0,
                                "chat_template_kwargs": {"enable_thinking": False}}
    assert "reasoning_effort" not in kw and "extra_body" not in _request(openai_llm)
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING},
               {"role": "user", "content": "Again"}]
    sent = _request(openai_llm, messages=history)["messages"]
    assert sent[1] == {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING}
    assert "reasoning_content" not in sent[0] and "reasoning_content" not in sent[2]
    # our server takes it back (the template decides what the model sees)
    assert openai_llm.generate(messages=history).content == ANSWER
    with create_llm("openai", model="gpt-x", api_key="sk-x") as official:  # api.openai.com refuses the field
        assert "reasoning_content" not in _request(official, messages=history)["messages"][1]


def test_openai_reads_reasoning_wherever_servers_put_it():
    """``reasoning`` (OpenRouter, Ollama) as well as ``reasoning_content``, in messages and stream deltas;
    ``completion_tokens_details.reasoning_tokens``."""
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from abstractllm.providers.openai.provider import _response_from, _StreamState

    usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14,
             "completion_tokens_details": {"reasoning_tokens": 6}}
    for field in ("reasoning_content", "reasoning"):
        completion = ChatCompletion.model_validate({
            "id": "c", "object": "chat.completion", "created": 0, "model": "m", "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER, field: REASONING}}]})
        r = _response_from(completion, 0.0)
        assert (r.reasoning, r.content, r.usage.reasoning_tokens) == (REASONING, ANSWER, 6)
        state = _StreamState("m")
        chunks = [state.feed(ChatCompletionChunk.model_validate({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta}]})) for delta in ({field: "A B"}, {field: " C"}, {"content": ANSWER})]
        state.feed(ChatCompletionChunk.model_validate({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                                       "model": "m", "choices": [], "usage": usage}))
        chunks.append(state.final(False))
        assert _joined(chunks) == (REASONING, ANSWER) and chunks[-1].usage.reasoning_tokens == 6
    plain = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x",
                                                                      "reasoning_content": ""}}]})
    assert _response_from(plain, 0.0).reasoning is None  # an empty reasoning is none, as the local provider says


@pytest.mark.parametrize("body", [
    {"error": {"message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
               "type": "invalid_request_error", "param": "reasoning_effort", "code": "unsupported_parameter"}},
    {"error": {"message": "Unrecognized request argument supplied: thinking", "type": "invalid_request_error",
               "param": None, "code": None}},
    {"error": {"message": "thinking=True: the model 'm' has no reasoning format", "type": "invalid_request_error",
               "param": None, "code": "unsupported_feature"}},
])
def test_openai_refused_thinking_is_unsupported_feature(body):
    import httpx
    import openai

    from abstractllm.providers.openai.convert import convert_error

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    exc = openai.OpenAI(api_key="x", base_url="http://x/v1")._make_status_error_from_response(
        httpx.Response(400, json=body, request=request))
    err = convert_error(exc, "openai")
    assert type(err) is UnsupportedFeatureError and err.original_exception is exc and err.details["status_code"] == 400


# ---------------------------------------------------------------------------------------------- anthropic
@pytest.mark.parametrize("params", [{"thinking": True}, {"thinking": "medium"}], ids=["true", "level"])
def test_anthropic_thinking_blocks(anthropic_llm, local, params):
    expected = local.generate("Hi", thinking=True)
    r = anthropic_llm.generate("Hi", **params)
    assert (r.reasoning, r.content) == (REASONING, ANSWER) == (expected.reasoning, expected.content)
    assert r.usage.completion_tokens == expected.usage.completion_tokens and r.usage.reasoning_tokens == 0
    blocks = [b.type for b in r.raw_response.content]
    assert blocks == ["thinking", "text"] and r.raw_response.content[0].thinking == REASONING
    chunks = list(anthropic_llm.generate("Hi", stream=True, **params))
    assert _joined(chunks) == (REASONING, ANSWER)
    first_answer = next(i for i, c in enumerate(chunks) if c.content)
    assert all(c.reasoning is None for c in chunks[first_answer:])
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert _joined(asyncio.run(_achunks(anthropic_llm, **params))) == (REASONING, ANSWER)
    assert asyncio.run(anthropic_llm.generate_async("Hi", **params)).reasoning == REASONING


def test_anthropic_budget_and_disabled_reach_the_model(anthropic_llm, local):
    expected = local.generate("Hi", thinking=True, thinking_budget=2)
    assert _cut_short(expected.reasoning) and expected.content == ANSWER
    r = anthropic_llm.generate("Hi", thinking=True, thinking_budget=2)
    assert (r.reasoning, r.content) == (expected.reasoning, expected.content)
    assert _joined(anthropic_llm.generate("Hi", thinking_budget=2, stream=True)) == (expected.reasoning, ANSWER)
    off = anthropic_llm.generate("Hi", thinking=False)
    assert off.usage.prompt_tokens == local.generate("Hi", thinking=False).usage.prompt_tokens > \
        anthropic_llm.generate("Hi", thinking=True).usage.prompt_tokens


def test_anthropic_request_fields(anthropic_llm):
    from abstractllm.providers.anthropic.convert import DEFAULT_THINKING_BUDGET, THINKING_LEVEL_BUDGETS

    def thinking(**params):
        return _request(anthropic_llm, **params)["extra_body"].get("thinking")

    assert thinking() is None
    assert thinking(thinking=True) == {"type": "enabled", "budget_tokens": DEFAULT_THINKING_BUDGET}
    assert thinking(thinking="high") == {"type": "enabled", "budget_tokens": THINKING_LEVEL_BUDGETS["high"]}
    assert thinking(thinking="low", thinking_budget=3000) == {"type": "enabled", "budget_tokens": 3000}
    assert thinking(thinking_budget=2048) == {"type": "enabled", "budget_tokens": 2048}
    assert thinking(thinking=False, thinking_budget=2048) == {"type": "disabled"}
    with pytest.raises(UnsupportedFeatureError, match="chat_template_kwargs"):
        anthropic_llm.generate("Hi", chat_template_kwargs={"enable_thinking": False})


def test_anthropic_history_sends_only_signed_thinking(anthropic_llm):
    signed = Message("assistant", ANSWER, reasoning=REASONING, metadata={"thinking_signature": "sig-1"})
    unsigned = Message("assistant", ANSWER, reasoning=REASONING)
    several = Message("assistant", ANSWER, reasoning="AB", metadata={
        "thinking_signature": "s2", "thinking_blocks": [{"thinking": "A", "signature": "s1"},
                                                        {"thinking": "B", "signature": "s2"}]})
    user = Message("user", "Hi")
    assert _request(anthropic_llm, messages=[user, signed, Message("user", "Again")])["messages"][1]["content"] == [
        {"type": "thinking", "thinking": REASONING, "signature": "sig-1"}, {"type": "text", "text": ANSWER}]
    assert _request(anthropic_llm, messages=[user, unsigned, Message("user", "Again")])["messages"][1]["content"] == [
        {"type": "text", "text": ANSWER}]  # the API refuses unsigned thinking: the reasoning is left out
    assert [b.get("signature") for b in _request(anthropic_llm, messages=[user, several, Message("user", "x")])[
        "messages"][1]["content"]] == ["s1", "s2", None]
    # an unsigned reply goes back (its reasoning left out); a signed one with its signature
    r = anthropic_llm.generate("Hi", thinking=True)
    history = [user, Message("assistant", r.content, reasoning=r.reasoning, metadata=dict(r.metadata)),
               Message("user", "Again")]
    assert anthropic_llm.generate(messages=history, thinking=True).content == ANSWER


def test_anthropic_reads_thinking_blocks_and_signatures():
    """A reply of Anthropic's shape (its signature kept), streamed and whole."""
    from anthropic.types import Message as SDKMessage
    from anthropic.types import RawContentBlockDeltaEvent, RawContentBlockStartEvent, RawContentBlockStopEvent

    from abstractllm.providers.anthropic.convert import response_from
    from abstractllm.providers.anthropic.provider import _StreamState

    message = SDKMessage.model_validate({
        "id": "m", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 9},
        "content": [{"type": "thinking", "thinking": REASONING, "signature": "sig"},
                    {"type": "text", "text": ANSWER}]})
    r = response_from(message, 1.0)
    assert (r.reasoning, r.content, r.metadata["thinking_signature"]) == (REASONING, ANSWER, "sig")
    assert "thinking_blocks" not in r.metadata
    state = _StreamState("claude")
    events = [RawContentBlockStartEvent(type="content_block_start", index=0,
                                        content_block={"type": "thinking", "thinking": "", "signature": ""}),
              RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                        delta={"type": "thinking_delta", "thinking": "A B"}),
              RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                        delta={"type": "thinking_delta", "thinking": " C"}),
              RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                        delta={"type": "signature_delta", "signature": "sig"}),
              RawContentBlockStopEvent(type="content_block_stop", index=0),
              RawContentBlockStartEvent(type="content_block_start", index=1, content_block={"type": "text", "text": ""}),
              RawContentBlockDeltaEvent(type="content_block_delta", index=1,
                                        delta={"type": "text_delta", "text": ANSWER})]
    chunks = [c for c in (state.feed(e) for e in events) if c is not None] + [state.final(False)]
    assert _joined(chunks) == (REASONING, ANSWER) and chunks[-1].metadata["thinking_signature"] == "sig"


@pytest.mark.parametrize("message", [
    "claude-3-5-haiku-20241022 does not support thinking.",
    "Extended thinking is not supported by this server: omit 'thinking' or send {\"type\": \"disabled\"}.",
    "thinking=True: the model 'm' has no reasoning format (its chat template and tokenizer have no thinking markup).",
])
def test_anthropic_refused_thinking_is_unsupported_feature(message):
    import anthropic
    import anthropic._base_client as base

    from abstractllm.providers.anthropic.convert import convert_error

    http = getattr(base, "httpx2", None) or getattr(base, "httpx")
    request = http.Request("POST", "http://x/v1/messages")
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    exc = anthropic.Anthropic(api_key="x", base_url="http://x")._make_status_error_from_response(
        http.Response(400, json=body, request=request))
    err = convert_error(exc, "anthropic")
    assert type(err) is UnsupportedFeatureError and err.feature == "thinking" and err.original_exception is exc


def test_an_anthropic_session_sends_its_signed_thinking_back(anthropic_llm):
    """A Session keeps the reply's thinking signature, so the next turn sends the thinking block back (Anthropic
    refuses unsigned thinking); our server accepts it and answers."""
    from abstractllm import Session

    session = Session(provider=anthropic_llm)
    first = session.generate("Hi", thinking=True)
    stored = session.messages[-1]
    assert first.reasoning and stored.reasoning == first.reasoning
    assert stored.metadata["thinking_signature"] == first.metadata["thinking_signature"]
    from abstractllm.providers.anthropic.convert import _thinking_blocks

    assert _thinking_blocks(stored)[0]["signature"] == first.metadata["thinking_signature"]
    second = session.generate("And then?", thinking=True)
    assert second.reasoning and second.content
