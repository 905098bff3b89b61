"""The openai / ollama / lmstudio providers beyond the contract suite, against the project's own server on
loopback (real servers, the official SDK): the same replies as the local provider (penalties, images as
data URIs, image URLs passed as they are), SDK objects in raw_response, configuration and environment,
and every error mapped into the tree (real failures: a wrong key, a refused connection, a server that never
answers, a memory refusal; and the SDK's status errors for the statuses our server never sends)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
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
    create_llm,
)
from abstractllm.params import REMOTE_CAPABILITIES_TIMEOUT_S
from abstractllm.server import ServerConfig, start_server
from abstractllm.testing.media import png_bytes

PROMPT = "Write a short poem about the sea."


@pytest.fixture(scope="module")
def text_server(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0)) as server:
        yield server


@pytest.fixture(scope="module")
def vision_server(vision_model):
    with start_server(ServerConfig(model=str(vision_model), port=0, allow_private_urls=True)) as server:
        yield server


def test_replies_equal_the_local_provider_with_penalties(text_server, tiny_model):
    params = dict(max_tokens=16, frequency_penalty=1.2, presence_penalty=0.4, logit_bias={"65": 3.0}, stop=["zz"])
    with create_llm("openai", model="local", base_url=text_server.base_url, temperature=0.0) as remote, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0) as local:
        assert remote.generate(PROMPT, **params).content == local.generate(PROMPT, **params).content
        r = remote.generate(PROMPT, max_tokens=4)
        assert type(r.raw_response).__name__ == "ChatCompletion" and r.raw_response.usage.completion_tokens == 4
        chunks = list(remote.generate(PROMPT, max_tokens=4, stream=True))
        assert all(type(c.raw_response).__name__ == "ChatCompletionChunk" for c in chunks)
        assert r.ttft_s is None and chunks[-1].ttft_s > 0 and chunks[-1].total_s >= chunks[-1].ttft_s
        info = remote.get_model_info()
        assert info["base_url"] == text_server.base_url and info["context_length"] == 40960


def test_images_go_as_data_uris_and_urls_as_they_are(vision_server, vision_model, tmp_path):
    from abstractllm.media.encode import image_data_uri
    from abstractllm.media.images import load_image

    img = tmp_path / "red.png"
    img.write_bytes(png_bytes(40, 32))
    sent = image_data_uri(load_image(str(img)))  # what the provider sends for a local file (JPEG)
    assert sent.startswith("data:image/jpeg;base64,")
    with create_llm("openai", model="local", base_url=vision_server.base_url, temperature=0.0, max_tokens=6) as remote, \
            create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=6) as local:
        caps = remote.get_capabilities()
        assert caps.get(ModelCapability.VISION) is True and caps.get(ModelCapability.VIDEO) is False
        assert remote.generate("Describe.", files=[str(img)]).content == local.generate("Describe.", files=[sent]).content
        assert asyncio.run(remote.generate_async("Describe.", files=[img.read_bytes()])).content == \
            local.generate("Describe.", files=[sent]).content
        with _serve_file(img.read_bytes()) as url:  # the server fetches the URL itself
            assert remote.generate("Describe.", files=[url]).content == local.generate("Describe.", files=[url]).content


class _serve_file:
    """A one-file HTTP server on loopback."""

    def __init__(self, data: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/img.png"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_configuration_and_environment(monkeypatch, text_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        create_llm("openai", "gpt-4o-mini")  # no key and OpenAI's own URL: refused at once
    monkeypatch.setenv("OPENAI_BASE_URL", text_server.base_url)
    with pytest.raises(InvalidParameterError, match="only local models use it"):  # a key it would ignore
        create_llm("openai", "local", quantize=4)
    with create_llm("openai", "local", max_tokens=2, device="cpu", load_in_4bit=True) as llm:  # 1.x keys: warned
        assert llm.base_url == text_server.base_url and llm.generate("Hi").usage.completion_tokens == 2
    root = text_server.base_url[: -len("/v1")]
    monkeypatch.setenv("OLLAMA_HOST", root.replace("http://", ""))
    with create_llm("ollama", "llama3.2", max_tokens=2) as llm:
        assert llm.base_url == text_server.base_url and llm.generate("Hi").usage.completion_tokens == 2
    monkeypatch.setenv("LMSTUDIO_BASE_URL", text_server.base_url)
    with create_llm("lmstudio", "qwen", max_tokens=2) as llm:
        assert llm.generate("Hi").usage.completion_tokens == 2
    monkeypatch.delenv("LMSTUDIO_BASE_URL")
    with create_llm("lmstudio", "qwen") as llm:
        assert llm.base_url == "http://localhost:1234/v1"


def test_missing_sdk_names_the_pip_line(tiny_model):
    code = ("import sys\nsys.modules['openai'] = None\nfrom abstractllm import create_llm\n"
            "try:\n    create_llm('openai', 'gpt-4o-mini', api_key='x')\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "UnsupportedProviderError" in r.stdout and 'pip install "abstractllm[openai]"' in r.stdout


# ---------------------------------------------------------------------------------------------- errors
def test_wrong_key_is_authentication_error(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0, api_key="sk-right")) as server:
        with create_llm("openai", "local", base_url=server.base_url, api_key="sk-wrong", max_retries=0) as llm:
            with pytest.raises(AuthenticationError) as info:
                llm.generate("Hi")
            assert info.value.status_code == 401 and info.value.provider == "openai"
            assert type(info.value.original_exception).__name__ == "AuthenticationError"
            with pytest.raises(AuthenticationError):
                asyncio.run(llm.generate_async("Hi"))
        with create_llm("openai", "local", base_url=server.base_url, api_key="sk-right", max_tokens=2) as llm:
            assert llm.generate("Hi").usage.completion_tokens == 2


def test_memory_refusal_is_memory_limit_error(tiny_model):
    config = ServerConfig(model=str(tiny_model), port=0, llm_config={"memory_limit": "80MB"}, max_tokens_limit=None)
    with start_server(config) as server:
        with create_llm("openai", "local", base_url=server.base_url, max_retries=0) as llm:
            with pytest.raises(MemoryLimitError):
                llm.generate("Hi", max_tokens=1_000_000)
            assert llm.generate("Hi", max_tokens=2).usage.completion_tokens == 2


def test_unreachable_and_silent_servers():
    with create_llm("openai", "m", base_url="http://127.0.0.1:9/v1", max_retries=0) as llm:
        with pytest.raises(ProviderConnectionError) as info:
            llm.generate("Hi")
        assert isinstance(info.value, ConnectionError)
        assert llm.get_capabilities().get(ModelCapability.TEXT) is True  # defaults while unreachable
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with create_llm("openai", "m", base_url=url, timeout=0.5, max_retries=0) as llm:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                llm.generate("Hi")
            # the capability probe before it waited timeout= too, not its own 5 s (REMOTE_CAPABILITIES_TIMEOUT_S)
            assert time.monotonic() - started < REMOTE_CAPABILITIES_TIMEOUT_S
            with pytest.raises(RequestTimeoutError):
                list(llm.generate("Hi", stream=True))
    finally:
        silent.close()


@pytest.mark.parametrize("status, body, expected", [
    (403, {"error": {"message": "no access", "type": "permission_error"}}, AuthenticationError),
    (429, {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}, QuotaExceededError),
    (400, {"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}},
     ContextWindowExceededError),
    (400, {"error": {"message": "flagged", "code": "content_filter"}}, ContentFilterError),
    (404, {"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}}, ModelNotFoundError),
    (500, {"error": {"message": "boom", "type": "server_error"}}, ProviderAPIError),
])
def test_status_errors_map_into_the_tree(status, body, expected):
    """The SDK's own exception classes, built as its client builds them from an HTTP response."""
    import httpx
    import openai

    from abstractllm.providers.openai.convert import convert_error

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(status, json=body, request=request)
    client = openai.OpenAI(api_key="x", base_url="http://x/v1")
    exc = client._make_status_error_from_response(response)
    err = convert_error(exc, "openai")
    assert type(err) is expected and err.provider == "openai" and err.original_exception is exc
    if isinstance(err, ProviderAPIError):
        assert err.status_code == status and err.body in (body, body["error"])
    else:
        assert err.details["status_code"] == status


def test_an_abstractllm_error_is_never_its_own_cause():
    from abstractllm import ImageProcessingError

    with create_llm("openai", "m", base_url="http://127.0.0.1:9/v1", max_retries=0) as llm:
        with pytest.raises(ImageProcessingError) as info:  # raised while encoding, before any request
            llm.generate("x", files=[b"junk"])
    assert info.value.original_exception is not info.value and info.value.__cause__ is not info.value


def test_capabilities_are_asked_again_after_a_refused_key(tiny_model):
    with start_server(ServerConfig(model=str(tiny_model), port=0, api_key="sk-right")) as server:
        with create_llm("openai", "local", base_url=server.base_url, api_key="sk-wrong", max_retries=0) as llm:
            assert llm.get_capabilities().get(ModelCapability.VISION) is True  # assumed: the server said 401
            assert llm._caps is None  # not kept: asked again
            llm.update_config({"api_key": "sk-right"})
            assert llm.get_capabilities().get(ModelCapability.VISION) is False  # the server's own answer


@pytest.mark.parametrize("host, url", [
    ("0.0.0.0", "http://localhost:11434/v1"), (":11434", "http://localhost:11434/v1"),
    ("example.org", "http://example.org:11434/v1"), ("10.0.0.5:8080", "http://10.0.0.5:8080/v1"),
    ("https://ollama.example.org", "https://ollama.example.org:11434/v1"), ("[::1]:9000", "http://[::1]:9000/v1"),
])
def test_ollama_host_is_read_as_ollama_reads_it(host, url):
    from abstractllm.providers.openai.provider import _ollama_host_url

    assert _ollama_host_url(host) == url


# ------------------------------------------------------------------ tools, structured output, logprobs
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture(scope="module")
def pair(text_server, tiny_model):
    """The openai provider through the server, and the MLX provider direct, on the same model (greedy)."""
    with create_llm("openai", model="local", base_url=text_server.base_url, temperature=0.0, max_tokens=80) as remote, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=80) as local:
        yield remote, local


def test_tool_calls_are_the_same_through_the_openai_provider(pair):
    remote, local = pair
    assert remote.get_capabilities()[ModelCapability.FUNCTION_CALLING] is True
    for choice in ("required", "get_weather"):
        r, l = (p.generate(messages=ASK, tools=[WEATHER], tool_choice=choice) for p in (remote, local))
        assert r.finish_reason == l.finish_reason == "tool_calls"
        assert [(c.name, c.arguments) for c in r.tool_calls] == [(c.name, c.arguments) for c in l.tool_calls]
        assert r.tool_calls[0].id.startswith("call_")
    chunks = list(remote.generate(messages=ASK, tools=[WEATHER], tool_choice="required", stream=True))
    calls = [c for ch in chunks for c in (ch.tool_calls or [])]
    assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in l.tool_calls]
    assert chunks[-1].finish_reason == "tool_calls"

    async def run():
        return await remote.generate_async(messages=ASK, tools=[WEATHER], tool_choice="required")

    assert [(c.name, c.arguments) for c in asyncio.run(run()).tool_calls] == [(c.name, c.arguments) for c in l.tool_calls]


def test_a_tool_loop_runs_unchanged_on_either_provider(pair):
    """The app's loop: call, run the tool, send the result back; the same history and reply on both."""
    def loop(llm):
        messages = list(ASK)
        first = llm.generate(messages=messages, tools=[WEATHER], tool_choice="required")
        call = first.tool_calls[0]
        messages.append({"role": "assistant", "content": first.content, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": '{"city": "Oslo"}'}}]})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "cold and clear"})
        return llm.generate(messages=messages, tools=[WEATHER], max_tokens=12)

    remote, local = pair
    r, l = loop(remote), loop(local)
    assert r.content == l.content and r.usage.prompt_tokens == l.usage.prompt_tokens


def test_structured_output_and_logprobs_through_the_openai_provider(pair):
    from typing import Literal

    from pydantic import BaseModel

    class Weather(BaseModel):
        city: Literal["Paris", "Rome", "Oslo"]
        cold: bool

    remote, local = pair
    r, l = (p.generate("Weather?", response_format=Weather) for p in (remote, local))
    assert isinstance(r.parsed, Weather) and r.parsed == l.parsed and r.content == l.content
    r, l = (p.generate("Hi", max_tokens=5, logprobs=True, top_logprobs=3) for p in (remote, local))
    assert len(r.logprobs) == r.usage.completion_tokens == 5
    assert [e["text"] for e in r.logprobs] == [e["text"] for e in l.logprobs]
    assert [e["logprob"] for e in r.logprobs] == pytest.approx([e["logprob"] for e in l.logprobs], abs=1e-4)
    assert all(len(e["top_logprobs"]) == 3 for e in r.logprobs)
    streamed = list(remote.generate("Hi", max_tokens=5, logprobs=True, stream=True))
    assert sum(len(c.logprobs or []) for c in streamed) == 5


def test_server_extensions_go_in_the_body(pair, tiny_model):
    """priority, min_tokens and stop_token_ids reach abstractllm's server (extension fields)."""
    from abstractllm import RequestPriority
    from text_oracle import raw_load

    remote, _ = pair
    eos = sorted(raw_load(tiny_model)[1].eos_token_ids)[0]
    r = remote.generate("Hi", max_tokens=10, logit_bias={str(eos): 100}, min_tokens=4, priority=RequestPriority.HIGH)
    assert r.usage.completion_tokens == 5 and r.finish_reason == "stop"
