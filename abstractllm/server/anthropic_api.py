"""The Anthropic Messages API: ``POST /v1/messages`` (whole, or streamed as Anthropic's events) and
``POST /v1/messages/count_tokens``. Bodies and shapes are in ``anthropic_schemas``; the limits and the
media policy are every route's (``prepare``); errors use Anthropic's shape (``errors``).

The event stream, as Anthropic sends it::

    message_start          {"message": {... "content": [], "usage": {"input_tokens", "output_tokens": 0}}}
    content_block_start    {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    ping
    content_block_delta    {"index": 0, "delta": {"type": "thinking_delta", "thinking": "..."}}  (repeated)
    content_block_delta    {"index": 0, "delta": {"type": "signature_delta", "signature": "..."}}
    content_block_stop     {"index": 0}
    content_block_start    {"index": 1, "content_block": {"type": "text", "text": ""}}
    content_block_delta    {"index": 1, "delta": {"type": "text_delta", "text": "..."}}       (repeated)
    content_block_stop     {"index": 1}
    content_block_start    {"index": 2, "content_block": {"type": "tool_use", "id", "name", "input": {}}}
    content_block_delta    {"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{...}"}}
    content_block_stop     {"index": 2}
    message_delta          {"delta": {"stop_reason", "stop_sequence"}, "usage": {...}}
    message_stop

The thinking block comes only when the request asked for thinking and the model thought
(``anthropic_schemas``). An error after the stream started is sent as an ``error`` event in Anthropic's error
shape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from ..exceptions import AbstractLLMError
from ..providers.base import aggregate_chunks
from ..types import Response
from .anthropic_schemas import message_body, new_message_id, parse_count_tokens, parse_messages, stop_of, usage_of
from .errors import APIError, anthropic_error_body, api_error_from
from .generation import complete, open_stream, recover_cut_calls, sse_response
from .observe import current_record, note_usage
from .prepare import ready_messages
from .reasoning import sign_thinking
from .schemas import ParsedRequest
from .sse import sse_event
from .state import ServerState, json_body

__all__ = ["router"]

router = APIRouter()
_Body = Depends(json_body)  # the request's JSON object, within --max-body-size


def _sse(name: str, data: dict[str, Any]) -> ServerSentEvent:
    return sse_event(data, name)


@router.post("/v1/messages")
async def messages(request: Request, body: dict[str, Any] = _Body) -> Any:
    state: ServerState = request.app.state.server
    req = parse_messages(body, state.config.strict_fields)
    if req.stream:
        return await _stream(state, req, request)
    (resp,) = await complete(state, req, request)
    return JSONResponse(message_body(new_message_id(), state.model_id, resp, req.reasoning_display))


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request, raw: dict[str, Any] = _Body) -> Any:
    """``{"input_tokens": n}``: the prompt's length in the served model's tokens, through its chat template
    (the tools included), as a generation would see it (``count_tokens`` of the provider)."""
    state: ServerState = request.app.state.server
    body = parse_count_tokens(raw, state.config.strict_fields)
    state.require_loaded()
    counter = getattr(state.llm, "count_tokens", None)
    if counter is None:
        raise APIError(400, f"The {getattr(state.llm, 'name', 'served')} provider cannot count tokens.",
                       code="unsupported_feature")
    messages = await ready_messages(state, body.chat_messages())
    params = dict(body.tool_params())
    try:
        n = await asyncio.to_thread(counter, messages=messages, tools=params.pop("tools", None), **params)
    except AbstractLLMError as exc:
        raise api_error_from(exc) from exc
    return {"input_tokens": int(n)}


class _Blocks:
    """The open content block of a streamed reply and the events that open and close blocks."""

    def __init__(self, display: str = "hidden") -> None:
        self.index = -1
        self.text_open = False
        self.pinged = False
        self.display = display  # of the reasoning: "shown", "omitted" (its text left out) or "hidden" (no block)
        self.thought: str | None = None  # the open thinking block's text

    def start(self, block: dict[str, Any]) -> list[ServerSentEvent]:
        self.index += 1
        out = [_sse("content_block_start", {"type": "content_block_start", "index": self.index,
                                            "content_block": block})]
        if not self.pinged:
            self.pinged = True
            out.append(_sse("ping", {"type": "ping"}))
        return out

    def stop(self) -> list[ServerSentEvent]:
        return [_sse("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def thinking(self, text: str) -> list[ServerSentEvent]:
        if self.display == "hidden":
            return []
        out = self.close_text()
        if self.thought is None:
            out += self.start({"type": "thinking", "thinking": "", "signature": ""})
            self.thought = ""
        self.thought += text
        if self.display == "omitted":
            return out
        return out + [_sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                   "delta": {"type": "thinking_delta", "thinking": text}})]

    def close_thinking(self) -> list[ServerSentEvent]:
        """The open thinking block's signature (of its whole text), then its end."""
        if self.thought is None:
            return []
        signature = sign_thinking(self.thought)
        self.thought = None
        return [_sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                             "delta": {"type": "signature_delta", "signature": signature}})] + self.stop()

    def text(self, text: str) -> list[ServerSentEvent]:
        out = self.close_thinking()
        out += [] if self.text_open else self.start({"type": "text", "text": ""})
        self.text_open = True
        return out + [_sse("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                   "delta": {"type": "text_delta", "text": text}})]

    def close_text(self) -> list[ServerSentEvent]:
        if not self.text_open:
            return []
        self.text_open = False
        return self.stop()

    def tool_use(self, call: Any, partial: dict[str, str] | None = None) -> list[ServerSentEvent]:
        """A ``tool_use`` block: its input as one ``input_json_delta`` (a call cut by ``max_tokens``: the partial
        JSON generated, as Anthropic streams it)."""
        out = self.close_thinking() + self.close_text()
        out += self.start({"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        text = partial[call.id] if partial and call.id in partial else json.dumps(call.arguments, ensure_ascii=False)
        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {
            "type": "input_json_delta", "partial_json": text}}))
        return out + self.stop()


def _start_usage(first: Response | None) -> dict[str, int]:
    """The usage known when the stream starts: the prompt (the provider's first chunk may say it)."""
    meta = first.metadata if first is not None else {}
    if first is not None and first.usage is not None:  # a reply that ended at once: its last chunk
        return {**usage_of(first), "output_tokens": 0}
    prompt, cached = int(meta.get("prompt_tokens") or 0), int(meta.get("cached_tokens") or 0)
    return {"input_tokens": prompt - cached, "output_tokens": 0, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached}


async def _stream(state: ServerState, req: ParsedRequest, request: Request) -> Any:
    opened = await open_stream(state, req, request)
    msg_id, model = new_message_id(), state.model_id

    async def events() -> AsyncIterator[ServerSentEvent]:
        blocks, chunks = _Blocks(req.reasoning_display), []
        try:
            start = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                     "stop_reason": None, "stop_sequence": None, "usage": _start_usage(await opened.first())}
            yield _sse("message_start", {"type": "message_start", "message": start})
            async for chunk in opened.chunks():
                chunks.append(chunk)
                for piece in (blocks.thinking(chunk.reasoning) if chunk.reasoning else []):
                    yield piece
                for piece in (blocks.text(chunk.content) if chunk.content else []):
                    yield piece
                for call in chunk.tool_calls or []:
                    for piece in blocks.tool_use(call):
                        yield piece
            whole = aggregate_chunks(chunks)
            if recover_cut_calls(req.params, whole):  # a call cut by max_tokens: its partial input
                for call in whole.tool_calls or []:
                    for piece in blocks.tool_use(call, whole.metadata.get("partial_arguments")):
                        yield piece
            for piece in blocks.close_thinking():  # the reply ended in its reasoning
                yield piece
            if blocks.index < 0:  # an empty reply still has its (empty) text block
                for piece in blocks.start({"type": "text", "text": ""}) + blocks.stop():
                    yield piece
            for piece in blocks.close_text():
                yield piece
            note_usage(whole)
            reason, sequence = stop_of(whole)
            yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason,
                                                                            "stop_sequence": sequence},
                                         "usage": usage_of(whole)})
            yield _sse("message_stop", {"type": "message_stop"})
        except Exception as exc:  # after the 200 went out: report in-band, the Anthropic way
            state.stats.http_errors += 1
            err = api_error_from(exc)
            record = current_record()
            yield _sse("error", anthropic_error_body(err.status, err.message, record.request_id if record else None))

    return sse_response(state, events(), [opened])
