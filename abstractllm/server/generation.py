"""Serving a generation request once it is prepared (``prepare.py``): the provider's streams (one per choice,
batched by its engine), and the two ways to answer: a whole JSON response, or server-sent events (``sse.py``).
A client that disconnects, before the first byte or mid-stream, stops its generations. A tool call cut by the
length comes back with its partial arguments (``partial.py``).

A streamed response starts once every choice's first chunk has come, or once ``ServerConfig.sse_ping_s``
seconds have passed waiting for them (a long prefill, a request queued behind a full batch), whichever is
first. Until then an error (bad parameters, a full queue) is answered with its HTTP status; after, keep-alive
comments go out while the first chunks are awaited, and an error is reported in the stream, as each API does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable

from fastapi import Request
from sse_starlette import ServerSentEvent

from ..exceptions import AbstractLLMError
from ..providers.base import aggregate_chunks
from ..types import Response
from .errors import ClientGone, api_error_from
from .observe import note_usage
from .partial import recover_cut_calls
from .prepare import prepare_generation
from .schemas import ParsedRequest
from .shapes import new_id, tool_call_deltas, usage_dict
from .sse import SSEResponse, close_all, sse_event
from .state import ServerState

__all__ = ["complete", "stream", "open_stream", "OpenedStream", "sse_response", "recover_cut_calls"]


class OpenedStream:
    """One choice's provider stream, with the task that awaits its first chunk (started when it is opened)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.first_task: asyncio.Task = asyncio.ensure_future(_first(stream))

    async def first(self) -> Response | None:
        """The first chunk (``None``: the stream ended at once); raises what the provider raised."""
        return await self.first_task

    async def chunks(self) -> AsyncIterator[Response]:
        """Every chunk: the first, then the others."""
        first = await self.first_task
        if first is None:
            return
        yield first
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        """Stop the generation (a no-op once it finished)."""
        await close_all([self.stream], [self.first_task])


async def _first(stream: Any) -> Response | None:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


class _DisconnectWatch:
    """While the request is being served (before any response byte), a client that disconnects cancels
    the serving task; leaving the block then raises ``ClientGone`` instead of ``CancelledError``."""

    def __init__(self, request: Request) -> None:
        self.request, self.gone = request, False
        self.task = asyncio.current_task()
        self.watcher: asyncio.Task | None = None

    async def _watch(self) -> None:
        while True:  # the body has been read: the next message is the disconnect
            if (await self.request.receive())["type"] == "http.disconnect":
                self.gone = True
                if self.task is not None:
                    self.task.cancel()
                return

    async def __aenter__(self) -> "_DisconnectWatch":
        self.watcher = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        assert self.watcher is not None
        self.watcher.cancel()
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and self.gone:
            uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+: this cancellation is handled
            if uncancel is not None:
                uncancel()
            raise ClientGone()
        return False


async def _open(state: ServerState, req: ParsedRequest) -> list[OpenedStream]:
    """One provider stream per choice (``prepare_generation``). Errors before the first chunk (bad parameters,
    a full queue) raise as ``APIError``."""
    messages, choices = await prepare_generation(state, req).finish(state)
    streams: list[Any] = []
    try:
        for params in choices:
            streams.append(await state.llm.generate_async(messages=messages, stream=True, **params))
    except BaseException as exc:
        await close_all(streams)
        if isinstance(exc, AbstractLLMError):
            raise api_error_from(exc) from exc
        raise
    return [OpenedStream(s) for s in streams]


async def _await_firsts(opened: list[OpenedStream], window: float) -> None:
    """Wait for every stream's first chunk, at most ``window`` seconds; an error among them raises (as
    ``APIError`` for the provider's), every stream closed. Those not come by then are awaited in the response."""
    tasks = [o.first_task for o in opened]
    try:
        await asyncio.wait(tasks, timeout=window, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in tasks if t.done() and t.exception() is not None), None)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
    except BaseException as exc:
        await close_all(opened)
        if isinstance(exc, AbstractLLMError):
            raise api_error_from(exc) from exc
        raise


async def complete(state: ServerState, req: ParsedRequest, request: Request) -> list[Response]:
    """Every choice, whole (``ClientGone`` if the client disconnects: the generations are stopped)."""
    async with _DisconnectWatch(request):
        opened = await _open(state, req)
        try:
            results = await asyncio.gather(*(_collect(o) for o in opened))
        except AbstractLLMError as exc:
            raise api_error_from(exc) from exc
        finally:
            await close_all(opened)
    for resp in results:
        recover_cut_calls(req.params, resp)
    note_usage(*results)
    return results


async def _collect(opened: OpenedStream) -> Response:
    return aggregate_chunks([c async for c in opened.chunks()])


async def open_stream(state: ServerState, req: ParsedRequest, request: Request) -> OpenedStream:
    """One generation (``req.n`` is 1), its first chunk awaited while the client is watched (it may wait in the
    queue, then prefill) for at most ``sse_ping_s`` seconds (see the module docstring): errors until then raise as
    ``APIError``, a client that leaves stops the generation (``ClientGone``). The caller reads its chunks in a
    response made with ``sse_response`` (which closes it in every case)."""
    async with _DisconnectWatch(request):
        (opened,) = await _open(state, req)
        await _await_firsts([opened], state.config.sse_ping_s)
    return opened


def sse_response(state: ServerState, events: AsyncIterator[ServerSentEvent], streams: list[Any]) -> SSEResponse:
    """Server-sent ``events`` (``sse.sse_event``) as the response, with keep-alive comments every ``sse_ping_s``
    seconds while none is sent; ``streams`` are closed when it ends, also when the client left before the first
    byte."""
    return SSEResponse(events, streams, state.config.sse_ping_s)


async def stream(state: ServerState, req: ParsedRequest, request: Request, make_chunk: Callable[..., dict[str, Any]],
                 chat: bool) -> SSEResponse:
    """Server-sent events: each choice's chunks as they come (reasoning as ``reasoning_content`` /
    ``reasoning`` deltas, tool calls as OpenAI streams them), a last chunk per choice with its finish reason,
    the usage if asked, then ``[DONE]``."""
    async with _DisconnectWatch(request):  # until the first chunk of every choice (queue wait, prefill)
        opened = await _open(state, req)
        await _await_firsts(opened, state.config.sse_ping_s)
    return sse_response(state, _ChoiceEvents(state, req, make_chunk, chat, opened).events(), opened)


class _ChoiceEvents:
    """The events of an OpenAI stream of ``req.n`` choices (chat completion or completion chunks)."""

    def __init__(self, state: ServerState, req: ParsedRequest, make_chunk: Callable[..., dict[str, Any]], chat: bool,
                 opened: list[OpenedStream]) -> None:
        self.state, self.req, self.make, self.chat, self.opened = state, req, make_chunk, chat, opened
        self.rid, self.created, self.model = new_id("chatcmpl" if chat else "cmpl"), int(time.time()), state.model_id
        self.calls = [0] * len(opened)  # tool calls sent so far, per choice

    def _event(self, delta: Any, finish: str | None = None, **kwargs: Any) -> ServerSentEvent:
        return sse_event(self.make(self.rid, self.model, self.created, delta, finish, **kwargs))

    async def _pump(self, i: int, queue: asyncio.Queue) -> None:
        try:
            async for chunk in self.opened[i].chunks():
                await queue.put((i, chunk))
            await queue.put((i, None))
        except Exception as exc:  # reported in-band by the reader
            await queue.put((i, exc))

    def _piece(self, i: int, chunk: Response) -> list[ServerSentEvent]:
        out = []
        if not self.chat:
            return [self._event(chunk.content, index=i, logprobs=chunk.logprobs)] if chunk.content else []
        if chunk.reasoning:  # vLLM's and DeepSeek's name, and OpenRouter's: the same text under both
            out.append(self._event({"reasoning_content": chunk.reasoning, "reasoning": chunk.reasoning}, index=i))
        if chunk.content or (chunk.logprobs and not chunk.tool_calls):
            out.append(self._event({"content": chunk.content}, index=i, logprobs=chunk.logprobs))
        for delta in tool_call_deltas(chunk.tool_calls or [], self.calls[i], legacy=self.req.legacy_functions):
            out.append(self._event(delta, index=i))
        self.calls[i] += len(chunk.tool_calls or [])
        return out

    def _last(self, i: int, chunks: list[Response]) -> list[ServerSentEvent]:
        """A choice's end: the calls ``max_tokens`` cut (their partial arguments), then its finish reason."""
        last, out = aggregate_chunks(chunks), []
        if self.chat and recover_cut_calls(self.req.params, last):
            for delta in tool_call_deltas(last.tool_calls or [], self.calls[i], last.metadata.get("partial_arguments"),
                                          self.req.legacy_functions):
                out.append(self._event(delta, index=i))
        finish = _finish(last, self.req.legacy_functions) if self.chat else last.finish_reason or "stop"
        return out + [self._event({} if self.chat else "", finish, index=i)]

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        queue: asyncio.Queue = asyncio.Queue()
        pumps = [asyncio.create_task(self._pump(i, queue)) for i in range(len(self.opened))]
        collected: list[list[Response]] = [[] for _ in self.opened]
        try:
            if self.chat:
                for i in range(len(self.opened)):
                    yield self._event({"role": "assistant", "content": ""}, index=i)
            open_choices = len(self.opened)
            while open_choices:
                i, item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                pieces = self._last(i, collected[i]) if item is None else self._piece(i, item)
                if item is None:
                    open_choices -= 1
                else:
                    collected[i].append(item)
                for piece in pieces:
                    yield piece
            wholes = [aggregate_chunks(c) for c in collected]
            note_usage(*wholes)
            if self.req.include_usage:
                yield self._event(None, usage=usage_dict(*wholes))
            yield sse_event("[DONE]")
        except Exception as exc:  # after the 200 went out: report in-band, the OpenAI way
            self.state.stats.http_errors += 1
            yield sse_event(api_error_from(exc).body())
            yield sse_event("[DONE]")
        finally:
            await close_all(self.opened, pumps)


def _finish(resp: Response, legacy: bool) -> str:
    reason = resp.finish_reason or "stop"
    if legacy and reason == "tool_calls":
        return "function_call"
    return reason

