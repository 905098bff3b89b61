"""``ServerState``: what the server's routes share (the provider, its load status, the server's counters),
and the helpers every API's routes use (the body readers ``json_body`` / ``raw_body``, ``uptime``). Its own
module so that the routers import it from here and ``app.py`` (which imports the routers) is imported by none
of them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from .config import ServerConfig
from .errors import APIError
from .schemas import parse_json
from .stats import Stats

__all__ = ["ServerState", "json_body", "raw_body", "read_body", "uptime"]

_DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversize body read (and dropped) so the client sees the 413


@dataclass
class ServerState:
    """What the routes share: the provider, its load status and the server's counters."""

    config: ServerConfig
    llm: Any
    owns_llm: bool
    model_id: str
    stats: Stats = field(default_factory=Stats)
    status: str = "loading"  # loading | ok | error
    load_error: str | None = None
    device: str | None = None  # the provider's runtime_info(), read once the model is loaded
    blas: str | None = None
    load_task: Any = None
    metrics: Any = None  # metrics.ServerMetrics (None without prometheus-client)
    responses: Any = None  # responses_store.ResponseStore: /v1/responses kept for previous_response_id
    context_length: int | None = None  # the model's, once read (0: it does not say; generation.context_length)
    multi_system: bool | None = None  # whether the chat template keeps later system messages (generation.py)

    def require_loaded(self) -> None:
        """Raise 503 unless the model is loaded."""
        if self.status == "ok":
            return
        if self.status == "loading":
            raise APIError(503, f"Model {self.model_id!r} is still loading; retry shortly.",
                           code="model_not_loaded", headers={"Retry-After": "2"})
        raise APIError(503, f"Model {self.model_id!r} is not loaded: {self.load_error}", code="model_not_loaded")


def uptime(state: ServerState) -> float:
    return round(time.time() - state.stats.started, 3)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's body, a JSON object (400 otherwise), read within the server's ``--max-body-size`` (413
    beyond it): the body of every JSON route, as a FastAPI dependency (``body = Depends(json_body)``)."""
    return parse_json(await raw_body(request))


async def raw_body(request: Request) -> bytes:
    """The request's body as bytes, read within the server's ``--max-body-size`` (413 beyond it); a FastAPI
    dependency, like ``json_body``."""
    state: ServerState = request.app.state.server
    return await read_body(request, state.config.max_body_bytes)


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
