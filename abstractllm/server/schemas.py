"""Request parsing and response shapes for the OpenAI-compatible endpoints.

Requests are plain JSON objects checked here field by field, so that every mistake is a 400 in the
OpenAI error shape naming the ``param`` (never FastAPI's 422). Unknown fields are refused, not ignored;
OpenAI fields this server cannot honour are accepted only at their neutral value (``n: 1``,
``logprobs: false``, ...). Sampling values are validated by the provider (``abstractllm.params``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..types import Response
from .errors import APIError

__all__ = [
    "ParsedRequest", "parse_json", "parse_chat", "parse_completion", "parse_vlm_generate",
    "chat_response", "chat_chunk", "usage_dict", "completion_response", "completion_chunk", "new_id",
]

#: sampling fields passed to the provider as they are (validated there)
_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "repetition_context_size", "seed", "stop",
             "frequency_penalty", "presence_penalty", "logit_bias")
#: OpenAI fields accepted only with a neutral value: field -> predicate on the value
_NEUTRAL = {
    "n": lambda v: v == 1,
    "logprobs": lambda v: v is False or v is None,
    "top_logprobs": lambda v: v is None or v == 0,
    "tools": lambda v: v is None or v == [],
    "tool_choice": lambda v: v in (None, "none", "auto"),
    "parallel_tool_calls": lambda v: True,
    "response_format": lambda v: v is None or v == {"type": "text"},
    "echo": lambda v: v is False,
    "best_of": lambda v: v == 1,
    "suffix": lambda v: v is None or v == "",
}
_IGNORED = ("user", "metadata", "store", "service_tier")


@dataclass
class ParsedRequest:
    """What an endpoint hands to the provider."""

    messages: list[Any]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    model: str | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def _bad(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")


def _common(data: dict[str, Any], allowed: set[str], out: ParsedRequest) -> None:
    for key in data:
        if key not in allowed and key not in _NEUTRAL and key not in _IGNORED:
            raise _bad(f"Unrecognized request argument supplied: {key}", key)
    for key, ok in _NEUTRAL.items():
        if key in data and data[key] is not None and not ok(data[key]):
            raise APIError(400, f"'{key}' = {data[key]!r} is not supported by this server.", param=key,
                           code="unsupported_value")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string.", "model")
    out.model = model
    for key in _SAMPLING:
        if data.get(key) is not None:
            out.params[key] = data[key]
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    out.stream = stream
    opts = data.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict) or not set(opts) <= {"include_usage", "include_obfuscation"}:
            raise _bad("'stream_options' must be an object like {\"include_usage\": true}.", "stream_options")
        if not stream:
            raise _bad("'stream_options' is only allowed with 'stream': true.", "stream_options")
        inc = opts.get("include_usage", False)
        if not isinstance(inc, bool):
            raise _bad("'stream_options.include_usage' must be true or false.", "stream_options")
        out.include_usage = inc


def _max_tokens(data: dict[str, Any], out: ParsedRequest, *names: str) -> None:
    given = [(n, data[n]) for n in names if data.get(n) is not None]
    if len({json.dumps(v) for _, v in given}) > 1:
        raise _bad(f"Give one of {' or '.join(names)}, not different values for both.", names[0])
    if given:
        out.params["max_tokens"] = given[0][1]


def _messages(raw: Any, param: str = "messages") -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise _bad(f"'{param}' must be a non-empty list of messages.", param)
    out = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise _bad(f"{param}[{i}] must be an object with 'role' and 'content'.", param)
        role = msg.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise APIError(400, f"{param}[{i}] has role {role!r}; this server takes system, developer, user "
                           "and assistant messages.", param=param, code="unsupported_value")
        if msg.get("tool_calls") or msg.get("function_call"):
            raise APIError(400, f"{param}[{i}]: tool calls are not supported.", param=param,
                           code="unsupported_value")
        out.append({"role": role, "content": msg.get("content")})
    return out


def parse_chat(data: dict[str, Any]) -> ParsedRequest:
    """``POST /v1/chat/completions``."""
    out = ParsedRequest(messages=[])
    _common(data, {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options",
                   *_SAMPLING}, out)
    out.messages = _messages(data.get("messages"))
    _max_tokens(data, out, "max_completion_tokens", "max_tokens")
    return out


def parse_completion(data: dict[str, Any]) -> ParsedRequest:
    """``POST /v1/completions``: the prompt is sent as one user message through the chat template."""
    out = ParsedRequest(messages=[])
    _common(data, {"model", "prompt", "max_tokens", "stream", "stream_options", *_SAMPLING}, out)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("'prompt' must be a string (batches of prompts are not supported).", "prompt")
    out.messages = [{"role": "user", "content": prompt}]
    out.params.setdefault("max_tokens", 16)  # OpenAI's default for completions
    _max_tokens(data, out, "max_tokens")
    return out


def parse_vlm_generate(data: dict[str, Any]) -> ParsedRequest:
    """``POST /api/v1/generate``: ``{messages, max_new_tokens, temperature, top_p}``."""
    out = ParsedRequest(messages=[])
    allowed = {"messages", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop", "model"}
    for key in data:
        if key not in allowed:
            raise _bad(f"Unrecognized request argument supplied: {key}", key)
    out.messages = _messages(data.get("messages"))
    for key in ("temperature", "top_p", "top_k", "seed", "stop"):
        if data.get(key) is not None:
            out.params[key] = data[key]
    if data.get("max_new_tokens") is not None:
        out.params["max_tokens"] = data["max_new_tokens"]
    return out


# ---------------------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _finish(reason: str | None) -> str | None:
    return "stop" if reason == "cancelled" else reason


def usage_dict(resp: Response) -> dict[str, Any]:
    u = resp.usage
    if u is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 0}}
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def chat_response(rid: str, model: str, resp: Response) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": resp.content},
                     "logprobs": None, "finish_reason": _finish(resp.finish_reason)}],
        "usage": usage_dict(resp),
    }


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, Any] | None,
               finish_reason: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": _finish(finish_reason)}]
    out: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def completion_response(rid: str, model: str, resp: Response) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": resp.content, "logprobs": None,
                     "finish_reason": _finish(resp.finish_reason)}],
        "usage": usage_dict(resp),
    }


def completion_chunk(rid: str, model: str, created: int, text: str | None,
                     finish_reason: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [] if text is None else [{"index": 0, "text": text, "logprobs": None,
                                        "finish_reason": _finish(finish_reason)}]
    out: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created, "model": model,
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out
