"""``RequestStats``: the counters behind every provider's ``get_stats()`` (same names on every provider
and in the server's ``/stats``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..types import Response, Usage

__all__ = ["RequestStats"]


@dataclass
class RequestStats:
    """Counts requests as they end. ``busy_s``, ``steps``, ``step_rows`` and ``max_step_gap_s`` are a
    batching engine's."""

    served: int = 0
    failed: int = 0
    cancelled: int = 0
    tokens: int = 0
    response_time_s: float = 0.0
    ttft_s: float = 0.0
    ttft_n: int = 0
    busy_s: float = 0.0
    steps: int = 0
    step_rows: int = 0
    max_step_gap_s: float = 0.0  # the longest time between two tokens of a decoding request
    prefill_tokens: int = 0  # prompt tokens computed
    reused_tokens: int = 0  # prompt tokens served from a prompt (prefix) cache

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def record(self, last: Response) -> None:
        """A request ended with ``last`` (its last chunk, or the whole response)."""
        usage = last.usage or Usage()
        self.tokens += usage.completion_tokens
        cached = int(usage.cached_tokens or 0)
        self.reused_tokens += cached
        self.prefill_tokens += max(0, int(usage.prompt_tokens or 0) - cached)
        if last.finish_reason == "cancelled":
            self.cancelled += 1
            return
        self.served += 1
        self.response_time_s += last.total_s or 0.0
        if last.ttft_s is not None:
            self.ttft_s += last.ttft_s
            self.ttft_n += 1

    @property
    def average_response_time(self) -> float:
        return self.response_time_s / self.served if self.served else 0.0

    def as_dict(self, *, queue_length: int = 0, active: int = 0, cache_hits: int = 0,
                cache_lookups: int = 0) -> dict[str, Any]:
        busy = self.busy_s if self.busy_s > 0 else self.response_time_s
        memory: dict[str, int | None] = {"allocated": None, "cached": None, "peak": None}
        mx = sys.modules.get("mlx.core")
        if mx is not None:
            memory = {"allocated": int(mx.get_active_memory()), "cached": int(mx.get_cache_memory()),
                      "peak": int(mx.get_peak_memory())}
        return {
            "requests_served": self.served,
            "requests_failed": self.failed,
            "requests_cancelled": self.cancelled,
            "total_tokens_generated": self.tokens,
            "average_response_time": self.average_response_time,
            "average_ttft": self.ttft_s / self.ttft_n if self.ttft_n else 0.0,
            "tokens_per_second": self.tokens / busy if busy > 0 else 0.0,
            "cache_hit_rate": cache_hits / cache_lookups if cache_lookups else 0.0,
            "queue_length": queue_length,
            "active_requests": active,
            "batch_size": active,
            "average_batch_size": self.step_rows / self.steps if self.steps else (1.0 if self.served else 0.0),
            "max_inter_token_latency": self.max_step_gap_s,
            "prefill_tokens_computed": self.prefill_tokens,
            "prefill_tokens_reused": self.reused_tokens,
            "memory_usage": memory,
        }
