"""The server's own counters (the provider's engine counts the generations: ``get_stats()``), and what
``/stats``, ``/health`` and ``/metrics`` read of the provider (its ``runtime_info()``, ``get_stats()``,
``get_model_info()``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats", "runtime_info", "memory_snapshot", "provider_config", "provider_stats", "prompt_cache",
           "distributed_info"]


@dataclass
class Stats:
    """What the server counts itself, since it started: its uptime and the requests it answered with an
    error status before or while they reached the provider."""

    started: float = field(default_factory=time.time)
    http_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"uptime_s": round(time.time() - self.started, 3), "http_errors": self.http_errors}


def runtime_info(llm: Any) -> dict[str, Any]:
    """The provider's ``runtime_info()`` (device, BLAS, memory, load state, model); ``{}`` if it failed. An
    object that is no abstractllm provider (a stand-in with ``generate_async``) says only ``is_loaded``."""
    read = getattr(llm, "runtime_info", None)
    if read is None:
        return {"loaded": bool(getattr(llm, "is_loaded", False))}
    try:
        return dict(read())
    except Exception:
        return {}


def memory_snapshot(llm: Any) -> dict[str, int | None]:
    """Memory by name, in bytes (``process_rss`` and the provider's allocator counters: its ``runtime_info()``),
    read without waiting for a generation; ``None`` where not known yet."""
    return dict(runtime_info(llm).get("memory") or {})


def provider_config(state: Any) -> dict[str, Any]:
    """The provider's configuration in effect (``get_config()``; empty if it cannot say)."""
    try:
        return dict(state.llm.get_config())
    except Exception:
        return {}


def provider_stats(state: Any) -> dict[str, Any]:
    """The provider's ``get_stats()`` (empty when it has none, or it failed)."""
    get_stats = getattr(state.llm, "get_stats", None)
    try:
        return dict(get_stats()) if get_stats is not None else {}
    except Exception:
        return {}


def prompt_cache(state: Any) -> dict[str, Any] | None:
    """The loaded model's prompt-cache numbers (``entries``, ``bytes``, ``hits``), if it has a cache."""
    if state.status != "ok":
        return None
    try:
        return state.llm.get_model_info().get("prompt_cache")
    except Exception:
        return None


def distributed_info(llm: Any) -> dict[str, Any]:
    """``{"distributed": {...}}`` for a provider sharded over several ranks, else ``{}``."""
    status = getattr(llm, "distributed_status", None)
    if status is None:
        return {}
    try:
        return {"distributed": status()}
    except Exception:
        return {}
