"""``ServerConfig``: everything ``abstractllm serve`` is started with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServerConfig", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_TOKENS_LIMIT", "DEFAULT_MAX_N"]

from ..params import SERVER_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES
from ..params import SERVER_MAX_N as DEFAULT_MAX_N
from ..params import SERVER_MAX_TOKENS_LIMIT as DEFAULT_MAX_TOKENS_LIMIT
from ..params import (SERVER_LOG_FORMAT, SERVER_PORT, SERVER_RESPONSES_STORE_BYTES, SERVER_RESPONSES_STORE_SIZE,
                      SERVER_SSE_PING_S, SERVER_STRICT_FIELDS)


@dataclass
class ServerConfig:
    """How the server runs.

    Attributes:
        model: the model folder or Hugging Face repo id to serve.
        provider: the provider name for ``create_llm`` (the local MLX provider by default).
        llm_config: extra ``create_llm`` configuration (``quantize``, ``dtype``, ``max_tokens``...).
        host, port: where to listen (loopback by default).
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <api_key>``
            (and ``/health`` then reports no model id or load error).
        max_body_bytes: larger request bodies are answered 413.
        allow_local_files: a folder; image/video paths in requests must resolve inside it. ``None``
            (the default) refuses every local path.
        allow_private_urls: fetch image/video URLs whose host resolves to a loopback, private,
            link-local or otherwise non-global address (checked on every redirect too). ``False`` (the
            default) refuses them: a client must not make the server reach its own network.
        max_tokens_limit: the most tokens a reply may have: a request asking for more ``max_tokens`` is clamped
            to it, and one without ``max_tokens`` may run up to it (and to the end of the context).
            ``"context"`` (the default): the served model's context length. ``None``: no bound (a request's
            ``max_tokens`` goes to the provider as asked; one without runs to the end of the context).
        strict_fields: unknown request fields are a 400 naming them (``--strict-fields``); by default they
            are ignored like the documented fields the server cannot honour (logged once per name, listed in the
            ``x-abstractllm-ignored`` response header; ``fields.py``).
        max_n: the most choices (``n``) one request may ask for; each is a generation in the batch.
        model_id: the id ``/v1/models`` reports (default: the repo id, or the folder's name).
        log_level: the server's log level (``debug``, ``info``, ``warning``, ``error``).
        log_format: ``"text"``, or ``"json"``: every log line a JSON object, and one access-log line per
            request (id, method, endpoint, status, tokens, timings).
        responses_store_size: how many ``/v1/responses`` replies are kept in memory for
            ``previous_response_id`` (least recently used dropped first; 0 keeps none).
        responses_store_bytes: and the most bytes they may hold (their JSON size).
        jobs_db: the Batch API's job store, a SQLite file or a ``postgresql://`` URL (default: the
            default store of ``abstractllm.jobs``; see ``batch_api.py``).
        sse_ping_s: seconds between the keep-alive comments of a server-sent event stream while it sends nothing
            (a long prefill, a queue wait); see ``sse.py``.
    """

    model: str
    provider: str = "mlx"
    llm_config: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = SERVER_PORT
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allow_local_files: Path | None = None
    allow_private_urls: bool = False
    max_tokens_limit: int | str | None = DEFAULT_MAX_TOKENS_LIMIT
    max_n: int = DEFAULT_MAX_N
    model_id: str | None = None
    log_level: str = "info"
    jobs_db: str | None = None
    log_format: str = SERVER_LOG_FORMAT
    responses_store_size: int = SERVER_RESPONSES_STORE_SIZE
    responses_store_bytes: int = SERVER_RESPONSES_STORE_BYTES
    strict_fields: bool = SERVER_STRICT_FIELDS
    sse_ping_s: float = SERVER_SSE_PING_S

    def __post_init__(self) -> None:
        limit = self.max_tokens_limit
        if not (limit is None or limit == "context" or (isinstance(limit, int) and not isinstance(limit, bool)
                                                        and limit > 0)):
            raise ValueError(f"max_tokens_limit must be a positive integer, 'context' or None, got {limit!r}.")
        ping = self.sse_ping_s
        if isinstance(ping, bool) or not isinstance(ping, (int, float)) or not ping > 0:
            raise ValueError(f"sse_ping_s must be a positive number of seconds, got {self.sse_ping_s!r}.")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json', got {self.log_format!r}.")
        if isinstance(self.responses_store_size, bool) or not isinstance(self.responses_store_size, int) \
                or self.responses_store_size < 0:
            raise ValueError(f"responses_store_size must be a non-negative integer, got {self.responses_store_size!r}.")
        if isinstance(self.responses_store_bytes, bool) or not isinstance(self.responses_store_bytes, int) \
                or self.responses_store_bytes < 0:
            raise ValueError("responses_store_bytes must be a non-negative integer, got "
                             f"{self.responses_store_bytes!r}.")

    def resolved_model_id(self) -> str:
        if self.model_id:
            return self.model_id
        path = Path(self.model).expanduser()
        return path.name if path.exists() else self.model
