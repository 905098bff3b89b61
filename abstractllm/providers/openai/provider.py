"""``OpenAIProvider``: chat completions through the official ``openai`` SDK, sync and native async.

``create_llm("openai", model="gpt-4o-mini")`` talks to api.openai.com (``api_key`` or ``OPENAI_API_KEY``);
``base_url=`` points it at any OpenAI-compatible server (abstractllm's own ``abstractllm serve``, vLLM,
llama.cpp, ...). ``"ollama"`` and ``"lmstudio"`` are the same provider with their local default URLs and
no key needed. The request flow: ``BaseProvider`` validates and normalizes on the caller's thread; this
provider encodes the messages (images through the media pipeline, as data URIs; http(s) URLs as they
are), calls the SDK on the caller's thread (``generate``) or the event loop (``generate_async``, with
``AsyncOpenAI``: no thread per call), and converts responses, stream chunks and errors
(``convert.convert_error``, the one boundary).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from ...enums import ModelCapability, ModelParameter
from ...params import REMOTE, provider_keys
from ...types import GenerationRequest, Response
from ..remote import RemoteProvider
from .convert import (ToolCallDeltas, convert_error, logprobs_from, reasoning_from, request_kwargs, tool_calls_from,
                      usage_from)

__all__ = ["OpenAIProvider", "OllamaProvider", "LMStudioProvider"]

P = ModelParameter
C = ModelCapability
#: what the chat-completions protocol gives every model
_PROTOCOL_CAPS = frozenset({C.TEXT, C.STREAMING, C.ASYNC, C.SYSTEM_PROMPT, C.CHAT_HISTORY, C.STOP_SEQUENCES, C.SEED})
#: assumed when the server publishes no capabilities of its model (OpenAI's own models take images and
#: tools, and answer in JSON)
_ASSUMED_CAPS = frozenset({C.VISION, C.MULTI_IMAGE, C.FUNCTION_CALLING, C.TOOL_USE, C.JSON_MODE})
#: capabilities a server may publish that this provider can carry over the protocol
_CARRIED_CAPS = frozenset({C.VISION, C.MULTI_IMAGE, C.FUNCTION_CALLING, C.TOOL_USE, C.JSON_MODE})


class _StreamState:
    """Accumulates one streamed reply: turns SDK chunks into content chunks, then the last chunk."""

    def __init__(self, model: str) -> None:
        self.t0 = time.perf_counter()
        self.first_at: float | None = None
        self.model = model
        self.finish: str | None = None
        self.usage: Any = None
        self.last_raw: Any = None
        self.calls = ToolCallDeltas()

    def feed(self, raw: Any) -> Response | None:
        """A chunk for the SDK chunk: its new text and reasoning (``None`` when it carries neither).
        Tool-call deltas are gathered: each call reaches the caller whole, in the last chunk."""
        self.last_raw = raw
        self.model = getattr(raw, "model", None) or self.model
        if getattr(raw, "usage", None) is not None:
            self.usage = raw.usage
        text, logprobs, thought = "", None, None
        for choice in getattr(raw, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            text += getattr(delta, "content", None) or ""
            piece = reasoning_from(delta)
            if piece:
                thought = (thought or "") + piece
            self.calls.feed(getattr(delta, "tool_calls", None))
            entries = logprobs_from(getattr(choice, "logprobs", None))
            if entries:
                logprobs = (logprobs or []) + entries
            if getattr(choice, "finish_reason", None):
                self.finish = choice.finish_reason
        if not text and not logprobs and thought is None:
            return None
        if self.first_at is None:
            self.first_at = time.perf_counter()
        return Response(content=text, reasoning=thought, model=self.model, raw_response=raw, logprobs=logprobs)

    def final(self, cancelled: bool) -> Response:
        end = time.perf_counter()
        usage = usage_from(self.usage)
        decode_s = end - self.first_at if self.first_at is not None else None
        tps = (usage.completion_tokens / decode_s) if usage is not None and decode_s else None
        calls, unparsed = self.calls.finish()
        out = Response(
            content="", model=self.model, finish_reason="cancelled" if cancelled else (self.finish or "stop"),
            usage=usage, ttft_s=(self.first_at - self.t0) if self.first_at is not None else None,
            total_s=end - self.t0, tokens_per_second=tps, raw_response=self.last_raw, tool_calls=calls)
        if unparsed:
            out.metadata["unparsed_tool_calls"] = unparsed
        return out


def _response_from(completion: Any, t0: float) -> Response:
    choice = completion.choices[0] if completion.choices else None
    message = getattr(choice, "message", None)
    usage = usage_from(getattr(completion, "usage", None))
    total = time.perf_counter() - t0
    calls, unparsed = tool_calls_from(getattr(message, "tool_calls", None))
    out = Response(
        content=getattr(message, "content", None) or "", reasoning=reasoning_from(message),
        model=getattr(completion, "model", None),
        finish_reason=getattr(choice, "finish_reason", None) or "stop", usage=usage, total_s=total,
        tokens_per_second=(usage.completion_tokens / total) if usage is not None and total > 0 else None,
        raw_response=completion, tool_calls=calls, logprobs=logprobs_from(getattr(choice, "logprobs", None)))
    if unparsed:
        out.metadata["unparsed_tool_calls"] = unparsed
    return out


class OpenAIProvider(RemoteProvider):
    """Any OpenAI-compatible chat-completions server through the ``openai`` SDK.

    Config: ``model`` (required), ``api_key`` (else ``$OPENAI_API_KEY``; not needed with a custom
    ``base_url``), ``base_url`` (else ``$OPENAI_BASE_URL``, else api.openai.com), ``organization``,
    ``timeout`` (seconds), ``max_retries``, ``proxy``, ``user``, the generation parameters, and the image
    bounds (``max_image_pixels``, ``max_image_bytes``, ``image_detail``). Local-model keys (``quantize``,
    ``dtype``, ...) are refused (``InvalidParameterError``), except AbstractLLM 1.x ones (``device``,
    ``load_in_4bit``, ...): accepted with one warning.

    Reasoning: a reply's ``reasoning_content`` (or ``reasoning``) field fills ``Response.reasoning`` (in a
    stream, each chunk's), ``completion_tokens_details.reasoning_tokens`` fills
    ``usage.reasoning_tokens``. ``thinking="low" | "medium" | "high"`` is sent as ``reasoning_effort``;
    ``thinking=True / False``, ``thinking_budget`` and ``chat_template_kwargs`` as body fields of those
    names (abstractllm's server and vLLM read them; OpenAI's API refuses them: ``UnsupportedFeatureError``).
    An assistant message's ``reasoning`` in the history is sent as ``reasoning_content``, except to
    api.openai.com (which refuses unknown message fields).
    """

    name: ClassVar[str] = "openai"
    #: derived from abstractllm.params: the remote keys; local-only 1.x keys accepted with a warning, others refused
    accepted_config, ignored_config = provider_keys(REMOTE)
    sdk_module = sdk_extra = "openai"
    client_class, async_client_class = "OpenAI", "AsyncOpenAI"
    api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    client_config = RemoteProvider.client_config | {"organization"}
    convert_error = staticmethod(convert_error)
    protocol_caps, assumed_caps = _PROTOCOL_CAPS, _ASSUMED_CAPS
    sdk_base_url = "https://api.openai.com/v1"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def _client_kwargs(self) -> dict[str, Any]:
        kw = super()._client_kwargs()
        if self.config.get("organization"):
            kw["organization"] = self.config["organization"]
        return kw

    # ------------------------------------------------------------------ capabilities
    def _published_capabilities(self) -> tuple[set[ModelCapability] | None, int | None]:
        """``GET /v1/models/{id}``: abstractllm's server lists ``capabilities`` and ``context_length``. A
        server that publishes nothing is assumed to take images and tools and to answer in JSON (as
        OpenAI's models do)."""
        info = self.client.models.retrieve(self.config["model"], timeout=self._probe_timeout())
        extra = dict(getattr(info, "model_extra", None) or {})
        published, caps = extra.get("capabilities"), None
        if isinstance(published, list):
            caps = set()
            for value in published:
                try:
                    cap = ModelCapability(value)
                except ValueError:
                    continue
                if cap in _CARRIED_CAPS:
                    caps.add(cap)
        context = extra["context_length"] if isinstance(extra.get("context_length"), int) else None
        return caps, context

    # ------------------------------------------------------------------ requests
    def _create_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kw = request_kwargs(request, max_tokens_field=self.max_tokens_field,
                            reasoning_history=not self._is_openai_api())
        kw["model"] = self.config["model"]
        return kw

    def _is_openai_api(self) -> bool:
        """Whether the requests go to OpenAI's own API (no base URL, or api.openai.com)."""
        from urllib.parse import urlsplit

        url = self.base_url
        return url is None or (urlsplit(url).hostname or "").lower() == "api.openai.com"

    def _stream_state(self) -> "_StreamState":
        return _StreamState(self.config["model"])

    def _call(self, client: Any, kw: dict[str, Any], stream: bool) -> Any:
        if stream:
            return client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
        return client.chat.completions.create(**kw)

    def _reply(self, raw: Any, t0: float) -> Response:
        return _response_from(raw, t0)


class OllamaProvider(OpenAIProvider):
    """Ollama's OpenAI-compatible API: ``base_url`` defaults to ``$OLLAMA_HOST``'s ``/v1`` or
    http://localhost:11434/v1; no API key needed."""

    name = "ollama"
    api_key_env = "OLLAMA_API_KEY"
    base_url_env = "OLLAMA_BASE_URL"
    placeholder_key = "ollama"
    max_tokens_field = "max_tokens"

    @property
    def base_url(self) -> str | None:
        host = os.environ.get("OLLAMA_HOST")
        if host and not self.config.get("base_url") and not os.environ.get(self.base_url_env):
            return _ollama_host_url(host)
        return self.config.get("base_url") or os.environ.get(self.base_url_env) or "http://localhost:11434/v1"


def _ollama_host_url(host: str) -> str:
    """``$OLLAMA_HOST`` as Ollama reads it (``host``, ``host:port``, ``:port``, a URL; the port defaults to
    11434, the host to localhost) as the base URL of its OpenAI-compatible API."""
    from urllib.parse import urlsplit

    host = host.strip()
    parts = urlsplit(host if "://" in host else f"http://{host}")
    name = parts.hostname or "localhost"
    if name == "0.0.0.0":  # Ollama listens on every interface; a client connects to this machine
        name = "localhost"
    if ":" in name:  # an IPv6 address
        name = f"[{name}]"
    path = parts.path.rstrip("/")
    return f"{parts.scheme or 'http'}://{name}:{parts.port or 11434}{path}/v1"


class LMStudioProvider(OpenAIProvider):
    """LM Studio's local server: ``base_url`` defaults to ``$LMSTUDIO_BASE_URL`` or
    http://localhost:1234/v1; no API key needed."""

    name = "lmstudio"
    api_key_env = "LMSTUDIO_API_KEY"
    base_url_env = "LMSTUDIO_BASE_URL"
    default_base_url = "http://localhost:1234/v1"
    placeholder_key = "lm-studio"
    max_tokens_field = "max_tokens"

