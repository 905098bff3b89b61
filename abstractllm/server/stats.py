"""Server counters and the admission gate that knows which requests are active and which are queued.

The provider runs one generation at a time on its worker thread. ``Gate`` admits one request at a time
in arrival order: the one holding it is *active*, the ones waiting are *queued*. A generation that ends
early (client gone) releases the gate only once the provider's worker has really stopped, so ``/stats``
never shows an idle server while a cancelled generation still runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..types import Response

__all__ = ["Stats", "Gate", "memory_snapshot"]


@dataclass
class Stats:
    """Running totals since the server started."""

    started: float = field(default_factory=time.time)
    requests: int = 0  # completed successfully
    errors: int = 0
    cancelled: int = 0  # client disconnected before the end
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_total_s: float = 0.0

    def record(self, resp: Response | None, latency_s: float) -> None:
        self.requests += 1
        self.latency_total_s += latency_s
        if resp is not None and resp.usage is not None:
            self.prompt_tokens += resp.usage.prompt_tokens
            self.completion_tokens += resp.usage.completion_tokens
            self.cached_tokens += resp.usage.cached_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests_served": self.requests,
            "requests_failed": self.errors,
            "requests_cancelled": self.cancelled,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_tokens,
            "mean_latency_s": round(self.latency_total_s / self.requests, 4) if self.requests else None,
        }


class Gate:
    """One request at a time, FIFO; counts active and queued requests."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.active = 0
        self.queued = 0

    async def acquire(self) -> None:
        self.queued += 1
        try:
            await self._lock.acquire()
        finally:
            self.queued -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._lock.release()

    def release_after(self, barrier: Callable[[], Awaitable[Any]]) -> None:
        """Release once ``barrier()`` completes (e.g. the worker finished its cancelled job)."""

        async def _wait() -> None:
            try:
                await barrier()
            except Exception:
                pass
            finally:
                self.release()

        asyncio.get_running_loop().create_task(_wait())


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
