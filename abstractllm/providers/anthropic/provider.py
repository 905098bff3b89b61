"""``AnthropicProvider``: the Messages API through the official ``anthropic`` SDK, sync and native async.

``create_llm("anthropic", model="claude-sonnet-4-5")`` talks to api.anthropic.com (``api_key`` or
``ANTHROPIC_API_KEY``); ``base_url=`` points it at any server speaking the Messages API, abstractllm's own
``abstractllm serve`` included: the server's root, without ``/v1`` (the SDK's convention; it adds
``/v1/messages``). The request flow mirrors the openai provider's: ``BaseProvider`` validates and
normalizes on the caller's thread; this provider encodes the conversation (``convert.create_kwargs``:
images through the media pipeline as base64 sources, http(s) URLs as URL sources; tool calls and results
as blocks), calls the SDK on the caller's thread (``generate``) or on the event loop (``generate_async``,
with ``AsyncAnthropic``: no thread per call), and converts replies, stream events and errors
(``convert.convert_error``, the one boundary).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from ...enums import ModelCapability, ModelParameter
from ...params import REMOTE, provider_keys
from ...exceptions import AbstractLLMError
from ...types import GenerationRequest, Response
from ..remote import RemoteProvider
from .convert import (convert_error, create_kwargs, finish_reason, keep_thinking, parse_arguments, response_from,
                      tool_call, usage_from)

__all__ = ["AnthropicProvider"]

P = ModelParameter
C = ModelCapability
#: what the Messages protocol gives every model
_PROTOCOL_CAPS = frozenset({C.TEXT, C.STREAMING, C.ASYNC, C.SYSTEM_PROMPT, C.CHAT_HISTORY, C.STOP_SEQUENCES})
#: assumed when the server publishes nothing about the model (Anthropic's models take images and tools)
_ASSUMED_CAPS = frozenset({C.VISION, C.MULTI_IMAGE, C.FUNCTION_CALLING, C.TOOL_USE})
#: capabilities a server may publish that this provider can carry over the protocol
_CARRIED_CAPS = frozenset({C.VISION, C.MULTI_IMAGE, C.FUNCTION_CALLING, C.TOOL_USE, C.JSON_MODE})


class _StreamState:
    """Accumulates one streamed reply: turns the SDK's events into content and tool-call chunks, then the
    last chunk."""

    def __init__(self, model: str) -> None:
        self.t0 = time.perf_counter()
        self.first_at: float | None = None
        self.model = model
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.usage: dict[str, int] = {}
        self.tools: dict[int, tuple[Any, list[str]]] = {}  # block index -> (tool_use block, partial JSON)
        self.thoughts: dict[int, dict[str, str]] = {}  # block index -> {"thinking", "signature"}
        self.last_raw: Any = None

    def _usage(self, usage: Any) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = int(value)

    def _chunk(self, **fields: Any) -> Response:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        return Response(model=self.model, raw_response=self.last_raw, **fields)

    def feed(self, event: Any) -> Response | None:
        self.last_raw = event
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = getattr(event.message, "model", None) or self.model
            self._usage(getattr(event.message, "usage", None))
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = (block, [])
            elif block.type == "text" and getattr(block, "text", ""):
                return self._chunk(content=block.text)
            elif block.type == "thinking":
                text = getattr(block, "thinking", None) or ""
                self.thoughts[event.index] = {"thinking": text, "signature": getattr(block, "signature", None) or ""}
                if text:
                    return self._chunk(content="", reasoning=text)
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                return self._chunk(content=delta.text)
            if delta.type == "thinking_delta" and delta.thinking:
                self.thoughts.setdefault(event.index, {"thinking": "", "signature": ""})["thinking"] += delta.thinking
                return self._chunk(content="", reasoning=delta.thinking)
            if delta.type == "signature_delta":
                entry = self.thoughts.setdefault(event.index, {"thinking": "", "signature": ""})
                entry["signature"] += getattr(delta, "signature", None) or ""
            if delta.type == "input_json_delta" and event.index in self.tools:
                self.tools[event.index][1].append(delta.partial_json or "")
        elif kind == "content_block_stop" and event.index in self.tools:
            block, parts = self.tools.pop(event.index)
            return self._chunk(content="", tool_calls=[tool_call(block, parse_arguments("".join(parts)))])
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            self.stop_sequence = getattr(event.delta, "stop_sequence", None) or self.stop_sequence
            self._usage(getattr(event, "usage", None))
        return None

    def final(self, cancelled: bool) -> Response:
        end = time.perf_counter()
        usage = usage_from(self.usage) if self.usage else None
        decode_s = end - self.first_at if self.first_at is not None else None
        tps = (usage.completion_tokens / decode_s) if usage is not None and decode_s else None
        last = Response(
            content="", model=self.model, finish_reason="cancelled" if cancelled else finish_reason(self.stop_reason),
            usage=usage, ttft_s=(self.first_at - self.t0) if self.first_at is not None else None,
            total_s=end - self.t0, tokens_per_second=tps, raw_response=self.last_raw)
        if self.stop_sequence and not cancelled:
            last.metadata["stop_sequence"] = self.stop_sequence
        keep_thinking(last, [self.thoughts[i] for i in sorted(self.thoughts)])
        return last


class AnthropicProvider(RemoteProvider):
    """Anthropic's Messages API (or a compatible server) through the ``anthropic`` SDK.

    Config: ``model`` (required), ``api_key`` (else ``$ANTHROPIC_API_KEY``; not needed with a custom
    ``base_url``), ``base_url`` (the server's root without ``/v1``; else ``$ANTHROPIC_BASE_URL``, else
    api.anthropic.com), ``timeout`` (seconds), ``max_retries``, ``proxy``, ``user`` (sent as
    ``metadata.user_id``), the generation parameters (``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
    ``stop``, ``tools``, ``tool_choice``, ``response_format``), and the image bounds (``max_image_pixels``,
    ``max_image_bytes``). Local-model keys (``quantize``, ``dtype``, ``priority``, ...) are refused, AbstractLLM 1.x
    ones (``device``, ``organization``, ...) accepted with one warning; sampling
    parameters the API has no field for (``frequency_penalty``, ``logit_bias``, ``min_p``, ``logprobs``,
    ``chat_template_kwargs``, ...) raise ``UnsupportedFeatureError`` when set, and ``seed`` is not declared
    (``SEED``).

    Reasoning: ``thinking=True`` or a level sends ``thinking: {"type": "enabled", "budget_tokens": N}``
    (N: ``thinking_budget``, else ``convert.THINKING_LEVEL_BUDGETS`` for a level, else
    ``convert.DEFAULT_THINKING_BUDGET``), ``thinking=False`` ``{"type": "disabled"}``. ``thinking`` blocks
    fill ``Response.reasoning`` (streamed: ``thinking_delta``), their signature is kept in
    ``Response.metadata["thinking_signature"]``; an assistant message of the history is sent with its
    reasoning only when its ``metadata`` has that signature (the API refuses unsigned thinking), else the
    reasoning is left out. ``usage`` has no reasoning count (``reasoning_tokens`` stays 0).
    """

    name: ClassVar[str] = "anthropic"
    #: derived from abstractllm.params: the remote keys but those the Messages API has no field for
    #: (organization, image_detail: 1.x keys, accepted with a warning; priority: refused)
    accepted_config, ignored_config = provider_keys(REMOTE, without=(P.ORGANIZATION, P.IMAGE_DETAIL, P.PRIORITY))
    sdk_module = sdk_extra = "anthropic"
    client_class, async_client_class = "Anthropic", "AsyncAnthropic"
    api_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"
    base_url_env: ClassVar[str] = "ANTHROPIC_BASE_URL"
    convert_error = staticmethod(convert_error)
    protocol_caps, assumed_caps = _PROTOCOL_CAPS, _ASSUMED_CAPS
    sdk_base_url = "https://api.anthropic.com"

    # ------------------------------------------------------------------ capabilities
    def _published_capabilities(self) -> tuple[set[ModelCapability] | None, int | None]:
        """``GET /v1/models/{id}``: abstractllm's server publishes a ``capabilities`` list and
        ``context_length``; Anthropic's ``capabilities.image_input`` / ``structured_outputs`` and
        ``max_input_tokens``. A server that publishes nothing is assumed to take images and tools, as
        Anthropic's models do."""
        info = self.client.get(f"/v1/models/{self.config['model']}", cast_to=object,
                               options={"timeout": self._probe_timeout()})
        if not isinstance(info, dict):
            return None, None
        published, caps = info.get("capabilities"), None
        if isinstance(published, list):
            caps = {c for c in _CARRIED_CAPS if str(c) in published}
        elif isinstance(published, dict):
            caps = {C.FUNCTION_CALLING, C.TOOL_USE}
            if (published.get("image_input") or {}).get("supported"):
                caps |= {C.VISION, C.MULTI_IMAGE}
            if (published.get("structured_outputs") or {}).get("supported"):
                caps.add(C.JSON_MODE)
        context = next((info[k] for k in ("context_length", "max_input_tokens") if isinstance(info.get(k), int)), None)
        return caps, context

    # ------------------------------------------------------------------ requests
    def _create_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        return create_kwargs(request, self.config["model"])

    def _stream_state(self) -> "_StreamState":
        return _StreamState(self.config["model"])

    def _call(self, client: Any, kw: dict[str, Any], stream: bool) -> Any:
        return client.messages.create(stream=True, **kw) if stream else client.messages.create(**kw)

    def _reply(self, raw: Any, t0: float) -> Response:
        return response_from(raw, time.perf_counter() - t0)

    def _stream_instead(self, exc: Exception) -> bool:
        return isinstance(exc, ValueError) and _needs_streaming(exc)

    def count_tokens(self, prompt: str | None = None, system_prompt: str | None = None, files: Any = None,
                     tools: Any = None, *, messages: Any = None, **params: Any) -> int:
        """The prompt's length in the model's tokens, as the server counts it
        (``POST /v1/messages/count_tokens``); nothing is generated."""
        try:
            request = self._prepare(prompt, system_prompt, files, messages, params, tools)
            kw = self._create_kwargs(request)
            body = {k: kw[k] for k in ("model", "messages", "system", "tools", "tool_choice") if k in kw}
            return int(self.client.messages.count_tokens(**body).input_tokens)
        except AbstractLLMError as exc:
            self._tagged(exc)
            raise
        except Exception as exc:
            raise convert_error(exc, self.name) from exc


def _needs_streaming(exc: ValueError) -> bool:
    """The SDK refuses a non-streamed request whose ``max_tokens`` could take more than 10 minutes (without an
    explicit ``timeout``): such a request is streamed and aggregated instead."""
    return "streaming is required" in str(exc).lower()
