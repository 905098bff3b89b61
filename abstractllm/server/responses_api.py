"""The OpenAI Responses API: ``POST /v1/responses`` (whole, or streamed as typed events), and ``GET`` /
``DELETE /v1/responses/{id}`` for the stored ones. Bodies are in ``responses_schemas``; the limits and the
media policy are every route's (``prepare``); replies are kept for ``previous_response_id`` in the
bounded in-memory ``responses_store``.

A reply's ``output`` holds, when the model thought, a ``reasoning`` item first (its text as one
``reasoning_text`` part, ``summary`` empty), a ``message`` item (its text as one ``output_text`` part) and a
``function_call`` item per tool call; ``status`` is ``completed``, or ``incomplete`` (``incomplete_details.reason``
``max_output_tokens``) when ``max_output_tokens`` cut it. The stream's events, each with a
``sequence_number``::

    response.created, response.in_progress                     {"response": {... "status": "in_progress"}}
    response.output_item.added      {"output_index", "item": {"type": "reasoning", "status": "in_progress"}}
    response.content_part.added     {"item_id", "output_index", "content_index", "part": {"type": "reasoning_text"}}
    response.reasoning_text.delta   {"item_id", "output_index", "content_index", "delta"}        (repeated)
    response.reasoning_text.done, response.content_part.done, response.output_item.done
    response.output_item.added      {"output_index", "item": {"type": "message", "status": "in_progress"}}
    response.content_part.added     {"item_id", "output_index", "content_index", "part": {"type": "output_text"}}
    response.output_text.delta      {"item_id", "output_index", "content_index", "delta"}        (repeated)
    response.output_text.done, response.content_part.done, response.output_item.done
    response.output_item.added      {"item": {"type": "function_call", "call_id", "name", "arguments": ""}}
    response.function_call_arguments.delta / .done, response.output_item.done
    response.completed (or response.incomplete)                 {"response": {... the whole reply}}

An error after the stream started is sent as an ``error`` event, then ``response.failed``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from ..providers.base import aggregate_chunks
from ..types import Response, ToolCall
from .errors import APIError, api_error_from
from .generation import complete, open_stream, recover_cut_calls, sse_response
from .observe import note_usage
from .responses_schemas import Conversation, ResponsesRequest, parse_responses
from .responses_store import StoredResponse
from .sse import sse_event
from .state import ServerState, json_body

__all__ = ["router"]

router = APIRouter()


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _usage(resp: Response | None) -> dict[str, Any] | None:
    if resp is None:
        return None
    u = resp.usage
    prompt, cached, completion = (u.prompt_tokens, u.cached_tokens, u.completion_tokens) if u else (0, 0, 0)
    reasoning = u.reasoning_tokens if u else 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": prompt + completion}


class _Reply:
    """One response being built: its id, the request it answers, and its output items."""

    def __init__(self, state: ServerState, body: ResponsesRequest) -> None:
        self.id, self.created, self.model, self.body = _id("resp"), int(time.time()), state.model_id, body
        self.output: list[dict[str, Any]] = []

    def message(self, text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
        return {"type": "message", "id": item_id or _id("msg"), "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}

    @staticmethod
    def reasoning(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
        return {"type": "reasoning", "id": item_id or _id("rs"), "status": status, "summary": [],
                "content": [{"type": "reasoning_text", "text": text}]}

    def function_call(self, call: ToolCall, status: str = "completed", arguments: str | None = None) -> dict[str, Any]:
        """A call as the client knows its tool: a ``function_call`` (with its ``namespace`` for a namespace's
        function), or a ``custom_tool_call`` (its ``input`` the text the model gave)."""
        entry = self.body.tool_names().get(call.name)
        if arguments is None:
            arguments = json.dumps(call.arguments, ensure_ascii=False)
        if entry is not None and entry.kind == "custom":
            text = call.arguments.get("input") if isinstance(call.arguments.get("input"), str) else arguments
            item = {"type": "custom_tool_call", "id": _id("ctc"), "call_id": call.id, "name": entry.name,
                    "input": text, "status": status}
        else:
            item = {"type": "function_call", "id": _id("fc"), "call_id": call.id,
                    "name": entry.name if entry is not None else call.name, "arguments": arguments, "status": status}
        if entry is not None and entry.namespace:
            item["namespace"] = entry.namespace
        return item

    def items_of(self, resp: Response) -> list[dict[str, Any]]:
        """The output items: the reasoning (if the model thought), the message (if it said something, or did
        nothing else), the function calls."""
        status = "incomplete" if resp.finish_reason == "length" else "completed"
        answered = bool(resp.content or resp.tool_calls)
        items = [self.reasoning(resp.reasoning, "completed" if answered else status)] if resp.reasoning else []
        if resp.content or not (resp.tool_calls or resp.reasoning):
            items.append(self.message(resp.content, status))
        partial = resp.metadata.get("partial_arguments") or {}
        return items + [self.function_call(c, "incomplete" if c.id in partial else "completed", partial.get(c.id))
                        for c in resp.tool_calls or []]

    def obj(self, status: str, resp: Response | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Response object (``status``: in_progress, completed, incomplete, failed)."""
        b = self.body
        fmt = {"type": "text"}
        if b.text is not None and b.text.format is not None:
            fmt = b.text.format.model_dump(by_alias=True, exclude_none=True)
        choice = b.tool_choice.model_dump(exclude_none=True) \
            if b.tool_choice is not None and not isinstance(b.tool_choice, str) else b.tool_choice
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": b.instructions, "max_output_tokens": b.max_output_tokens, "model": self.model,
            "output": list(self.output), "parallel_tool_calls": b.parallel_tool_calls is not False,
            "previous_response_id": b.previous_response_id,
            "reasoning": {"effort": b.reasoning.effort if b.reasoning else None,
                          "summary": (b.reasoning.summary or b.reasoning.generate_summary) if b.reasoning else None},
            "store": b.store is not False, "temperature": b.temperature, "text": {"format": fmt},
            "tool_choice": choice or "auto", "tools": [t.model_dump(exclude_none=True) for t in b.tools or []],
            "top_p": b.top_p, "truncation": b.truncation or "disabled", "usage": _usage(resp), "user": b.user,
            "metadata": b.metadata or {},
        }

    def store(self, state: ServerState, convo: Conversation, resp: Response, body: dict[str, Any]) -> None:
        if self.body.store is False:
            return
        turn: dict[str, Any] = {"role": "assistant", "content": resp.content or (None if resp.tool_calls else "")}
        if resp.tool_calls:
            turn["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}} for c in resp.tool_calls]
        if resp.reasoning:
            turn["reasoning_content"] = resp.reasoning
        state.responses.put(self.id, StoredResponse(body, convo.history + [turn]))


def _status(resp: Response) -> str:
    return "incomplete" if resp.finish_reason == "length" else "completed"


@router.post("/v1/responses")
async def create_response(request: Request, raw: dict[str, Any] = Depends(json_body)) -> Any:
    state: ServerState = request.app.state.server
    body = parse_responses(raw, state.config.strict_fields)
    previous = None
    if body.previous_response_id is not None:
        stored = state.responses.get(body.previous_response_id)
        if stored is None:
            raise APIError(400, f"Previous response with id {body.previous_response_id!r} not found (this server "
                           f"keeps the last {state.responses.capacity} responses in memory, within "
                           f"{state.responses.max_bytes} bytes).",
                           param="previous_response_id", code="previous_response_not_found")
        previous = stored.messages
    req, convo = body.to_parsed(previous)
    reply = _Reply(state, body)
    if req.stream:
        return await _stream(state, req, request, reply, convo)
    (resp,) = await complete(state, req, request)
    reply.output = reply.items_of(resp)
    out = reply.obj(_status(resp), resp)
    reply.store(state, convo, resp, out)
    return JSONResponse(out)


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Any:
    stored = request.app.state.server.responses.get(response_id)
    if stored is None:
        raise APIError(404, f"Response with id {response_id!r} not found.", param="response_id")
    return stored.body


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Any:
    if not request.app.state.server.responses.delete(response_id):
        raise APIError(404, f"Response with id {response_id!r} not found.", param="response_id")
    return {"id": response_id, "object": "response", "deleted": True}


class _Events:
    """Numbers the events of one stream (``sequence_number``) and formats them as server-sent events."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: Any) -> ServerSentEvent:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse_event(data, kind)


class _OpenItems:
    """The items of one stream that are still open (``thought``: a reasoning item, ``text``: a message item, each
    ``{"id", "index", "text"}``) and the events that open, extend and close them, made in the order they are sent
    (their ``sequence_number`` follows it)."""

    def __init__(self, reply: _Reply, ev: _Events) -> None:
        self.reply, self.ev = reply, ev
        self.text: dict[str, Any] | None = None
        self.thought: dict[str, Any] | None = None

    def close_thought(self, status: str) -> list[ServerSentEvent]:
        return self._close("thought", self.reply.reasoning, "response.reasoning_text.done", status)

    def close_text(self, status: str) -> list[ServerSentEvent]:
        return self._close("text", self.reply.message, "response.output_text.done", status, logprobs=[])

    def _close(self, kind: str, make: Any, done: str, status: str, **extra: Any) -> list[ServerSentEvent]:
        """Finish the open ``kind`` item ("thought" or "text"): its final form (``make``) in the output, and
        its ``done`` / ``content_part.done`` / ``output_item.done`` events."""
        open_item, ev = getattr(self, kind), self.ev
        if open_item is None:
            return []
        item = make(open_item["text"], status, open_item["id"])
        part = item["content"][0]
        where = {"item_id": open_item["id"], "output_index": open_item["index"]}
        self.reply.output[open_item["index"]] = item
        setattr(self, kind, None)
        return [ev(done, **where, content_index=0, text=part["text"], **extra),
                ev("response.content_part.done", **where, content_index=0, part=part),
                ev("response.output_item.done", output_index=where["output_index"], item=item)]

    def think(self, delta: str) -> list[ServerSentEvent]:
        """A reasoning delta (the message item, if one is open, is closed first)."""
        ev, out = self.ev, self.close_text("completed")
        if self.thought is None:
            self.thought = {"id": _id("rs"), "index": len(self.reply.output), "text": ""}
            item = {**self.reply.reasoning("", "in_progress", self.thought["id"]), "content": []}
            self.reply.output.append(item)
            out += [ev("response.output_item.added", output_index=self.thought["index"], item=item),
                    ev("response.content_part.added", item_id=self.thought["id"], output_index=self.thought["index"],
                       content_index=0, part={"type": "reasoning_text", "text": ""})]
        self.thought["text"] += delta
        return out + [ev("response.reasoning_text.delta", item_id=self.thought["id"],
                         output_index=self.thought["index"], content_index=0, delta=delta)]

    def open_text(self) -> Iterator[ServerSentEvent]:
        """A message item (empty, in progress) added to the output."""
        text = self.text = {"id": _id("msg"), "index": len(self.reply.output), "text": ""}
        item = self.reply.message("", "in_progress", text["id"])
        item["content"] = []
        self.reply.output.append(item)
        yield self.ev("response.output_item.added", output_index=text["index"], item=item)
        yield self.ev("response.content_part.added", item_id=text["id"], output_index=text["index"],
                      content_index=0, part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})

    def chunk(self, chunk: Response) -> Iterator[ServerSentEvent]:
        """The events of one chunk: its reasoning, its text, its tool calls."""
        if chunk.reasoning:
            yield from self.think(chunk.reasoning)
        if chunk.content:
            yield from self.close_thought("completed")
            if self.text is None:
                yield from self.open_text()
            text: dict[str, Any] = self.text  # type: ignore[assignment]  # open by now
            text["text"] += chunk.content
            yield self.ev("response.output_text.delta", item_id=text["id"], output_index=text["index"],
                          content_index=0, delta=chunk.content, logprobs=[])
        for call in chunk.tool_calls or []:
            yield from self.close_thought("completed") + self.close_text("completed")
            yield from _function_call(self.reply, call, self.ev)

    def finish(self, params: dict[str, Any], whole: Response) -> Iterator[ServerSentEvent]:
        """The last items: calls cut by ``max_output_tokens`` (with their partial arguments), then the open items
        closed (an empty reply still has its empty message)."""
        if recover_cut_calls(params, whole):
            yield from self.close_thought("completed") + self.close_text("completed")
            partial = whole.metadata.get("partial_arguments") or {}
            for call in whole.tool_calls or []:
                yield from _function_call(self.reply, call, self.ev, "incomplete", partial.get(call.id))
        yield from self.close_thought(_status(whole))  # the reply ended in its reasoning
        if self.text is None and not self.reply.output:
            yield from self.open_text()
        yield from self.close_text(_status(whole))


async def _stream(state: ServerState, req: Any, request: Request, reply: _Reply, convo: Conversation) -> Any:
    opened = await open_stream(state, req, request)
    ev = _Events()

    async def events() -> AsyncIterator[ServerSentEvent]:
        chunks: list[Response] = []
        items = _OpenItems(reply, ev)
        try:
            yield ev("response.created", response=reply.obj("in_progress"))
            yield ev("response.in_progress", response=reply.obj("in_progress"))
            async for chunk in opened.chunks():
                chunks.append(chunk)
                for piece in items.chunk(chunk):
                    yield piece
            whole = aggregate_chunks(chunks)
            for piece in items.finish(req.params, whole):
                yield piece
            note_usage(whole)
            status = _status(whole)
            out = reply.obj(status, whole)
            reply.store(state, convo, whole, out)
            yield ev("response.completed" if status == "completed" else "response.incomplete", response=out)
        except Exception as exc:  # after the 200 went out: report in-band
            state.stats.http_errors += 1
            err = api_error_from(exc)
            yield ev("error", code=err.code, message=err.message, param=err.param)
            yield ev("response.failed", response=reply.obj("failed", error={"code": err.code or "server_error",
                                                                           "message": err.message}))

    return sse_response(state, events(), [opened])


def _function_call(reply: _Reply, call: ToolCall, ev: _Events, status: str = "completed",
                   arguments: str | None = None) -> list[ServerSentEvent]:
    """The events of one call: a ``function_call`` item (``function_call_arguments`` events) or a
    ``custom_tool_call`` item (``custom_tool_call_input`` events)."""
    index = len(reply.output)
    done = reply.function_call(call, status, arguments)
    reply.output.append(done)
    where = {"item_id": done["id"], "output_index": index}
    if done["type"] == "custom_tool_call":
        added = {**done, "status": "in_progress", "input": ""}
        return [ev("response.output_item.added", output_index=index, item=added),
                ev("response.custom_tool_call_input.delta", **where, delta=done["input"]),
                ev("response.custom_tool_call_input.done", **where, input=done["input"]),
                ev("response.output_item.done", output_index=index, item=done)]
    added = {**done, "status": "in_progress", "arguments": ""}
    return [ev("response.output_item.added", output_index=index, item=added),
            ev("response.function_call_arguments.delta", **where, delta=done["arguments"]),
            ev("response.function_call_arguments.done", **where, arguments=done["arguments"], name=done["name"]),
            ev("response.output_item.done", output_index=index, item=done)]
