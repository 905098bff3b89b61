"""What the server records of every request: its id, timings, tokens and status.

``ObserveMiddleware`` (pure ASGI, the outermost layer) gives each request a ``RequestRecord``: the id is
the client's ``x-request-id`` when it sent a sane one (printable, at most 128 characters), else a new
``req_...``; every response carries it back in ``x-request-id`` (error bodies of the Anthropic API also
name it), and, when the body had fields the server ignored (``fields.py``), their names in
``x-abstractllm-ignored``. The endpoints add the tokens and the time to first token of what they generated
(``note_usage``); when the response is over (the last byte of a stream included), the record feeds the
Prometheus metrics (``metrics.ServerMetrics``) and, with ``--log-format json``, one JSON access-log line
on the ``abstractllm.server.access`` logger (at DEBUG, as text, otherwise).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..types import Response

__all__ = ["RequestRecord", "ObserveMiddleware", "current_record", "note_usage", "request_id_of",
           "REQUEST_ID_HEADER"]

access_log = logging.getLogger("abstractllm.server.access")
REQUEST_ID_HEADER = "x-request-id"
IGNORED_HEADER = "x-abstractllm-ignored"
_SCOPE_KEY = "abstractllm.request_id"
_SANE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, no spaces: safe in a header and a log line
_CURRENT: contextvars.ContextVar["RequestRecord | None"] = contextvars.ContextVar("abstractllm_request", default=None)


@dataclass
class RequestRecord:
    """One request as the server saw it (``endpoint`` is the route's path template, e.g.
    ``/v1/models/{model_id:path}``, or ``unmatched``)."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    endpoint: str = "unmatched"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    ttft_s: float | None = None
    first_byte_s: float | None = None
    duration_s: float | None = None
    ignored: list[str] = field(default_factory=list)  # request fields ignored (``fields.note_ignored``)

    def as_log(self) -> dict[str, Any]:
        """The fields of the JSON access-log line."""
        out: dict[str, Any] = {"request_id": self.request_id, "method": self.method, "path": self.path,
                               "endpoint": self.endpoint, "status": self.status,
                               "duration_ms": _ms(self.duration_s), "first_byte_ms": _ms(self.first_byte_s)}
        if self.input_tokens or self.output_tokens:
            out.update(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                       cached_tokens=self.cached_tokens, ttft_ms=_ms(self.ttft_s))
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def current_record() -> RequestRecord | None:
    """The record of the request being served (``None`` outside a request)."""
    return _CURRENT.get()


def request_id_of(scope: dict[str, Any]) -> str | None:
    """The id ``ObserveMiddleware`` gave the request of this ASGI scope."""
    return scope.get(_SCOPE_KEY)


def note_usage(*responses: Response) -> None:
    """Add what one prompt's generations used to the current request's record (the prompt counted once,
    every choice's completion tokens summed; the earliest time to first token)."""
    record = _CURRENT.get()
    if record is None:
        return
    used = [r.usage for r in responses if r is not None and r.usage is not None]
    if used:
        record.input_tokens += used[0].prompt_tokens
        record.cached_tokens += used[0].cached_tokens
        record.output_tokens += sum(u.completion_tokens for u in used)
    ttfts = [r.ttft_s for r in responses if r is not None and r.ttft_s is not None]
    if ttfts:
        record.ttft_s = min(ttfts) if record.ttft_s is None else min(record.ttft_s, *ttfts)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            try:
                return value.decode("latin-1")
            except Exception:
                return None
    return None


class ObserveMiddleware:
    """Pure ASGI (streams pass through untouched): request id, timings, metrics and the access log."""

    def __init__(self, app: Any, state: Any, routes: list[Any] | None = None) -> None:
        self.app = app
        self.state = state
        self.routes = routes if routes is not None else []  # the app's routes (a live list)
        self._leaves: list[Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        rid = given if given is not None and _SANE_ID.match(given) else f"req_{uuid.uuid4().hex[:24]}"
        scope[_SCOPE_KEY] = rid
        record = RequestRecord(rid, scope.get("method", ""), scope.get("path", ""))
        token = _CURRENT.set(record)
        metrics = getattr(self.state, "metrics", None)
        if metrics is not None:
            metrics.started()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                record.first_byte_s = time.perf_counter() - record.started
                headers = list(message.get("headers") or [])
                if not any(k.lower() == REQUEST_ID_HEADER.encode() for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                if record.ignored:  # the fields this request had that the server ignored (fields.py)
                    value = ",".join(record.ignored).encode("latin-1", "replace")[:4096]
                    headers.append((IGNORED_HEADER.encode(), value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            if record.status is None:
                record.status = 500  # answered by the server-error handler, outside this layer
            raise
        finally:
            _CURRENT.reset(token)
            record.duration_s = time.perf_counter() - record.started
            record.endpoint = self._endpoint(scope)
            self._finish(record, metrics)

    def _endpoint(self, scope: dict[str, Any]) -> str:
        """The route's path template; for a request answered before routing (a 401), the route it would
        have reached; ``unmatched`` for unknown paths (their paths never become label values)."""
        route = scope.get("route")
        if route is None:
            from starlette.routing import Match

            if self._leaves is None:  # the routes are all known once the app serves
                self._leaves = list(_leaf_routes(self.routes))
            for candidate in self._leaves:
                try:
                    if candidate.matches(scope)[0] is not Match.NONE:
                        route = candidate
                        break
                except Exception:
                    continue
        return getattr(route, "path", None) or "unmatched"

    def _finish(self, record: RequestRecord, metrics: Any) -> None:
        if metrics is not None:
            try:
                metrics.observe(record)
            except Exception:  # metrics never fail a request
                logging.getLogger("abstractllm.server").exception("could not record metrics")
        if self.state.config.log_format == "json":
            access_log.info("%s %s %s", record.method, record.path, record.status,
                            extra={"access_fields": record.as_log()})
        elif access_log.isEnabledFor(logging.DEBUG):
            access_log.debug("%s %s %s %.1f ms id=%s", record.method, record.path, record.status,
                             (record.duration_s or 0) * 1000, record.request_id)


def _leaf_routes(routes: Any, depth: int = 0) -> Any:
    """The endpoint routes (those with a ``path``) under ``routes``, included routers opened."""
    for route in routes:
        inner = getattr(route, "routes", None)
        if inner is None:
            inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None and depth < 8:
            yield from _leaf_routes(inner, depth + 1)
        elif isinstance(getattr(route, "path", None), str):
            yield route
