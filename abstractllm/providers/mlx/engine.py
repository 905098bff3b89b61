"""The batching engine: one per MLX provider, the loop that drives a ``Scheduler`` on the provider's worker
thread (``scheduler.py`` decides which request runs when; the adapter, ``adapter.py``, runs the model).

Requests arrive from any thread (``submit``) into the scheduler's bounded queue; the engine loop, a job on
the worker, loads the model when a request waits and none is loaded (``adapter_for_run``), then turns the
scheduler: between two steps it admits waiting requests into the model's batch in priority order, and
advances every admitted request one step at a time (mlx-lm's ``BatchGenerator`` decodes them together for
text; a long prompt is prefilled in chunks between decode steps so it never stalls the others for long).
Each request's tokens go through its own ``RequestPipeline`` (stop strings, usage, timings) to its own
channel. The loop ends when nothing is admitted or waiting, so the worker is free for loading, unloading
and closing; ``call`` runs maintenance between two steps of a busy loop.

Admission order: the highest priority first (``RequestPriority``); equal priorities in arrival order; a
waiting request gains one level per ``PRIORITY_AGING_S`` seconds waited, so a low one is never starved.
More than ``max_queue_size`` requests waiting for a slot (those a free slot is about to take do not count):
``QueueFullError`` at submission, nothing queued. The batch size is the adapter's ``capacity`` (from the
``max_batch_size`` config and the model's limits); before a model is loaded, ``max_batch_size``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import AbstractLLMError, GenerationError, MemoryLimitError
from ...params import PRIORITY_AGING_S
from ...types import GenerationRequest
from ..stats import RequestStats
from ..worker import CancelToken, Emit, SerialWorker
from .backend import import_backend
from .pipeline import RequestPipeline
from .scheduler import EngineRequest, Scheduler

if TYPE_CHECKING:
    from .adapter import ModelAdapter

__all__ = ["EngineBase", "Engine", "EngineRequest", "Jobs", "convert_backend_error"]


class Jobs:
    """Functions waiting to run on the worker between two steps of a loop (``call``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Callable[[], Any], Future]] = []

    def add(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        with self._lock:
            self._items.append((fn, future))
        return future

    def run(self) -> None:
        """Run every queued function, its result or exception into its future."""
        with self._lock:
            items, self._items = self._items, []
        for fn, future in items:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def __bool__(self) -> bool:
        return bool(self._items)


def _peak_memory() -> int:
    return int(import_backend("mlx.core").get_peak_memory())


class EngineBase(ABC):
    """What every loop shares: the ``Scheduler``, the adapter it batches on, the batch size, the requests'
    construction, the statistics. A loop (``Engine``, ``lockstep.DistributedEngine``) drives the scheduler."""

    def __init__(self, worker: SerialWorker, *, model: str, max_batch_size: int, max_queue_size: int,
                 convert: Callable[[BaseException], BaseException], clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.model = model
        #: the batch size before a model is loaded (then the adapter's ``capacity``, from the same config)
        self.max_batch_size = max_batch_size
        self.adapter: "ModelAdapter | None" = None
        self.scheduler = Scheduler(max_queue_size=max_queue_size, capacity=self.capacity, clock=clock,
                                   aging_s=PRIORITY_AGING_S, convert=convert, peak_memory=_peak_memory,
                                   on_end=lambda req: worker.untrack(req.token))

    def capacity(self) -> int:
        """The batch size: the loaded adapter's ``capacity``; before a model is loaded, ``max_batch_size``."""
        adapter = self.adapter
        return int(adapter.capacity) if adapter is not None else int(self.max_batch_size)

    @property
    def max_queue_size(self) -> int:
        return self.scheduler.max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value: int) -> None:
        self.scheduler.max_queue_size = value

    @property
    def stats(self) -> RequestStats:
        return self.scheduler.stats

    @property
    def queue_length(self) -> int:
        return self.scheduler.queue_length

    @property
    def active_count(self) -> int:
        return self.scheduler.active_count

    def stats_dict(self, cache_hits: int = 0, cache_lookups: int = 0) -> dict[str, Any]:
        """``RequestStats.as_dict`` with the engine's queue and batch."""
        return self.scheduler.stats_dict(cache_hits, cache_lookups)

    def new_request(self, request: GenerationRequest, emit: Emit, token: CancelToken, seq: int = 0) -> EngineRequest:
        """The engine's request for ``request`` with its own output pipeline."""
        params = request.params
        pipeline = RequestPipeline(model=self.model, stop=params.get("stop") or [],
                                   stop_token_ids=params.get("stop_token_ids") or [],
                                   want_logprobs=bool(params.get("logprobs")))
        return EngineRequest(request, emit, token, pipeline, priority=int(params.get("priority", 1)), seq=seq)

    @abstractmethod
    def submit(self, request: GenerationRequest, emit: Emit, token: CancelToken) -> None:
        """Queue a request (``QueueFullError`` when the queue is full)."""

    @abstractmethod
    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker between two steps and return its result."""


class Engine(EngineBase):
    """The one-process loop (see the module docstring). ``adapter_for_run`` loads the model if needed (on
    the worker) and returns the adapter; ``convert`` turns a backend exception into the exception tree;
    ``reload_pending``: a reload waits for the batch to drain (nothing is admitted meanwhile)."""

    def __init__(self, worker: SerialWorker, *, model: str, max_batch_size: int, max_queue_size: int,
                 adapter_for_run: Callable[[], "ModelAdapter"], convert: Callable[[BaseException], BaseException],
                 reload_pending: Callable[[], bool] = lambda: False, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(worker, model=model, max_batch_size=max_batch_size, max_queue_size=max_queue_size,
                         convert=convert, clock=clock)
        self._adapter_for_run = adapter_for_run
        self._reload_pending = reload_pending
        self._lock = threading.Lock()
        self._running = False
        self.jobs = Jobs()

    # ------------------------------------------------------------------ from any thread
    def submit(self, request: GenerationRequest, emit: Emit, token: CancelToken) -> None:
        """Queue a request (``QueueFullError`` when ``max_queue_size`` are already waiting)."""
        req = self.new_request(request, emit, token)
        self.worker.track(token)  # before the loop can see it (and end it)
        try:
            self.scheduler.submit(req)
        except BaseException:
            self.worker.untrack(token)
            raise
        with self._lock:
            start = not self._running
            self._running = True
        if start:
            self._start_loop()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker between two steps (at once if the engine is idle) and return its
        result: for maintenance that must not wait for a busy batch to drain (``clear_cache``)."""
        if threading.current_thread() is self.worker.thread:
            return fn()
        with self._lock:
            future = self.jobs.add(fn) if self._running else None
        if future is None:
            return self.worker.call(fn)
        return future.result()

    def _start_loop(self) -> None:
        try:
            self.worker.submit(self._run)
        except BaseException as exc:  # the worker is closed: fail what was queued
            with self._lock:
                self._running = False
            self.scheduler.fail_waiting(exc)

    # ------------------------------------------------------------------ the loop (worker thread)
    def _run(self) -> None:
        try:
            with self.scheduler.running():
                self._loop()
        finally:
            with self._lock:
                restart = self.scheduler.has_waiting() or bool(self.jobs)
                self._running = restart
            if restart:  # arrived while the loop was ending
                self._start_loop()

    def _loop(self) -> None:
        mx = import_backend("mlx.core")  # the backend's speed setup (fast BLAS) runs before mlx.core loads
        mx.reset_peak_memory()
        scheduler = self.scheduler
        while True:
            self.jobs.run()
            scheduler.end_cancelled_waiting()  # before a load: a queue of cancelled requests loads nothing
            admit_with = self._current_adapter()
            if scheduler.turn(self.adapter, admit_with):
                _yield_gil()
                continue
            with self._lock:
                if not scheduler.has_waiting() and not self.jobs:
                    return

    def _current_adapter(self) -> "ModelAdapter | None":
        """The adapter to admit with. With no request in the batch: loads or reloads the model if needed (a
        load failure fails every waiting request). During a batch: the batch's adapter, or None while a
        reload waits for the batch to drain."""
        scheduler = self.scheduler
        if scheduler.active_count:
            return None if self._reload_pending() else self.adapter
        if not scheduler.has_waiting():
            return self.adapter
        try:
            self.adapter = self._adapter_for_run()
        except BaseException as exc:
            self.adapter = None
            scheduler.fail_waiting(exc)
        return self.adapter


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
