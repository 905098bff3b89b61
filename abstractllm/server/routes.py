"""The endpoints: OpenAI chat/completions (plain and server-sent events), models, health, stats,
cache clearing, and the seed project's ``POST /api/v1/generate``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..exceptions import AbstractLLMError
from ..providers.base import aggregate_chunks
from ..types import Response
from .app import ServerState, uptime
from .errors import APIError, ClientGone, api_error_from
from .media_policy import apply_media_policy, fetch_remote_media
from .schemas import (
    ParsedRequest, chat_chunk, chat_response, completion_chunk, completion_response, new_id, parse_chat,
    parse_completion, parse_json, parse_vlm_generate, usage_dict,
)
from .stats import memory_snapshot

__all__ = ["router", "read_body"]

router = APIRouter()
_DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversize body read (and dropped) so the client sees the 413


def _state(request: Request) -> ServerState:
    return request.app.state.server


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, or answer 413 when it is larger than ``limit`` (declared or actual size)."""
    too_large = APIError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_n = int(declared)
        except ValueError:
            raise APIError(400, "Invalid Content-Length header.") from None
        if declared_n > limit:
            await _drain(request, declared_n)
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, seen: int) -> None:
    if seen > _DRAIN_LIMIT:
        return
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                return
    except Exception:
        return


async def _json(request: Request) -> dict[str, Any]:
    return parse_json(await read_body(request, _state(request).config.max_body_bytes))


class _Run:
    """One generation in flight: the provider's stream. The provider's engine batches it with the others
    and counts it (``/stats``)."""

    def __init__(self, state: ServerState, agen: Any) -> None:
        self.state, self.agen = state, agen
        self._done = False

    async def first(self) -> Response:
        try:
            return await self.agen.__anext__()
        except StopAsyncIteration:
            return Response(content="", finish_reason="stop")

    def finish(self, resp: Response | None, outcome: str) -> None:
        """The request is over (``outcome``: ok, error, cancelled): a stream still open is closed, which
        takes the request out of the batch at the engine's next step. Only the first call counts."""
        if self._done:
            return
        self._done = True
        if outcome != "ok":
            agen = self.agen

            async def close() -> None:
                try:
                    await agen.aclose()  # sets the cancel token if the stream is still open
                except Exception:
                    pass

            asyncio.get_running_loop().create_task(close())


def _check_max_tokens(state: ServerState, req: ParsedRequest) -> None:
    """A ``max_tokens`` above ``--max-tokens-limit`` is a 400; an omitted one whose default is above the
    limit becomes the limit."""
    limit, asked = state.config.max_tokens_limit, req.params.get("max_tokens")
    if limit is None:
        return
    if asked is None:
        from ..params import PARAMS

        default = (getattr(state.llm, "config", None) or {}).get("max_tokens") or PARAMS["max_tokens"].default
        if isinstance(default, int) and default > limit:
            req.params["max_tokens"] = limit
    elif isinstance(asked, int) and not isinstance(asked, bool) and asked > limit:
        raise APIError(400, f"'max_tokens' = {asked} is above this server's limit of {limit} tokens "
                       "(--max-tokens-limit).", param="max_tokens", code="invalid_value")


async def _start(state: ServerState, req: ParsedRequest) -> _Run:
    """Check the request and submit it to the provider's engine (errors before the first chunk raise)."""
    state.require_loaded()
    _check_max_tokens(state, req)
    messages = apply_media_policy(req.messages, state.config.allow_local_files)
    llm_config = getattr(state.llm, "config", None) or {}
    messages = await fetch_remote_media(
        messages, allow_private=state.config.allow_private_urls,
        timeout=float(llm_config.get("image_fetch_timeout") or 10.0),
        max_bytes=int(llm_config.get("max_image_bytes") or 50_000_000))
    try:
        agen = await state.llm.generate_async(messages=messages, stream=True, **req.params)
    except AbstractLLMError as exc:  # a full queue is 429 with Retry-After
        raise api_error_from(exc) from exc
    return _Run(state, agen)


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


async def _complete(state: ServerState, req: ParsedRequest, request: Request) -> Response:
    """Run a whole generation (``ClientGone`` if the client disconnects: the generation is stopped)."""
    async with _DisconnectWatch(request):
        run = await _start(state, req)
        try:
            chunks = [await run.first()]
            async for chunk in run.agen:
                chunks.append(chunk)
        except BaseException as exc:
            run.finish(None, "error" if isinstance(exc, Exception) else "cancelled")
            if isinstance(exc, AbstractLLMError):
                raise api_error_from(exc) from exc
            raise
    resp = aggregate_chunks(chunks)
    run.finish(resp, "ok")
    return resp


class _SSE(StreamingResponse):
    """Server-sent events that always settle their run, even if the client left before the first byte."""

    def __init__(self, content: AsyncIterator[str], run: _Run) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._run.finish(None, "cancelled")  # no-op when the stream completed or failed


def _event(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream(state: ServerState, req: ParsedRequest, request: Request,
                  make_chunk: Callable[..., dict[str, Any]], role_delta: bool) -> StreamingResponse:
    async with _DisconnectWatch(request):  # until the first chunk (queue wait, prefill)
        run = await _start(state, req)
        try:
            first = await run.first()
        except BaseException as exc:
            run.finish(None, "error" if isinstance(exc, Exception) else "cancelled")
            if isinstance(exc, AbstractLLMError):
                raise api_error_from(exc) from exc
            raise
    rid, created, model = new_id("chatcmpl" if role_delta else "cmpl"), int(time.time()), state.model_id

    def piece(text: str | None, finish: str | None = None, usage: dict | None = None) -> str:
        if role_delta:
            delta = None if text is None else ({} if finish else {"content": text})
            return _event(make_chunk(rid, model, created, delta, finish, usage))
        return _event(make_chunk(rid, model, created, text, finish, usage))

    async def events() -> AsyncIterator[str]:
        chunks = [first]
        try:
            if role_delta:
                yield _event(make_chunk(rid, model, created, {"role": "assistant", "content": ""}))
            chunk: Response | None = first
            while chunk is not None:
                if chunk.content:
                    yield piece(chunk.content)
                try:
                    chunk = await run.agen.__anext__()
                    chunks.append(chunk)
                except StopAsyncIteration:
                    chunk = None
            resp = aggregate_chunks(chunks)
            yield piece("", resp.finish_reason or "stop")
            if req.include_usage:
                yield piece(None, usage=usage_dict(resp))
            yield "data: [DONE]\n\n"
            run.finish(resp, "ok")
        except Exception as exc:  # after the 200 went out: report in-band, the OpenAI way
            err = api_error_from(exc)
            run.finish(None, "error")
            state.stats.http_errors += 1
            yield _event(err.body())
            yield "data: [DONE]\n\n"
        finally:
            with anyio.CancelScope(shield=True):
                await run.agen.aclose()

    return _SSE(events(), run)


# ---------------------------------------------------------------------------------------------- routes
@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    state = _state(request)
    req = parse_chat(await _json(request))
    if req.stream:
        return await _stream(state, req, request, chat_chunk, role_delta=True)
    resp = await _complete(state, req, request)
    return JSONResponse(chat_response(new_id("chatcmpl"), state.model_id, resp))


@router.post("/v1/completions")
async def completions(request: Request) -> Any:
    state = _state(request)
    req = parse_completion(await _json(request))
    if req.stream:
        return await _stream(state, req, request, completion_chunk, role_delta=False)
    resp = await _complete(state, req, request)
    return JSONResponse(completion_response(new_id("cmpl"), state.model_id, resp))


@router.post("/api/v1/generate")
async def vlm_generate(request: Request) -> Any:
    """The VLM-server form: ``{messages, max_new_tokens, temperature, top_p}`` ->
    ``{response, usage: {input_tokens, output_tokens, total_tokens}, processing_time}``."""
    state = _state(request)
    req = parse_vlm_generate(await _json(request))
    t0 = time.perf_counter()
    resp = await _complete(state, req, request)
    u = resp.usage
    return JSONResponse({
        "response": resp.content,
        "usage": {"input_tokens": u.prompt_tokens if u else 0, "output_tokens": u.completion_tokens if u else 0,
                  "total_tokens": u.total_tokens if u else 0},
        "processing_time": round(time.perf_counter() - t0, 4),
    })


def _model_object(state: ServerState) -> dict[str, Any]:
    """The served model as OpenAI lists it, plus what the provider declares of it (``capabilities``,
    ``context_length``): clients such as abstractllm's openai provider read them."""
    out: dict[str, Any] = {"id": state.model_id, "object": "model", "created": int(state.stats.started),
                           "owned_by": "abstractllm"}
    try:
        caps = state.llm.get_capabilities()
        out["capabilities"] = sorted(str(c) for c in caps if str(c) != "max_tokens")
        out["context_length"] = caps.get("max_tokens")
    except Exception:  # not inspectable (bad model path): the plain OpenAI fields
        pass
    return out


@router.get("/v1/models")
async def models(request: Request) -> Any:
    state = _state(request)
    return {"object": "list", "data": [await asyncio.to_thread(_model_object, state)]}


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request) -> Any:
    """This server serves one model, and every model name in a request addresses it (as in
    ``/v1/chat/completions``): any id answers with the served model's object."""
    return await asyncio.to_thread(_model_object, _state(request))


@router.get("/health")
async def health(request: Request) -> Any:
    state = _state(request)
    body = {"status": state.status, "model_loaded": state.status == "ok", "device": state.device,
            "uptime_s": uptime(state)}
    if not state.config.api_key:  # with a key, /health is the one open path: the details are in /stats
        body["model"] = state.model_id
        body["blas"] = state.blas
        if state.load_error:
            body["error"] = state.load_error
    return JSONResponse(body, status_code=200 if state.status == "ok" else 503)


def _prompt_cache(state: ServerState) -> dict[str, Any] | None:
    if state.status != "ok":
        return None
    try:
        return state.llm.get_model_info().get("prompt_cache")
    except Exception:
        return None


def _provider_stats(state: ServerState) -> dict[str, Any]:
    get_stats = getattr(state.llm, "get_stats", None)
    try:
        return dict(get_stats()) if get_stats is not None else {}
    except Exception:
        return {}


@router.get("/stats")
async def stats(request: Request) -> Any:
    """The provider's own statistics (``get_stats()``, the same names), and the server's."""
    state = _state(request)
    body = _provider_stats(state)
    body.update(state.stats.as_dict())
    body.update({"model": state.model_id, "status": state.status, "prompt_cache": _prompt_cache(state),
                 "memory": memory_snapshot(), "blas": state.blas, "error": state.load_error})
    return body


@router.post("/v1/cache/clear")
async def clear_cache(request: Request) -> Any:
    state = _state(request)
    state.require_loaded()
    await asyncio.to_thread(state.llm.clear_cache)  # between two steps of a busy batch
    return {"cleared": True, "prompt_cache": _prompt_cache(state), "memory": memory_snapshot()}
