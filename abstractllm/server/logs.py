"""The server's log lines: text (``%(levelname)s: %(name)s: %(message)s``), or with ``--log-format json`` one
JSON object per line, uvicorn's own lines included::

    {"ts": "2026-01-01T12:00:00.123Z", "level": "info", "logger": "uvicorn.error", "message": "..."}
    {"ts": ..., "level": "info", "logger": "abstractllm.server.access", "event": "access",
     "request_id": "req_...", "method": "POST", "path": "/v1/messages", "endpoint": "/v1/messages",
     "status": 200, "duration_ms": 812.4, "first_byte_ms": 40.2, "input_tokens": 21, "output_tokens": 32,
     "cached_tokens": 0, "ttft_ms": 38.9}

Access lines come from ``observe.ObserveMiddleware`` (one per request, when its response is over).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

__all__ = ["JSONFormatter", "configure_logging", "json_line"]

_TEXT_FORMAT = "%(levelname)s: %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per record; an access record's fields (``access_fields``) at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out: dict[str, Any] = {"ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                               "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "access_fields", None)
        if isinstance(fields, dict):
            out["event"] = "access"
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def json_line(logger: str, message: str, level: str = "info") -> str:
    """One log line in the JSON format, for what is printed before logging is set up."""
    record = logging.LogRecord(logger, getattr(logging, level.upper()), "", 0, message, None, None)
    return JSONFormatter().format(record)


def configure_logging(log_level: str, log_format: str) -> dict[str, Any] | None:
    """Set up this process's logging for the server; return the ``log_config`` to give uvicorn (``None``:
    keep uvicorn's own)."""
    level = log_level.upper()
    if log_format != "json":
        logging.basicConfig(level=level, format=_TEXT_FORMAT)
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": "abstractllm.server.logs.JSONFormatter"}},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
                    "uvicorn.error": {"level": level},
                    "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False}},
        "root": {"handlers": ["default"], "level": level},
    }
