"""The server's own counters (the provider's engine counts the generations: ``get_stats()``), and the
memory snapshot of ``/stats``."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats", "memory_snapshot", "provider_stats", "prompt_cache", "distributed_info"]


@dataclass
class Stats:
    """What the server counts itself, since it started: its uptime and the requests it answered with an
    error status before or while they reached the provider."""

    started: float = field(default_factory=time.time)
    http_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"uptime_s": round(time.time() - self.started, 3), "http_errors": self.http_errors}


def memory_snapshot() -> dict[str, int | None]:
    """Process RSS and MLX active / peak / cache bytes, read without waiting for the worker thread.

    MLX's allocator counters are process-wide; reading them does not touch any stream. MLX numbers are
    ``None`` until a model has been loaded (mlx is not imported before that).
    """
    out: dict[str, int | None] = {"process_rss": None, "mlx_active": None, "mlx_peak": None, "mlx_cache": None}
    try:
        import psutil

        out["process_rss"] = int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:
        pass
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        try:
            out["mlx_active"] = int(mx.get_active_memory())
            out["mlx_peak"] = int(mx.get_peak_memory())
            out["mlx_cache"] = int(mx.get_cache_memory())
        except Exception:
            pass
    return out


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
