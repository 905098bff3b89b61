"""``create_app``: the FastAPI application, its API-key check, error handlers and lifespan (its state,
``ServerState``, is in ``state.py``: the routers import it there, and this module imports the routers).

The model is loaded in the background as the server starts, so the port answers at once: ``/health``
says ``loading`` (503) until the weights are in memory, then ``ok``; generation endpoints answer 503
(``model_not_loaded``) until then, or for good if the load failed (``/stats`` gives the reason, and
``/health`` too when no API key is set: with a key, ``/health`` is the one open path and says only
``status``, ``model_loaded``, ``device`` and ``uptime_s``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import ServerConfig
from .errors import APIError, ClientGone, anthropic_error_body, api_error_from, error_body, is_anthropic_path
from .observe import REQUEST_ID_HEADER, ObserveMiddleware, request_id_of
from .state import ServerState, uptime  # defined in state.py (the routers import it there); re-exported here
from .stats import runtime_info

__all__ = ["create_app", "ServerState", "uptime"]

log = logging.getLogger("abstractllm.server")
_OPEN_PATHS = ("/health", "/")


def _read_runtime(state: ServerState) -> None:
    """The device and BLAS the model runs on (the provider's ``runtime_info()``), kept for ``/health`` and
    ``/stats``."""
    info = runtime_info(state.llm)
    state.device, state.blas = info.get("device"), info.get("blas")


def _load_sync(state: ServerState) -> None:
    try:
        state.llm.load()
    finally:  # also after a failed load: a BLAS that failed its check is one reason
        _read_runtime(state)


async def _load(state: ServerState) -> None:
    try:
        await asyncio.to_thread(_load_sync, state)
        state.status = "ok"
        log.info("model %s loaded (device: %s; BLAS: %s)", state.model_id, state.device, state.blas)
    except Exception as exc:  # reported by /stats (and /health without an API key) and as 503s
        state.status = "error"
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.error("model %s failed to load: %s", state.model_id, state.load_error)


class _AuthMiddleware:
    """Pure ASGI: the API key on every path but ``/health`` (streams untouched), as ``Authorization: Bearer
    <key>`` (OpenAI clients) or ``x-api-key: <key>`` (Anthropic clients)."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.key = api_key.encode()

    def _allowed(self, headers: dict[bytes, bytes]) -> bool:
        bearer_ok = hmac.compare_digest(headers.get(b"authorization", b""), self.expected)
        key_ok = hmac.compare_digest(headers.get(b"x-api-key", b""), self.key)
        return bearer_ok or key_ok

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") not in _OPEN_PATHS:
            if not self._allowed(dict(scope.get("headers") or [])):
                message = ("Invalid or missing API key: send 'Authorization: Bearer <key>' or "
                           "'x-api-key: <key>'.")
                if is_anthropic_path(scope.get("path") or ""):
                    payload = anthropic_error_body(401, message, request_id_of(scope))
                else:
                    payload = error_body(message, "authentication_error", None, "invalid_api_key")
                body = json.dumps(payload).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _json_error(err: APIError, request: Request) -> JSONResponse:
    """The error in the shape of the API the path belongs to (Anthropic's on ``/v1/messages...``), with
    the request's id (the 500 handler runs outside ``ObserveMiddleware``, so the header is set here)."""
    rid = request_id_of(request.scope)
    body = anthropic_error_body(err.status, err.message, rid) if is_anthropic_path(request.url.path) else err.body()
    headers = {**err.headers, **({REQUEST_ID_HEADER: rid} if rid else {})}
    return JSONResponse(body, status_code=err.status, headers=headers)


def create_app(config: ServerConfig, llm: Any = None) -> FastAPI:
    """Build the app for ``config``. Without ``llm``, the provider is created from ``config`` (and
    closed at shutdown); a given ``llm`` is used as is and left open."""
    owns = llm is None
    if llm is None:
        from ..registry import create_llm

        llm = create_llm(config.provider, model=config.model, **config.llm_config)
    state = ServerState(config=config, llm=llm, owns_llm=owns, model_id=config.resolved_model_id())
    if runtime_info(llm).get("loaded"):
        state.status = "ok"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.status != "ok":
            state.load_task = asyncio.create_task(_load(state))
        else:  # a provider loaded by the caller: only the device is left to read
            state.load_task = asyncio.create_task(asyncio.to_thread(_read_runtime, state))
        await app.state.batch.start()  # the Batch API's worker (batch_api.py)
        try:
            yield
        finally:
            await app.state.batch.stop()
            if state.load_task is not None and not state.load_task.done():
                await asyncio.wait({state.load_task}, timeout=60)
            if state.owns_llm:
                await asyncio.to_thread(state.llm.close)

    app = FastAPI(title="abstractllm", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = state
    _install_error_handlers(app, state)
    _install_routes(app, state)
    return app


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    """Every error answered in the shape of the API of its path (``_json_error``), counted in the stats (a
    client gone before the reply: 499, not counted)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        state.stats.http_errors += 1
        return _json_error(exc, request)

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, exc: ClientGone) -> JSONResponse:
        return JSONResponse({}, status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        state.stats.http_errors += 1
        message = {404: f"Unknown path {request.url.path!r}.", 405: f"Method {request.method} is not allowed on "
                   f"{request.url.path!r}."}.get(exc.status_code, str(exc.detail))
        return _json_error(APIError(exc.status_code, message, headers=dict(exc.headers or {})), request)

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        err = api_error_from(exc, request_id_of(request.scope))  # a 500 is logged there, with its traceback
        state.stats.http_errors += 1
        return _json_error(err, request)


def _install_routes(app: FastAPI, state: ServerState) -> None:
    """The routers (chat and completions, Responses, Messages, operations, Batch), then the middleware: the API
    key check, and outermost the observation (ids, timings, metrics, access log)."""
    from .anthropic_api import router as anthropic_router
    from .batch_api import install_batch_api  # the OpenAI Batch API over abstractllm.jobs
    from .ops import router as ops_router
    from .responses_api import router as responses_router
    from .responses_store import ResponseStore
    from .routes import router

    config = state.config
    state.metrics = _metrics(state)
    state.responses = ResponseStore(config.responses_store_size, config.responses_store_bytes)
    app.include_router(router)
    app.include_router(responses_router)
    app.include_router(anthropic_router)
    app.include_router(ops_router)
    install_batch_api(app, state)
    if config.api_key:
        app.add_middleware(_AuthMiddleware, api_key=config.api_key)
    # the outermost: ids, timings, metrics, access log
    app.add_middleware(ObserveMiddleware, state=state, routes=app.router.routes)


def _metrics(state: ServerState) -> Any:
    try:
        from .metrics import ServerMetrics

        return ServerMetrics(state)
    except ImportError:
        log.warning("prometheus-client is not installed: GET /metrics answers 501 (pip install "
                    "\"abstractllm[server]\")")
        return None


def _version() -> str:
    from .. import __version__

    return __version__
