"""Between abstractllm and the OpenAI chat-completions wire format: requests out (messages with images
as data URIs or URLs, sampling parameters), responses and stream chunks in, and the SDK's exceptions
into abstractllm's tree (the one boundary where they are converted)."""

from __future__ import annotations

import json
from typing import Any

from ...exceptions import (
    AbstractLLMError,
    AuthenticationError,
    ContentFilterError,
    ContextWindowExceededError,
    MemoryLimitError,
    ModelNotFoundError,
    ProviderAPIError,
    ProviderConnectionError,
    QuotaExceededError,
    RequestTimeoutError,
    UnsupportedFeatureError,
)
from ...types import GenerationRequest, Message, ToolCall, Usage

__all__ = ["chat_messages", "sampling_kwargs", "reasoning_kwargs", "request_kwargs", "usage_from", "convert_error",
           "tool_calls_from", "logprobs_from", "reasoning_from", "ToolCallDeltas"]

#: sampling parameters that are not part of OpenAI's API: sent in the body only when set (vLLM, llama.cpp,
#: LM Studio and abstractllm's own server read them)
_EXTRA_SAMPLING = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "min_tokens": 0, "stop_token_ids": [],
                   "priority": 1}  # RequestPriority.NORMAL


def _image_url(item: Any, params: dict[str, Any]) -> str:
    """An http(s) URL as it is (the server fetches it); anything else through the media pipeline: read,
    bomb-checked, bounded to ``max_image_pixels``, decoded, and sent as a data URI."""
    from ...media.encode import image_data_uri
    from ...media.images import load_image

    value = item
    if isinstance(item, dict):  # an OpenAI part {"type": "image_url", "image_url": {"url": ...}}
        value = item.get(item.get("type")) or item.get("url") or item.get("image_url") or item.get("image")
        value = value.get("url") if isinstance(value, dict) else value
    if isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
        return value
    # the limits were resolved once, in the request's params (their defaults from abstractllm.params); no URL is
    # fetched here, so image_fetch_timeout (a local-only key) has nothing to bound
    image = load_image(item, max_pixels=int(params["max_image_pixels"]), max_bytes=int(params["max_image_bytes"]))
    return image_data_uri(image)


def _message(m: Message, params: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.images:
        detail = params.get("image_detail")
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
        for item in m.images:
            image_url: dict[str, Any] = {"url": _image_url(item, params)}
            if detail:
                image_url["detail"] = detail
            parts.append({"type": "image_url", "image_url": image_url})
        out["content"] = parts
    else:
        out["content"] = m.text
    if m.name and m.role != "tool":
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in m.tool_calls]
        if not m.text:
            out["content"] = None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if reasoning and m.role == "assistant" and m.reasoning:
        out["reasoning_content"] = m.reasoning  # as our server, vLLM and DeepSeek name it
    return out


def chat_messages(request: GenerationRequest, *, reasoning: bool = True) -> list[dict[str, Any]]:
    """The request's conversation as OpenAI chat messages (images encoded: blocking I/O). An assistant
    message's ``reasoning`` goes as ``reasoning_content`` (unless ``reasoning`` is False: OpenAI's own
    API refuses fields it does not know in a message)."""
    return [_message(m, request.params, reasoning) for m in request.messages]


def sampling_kwargs(params: dict[str, Any], *, max_tokens_field: str) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for the validated parameters."""
    kw: dict[str, Any] = {max_tokens_field: params["max_tokens"], "temperature": params["temperature"]}
    if params.get("top_p", 1.0) < 1.0:
        kw["top_p"] = params["top_p"]
    if params.get("stop"):
        kw["stop"] = list(params["stop"])
    for name in ("seed", "frequency_penalty", "presence_penalty", "user"):
        if params.get(name) is not None:
            kw[name] = params[name]
    if params.get("logit_bias"):
        kw["logit_bias"] = {str(k): v for k, v in params["logit_bias"].items()}
    if params.get("logprobs"):
        kw["logprobs"] = True
        if params.get("top_logprobs"):
            kw["top_logprobs"] = params["top_logprobs"]
    extra = {k: int(params[k]) if k == "priority" else params[k]
             for k, neutral in _EXTRA_SAMPLING.items() if params.get(k) not in (None, neutral)}
    extra.update(reasoning_kwargs(params))
    if extra:
        kw["extra_body"] = extra
    return kw


def reasoning_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The reasoning parameters as request-body fields (they travel in ``extra_body``, so that SDKs older
    than ``reasoning_effort`` send them too):

    * ``thinking="low" | "medium" | "high"``: ``reasoning_effort`` (OpenAI's reasoning models, Ollama, LM
      Studio, vLLM, abstractllm's server);
    * ``thinking=True / False``: ``thinking``; ``thinking_budget``: ``thinking_budget``;
      ``chat_template_kwargs``: ``chat_template_kwargs``. abstractllm's own server reads all three, vLLM
      reads ``chat_template_kwargs`` (``{"enable_thinking": False}`` switches Qwen3's thinking off there).
      They are not part of OpenAI's API: api.openai.com refuses a request that carries them (400,
      ``UnsupportedFeatureError``); other servers may ignore them.
    """
    out: dict[str, Any] = {}
    thinking = params.get("thinking")
    if isinstance(thinking, bool):
        out["thinking"] = thinking
    elif thinking is not None:
        out["reasoning_effort"] = thinking
    if params.get("thinking_budget") is not None:
        out["thinking_budget"] = int(params["thinking_budget"])
    if params.get("chat_template_kwargs"):
        out["chat_template_kwargs"] = dict(params["chat_template_kwargs"])
    return out


def request_kwargs(request: GenerationRequest, *, max_tokens_field: str, reasoning_history: bool = True
                   ) -> dict[str, Any]:
    """``chat.completions.create`` keyword arguments for a request: sampling, reasoning, tools,
    ``tool_choice``, ``response_format`` and the messages (images encoded: blocking I/O; assistant
    messages' reasoning as ``reasoning_content`` unless ``reasoning_history`` is False)."""
    kw = sampling_kwargs(request.params, max_tokens_field=max_tokens_field)
    if request.tools:
        kw["tools"] = [t.to_openai() for t in request.tools]
        choice = request.params.get("tool_choice") or "auto"
        kw["tool_choice"] = choice if choice in ("auto", "none", "required") else {
            "type": "function", "function": {"name": choice}}
    fmt = request.params.get("response_format")
    if fmt is not None:
        kw["response_format"] = _response_format(fmt)
    kw["messages"] = chat_messages(request, reasoning=reasoning_history)
    return kw


def _response_format(fmt: Any) -> dict[str, Any]:
    """OpenAI's form of an ``OutputFormat``; a pydantic model's schema made strict the way the openai SDK
    makes it (every property required, objects closed), which OpenAI's strict mode demands."""
    out = fmt.to_openai()
    if fmt.model is not None:
        try:
            from openai.lib._pydantic import to_strict_json_schema
        except ImportError:  # pragma: no cover - an SDK without the helper: our closed schema
            return out
        out["json_schema"]["schema"] = to_strict_json_schema(fmt.model)
    return out


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    data = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("the arguments are not a JSON object")
    return data


def tool_calls_from(raw_calls: Any) -> tuple[list[ToolCall] | None, list[str]]:
    """The SDK's ``message.tool_calls`` as ``ToolCall``s, and the calls whose arguments did not parse
    (their raw text, for ``metadata["unparsed_tool_calls"]``)."""
    calls, unparsed = [], []
    for c in raw_calls or []:
        fn = getattr(c, "function", None)
        name, arguments = getattr(fn, "name", None), getattr(fn, "arguments", None)
        try:
            calls.append(ToolCall(id=getattr(c, "id", None) or "", name=str(name), arguments=_arguments(arguments)))
        except ValueError:
            unparsed.append(f"{name}({arguments})")
    return calls or None, unparsed


class ToolCallDeltas:
    """Streamed tool calls, put together: OpenAI sends each call's id and name first, then its arguments in
    pieces, keyed by ``index``; ``finish()`` returns the whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def feed(self, deltas: Any) -> None:
        for d in deltas or []:
            entry = self._calls.setdefault(int(getattr(d, "index", 0) or 0), {"id": "", "name": "", "arguments": ""})
            if getattr(d, "id", None):
                entry["id"] = d.id
            fn = getattr(d, "function", None)
            if fn is not None:
                entry["name"] += getattr(fn, "name", None) or ""
                entry["arguments"] += getattr(fn, "arguments", None) or ""

    def finish(self) -> tuple[list[ToolCall] | None, list[str]]:
        calls, unparsed = [], []
        for _, e in sorted(self._calls.items()):
            try:
                calls.append(ToolCall(id=e["id"], name=e["name"], arguments=_arguments(e["arguments"])))
            except ValueError:
                unparsed.append(f"{e['name']}({e['arguments']})")
        self._calls.clear()
        return calls or None, unparsed


def logprobs_from(raw: Any) -> list[dict[str, Any]] | None:
    """A choice's ``logprobs`` (chat form) as ``Response.logprobs`` entries (token ids are not sent by
    OpenAI-compatible servers: ``token`` is ``None``)."""
    content = getattr(raw, "content", None) if raw is not None else None
    if content is None:
        return None
    return [{"token": None, "text": e.token, "logprob": e.logprob,
             "top_logprobs": [{"token": None, "text": t.token, "logprob": t.logprob}
                              for t in (getattr(e, "top_logprobs", None) or [])]} for e in content]


#: where OpenAI-compatible servers put a reply's reasoning, in the message or the stream's delta, in the
#: order read: ``reasoning_content`` (abstractllm's server, vLLM, DeepSeek, LM Studio), ``reasoning``
#: (OpenRouter, Ollama; abstractllm's server sends both, with the same text)
REASONING_FIELDS = ("reasoning_content", "reasoning")


def reasoning_from(obj: Any) -> str | None:
    """The reasoning text of a message or a stream delta (``None``: there is none, or it is empty, as the
    local provider answers an empty reasoning block). The SDK keeps fields it does not declare in
    ``model_extra`` (and answers them as attributes)."""
    if obj is None:
        return None
    extra = getattr(obj, "model_extra", None) or {}
    for name in REASONING_FIELDS:
        value = extra.get(name) if name in extra else getattr(obj, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def usage_from(usage: Any) -> Usage | None:
    """The SDK's usage object (or None) as ``Usage`` (``reasoning_tokens`` from
    ``completion_tokens_details``)."""
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion)
    reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None) or 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, cached_tokens=int(cached),
                 reasoning_tokens=int(reasoning))


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(message, code, type) from an OpenAI-shaped error body."""
    err = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(err, dict):
        return str(err), "", ""
    return str(err.get("message") or ""), str(err.get("code") or ""), str(err.get("type") or "")


def convert_error(exc: BaseException, provider: str) -> AbstractLLMError:
    """The SDK's (or httpx's) exception as the matching abstractllm error, the original kept."""
    import openai

    kw: dict[str, Any] = {"provider": provider, "original_exception": exc}
    if isinstance(exc, AbstractLLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return RequestTimeoutError(f"The {provider} server did not answer in time: {exc}. Raise timeout= or retry.",
                                   **kw)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return ProviderConnectionError(
            f"Cannot reach the {provider} server: {type(cause).__name__}: {cause}. Check base_url and that the "
            "server is running.", **kw)
    if isinstance(exc, openai.APIStatusError):
        status, body = exc.status_code, exc.body
        message, code, kind = _error_fields(body if isinstance(body, dict) else {"error": body})
        message = message or str(exc)
        text = f"{provider} answered {status}: {message}"
        api_kw = {**kw, "status_code": status, "body": body}
        lowered = f"{message} {code}".lower()
        if status in (401, 403):
            return AuthenticationError(f"{text} (check api_key or the provider's API key environment variable).",
                                       **api_kw)
        if status == 429:
            return QuotaExceededError(f"{text} (rate limit or quota: retry later).", **api_kw)
        if code == "context_length_exceeded" or "context length" in lowered or "context window" in lowered:
            return ContextWindowExceededError(text, **kw, details={"status_code": status})
        if "content_filter" in lowered or "content_policy" in lowered:
            return ContentFilterError(text, **api_kw)
        if status == 404 and ("model" in lowered and ("not found" in lowered or "does not exist" in lowered)):
            return ModelNotFoundError(text, **kw, details={"status_code": status})
        if status == 507:  # abstractllm's server: the request would exceed its memory budget
            return MemoryLimitError(text, **kw, details={"status_code": status})
        if status == 400 and (code in ("unsupported_feature", "unsupported_parameter", "unsupported_value")
                              or "unrecognized request argument" in lowered):
            # abstractllm's server: a feature the model lacks (thinking, images...); OpenAI: a parameter
            # the model or the API does not take (reasoning_effort on a non-reasoning model, thinking=...)
            param = body.get("param") if isinstance(body, dict) else None
            return UnsupportedFeatureError(text, feature=param or code or None, **kw,
                                           details={"status_code": status, "body": body})
        return ProviderAPIError(text, **api_kw)
    if isinstance(exc, openai.OpenAIError):
        return ProviderAPIError(f"{provider}: {type(exc).__name__}: {exc}", **kw)
    return ProviderAPIError(f"{provider}: {type(exc).__name__}: {exc}", **kw)
