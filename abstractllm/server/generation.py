"""Serving one OpenAI generation request: the checks made before the provider sees it (``n`` limit,
local-file and private-URL policy), the reply's length (``resolve_max_tokens``), system messages placed as the
model's chat template takes them (``place_system_messages``), the provider's streams (one per choice, batched
by its engine), and the two ways to answer: a whole JSON response, or server-sent events. A client that
disconnects, before the first byte or mid-stream, stops its generations.

The reply's length: a request without ``max_tokens`` (``max_output_tokens``) may run to the end of the
context, as OpenAI's do, bounded by ``--max-tokens-limit`` (default: the model's context length); the
server's ``--max-tokens`` (a provider made with ``max_tokens``), when it was started with one, is the default
instead. A request asking for more
than the limit is clamped to it (and to what is left of the context), not refused: the reply ends with the
finish reason ``length`` (``max_tokens``) if it gets there. A prompt that leaves no room in the context is a
400 (``context_length_exceeded``: "prompt is too long: N tokens > M maximum", Anthropic's wording, which
clients such as Claude Code act on). A tool call cut by the length comes back with its partial arguments
(``partial.py``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from ..exceptions import AbstractLLMError
from ..providers.base import aggregate_chunks
from ..types import Response
from .errors import APIError, ClientGone, api_error_from
from .media_policy import apply_media_policy, fetch_remote_media
from .observe import note_usage
from .partial import recover_cut_calls
from .reasoning import apply_soft_thinking
from .schemas import ParsedRequest
from .shapes import new_id, tool_call_deltas, usage_dict
from .state import ServerState

__all__ = ["complete", "stream", "open_stream", "rest_of", "sse_response", "check_request", "prepared_messages",
           "event", "resolve_max_tokens", "place_system_messages", "max_tokens_limit", "context_length",
           "recover_cut_calls"]

log = logging.getLogger("abstractllm.server")


def event(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def check_request(state: ServerState, req: ParsedRequest) -> None:
    """The server's own limit ``--max-n``, and the request's soft ``thinking``, resolved against the served
    model (``reasoning.apply_soft_thinking``)."""
    state.require_loaded()
    apply_soft_thinking(state.llm, req)
    if req.n > state.config.max_n:
        raise APIError(400, f"'n' = {req.n} is above this server's limit of {state.config.max_n} (--max-n).",
                       param="n", code="invalid_value")


def context_length(state: ServerState) -> int | None:
    """The served model's context length (its capabilities' ``max_tokens``), once known; ``None`` if it does not
    say."""
    if state.context_length is None and state.status == "ok":
        try:
            value = state.llm.get_capabilities().get("max_tokens")
        except Exception:
            value = None
        state.context_length = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
    return state.context_length or None


def max_tokens_limit(state: ServerState) -> int | None:
    """``--max-tokens-limit``: a number, the model's context length (``"context"``, the default), or ``None`` (no
    bound, or a context length the provider does not say)."""
    limit = state.config.max_tokens_limit
    return context_length(state) if limit == "context" else limit


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def resolve_max_tokens(state: ServerState, req: ParsedRequest, messages: list[Any]) -> None:
    """Set the request's ``max_tokens`` as the module docstring says (a value the provider will refuse, such as 0
    or a string, is left for its error)."""
    asked = req.params.get("max_tokens")
    if asked is not None and not (_is_count(asked) and asked > 0):
        return
    limit = max_tokens_limit(state)
    if asked is not None and (limit is None or asked <= limit):
        return
    if asked is None:
        configured = (getattr(state.llm, "config", None) or {}).get("max_tokens") \
            or state.config.llm_config.get("max_tokens")  # the provider made with max_tokens (serve --max-tokens)
        if _is_count(configured):
            req.params["max_tokens"] = min(configured, limit) if limit else configured
            return
    cap = limit
    ctx = context_length(state)
    counter = getattr(state.llm, "count_tokens", None)
    if ctx and callable(counter):
        params = {k: req.params[k] for k in ("tools", "tool_choice", "thinking", "chat_template_kwargs")
                  if k in req.params}
        try:
            prompt = int(await asyncio.to_thread(counter, messages=messages, **params))
        except Exception:
            prompt = None  # the generation will say what is wrong with the request
        if prompt is not None:
            if prompt >= ctx:
                raise APIError(400, f"prompt is too long: {prompt} tokens > {ctx - 1} maximum (the model's context "
                               f"length is {ctx} tokens, the reply included)", param="messages",
                               code="context_length_exceeded")
            cap = min(cap or ctx, ctx - prompt)
    if cap is not None:
        req.params["max_tokens"] = cap
    elif asked is None:
        req.params.pop("max_tokens", None)  # the provider's own default


def _system_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


async def _several_system_messages(state: ServerState) -> bool:
    """Whether the served model's chat template keeps a system message after the first turn (Qwen's and Llama
    3's do; Mistral's and Gemma's refuse it): measured once, by counting the tokens of a conversation with and
    without one. A provider that cannot count tokens (a remote one) gets the messages as they are."""
    if state.multi_system is None:
        counter = getattr(state.llm, "count_tokens", None)
        if not callable(counter):
            state.multi_system = True
        else:
            base = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Bye"}]
            probe = base[:3] + [{"role": "system", "content": "Answer in French, always, and very politely."}] + base[3:]
            try:
                without = await asyncio.to_thread(counter, messages=base)
                with_it = await asyncio.to_thread(counter, messages=probe)
                state.multi_system = with_it >= without + 5
            except Exception:
                state.multi_system = False
            log.info("the chat template %s system messages after the first turn", "keeps" if state.multi_system
                     else "does not take")
    return state.multi_system


async def place_system_messages(state: ServerState, messages: list[Any]) -> list[Any]:
    """System messages after the first one (Claude Code sends some mid-conversation; Codex several developer
    messages): kept in place where the chat template takes them, else merged, in order, into one system prompt
    at the start (two user turns the removal leaves side by side are joined: such templates want turns to
    alternate)."""
    if not any(isinstance(m, dict) and m.get("role") == "system" for m in messages[1:]):
        return messages
    if await _several_system_messages(state):
        return messages
    texts = [_system_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    rest: list[Any] = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            continue
        last = rest[-1] if rest else None
        if isinstance(last, dict) and isinstance(m, dict) and last.get("role") == m.get("role") == "user":
            rest[-1] = {**last, "content": _joined(last.get("content"), m.get("content"))}  # turns must alternate
        else:
            rest.append(m)
    return [{"role": "system", "content": "\n\n".join(t for t in texts if t)}] + rest


def _joined(a: Any, b: Any) -> Any:
    """Two user turns' contents as one (the system message between them went into the system prompt)."""
    if isinstance(a, str) and isinstance(b, str):
        return f"{a}\n\n{b}"
    parts = lambda c: c if isinstance(c, list) else [{"type": "text", "text": c or ""}]  # noqa: E731
    return parts(a) + parts(b)


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
    messages = await place_system_messages(state, await prepared_messages(state, req))
    await resolve_max_tokens(state, req, messages)
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
    for resp in results:
        recover_cut_calls(req.params, resp)
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
            for delta in tool_call_deltas(chunk.tool_calls or [], calls[i], legacy=req.legacy_functions):
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
                    if chat and recover_cut_calls(req.params, last):  # a call cut by max_tokens: its partial arguments
                        for delta in tool_call_deltas(last.tool_calls or [], calls[i],
                                                      last.metadata.get("partial_arguments"), req.legacy_functions):
                            yield event(make_chunk(rid, model, created, delta, index=i))
                    yield event(make_chunk(rid, model, created, {} if chat else "",
                                           _finish(last, req.legacy_functions) if chat else last.finish_reason or "stop",
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


def _finish(resp: Response, legacy: bool) -> str:
    reason = resp.finish_reason or "stop"
    if legacy and reason == "tool_calls":
        return "function_call"
    return reason


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
