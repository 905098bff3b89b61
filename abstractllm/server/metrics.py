"""``GET /metrics``: the server's Prometheus metrics (``prometheus-client``, in the ``server`` extra).

Every app has its own ``CollectorRegistry`` (never the process-wide default one), so several servers in
one process keep separate counts. What is exported:

======================================================  =========  ==========================================
metric                                                  type       what
======================================================  =========  ==========================================
``abstractllm_http_requests_total``                     counter    requests answered, by ``endpoint`` (the
                                                                   route's path, or ``unmatched``), ``method``
                                                                   (a standard one, or ``other``) and ``status``
``abstractllm_http_request_duration_seconds``           histogram  request latency, to the last byte (streams
                                                                   included), by ``endpoint``
``abstractllm_http_requests_in_progress``               gauge      requests being served now
``abstractllm_time_to_first_token_seconds``             histogram  the provider's time to first token, by
                                                                   ``endpoint``
``abstractllm_input_tokens_total``                      counter    prompt tokens of served generations
``abstractllm_cached_input_tokens_total``               counter    of which served from the prompt cache
``abstractllm_output_tokens_total``                     counter    generated tokens
``abstractllm_queue_length``                            gauge      requests waiting for a place in the batch
``abstractllm_active_requests``                         gauge      requests in the batch now (its size)
``abstractllm_average_batch_size``                      gauge      mean rows per engine step
``abstractllm_max_inter_token_latency_seconds``         gauge      the longest wait of a decoding request
``abstractllm_generations_total``                       counter    the provider's requests by ``outcome``
                                                                   (``served``, ``failed``, ``cancelled``)
``abstractllm_prompt_cache_hits_total``                 counter    prompt-cache lookups that found a prefix
``abstractllm_prompt_cache_hit_rate``                   gauge      hits / lookups
``abstractllm_prompt_cache_bytes``                      gauge      bytes held by the prompt cache (RAM)
``abstractllm_prompt_cache_entries``                    gauge      entries (replies and snapshots) in RAM
``abstractllm_prefill_tokens_total``                    counter    by ``source``: prompt tokens ``computed``
                                                                   and ``reused`` from the prefix cache
``abstractllm_prompt_cache_disk_operations_total``      counter    the disk tier's ``read`` / ``write`` (done),
                                                                   ``dropped`` writes, ``corrupt`` files skipped
``abstractllm_prompt_cache_disk_bytes_total``           counter    bytes ``read`` from / ``written`` to disk
``abstractllm_memory_bytes``                            gauge      by ``kind``: ``process_rss`` and the
                                                                   provider's allocator counters (its
                                                                   ``runtime_info()["memory"]``, as ``/stats``)
``abstractllm_model_loaded``                            gauge      1 once the model is loaded
``abstractllm_uptime_seconds``                          gauge      seconds since the server started
======================================================  =========  ==========================================

The provider's numbers (queue, batch, generations, cache, memory) come from ``get_stats()``,
``get_model_info()`` and ``runtime_info()`` at scrape time, as ``/stats`` shows them.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from .stats import memory_snapshot, prompt_cache, provider_stats

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _prefix_cache_families(stats: dict[str, Any], cache: dict[str, Any]) -> Iterator[Any]:
    """The prefix cache's entries, the prompt tokens computed and reused, and its disk tier's traffic."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    entries = GaugeMetricFamily("abstractllm_prompt_cache_entries", "Entries in the prompt cache (RAM).")
    entries.add_metric([], float(cache.get("entries") or 0))
    yield entries
    prefill = CounterMetricFamily("abstractllm_prefill_tokens", "Prompt tokens computed and reused from the "
                                  "prefix cache.", labels=["source"])
    prefill.add_metric(["computed"], float(stats.get("prefill_tokens_computed") or 0))
    prefill.add_metric(["reused"], float(stats.get("prefill_tokens_reused") or 0))
    yield prefill
    disk = cache.get("disk") or {}
    ops = CounterMetricFamily("abstractllm_prompt_cache_disk_operations", "The prompt cache's disk tier: reads and "
                              "writes done, writes dropped, damaged files skipped.", labels=["op"])
    for op, key in (("read", "reads"), ("write", "writes"), ("dropped", "dropped"), ("corrupt", "corrupt")):
        ops.add_metric([op], float(disk.get(key) or 0))
    yield ops
    moved = CounterMetricFamily("abstractllm_prompt_cache_disk_bytes", "Bytes read from and written to the prompt "
                                "cache's disk tier.", labels=["direction"])
    moved.add_metric(["read"], float(disk.get("read_bytes") or 0))
    moved.add_metric(["written"], float(disk.get("written_bytes") or 0))
    yield moved


class ServerMetrics:
    """The metrics of one app (``state``: its ``ServerState``)."""

    def __init__(self, state: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("abstractllm_http_requests", "HTTP requests answered, by endpoint, method and "
                                "status.", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("abstractllm_http_request_duration_seconds", "Request latency to the last byte.",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("abstractllm_http_requests_in_progress", "Requests being served now.", registry=r)
        self.ttft = Histogram("abstractllm_time_to_first_token_seconds", "Time to first token of generations.",
                              ["endpoint"], buckets=_TTFT_BUCKETS, registry=r)
        self.input_tokens = Counter("abstractllm_input_tokens", "Prompt tokens of served generations.",
                                    ["endpoint"], registry=r)
        self.cached_tokens = Counter("abstractllm_cached_input_tokens", "Prompt tokens served from the prompt "
                                     "cache.", ["endpoint"], registry=r)
        self.output_tokens = Counter("abstractllm_output_tokens", "Generated tokens.", ["endpoint"], registry=r)
        r.register(_ProviderCollector(state))

    def started(self) -> None:
        self.in_progress.inc()

    def observe(self, record: Any) -> None:
        """A request ended (``observe.RequestRecord``)."""
        self.in_progress.dec()
        endpoint = record.endpoint
        method = record.method if record.method in _METHODS else "other"  # clients choose it: bounded
        self.requests.labels(endpoint, method, str(record.status)).inc()
        self.latency.labels(endpoint).observe(record.duration_s or 0.0)
        if record.input_tokens or record.output_tokens:
            self.input_tokens.labels(endpoint).inc(record.input_tokens)
            self.cached_tokens.labels(endpoint).inc(record.cached_tokens)
            self.output_tokens.labels(endpoint).inc(record.output_tokens)
        if record.ttft_s is not None:
            self.ttft.labels(endpoint).observe(record.ttft_s)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ProviderCollector:
    """Read at scrape time: the provider's queue, batch, generations and prompt cache, and memory."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.state
        stats = provider_stats(state)
        cache = prompt_cache(state)

        def gauge(name: str, doc: str, value: Any) -> Any:
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value or 0))
            return g

        yield gauge("abstractllm_queue_length", "Requests waiting for a place in the batch.",
                    stats.get("queue_length"))
        yield gauge("abstractllm_active_requests", "Requests in the batch now.", stats.get("active_requests"))
        yield gauge("abstractllm_average_batch_size", "Mean rows per engine step.", stats.get("average_batch_size"))
        yield gauge("abstractllm_max_inter_token_latency_seconds",
                    "The longest a decoding request waited for its next token.", stats.get("max_inter_token_latency"))
        outcomes = CounterMetricFamily("abstractllm_generations", "The provider's requests by outcome.",
                                       labels=["outcome"])
        for outcome, key in (("served", "requests_served"), ("failed", "requests_failed"),
                             ("cancelled", "requests_cancelled")):
            outcomes.add_metric([outcome], float(stats.get(key) or 0))
        yield outcomes
        hits = CounterMetricFamily("abstractllm_prompt_cache_hits", "Prompt-cache lookups that found a prefix.")
        hits.add_metric([], float((cache or {}).get("hits") or 0))
        yield hits
        yield gauge("abstractllm_prompt_cache_hit_rate", "Prompt-cache hits / lookups.", stats.get("cache_hit_rate"))
        yield gauge("abstractllm_prompt_cache_bytes", "Bytes held by the prompt cache.", (cache or {}).get("bytes"))
        yield from _prefix_cache_families(stats, cache or {})
        memory = GaugeMetricFamily("abstractllm_memory_bytes", "Process RSS and MLX allocator memory.",
                                   labels=["kind"])
        for kind, value in memory_snapshot(state.llm).items():
            if value is not None:
                memory.add_metric([kind], float(value))
        yield memory
        yield gauge("abstractllm_model_loaded", "1 once the model is loaded.", state.status == "ok")
        yield gauge("abstractllm_uptime_seconds", "Seconds since the server started.",
                    time.time() - state.stats.started)

