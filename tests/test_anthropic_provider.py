"""The anthropic provider beyond the contract suite, against the project's own server on loopback (its
``/v1/messages``; real servers, the official SDK): the same replies as the local provider (stop sequences,
tools and their results, images as base64 and URL sources, structured output), SDK objects in
raw_response, token counting, configuration and environment, and every error mapped into the tree (real
failures: a wrong key, a refused connection, a server that never answers, a memory refusal; and the SDK's
status errors for the statuses our server never sends)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from abstractllm import (
    AuthenticationError,
    ContentFilterError,
    ContextWindowExceededError,
    InvalidParameterError,
    MemoryLimitError,
    ModelCapability,
    ModelNotFoundError,
    ProviderAPIError,
    ProviderConnectionError,
    QuotaExceededError,
    RequestTimeoutError,
    UnsupportedFeatureError,
    create_llm,
)
from abstractllm.params import REMOTE_CAPABILITIES_TIMEOUT_S
from abstractllm.server import ServerConfig, start_server
from abstractllm.testing.media import png_bytes

PROMPT = "Write a short poem about the sea."
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "enum": ["Paris", "Rome"]}},
                                                "required": ["city"]}}}


@pytest.fixture(scope="module")
def text_server(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0)) as server:
        yield server


@pytest.fixture(scope="module")
def vision_server(vision_model):
    with start_server(ServerConfig(model=str(vision_model), port=0, allow_private_urls=True)) as server:
        yield server


def test_replies_equal_the_local_provider(text_server, tiny_model):
    with create_llm("anthropic", model="local", base_url=text_server.url, temperature=0.0) as remote, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0) as local:
        full = local.generate(PROMPT, max_tokens=16).content
        stop = full[len(full) // 2: len(full) // 2 + 2]
        for params in ({"max_tokens": 16}, {"max_tokens": 16, "stop": [stop]},
                       {"max_tokens": 8, "system_prompt": "Be terse.", "top_k": 5}):
            expected = local.generate(PROMPT, **params)
            got = remote.generate(PROMPT, **params)
            assert got.content == expected.content and got.finish_reason == expected.finish_reason
            assert got.usage.prompt_tokens == expected.usage.prompt_tokens
        r = remote.generate(PROMPT, max_tokens=16, stop=[stop])
        assert r.finish_reason == "stop" and r.metadata["stop_sequence"] == stop
        assert type(r.raw_response).__name__ == "Message" and r.raw_response.stop_reason == "stop_sequence"
        chunks = list(remote.generate(PROMPT, max_tokens=4, stream=True))
        assert chunks[-1].ttft_s > 0 and chunks[-1].total_s >= chunks[-1].ttft_s
        assert "Event" in type(chunks[0].raw_response).__name__
        info = remote.get_model_info()
        assert info["base_url"] == text_server.url and info["context_length"] == 40960
        assert remote.count_tokens(PROMPT, system_prompt="Be terse.") == \
            local.generate(PROMPT, system_prompt="Be terse.", max_tokens=1).usage.prompt_tokens


def test_tools_and_their_results(text_server, tiny_model):
    with create_llm("anthropic", model="local", base_url=text_server.url, temperature=0.0, max_tokens=64) as remote, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=64) as local:
        caps = remote.get_capabilities()
        assert caps.get(ModelCapability.FUNCTION_CALLING) is True and caps.get(ModelCapability.SEED) is False
        r = remote.generate("Weather in Rome?", tools=[WEATHER], tool_choice="required")
        expected = local.generate("Weather in Rome?", tools=[WEATHER], tool_choice="required")
        assert r.finish_reason == "tool_calls" and [(c.name, c.arguments) for c in r.tool_calls] == \
            [(c.name, c.arguments) for c in expected.tool_calls]
        streamed = list(remote.generate("Weather in Rome?", tools=[WEATHER], tool_choice="get_weather", stream=True))
        calls = [c for chunk in streamed for c in chunk.tool_calls or []]
        assert [c.name for c in calls] == ["get_weather"] and streamed[-1].finish_reason == "tool_calls"
        call = r.tool_calls[0]
        made = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        history = [{"role": "user", "content": "Weather in Rome?"},
                   {"role": "assistant", "content": None, "tool_calls": [made]},
                   {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"}]
        got = remote.generate(messages=history, tools=[WEATHER], max_tokens=8)
        assert got.content == local.generate(messages=history, tools=[WEATHER], max_tokens=8).content


def test_images_go_as_base64_and_urls_as_they_are(vision_server, vision_model, tmp_path):
    from abstractllm.media.encode import image_data_uri
    from abstractllm.media.images import load_image
    from test_openai_provider import _serve_file

    img = tmp_path / "red.png"
    img.write_bytes(png_bytes(40, 32))
    sent = image_data_uri(load_image(str(img)))  # what the provider encodes for a local file (JPEG)
    with create_llm("anthropic", model="local", base_url=vision_server.url, temperature=0.0, max_tokens=6) as remote, \
            create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=6) as local:
        caps = remote.get_capabilities()
        assert caps.get(ModelCapability.VISION) is True and caps.get(ModelCapability.VIDEO) is False
        expected = local.generate("Describe.", files=[sent]).content
        assert remote.generate("Describe.", files=[str(img)]).content == expected
        assert asyncio.run(remote.generate_async("Describe.", files=[img.read_bytes()])).content == expected
        with _serve_file(img.read_bytes()) as url:  # a URL source: the server fetches it
            assert remote.generate("Describe.", files=[url]).content == local.generate("Describe.", files=[url]).content


def test_structured_output(text_server):
    from pydantic import BaseModel

    class Verdict(BaseModel):
        ok: bool

    with create_llm("anthropic", model="local", base_url=text_server.url, temperature=0.0, max_tokens=64) as llm:
        r = llm.generate("Is it ok?", response_format=Verdict)
        assert isinstance(r.parsed, Verdict) and r.finish_reason == "stop"


def test_configuration_and_environment(monkeypatch, text_server):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        create_llm("anthropic", "claude-sonnet-4-5")  # no key and Anthropic's own URL: refused at once
    monkeypatch.setenv("ANTHROPIC_BASE_URL", text_server.url)
    with pytest.raises(InvalidParameterError, match="priority"):  # a key it would ignore is refused
        create_llm("anthropic", "local", priority=2)
    with create_llm("anthropic", "local", max_tokens=2, device="cpu", organization="org") as llm:  # 1.x: warned
        assert llm.base_url == text_server.url and llm.generate("Hi").usage.completion_tokens == 2
        for params in ({"frequency_penalty": 0.5}, {"logit_bias": {"65": 1.0}}, {"min_p": 0.1}, {"logprobs": True},
                       {"seed": 7}):
            with pytest.raises(UnsupportedFeatureError):  # no Messages API field: refused, never dropped
                llm.generate("Hi", **params)
        with pytest.raises(InvalidParameterError, match="only local models use it"):
            llm.generate("Hi", repetition_context_size=5)
    with create_llm("anthropic", "local", base_url=text_server.url + "/v1", max_retries=0) as llm:
        with pytest.raises(ProviderAPIError, match="without /v1"):
            llm.generate("Hi")


def test_missing_sdk_names_the_pip_line():
    code = ("import sys\nsys.modules['anthropic'] = None\nfrom abstractllm import create_llm\n"
            "try:\n    create_llm('anthropic', 'claude', api_key='x')\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "UnsupportedProviderError" in r.stdout and 'pip install "abstractllm[anthropic]"' in r.stdout


# ---------------------------------------------------------------------------------------------- errors
def test_wrong_key_is_authentication_error(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0, api_key="sk-right")) as server:
        with create_llm("anthropic", "local", base_url=server.url, api_key="sk-wrong", max_retries=0) as llm:
            with pytest.raises(AuthenticationError) as info:
                llm.generate("Hi")
            assert info.value.status_code == 401 and info.value.provider == "anthropic"
            assert type(info.value.original_exception).__name__ == "AuthenticationError"
            with pytest.raises(AuthenticationError):
                asyncio.run(llm.generate_async("Hi"))
            assert llm._caps is None  # the refused capabilities question is asked again later
        with create_llm("anthropic", "local", base_url=server.url, api_key="sk-right", max_tokens=2) as llm:
            assert llm.generate("Hi").usage.completion_tokens == 2  # sent as x-api-key
            assert llm.get_capabilities().get(ModelCapability.VISION) is False


def test_memory_refusal_is_memory_limit_error(tiny_model):
    config = ServerConfig(model=str(tiny_model), port=0, llm_config={"memory_limit": "80MB"}, max_tokens_limit=None)
    with start_server(config) as server:
        with create_llm("anthropic", "local", base_url=server.url, max_retries=0) as llm:
            with pytest.raises(MemoryLimitError):
                llm.generate("Hi", max_tokens=1_000_000)
            assert llm.generate("Hi", max_tokens=2).usage.completion_tokens == 2


def test_unreachable_and_silent_servers():
    with create_llm("anthropic", "m", base_url="http://127.0.0.1:9", max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError) as info:
            llm.generate("Hi")
        assert isinstance(info.value, ConnectionError)
        assert llm.get_capabilities().get(ModelCapability.TEXT) is True  # defaults while unreachable
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with create_llm("anthropic", "m", base_url=url, timeout=0.5, max_retries=0) as llm:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                llm.generate("Hi")
            # the capability probe before it waited timeout= too, not its own 5 s (REMOTE_CAPABILITIES_TIMEOUT_S)
            assert time.monotonic() - started < REMOTE_CAPABILITIES_TIMEOUT_S
            with pytest.raises(RequestTimeoutError):
                list(llm.generate("Hi", stream=True))
    finally:
        silent.close()


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize("status, body, expected", [
    (403, _error("permission_error", "no access"), AuthenticationError),
    (429, _error("rate_limit_error", "Number of requests has exceeded your rate limit"), QuotaExceededError),
    (400, _error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
     ContextWindowExceededError),
    (400, _error("invalid_request_error", "Output blocked by content filtering policy (content_filter)"),
     ContentFilterError),
    (404, _error("not_found_error", "model: claude-9"), ModelNotFoundError),
    (529, _error("overloaded_error", "Overloaded"), ProviderAPIError),
])
def test_status_errors_map_into_the_tree(status, body, expected):
    """The SDK's own exception classes, built as its client builds them from an HTTP response."""
    import anthropic
    import anthropic._base_client as base

    from abstractllm.providers.anthropic.convert import convert_error

    http = getattr(base, "httpx2", None) or getattr(base, "httpx")
    request = http.Request("POST", "http://x/v1/messages")
    response = http.Response(status, json=body, request=request)
    client = anthropic.Anthropic(api_key="x", base_url="http://x")
    exc = client._make_status_error_from_response(response)
    err = convert_error(exc, "anthropic")
    assert type(err) is expected and err.provider == "anthropic" and err.original_exception is exc
    if isinstance(err, ProviderAPIError):
        assert err.status_code == status and err.body == body
    else:
        assert err.details["status_code"] == status
