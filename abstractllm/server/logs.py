"""The server's log lines: text (``%(levelname)s: %(name)s: %(message)s``), or with ``--log-format json`` one
JSON object per line, uvicorn's own lines included::

    {"ts": "2026-01-01T12:00:00.123Z", "level": "info", "logger": "uvicorn.error", "message": "..."}
    {"ts": ..., "level": "info", "logger": "abstractllm.server.access", "event": "access",
     "request_id": "req_...", "method": "POST", "path": "/v1/messages", "endpoint": "/v1/messages",
     "status": 200, "duration_ms": 812.4, "first_byte_ms": 40.2, "input_tokens": 21, "output_tokens": 32,
     "cached_tokens": 0, "ttft_ms": 38.9}

Access lines come from ``observe.ObserveMiddleware`` (one per request, when its response is over). In the JSON
format, what other code writes to the process's stderr goes through logging too (``route_stderr``): Python
warnings (``logging.captureWarnings``) and the lines native libraries print, such as llguidance's grammar
warnings, each become a JSON line (``"logger": "stderr"``, level ``warning``).
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import sys
import threading
from typing import Any

__all__ = ["JSONFormatter", "configure_logging", "json_line", "route_stderr"]

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


def _is_json_line(line: str) -> bool:
    if not (line.startswith("{") and line.endswith("}")):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def route_stderr() -> None:
    """Make every line written to file descriptor 2 a JSON log line: Python warnings go through logging
    (``py.warnings``), and a thread reads the lines others write there (native libraries, ``print`` to stderr)
    and writes each to the real stderr, wrapped as ``{"logger": "stderr", "level": "warning", "message"}`` unless it
    is already a JSON object (the server's own lines). Undone at exit, after the last line is written."""
    logging.captureWarnings(True)
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:
        return  # no file descriptors to play with (an embedded interpreter): leave stderr as it is
    out = os.fdopen(real, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                try:
                    data = pipe.read(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    _write(out, raw)
            if pending:
                _write(out, pending)

    thread = threading.Thread(target=pump, name="abstractllm-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        try:
            sys.stderr.flush()
            os.dup2(real, 2)  # the pipe's last writer is gone: the reader sees its end
        except (OSError, ValueError):
            return
        thread.join(2)

    atexit.register(restore)


def _write(out: Any, raw: bytes) -> None:
    line = raw.decode("utf-8", "replace").rstrip("\r")
    if not line.strip():
        return
    try:
        out.write((line if _is_json_line(line) else json_line("stderr", line, "warning")) + "\n")
    except Exception:  # never let the reader die: writers to fd 2 would block on a full pipe
        pass
