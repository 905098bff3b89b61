"""Errors in the OpenAI shape, and the one mapping from abstractllm's exceptions to HTTP statuses.

Every error body is ``{"error": {"message", "type", "param", "code"}}``, except on the Anthropic Messages
paths (``/v1/messages...``), which answer Anthropic's ``{"type": "error", "error": {"type", "message"}}``
(``anthropic_error_body``: ``invalid_request_error``, ``authentication_error``, ``not_found_error``,
``request_too_large``, ``rate_limit_error``, ``overloaded_error`` for 503 / 507, ``api_error``). Statuses:

==========================================================  ======  =============================
cause                                                       status  ``type``
==========================================================  ======  =============================
malformed JSON, wrong types, bad values, bad image or file,  400     ``invalid_request_error``
too long a prompt, unsupported feature
(``InvalidRequestError`` and its ``InvalidParameterError``,
``ContextWindowExceededError``; ``FileProcessingError``
and its ``ImageProcessingError``; ``UnsupportedFeatureError``)
missing or wrong API key                                    401     ``authentication_error``
the provider's request queue is full (``QueueFullError``;   429     ``rate_limit_error``
with a ``Retry-After`` header)
unknown path                                                404     ``not_found_error``
wrong HTTP method                                           405     ``invalid_request_error``
body larger than the limit                                  413     ``invalid_request_error``
model not loaded (still loading, or its load failed)        503     ``server_error``
the request would exceed the memory budget                  507     ``insufficient_memory``
(``MemoryLimitError``: the server is short of memory,
not the request malformed; retry smaller or later)
anything else (a bug, ``GenerationError``)                  500     ``server_error``
==========================================================  ======  =============================

A 500's message is "internal error (request id ...)": the exception, with its traceback, is logged at error
level on the ``abstractllm.server`` logger (a JSON line with ``--log-format json``), never sent to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from ..exceptions import (
    AbstractLLMError,
    ContextWindowExceededError,
    FileProcessingError,
    ImageProcessingError,
    InvalidRequestError,
    MemoryLimitError,
    ModelLoadError,
    QueueFullError,
    UnsupportedFeatureError,
)

log = logging.getLogger("abstractllm.server")

__all__ = ["APIError", "ClientGone", "error_body", "anthropic_error_body", "is_anthropic_path", "status_for",
           "api_error_from"]


class APIError(Exception):
    """An error answered to the client with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _default_type(status)
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


class ClientGone(Exception):
    """The client disconnected before the response started; its generation was stopped. Answered with
    499 (nginx's "client closed request"), which nobody receives: it shows only in logs."""


def _default_type(status: int) -> str:
    return {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
            507: "insufficient_memory"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


#: Anthropic's error ``type`` per HTTP status (its Messages API's error shape)
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error", 507: "overloaded_error"}


def is_anthropic_path(path: str) -> bool:
    """Paths of the Anthropic Messages API (``/v1/messages``, ``/v1/messages/count_tokens``): their errors
    use Anthropic's shape."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_error_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error object: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception raised while serving a request."""
    if isinstance(exc, APIError):
        return exc.status
    if isinstance(exc, (InvalidRequestError, FileProcessingError, UnsupportedFeatureError)):
        return 400
    if isinstance(exc, MemoryLimitError):
        return 507
    if isinstance(exc, QueueFullError):
        return 429
    if isinstance(exc, ModelLoadError):
        return 503
    return 500


def api_error_from(exc: BaseException, request_id: str | None = None) -> APIError:
    """Wrap any exception as an ``APIError``. A 500 says only "internal error" and the request's id: what went
    wrong (a traceback, a grammar's or a parser's state) is logged at error level, never sent."""
    if isinstance(exc, APIError):
        return exc
    status = status_for(exc)
    param = getattr(exc, "param", None)
    code = {400: "invalid_value", 429: "queue_full", 503: "model_not_loaded", 507: "insufficient_memory"}.get(status)
    headers = None
    if isinstance(exc, QueueFullError):
        import math

        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s or 1)))}
    if isinstance(exc, UnsupportedFeatureError):
        code = "unsupported_feature"
    elif isinstance(exc, ContextWindowExceededError):
        code = "context_length_exceeded"
    elif isinstance(exc, ImageProcessingError):
        code = "invalid_image"
    elif isinstance(exc, FileProcessingError):
        code = "invalid_file"
    if status == 500:  # a bug or a failed generation: its details (grammar, parser state) stay in the log
        from .observe import current_record

        record = current_record()
        rid = request_id or (record.request_id if record is not None else None)
        log.error("internal error serving request %s: %s: %s", rid or "-", type(exc).__name__, exc, exc_info=exc)
        message = f"internal error (request id {rid})" if rid else "internal error"
        return APIError(500, message + ": the server's log has the details.", code="internal_error")
    message = str(exc) if isinstance(exc, AbstractLLMError) else f"{type(exc).__name__}: {exc}"
    return APIError(status, message, param=param, code=code, headers=headers)
