"""The batching engine: one per MLX provider, on the provider's worker thread.

Requests arrive from any thread (``submit``) into a bounded waiting list; the engine loop, a job on the
worker, admits them into the model's batch between steps, in priority order, and advances every admitted
request one step at a time: mlx-lm's ``BatchGenerator`` decodes them together (text), and a long prompt is
prefilled in chunks between decode steps so it never stalls the others for long. Each request's tokens go
through its own ``RequestPipeline`` (stop strings, usage, timings) to its own channel. A request that ends
(end of sequence, ``max_tokens``, a stop string) or is cancelled leaves the batch at the next step and
hands its KV cache to the prompt cache. The loop ends when nothing is admitted or waiting, so the worker
is free for loading, unloading and closing.

Admission order: the highest priority first (``RequestPriority``); equal priorities in arrival order; a
waiting request gains one level per ``PRIORITY_AGING_S`` seconds waited, so a low one is never starved.
More than ``max_queue_size`` requests waiting for a slot (those a free slot is about to take do not count):
``QueueFullError`` at submission, nothing queued.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import AbstractLLMError, GenerationError, MemoryLimitError, QueueFullError
from ...params import PRIORITY_AGING_S
from ...types import GenerationRequest, Response
from ..stats import RequestStats
from ..worker import CancelToken, Emit, SerialWorker
from .backend import import_backend
from .pipeline import RequestPipeline

if TYPE_CHECKING:
    from .adapter import ModelAdapter

__all__ = ["Engine", "EngineRequest", "convert_backend_error"]

_DONE = ("done", None)


@dataclass(eq=False)
class EngineRequest:
    """One request in the engine: what was asked, where its chunks go, and its progress."""

    request: GenerationRequest
    emit: Emit
    token: CancelToken
    priority: int
    seq: int
    submitted_at: float
    pipeline: RequestPipeline
    state: Any = None  # the adapter's per-request state
    admitted: bool = False

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params

    def effective_priority(self, now: float) -> int:
        return int(self.priority) + int((now - self.submitted_at) // PRIORITY_AGING_S)


class Engine:
    """See the module docstring. ``adapter_for_run`` loads the model if needed (on the worker) and
    returns the adapter; ``convert`` turns a backend exception into the exception tree."""

    def __init__(self, worker: SerialWorker, *, model: str, max_batch_size: int, max_queue_size: int,
                 adapter_for_run: Callable[[], "ModelAdapter"], convert: Callable[[BaseException], BaseException],
                 reload_pending: Callable[[], bool] = lambda: False) -> None:
        self.worker = worker
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self._adapter_for_run = adapter_for_run
        self._reload_pending = reload_pending
        self._convert = convert
        self._lock = threading.Lock()
        self._waiting: list[EngineRequest] = []
        self._active: list[EngineRequest] = []
        self._jobs: list[tuple[Callable[[], Any], Any]] = []
        self._running = False
        self._seq = 0
        self.stats = RequestStats()
        self._last_step_end: float | None = None  # when the last step ended (None: the loop was idle)
        self.adapter: "ModelAdapter | None" = None

    # ------------------------------------------------------------------ from any thread
    def submit(self, request: GenerationRequest, emit: Emit, token: CancelToken) -> None:
        """Queue a request (``QueueFullError`` when ``max_queue_size`` are already waiting)."""
        params = request.params
        pipeline = RequestPipeline(model=self.model, stop=params.get("stop") or [],
                                   stop_token_ids=params.get("stop_token_ids") or [],
                                   want_logprobs=bool(params.get("logprobs")))
        with self._lock:
            # the waiting list holds requests a free batch slot is about to take, too (a cancelled request's
            # slot frees at the next step): those are not queued
            slots = min(self.max_batch_size, self.adapter.capacity) if self.adapter is not None else self.max_batch_size
            free = max(0, slots - sum(1 for r in self._active if not r.token.cancelled))
            if len(self._waiting) >= self.max_queue_size + free:
                retry = max(1.0, self._average_response_time())
                raise QueueFullError(
                    f"The request queue is full ({len(self._waiting)} waiting, max_queue_size="
                    f"{self.max_queue_size}); retry in about {retry:.0f} s.",
                    queue_size=len(self._waiting), retry_after_s=retry)
            self._seq += 1
            req = EngineRequest(request, emit, token, int(params.get("priority", 1)), self._seq,
                                pipeline.t0, pipeline)
            self._waiting.append(req)
            self.worker.track(token)
            start = not self._running
            self._running = True
        if start:
            self._start_loop()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker between two steps (at once if the engine is idle) and return its
        result: for maintenance that must not wait for a busy batch to drain (``clear_cache``)."""
        from concurrent.futures import Future

        if threading.current_thread() is self.worker.thread:
            return fn()
        future: Future = Future()
        with self._lock:
            if self._running:
                self._jobs.append((fn, future))
                fn = None  # type: ignore[assignment]
        if fn is not None:
            return self.worker.call(fn)
        return future.result()

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def active_count(self) -> int:
        return len(self._active)

    def _average_response_time(self) -> float:
        return self.stats.response_time_s / self.stats.served if self.stats.served else 1.0

    def _start_loop(self) -> None:
        try:
            self.worker.submit(self._run)
        except BaseException as exc:  # the worker is closed: fail what was queued
            with self._lock:
                waiting, self._waiting = self._waiting, []
                self._running = False
            for req in waiting:
                self._fail(req, exc)

    # ------------------------------------------------------------------ the loop (worker thread)
    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self._loop()
        finally:
            self.stats.busy_s += time.perf_counter() - started
            with self._lock:
                self._running = False
                restart = bool(self._waiting) or bool(self._jobs)
                if restart:
                    self._running = True
            if restart:  # arrived while the loop was ending
                self._start_loop()

    def _current_adapter(self) -> "ModelAdapter | None":
        """With no request in the batch: the adapter to admit with (loads or reloads the model if needed;
        a load failure fails every waiting request). During a batch: the batch's adapter, or None while a
        reload waits for the batch to drain."""
        if self._active:
            return None if self._reload_pending() else self.adapter
        if not self._waiting:
            return self.adapter
        try:
            self.adapter = self._adapter_for_run()
        except BaseException as exc:
            with self._lock:
                waiting, self._waiting = self._waiting, []
            for req in waiting:
                self._fail(req, exc)
            self.adapter = None
        return self.adapter

    def _loop(self) -> None:
        mx = import_backend("mlx.core")  # the backend's speed setup (fast BLAS) runs before mlx.core loads
        mx.reset_peak_memory()
        self._last_step_end = None
        while True:
            self._run_jobs()
            self._drop_cancelled_waiting()
            admit_with = self._current_adapter()
            if admit_with is not None:
                self._admit(admit_with)
            adapter = self.adapter
            for req in [r for r in self._active if r.token.cancelled]:
                self._finish(adapter, req, "cancelled")
            if not self._active or adapter is None:
                with self._lock:
                    if not self._waiting and not self._jobs:
                        return
                continue
            decoding = any(r.pipeline.first_at is not None for r in self._active)
            try:
                results = adapter.step()
            except BaseException as exc:
                self._fail_batch(adapter, exc)
                continue
            self._deliver(adapter, results, decoding)
            _yield_gil()

    def _deliver(self, adapter: "ModelAdapter", results: list[tuple[EngineRequest, Any]], decoding: bool) -> None:
        """A step's tokens to their requests (the ended ones finish), and the step into the statistics
        (``decoding``: some request already had a token before it, so it waited for this step)."""
        now = time.perf_counter()
        if decoding and self._last_step_end is not None:
            self.stats.max_step_gap_s = max(self.stats.max_step_gap_s, now - self._last_step_end)
        self._last_step_end = now
        self.stats.steps += 1
        self.stats.step_rows += len(self._active)
        for req, step in results:
            chunk = req.pipeline.feed(step)
            if chunk is not None:
                req.emit(("item", chunk))
            if req.pipeline.finish is not None:
                self._finish(adapter, req, None)

    def _run_jobs(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for fn, future in jobs:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _drop_cancelled_waiting(self) -> None:
        with self._lock:
            gone = [r for r in self._waiting if r.token.cancelled]
            if gone:
                self._waiting = [r for r in self._waiting if not r.token.cancelled]
        for req in gone:
            self._end(req, req.pipeline.final("cancelled"))

    def _pop_next(self) -> EngineRequest | None:
        with self._lock:
            if not self._waiting:
                return None
            now = time.perf_counter()
            best = max(self._waiting, key=lambda r: (r.effective_priority(now), -r.seq))
            self._waiting.remove(best)
            return best

    def _push_back(self, req: EngineRequest) -> None:
        with self._lock:
            self._waiting.append(req)

    def _admit(self, adapter: "ModelAdapter", *, on_admitted: Callable[[EngineRequest], None] | None = None,
               on_failed: Callable[[EngineRequest, BaseException], None] | None = None) -> None:
        """Waiting requests into the batch while it has room, best priority first; a request the adapter
        refuses now waits for the batch to drain, one it fails on fails alone. ``on_admitted`` /
        ``on_failed`` see each outcome (the lock-step engine tells the other ranks)."""
        while len(self._active) < min(self.max_batch_size, adapter.capacity):
            req = self._pop_next()
            if req is None:
                return
            try:
                admitted = adapter.admit(req)
            except BaseException as exc:
                self._fail(req, exc)
                if on_failed is not None:
                    on_failed(req, exc)
                continue
            if not admitted:
                self._push_back(req)
                return
            req.admitted = True
            self._active.append(req)
            if on_admitted is not None:
                on_admitted(req)

    def _finish(self, adapter: "ModelAdapter", req: EngineRequest, reason: str | None) -> None:
        """The request ended (``reason`` None: as its pipeline says; else e.g. "cancelled")."""
        mx = import_backend("mlx.core")

        self._active.remove(req)
        try:
            adapter.release(req)
        except Exception:  # a cache that cannot be stored is not the request's failure
            pass
        self._end(req, req.pipeline.final(reason, peak_memory_bytes=int(mx.get_peak_memory())))

    def _end(self, req: EngineRequest, last: Response) -> None:
        self.stats.record(last)
        req.emit(("item", last))
        req.emit(_DONE)
        self.worker.untrack(req.token)

    def _fail(self, req: EngineRequest, exc: BaseException) -> None:
        self.stats.failed += 1
        req.emit(("error", self._convert(exc)))
        self.worker.untrack(req.token)

    def _fail_batch(self, adapter: "ModelAdapter", exc: BaseException) -> None:
        """A step failed: every request in the batch gets the error; the batch is dropped (its caches
        may be half-updated and are not stored); waiting requests go on with a fresh batch."""
        failed, self._active = self._active, []
        for req in failed:
            try:
                adapter.release(req, failed=True)
            except Exception:
                pass
        adapter.reset()
        adapter.reseed_after_failure()
        for req in failed:
            self._fail(req, exc)

    # ------------------------------------------------------------------ statistics
    def stats_dict(self, cache_hits: int = 0, cache_lookups: int = 0) -> dict[str, Any]:
        """``RequestStats.as_dict`` with the engine's queue and batch."""
        return self.stats.as_dict(queue_length=self.queue_length, active=self.active_count, cache_hits=cache_hits,
                                  cache_lookups=cache_lookups)


def convert_backend_error(exc: BaseException) -> BaseException:
    """The one boundary for generation errors inside mlx / mlx-lm / mlx-vlm."""
    if isinstance(exc, (AbstractLLMError, GeneratorExit, KeyboardInterrupt)):
        return exc
    if isinstance(exc, MemoryError):
        return MemoryLimitError(f"MLX ran out of memory during generation: {exc}")
    err = GenerationError(f"MLX generation failed: {type(exc).__name__}: {exc}")
    err.original_exception = exc
    return err


def _yield_gil() -> None:
    """Let a consumer woken by this step's chunks take the GIL at once (see ``worker._release_gil``)."""
    import os

    sched_yield = getattr(os, "sched_yield", None)
    if sched_yield is not None:
        sched_yield()
