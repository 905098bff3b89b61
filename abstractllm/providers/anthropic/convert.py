"""Between abstractllm and Anthropic's Messages wire format: requests out (the system prompt apart, messages
as content blocks: text, images as base64 or URL sources, tool calls as ``tool_use`` and tool results as
``tool_result`` blocks; sampling parameters, tools, ``tool_choice``, structured output), replies and stream
events in, and the SDK's exceptions into abstractllm's tree (the one boundary where they are converted)."""

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
from ...types import GenerationRequest, Message, Response, ToolCall, Usage

__all__ = ["create_kwargs", "thinking_config", "finish_reason", "usage_from", "response_from", "convert_error",
           "UNSUPPORTED", "DEFAULT_THINKING_BUDGET", "THINKING_LEVEL_BUDGETS"]

#: generation parameters the Messages API has no field for, with their neutral values: any other value is
#: refused (``UnsupportedFeatureError``) rather than silently dropped
UNSUPPORTED = {"frequency_penalty": None, "presence_penalty": None, "logit_bias": None, "min_p": 0.0,
               "repetition_penalty": 1.0, "logprobs": False, "top_logprobs": 0, "stop_token_ids": None,
               "min_tokens": 0, "chat_template_kwargs": None}

#: ``budget_tokens`` sent for ``thinking=True`` without a ``thinking_budget``: the smallest budget
#: Anthropic's API takes (it also wants ``max_tokens`` above the budget)
DEFAULT_THINKING_BUDGET = 1024
#: ``budget_tokens`` sent for a level (``thinking="low" | "medium" | "high"``) without a ``thinking_budget``
THINKING_LEVEL_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}


def _image_source(item: Any, params: dict[str, Any]) -> dict[str, Any]:
    """An http(s) URL as a ``url`` source (the server fetches it); anything else through the media
    pipeline (read, bomb-checked, bounded to ``max_image_pixels``, decoded) as a ``base64`` source."""
    from ...media.encode import image_data_uri
    from ...media.images import load_image

    value = item
    if isinstance(item, dict):  # an OpenAI part {"type": "image_url", "image_url": {"url": ...}}
        value = item.get(item.get("type")) or item.get("url") or item.get("image_url") or item.get("image")
        value = value.get("url") if isinstance(value, dict) else value
    if isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
        return {"type": "url", "url": value}
    # the limits were resolved once, in the request's params (their defaults from abstractllm.params); no URL is
    # fetched here, so image_fetch_timeout (a local-only key) has nothing to bound
    image = load_image(item, max_pixels=int(params["max_image_pixels"]), max_bytes=int(params["max_image_bytes"]))
    head, _, data = image_data_uri(image).partition(",")
    return {"type": "base64", "media_type": head[len("data:"):].split(";")[0], "data": data}


def _thinking_blocks(m: Message) -> list[dict[str, Any]]:
    """An assistant message's reasoning as ``thinking`` blocks, which the API takes back only with the
    signature of the reply they came from (``Response.metadata["thinking_signature"]``, or
    ``["thinking_blocks"]`` for a reply of several, kept in the message's ``metadata``). Reasoning without a
    signature (another provider's, or edited) is not sent."""
    if m.role != "assistant":
        return []
    kept = m.metadata.get("thinking_blocks")
    if isinstance(kept, list) and kept and all(isinstance(b, dict) and b.get("signature") for b in kept):
        return [{"type": "thinking", "thinking": str(b.get("thinking") or ""), "signature": str(b["signature"])}
                for b in kept]
    signature = m.metadata.get("thinking_signature")
    if m.reasoning and isinstance(signature, str) and signature:
        return [{"type": "thinking", "thinking": m.reasoning, "signature": signature}]
    return []


def _blocks(m: Message, params: dict[str, Any]) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}]
    blocks: list[dict[str, Any]] = _thinking_blocks(m)  # first: the API wants them before the answer
    blocks += [{"type": "text", "text": m.text}] if m.text else []
    blocks += [{"type": "image", "source": _image_source(item, params)} for item in m.images]
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
    return blocks


def anthropic_messages(request: GenerationRequest) -> tuple[str | None, list[dict[str, Any]]]:
    """The system prompt and the turns (images encoded: blocking I/O). Tool results become ``tool_result``
    blocks of a user turn; consecutive turns of one role are merged, as the API expects."""
    system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text) or None
    turns: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m, request.params)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def create_kwargs(request: GenerationRequest, model: str) -> dict[str, Any]:
    """``messages.create`` keyword arguments. ``temperature``, ``top_p`` and ``top_k`` travel in the body
    (``extra_body``): newer SDKs dropped them from ``create``'s signature, while the API (and abstractllm's
    server) still reads them."""
    params = request.params
    for name, neutral in UNSUPPORTED.items():
        if params.get(name) not in (None, neutral, {}):
            raise UnsupportedFeatureError(f"The anthropic provider cannot send {name!r}: the Messages API has no "
                                          "such parameter.", feature=name)
    system, turns = anthropic_messages(request)
    kw: dict[str, Any] = {"model": model, "max_tokens": params["max_tokens"], "messages": turns}
    if system:
        kw["system"] = system
    body: dict[str, Any] = {"temperature": params["temperature"]}
    if params.get("top_p", 1.0) < 1.0:
        body["top_p"] = params["top_p"]
    if params.get("top_k"):
        body["top_k"] = params["top_k"]
    if params.get("stop"):
        kw["stop_sequences"] = list(params["stop"])
    if params.get("user"):
        kw["metadata"] = {"user_id": params["user"]}
    if request.tools:
        kw["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                       for t in request.tools]
        kw["tool_choice"] = _tool_choice(params.get("tool_choice") or "auto")
    fmt = params.get("response_format")
    if fmt is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema or {"type": "object"}}}
    thinking = thinking_config(params)
    if thinking is not None:
        body["thinking"] = thinking
    kw["extra_body"] = body
    return kw


def thinking_config(params: dict[str, Any]) -> dict[str, Any] | None:
    """The Messages API's ``thinking`` for the parameters (``None``: not sent, the model's default):
    ``{"type": "enabled", "budget_tokens": N}`` for ``thinking=True`` or a level, or for a
    ``thinking_budget`` given alone (N: ``thinking_budget``, else ``THINKING_LEVEL_BUDGETS[level]``, else
    ``DEFAULT_THINKING_BUDGET``); ``{"type": "disabled"}`` for ``thinking=False``. It travels in the body
    (SDKs older than ``thinking`` send it too). Anthropic's API takes budgets from 1024 below ``max_tokens``,
    and with thinking on only ``temperature=1`` (the parameters are sent as given: a refusal is its
    answer)."""
    thinking, budget = params.get("thinking"), params.get("thinking_budget")
    if thinking is False:
        return {"type": "disabled"}
    if thinking is None and budget is None:
        return None
    if budget is None:
        budget = THINKING_LEVEL_BUDGETS.get(thinking, DEFAULT_THINKING_BUDGET) if isinstance(thinking, str) \
            else DEFAULT_THINKING_BUDGET
    return {"type": "enabled", "budget_tokens": int(budget)}


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic's ``stop_reason`` as abstractllm's ``finish_reason``."""
    return {"max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter",
            "model_context_window_exceeded": "length"}.get(stop_reason or "", "stop")


def usage_from(usage: Any) -> Usage | None:
    """The SDK's usage (or a dict of its fields) as ``Usage``: the prompt is ``input_tokens`` plus the
    cache's reads and writes."""
    if usage is None:
        return None

    def get(name: str) -> int:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(value or 0)

    fresh, read, written = get("input_tokens"), get("cache_read_input_tokens"), get("cache_creation_input_tokens")
    completion = get("output_tokens")
    prompt = fresh + read + written
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 cached_tokens=read)


def tool_call(block: Any, arguments: Any = None) -> ToolCall:
    args = getattr(block, "input", None) if arguments is None else arguments
    return ToolCall(id=str(block.id), name=str(block.name), arguments=dict(args or {}))


def keep_thinking(response: Response, blocks: list[dict[str, str]]) -> None:
    """Keep the signatures of a reply's ``thinking`` blocks in its metadata, for the history:
    ``thinking_signature`` (the last block's), and ``thinking_blocks`` when there were several."""
    signed = [b for b in blocks if b.get("signature")]
    if not signed:
        return
    response.metadata["thinking_signature"] = signed[-1]["signature"]
    if len(blocks) > 1:
        response.metadata["thinking_blocks"] = [dict(b) for b in blocks]


def response_from(message: Any, total_s: float) -> Response:
    """A whole ``Message`` as a ``Response`` (text blocks joined; ``thinking`` blocks joined as
    ``reasoning``, their signatures kept in ``metadata``; ``tool_use`` blocks as ``tool_calls``)."""
    texts, calls, thoughts = [], [], []
    for block in getattr(message, "content", None) or []:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append({"thinking": getattr(block, "thinking", None) or "",
                             "signature": getattr(block, "signature", None) or ""})
        elif block.type == "tool_use":
            calls.append(tool_call(block))
    usage = usage_from(getattr(message, "usage", None))
    response = Response(
        content="".join(texts), model=getattr(message, "model", None),
        reasoning="".join(b["thinking"] for b in thoughts) or None,
        finish_reason=finish_reason(getattr(message, "stop_reason", None)), usage=usage, total_s=total_s,
        tokens_per_second=(usage.completion_tokens / total_s) if usage is not None and total_s > 0 else None,
        tool_calls=calls or None, raw_response=message)
    if getattr(message, "stop_sequence", None):
        response.metadata["stop_sequence"] = message.stop_sequence
    keep_thinking(response, thoughts)
    return response


def parse_arguments(text: str) -> dict[str, Any]:
    """A streamed ``tool_use`` block's accumulated ``partial_json``."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_fields(body: Any) -> tuple[str, str]:
    """(message, type) from an Anthropic-shaped error body."""
    err = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(err, dict):
        return str(err), ""
    return str(err.get("message") or ""), str(err.get("type") or "")


def convert_error(exc: BaseException, provider: str) -> AbstractLLMError:
    """The SDK's (or the HTTP client's) exception as the matching abstractllm error, the original kept."""
    import anthropic

    kw: dict[str, Any] = {"provider": provider, "original_exception": exc}
    if isinstance(exc, AbstractLLMError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return RequestTimeoutError(f"The {provider} server did not answer in time: {exc}. Raise timeout= or retry.",
                                   **kw)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return ProviderConnectionError(
            f"Cannot reach the {provider} server: {type(cause).__name__}: {cause}. Check base_url (the server's "
            "root, without /v1) and that the server is running.", **kw)
    if isinstance(exc, anthropic.APIStatusError):
        status, body = exc.status_code, exc.body
        message, kind = _error_fields(body)
        message = message or str(exc)
        text = f"{provider} answered {status}: {message}"
        api_kw = {**kw, "status_code": status, "body": body}
        lowered = f"{message} {kind}".lower()
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            return AuthenticationError(f"{text} (check api_key or ANTHROPIC_API_KEY).", **api_kw)
        if status == 429 or kind == "rate_limit_error":
            return QuotaExceededError(f"{text} (rate limit or quota: retry later).", **api_kw)
        if status == 400 and "thinking" in lowered and any(
                s in lowered for s in ("not support", "unsupported", "no reasoning format", "cannot be switched")):
            # a model that cannot think (Anthropic: "... does not support thinking"; abstractllm's server: the
            # model has no reasoning format, or its thinking cannot be switched off)
            return UnsupportedFeatureError(text, feature="thinking", **kw,
                                           details={"status_code": status, "body": body})
        if "prompt is too long" in lowered or "context window" in lowered or "context length" in lowered:
            return ContextWindowExceededError(text, **kw, details={"status_code": status})
        if status == 404 and "/v1/v1/" in message:
            return ProviderAPIError(f"{text} (base_url is the server's root, without /v1: the SDK adds it).",
                                    **api_kw)
        if status == 404 and "model" in lowered:
            return ModelNotFoundError(text, **kw, details={"status_code": status})
        if status == 507:  # abstractllm's server: the request would exceed its memory budget
            return MemoryLimitError(text, **kw, details={"status_code": status})
        if "content_filter" in lowered or "content policy" in lowered:
            return ContentFilterError(text, **api_kw)
        return ProviderAPIError(text, **api_kw)
    return ProviderAPIError(f"{provider}: {type(exc).__name__}: {exc}", **kw)
