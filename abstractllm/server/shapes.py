"""Response shapes of the OpenAI-compatible endpoints: chat completions (messages with tool calls, reasoning,
log-probabilities, ``n`` choices) and their stream chunks, and the legacy text completions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..types import Response, ToolCall

__all__ = ["new_id", "usage_dict", "chat_response", "chat_chunk", "tool_call_deltas", "chat_logprobs",
           "completion_response", "completion_chunk", "arguments_text"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finish_reason(reason: str | None) -> str | None:
    """OpenAI has no "cancelled": a reply stopped early ends with "stop"."""
    return "stop" if reason == "cancelled" else reason


def usage_dict(*responses: Response) -> dict[str, Any]:
    """The usage of one or more choices of one prompt (the prompt counted once)."""
    used = [r.usage for r in responses if r.usage is not None]
    if not used:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    prompt = used[0].prompt_tokens
    completion = sum(u.completion_tokens for u in used)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": used[0].cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": sum(u.reasoning_tokens for u in used)}}


def _token_entry(text: str | None, logprob: float | None) -> dict[str, Any]:
    text = text or ""
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """``Response.logprobs`` in the chat API's shape."""
    if entries is None:
        return None
    return {"content": [{**_token_entry(e.get("text"), e.get("logprob")),
                         "top_logprobs": [_token_entry(t.get("text"), t.get("logprob"))
                                          for t in e.get("top_logprobs") or []]} for e in entries]}


def arguments_text(call: ToolCall, partial: dict[str, str] | None = None) -> str:
    """A call's arguments as a JSON string; for a call cut by ``max_tokens``, the partial text generated."""
    if partial and call.id in partial:
        return partial[call.id]
    return json.dumps(call.arguments)


def _tool_calls(calls: list[ToolCall], partial: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments_text(c, partial)}}
            for c in calls]


def _message(resp: Response, legacy: bool = False) -> dict[str, Any]:
    """The reply's message; a reasoning model's thinking as ``reasoning_content`` (vLLM's, DeepSeek's name) and
    ``reasoning`` (OpenRouter's), the same text, both left out when the model did not think. A request made with
    the legacy ``functions`` gets its (first) call as ``function_call``."""
    message: dict[str, Any] = {"role": "assistant", "content": resp.content}
    if resp.reasoning:
        message["reasoning_content"] = message["reasoning"] = resp.reasoning
    if resp.tool_calls:
        calls = _tool_calls(resp.tool_calls, (resp.metadata or {}).get("partial_arguments"))
        if legacy:
            message["function_call"] = calls[0]["function"]
        else:
            message["tool_calls"] = calls
        message["content"] = resp.content or None
    return message


def _chat_finish(resp: Response, legacy: bool) -> str | None:
    reason = finish_reason(resp.finish_reason)
    return "function_call" if legacy and reason == "tool_calls" else reason


def chat_response(rid: str, model: str, responses: list[Response], legacy: bool = False) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": _message(r, legacy), "logprobs": chat_logprobs(r.logprobs),
                     "finish_reason": _chat_finish(r, legacy)} for i, r in enumerate(responses)],
        "usage": usage_dict(*responses),
    }


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, Any] | None, finish: str | None = None,
               usage: dict[str, Any] | None = None, index: int = 0,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": index, "delta": delta, "logprobs": chat_logprobs(logprobs),
                                         "finish_reason": finish_reason(finish)}]
    out: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def tool_call_deltas(calls: list[ToolCall], first_index: int, partial: dict[str, str] | None = None,
                     legacy: bool = False) -> list[dict[str, Any]]:
    """Deltas streaming tool calls the way OpenAI streams them: the id and name first, then the
    arguments (one delta each here: a call reaches the server whole); ``legacy``: as ``function_call`` deltas
    (the first call only)."""
    out: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        idx = first_index + i
        if legacy:
            if idx == 0:
                out.append({"function_call": {"name": call.name, "arguments": ""}})
                out.append({"function_call": {"arguments": arguments_text(call, partial)}})
            continue
        out.append({"tool_calls": [{"index": idx, "id": call.id, "type": "function",
                                    "function": {"name": call.name, "arguments": ""}}]})
        out.append({"tool_calls": [{"index": idx, "function": {"arguments": arguments_text(call, partial)}}]})
    return out


def _completion_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {"tokens": [e.get("text") or "" for e in entries], "token_logprobs": [e.get("logprob") for e in entries],
            "top_logprobs": [{t.get("text") or "": t.get("logprob") for t in e.get("top_logprobs") or []}
                             for e in entries], "text_offset": []}


def completion_response(rid: str, model: str, responses: list[Response]) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "text": r.content, "logprobs": _completion_logprobs(r.logprobs),
                     "finish_reason": finish_reason(r.finish_reason)} for i, r in enumerate(responses)],
        "usage": usage_dict(*responses),
    }


def completion_chunk(rid: str, model: str, created: int, text: str | None, finish: str | None = None,
                     usage: dict[str, Any] | None = None, index: int = 0,
                     logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    choices = [] if text is None else [{"index": index, "text": text, "logprobs": _completion_logprobs(logprobs),
                                        "finish_reason": finish_reason(finish)}]
    out: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created, "model": model,
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out
