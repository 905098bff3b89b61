"""Between abstractllm and the OpenAI chat-completions wire format: requests out (messages with images
as data URIs or URLs, sampling parameters), responses and stream chunks in, and the SDK's exceptions
into abstractllm's tree (the one boundary where they are converted)."""

from __future__ import annotations

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
)
from ...types import GenerationRequest, Message, Usage

__all__ = ["chat_messages", "sampling_kwargs", "usage_from", "convert_error"]

#: sampling parameters that are not part of OpenAI's API: sent in the body only when set (vLLM, llama.cpp,
#: LM Studio and abstractllm's own server read them)
_EXTRA_SAMPLING = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


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
    image = load_image(item, max_pixels=int(params.get("max_image_pixels") or 4_000_000),
                       max_bytes=int(params.get("max_image_bytes") or 50_000_000),
                       timeout=float(params.get("image_fetch_timeout") or 10.0))
    return image_data_uri(image)


def _message(m: Message, params: dict[str, Any]) -> dict[str, Any]:
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
    if m.name:
        out["name"] = m.name
    return out


def chat_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """The request's conversation as OpenAI chat messages (images encoded: blocking I/O)."""
    return [_message(m, request.params) for m in request.messages]


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
    extra = {k: params[k] for k, neutral in _EXTRA_SAMPLING.items() if params.get(k) not in (None, neutral)}
    if extra:
        kw["extra_body"] = extra
    return kw


def usage_from(usage: Any) -> Usage | None:
    """The SDK's usage object (or None) as ``Usage``."""
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, cached_tokens=int(cached))


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
        return ProviderAPIError(text, **api_kw)
    if isinstance(exc, openai.OpenAIError):
        return ProviderAPIError(f"{provider}: {type(exc).__name__}: {exc}", **kw)
    return ProviderAPIError(f"{provider}: {type(exc).__name__}: {exc}", **kw)
