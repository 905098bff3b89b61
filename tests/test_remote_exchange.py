"""The remote providers' one primitive (``RemoteProvider._chunks``, an ``_Exchange``), against the project's own
server on loopback with the official SDKs: a whole reply is one non-streamed request, sync and async; where
the SDK refuses a request unstreamed (Anthropic's, for a ``max_tokens`` that could take over 10 minutes) the
same exchange streams it instead, and the caller still gets one whole reply."""

from __future__ import annotations

import asyncio

import pytest

from abstractllm import create_llm
from abstractllm.server import ServerConfig, start_server

PROMPT = "Write a short poem about the sea."


@pytest.fixture(scope="module")
def server(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def expected(tiny_model):
    """The local reply cut by a stop string (so a huge max_tokens still ends at once), and that string."""
    with create_llm("mlx", model=str(tiny_model), temperature=0.0) as local:
        full = local.generate(PROMPT, max_tokens=16).content
        stop = full[len(full) // 2: len(full) // 2 + 2]
        return local.generate(PROMPT, max_tokens=16, stop=[stop]), stop


def test_whole_replies_are_one_unstreamed_request(server, expected):
    reply, stop = expected
    with create_llm("openai", model="local", base_url=f"{server.url}/v1", temperature=0.0) as llm:
        whole = llm.generate(PROMPT, max_tokens=16, stop=[stop])
        awhole = asyncio.run(llm.generate_async(PROMPT, max_tokens=16, stop=[stop]))
        chunks = list(llm.generate(PROMPT, max_tokens=16, stop=[stop], stream=True))
    for r in (whole, awhole):
        assert r.content == reply.content and r.finish_reason == "stop"
        assert type(r.raw_response).__name__ == "ChatCompletion" and r.ttft_s is None
    assert "".join(c.content for c in chunks) == reply.content
    assert type(chunks[-1].raw_response).__name__ == "ChatCompletionChunk" and chunks[-1].ttft_s is not None


def test_a_request_the_sdk_refuses_unstreamed_is_streamed(server, expected):
    reply, stop = expected
    big = 30_000  # Anthropic's SDK: "Streaming is required" above ~21,333 tokens without a timeout
    with create_llm("anthropic", model="local", base_url=server.url, temperature=0.0) as llm:
        small = llm.generate(PROMPT, max_tokens=16, stop=[stop])
        whole = llm.generate(PROMPT, max_tokens=big, stop=[stop])
        awhole = asyncio.run(llm.generate_async(PROMPT, max_tokens=big, stop=[stop]))
        stats = llm.get_stats()
    assert type(small.raw_response).__name__ == "Message"  # unstreamed when the SDK takes it
    for r in (whole, awhole):
        assert r.content == reply.content and r.finish_reason == "stop"
        assert "Event" in type(r.raw_response).__name__ and r.ttft_s is not None  # it was streamed
    assert stats["requests_failed"] == 0 and stats["requests_served"] == 3
