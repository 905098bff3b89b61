"""Serving one OpenAI generation request: the checks made before the provider sees it (``max_tokens``
limit, ``n`` limit, local-file and private-URL policy), the provider's streams (one per choice, batched by
its engine), and the two ways to answer: a whole JSON response, or server-sent events. A client that
disconnects, before the first byte or mid-stream, stops its generations."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from ..exceptions import AbstractLLMError
from ..providers.base import aggregate_chunks
from ..types import Response
from .app import ServerState
from .errors import APIError, ClientGone, api_error_from
from .media_policy import apply_media_policy, fetch_remote_media
from .observe import note_usage
from .reasoning import apply_soft_thinking
from .schemas import ParsedRequest
from .shapes import new_id, tool_call_deltas, usage_dict

__all__ = ["complete", "stream", "open_stream", "rest_of", "sse_response", "check_request", "prepared_messages",
           "event"]


def event(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def check_request(state: ServerState, req: ParsedRequest) -> None:
    """The server's own limits: ``--max-tokens-limit`` (an omitted ``max_tokens`` whose default is above it
    becomes the limit) and ``--max-n``; and the request's soft ``thinking``, resolved against the served model
    (``reasoning.apply_soft_thinking``)."""
    state.require_loaded()
    apply_soft_thinking(state.llm, req)
    limit, asked = state.config.max_tokens_limit, req.params.get("max_tokens")
    if limit is not None:
        if asked is None:
            from ..params import PARAMS

            default = (getattr(state.llm, "config", None) or {}).get("max_tokens") or PARAMS["max_tokens"].default
            if isinstance(default, int) and default > limit:
                req.params["max_tokens"] = limit
        elif isinstance(asked, int) and not isinstance(asked, bool) and asked > limit:
            name = req.max_tokens_param
            raise APIError(400, f"'{name}' = {asked} is above this server's limit of {limit} tokens "
                           "(--max-tokens-limit).", param=name, code="invalid_value")
    if req.n > state.config.max_n:
        raise APIError(400, f"'n' = {req.n} is above this server's limit of {state.config.max_n} (--max-n).",
                       param="n", code="invalid_value")


async def prepared_messages(state: ServerState, req: ParsedRequest) -> list[Any]:
    """The request's messages once the media policy has passed them: local paths checked and resolved,
    http(s) images fetched (private addresses refused) and handed on as data URIs."""
    messages = apply_media_policy(req.messages, state.config.allow_local_files)
    llm_config = getattr(state.llm, "config", None) or {}
    return await fetch_remote_media(
        messages, allow_private=state.config.allow_private_urls,
        timeout=float(llm_config.get("image_fetch_timeout") or 10.0),
        max_bytes=int(llm_config.get("max_image_bytes") or 50_000_000))


async def _open(state: ServerState, req: ParsedRequest) -> list[Any]:
    """One provider stream per choice (seeded requests: seed, seed + 1, ...). Errors before the first
    chunk (bad parameters, a full queue) raise as ``APIError``."""
    check_request(state, req)
    messages = await prepared_messages(state, req)
    streams: list[Any] = []
    try:
        for i in range(req.n):
            params = dict(req.params)
            if i and params.get("seed") is not None:
                params["seed"] = params["seed"] + i
            streams.append(await state.llm.generate_async(messages=messages, stream=True, **params))
    except AbstractLLMError as exc:
        for s in streams:
            await s.aclose()
        raise api_error_from(exc) from exc
    return streams


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


async def _close_all(streams: list[Any]) -> None:
    with anyio.CancelScope(shield=True):
        for s in streams:
            try:
                await s.aclose()
            except Exception:
                pass


async def complete(state: ServerState, req: ParsedRequest, request: Request) -> list[Response]:
    """Every choice, whole (``ClientGone`` if the client disconnects: the generations are stopped)."""
    async with _DisconnectWatch(request):
        streams = await _open(state, req)
        try:
            results = await asyncio.gather(*(_collect(s) for s in streams))
        except AbstractLLMError as exc:
            raise api_error_from(exc) from exc
        finally:
            await _close_all(streams)
    note_usage(*results)
    return results


async def _collect(agen: Any) -> Response:
    return aggregate_chunks([c async for c in agen])


async def stream(state: ServerState, req: ParsedRequest, request: Request, make_chunk: Callable[..., dict[str, Any]],
                 chat: bool) -> StreamingResponse:
    """Server-sent events: each choice's chunks as they come (reasoning as ``reasoning_content`` /
    ``reasoning`` deltas, tool calls as OpenAI streams them), a last chunk per choice with its finish reason,
    the usage if asked, then ``[DONE]``."""
    async with _DisconnectWatch(request):  # until the first chunk of every choice (queue wait, prefill)
        streams = await _open(state, req)
        try:
            firsts = [await _first(s) for s in streams]
        except BaseException as exc:
            await _close_all(streams)
            if isinstance(exc, AbstractLLMError):
                raise api_error_from(exc) from exc
            raise
    rid, created, model = new_id("chatcmpl" if chat else "cmpl"), int(time.time()), state.model_id

    async def pump(i: int, queue: asyncio.Queue) -> None:
        chunk: Response | None = firsts[i]
        try:
            while chunk is not None:
                await queue.put((i, chunk))
                try:
                    chunk = await streams[i].__anext__()
                except StopAsyncIteration:
                    chunk = None
            await queue.put((i, None))
        except Exception as exc:  # reported in-band by the reader
            await queue.put((i, exc))

    def piece(i: int, chunk: Response) -> list[str]:
        out = []
        if chat:
            if chunk.reasoning:  # vLLM's and DeepSeek's name, and OpenRouter's: the same text under both
                out.append(event(make_chunk(rid, model, created, {"reasoning_content": chunk.reasoning,
                                                                  "reasoning": chunk.reasoning}, index=i)))
            if chunk.content or (chunk.logprobs and not chunk.tool_calls):
                out.append(event(make_chunk(rid, model, created, {"content": chunk.content}, index=i,
                                            logprobs=chunk.logprobs)))
            for delta in tool_call_deltas(chunk.tool_calls or [], calls[i]):
                out.append(event(make_chunk(rid, model, created, delta, index=i)))
            calls[i] += len(chunk.tool_calls or [])
        elif chunk.content:
            out.append(event(make_chunk(rid, model, created, chunk.content, index=i, logprobs=chunk.logprobs)))
        return out

    calls = [0] * len(streams)

    async def events() -> AsyncIterator[str]:
        queue: asyncio.Queue = asyncio.Queue()
        pumps = [asyncio.create_task(pump(i, queue)) for i in range(len(streams))]
        collected: list[list[Response]] = [[] for _ in streams]
        try:
            if chat:
                for i in range(len(streams)):
                    yield event(make_chunk(rid, model, created, {"role": "assistant", "content": ""}, index=i))
            open_choices = len(streams)
            while open_choices:
                i, item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item is None:
                    open_choices -= 1
                    last = aggregate_chunks(collected[i])
                    yield event(make_chunk(rid, model, created, {} if chat else "", last.finish_reason or "stop",
                                           index=i))
                    continue
                collected[i].append(item)
                for text in piece(i, item):
                    yield text
            wholes = [aggregate_chunks(c) for c in collected]
            note_usage(*wholes)
            if req.include_usage:
                yield event(make_chunk(rid, model, created, None, usage=usage_dict(*wholes)))
            yield "data: [DONE]\n\n"
        except Exception as exc:  # after the 200 went out: report in-band, the OpenAI way
            state.stats.http_errors += 1
            yield event(api_error_from(exc).body())
            yield "data: [DONE]\n\n"
        finally:
            for task in pumps:
                task.cancel()
            await _close_all(streams)

    return _SSE(events(), streams)


async def open_stream(state: ServerState, req: ParsedRequest, request: Request) -> tuple[Response | None, Any]:
    """One generation (``req.n`` is 1) and its first chunk, awaited while the client is watched (it may
    wait in the queue, then prefill): errors until then raise as ``APIError`` (answered with their HTTP
    status), a client that leaves stops the generation (``ClientGone``). The caller consumes the rest of
    the stream, in a response made with ``sse_response`` (which closes it in every case)."""
    async with _DisconnectWatch(request):
        (agen,) = await _open(state, req)
        try:
            first = await _first(agen)
        except BaseException as exc:
            await _close_all([agen])
            if isinstance(exc, AbstractLLMError):
                raise api_error_from(exc) from exc
            raise
    return first, agen


async def rest_of(first: Response | None, agen: Any) -> AsyncIterator[Response]:
    """The chunks of a stream opened with ``open_stream``: its first chunk, then the others."""
    if first is None:
        return
    yield first
    async for chunk in agen:
        yield chunk


def sse_response(events: AsyncIterator[str], streams: list[Any]) -> StreamingResponse:
    """Server-sent ``events`` (already formatted) as the response; ``streams`` are closed when it ends,
    also when the client left before the first byte."""
    return _SSE(events, streams)


class _SSE(StreamingResponse):
    """Server-sent events that always close their streams, even when the client left before the first
    byte (the event generator then never starts, so its own ``finally`` never runs)."""

    def __init__(self, content: AsyncIterator[str], streams: list[Any]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._streams = streams

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _close_all(self._streams)  # a no-op for streams already finished


async def _first(agen: Any) -> Response | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None
