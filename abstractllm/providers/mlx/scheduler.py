"""The scheduler: which request runs when, and where its output goes. It knows nothing of MLX: a model is
an ``adapter`` (``BatchAdapter``: ``capacity``, ``admit``, ``step``, ``release``, ``recover``), time is an
injected ``clock``, and the loops that drive it (``engine.Engine``: one process; ``lockstep.DistributedEngine``:
several ranks in lock-step) decide when to call it.

The path of a request:

1. ``submit`` (any thread): it waits in the queue, or is refused at once (``QueueFullError``) when
   ``max_queue_size`` requests already wait for a slot (those a free slot is about to take do not count).
2. ``end_cancelled_waiting``: a request cancelled while it waits ends here (``finish_reason`` "cancelled").
3. ``admit``: while the batch has room (``capacity()``: the one source of the batch size), the best waiting
   request goes to ``adapter.admit``: the highest priority first, equal ones in arrival order, and a waiting
   request gains one level per ``aging_s`` seconds waited, so a low one is never starved. The adapter
   checks it (template, memory, parameters): an error fails that request alone; a refusal (False) puts it
   back, and admission stops until the batch changes.
4. ``end_cancelled_active``: a request cancelled in the batch leaves it (``adapter.release``).
5. ``step``: ``adapter.step()`` advances the batch once; each request's ``Step`` goes through its own
   ``RequestPipeline`` to its ``emit``; a request that ended (end of sequence, ``max_tokens``, a stop string)
   leaves the batch. A step that raises fails the whole batch (``fail_batch``: the adapter ``recover``s),
   and the waiting requests go on in a fresh one.

Statistics (``stats``: ``RequestStats``) count every end. Thread-safety: the queue is locked (``submit``
comes from any thread); everything else runs on the loop's thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from ...exceptions import QueueFullError
from ...params import PRIORITY_AGING_S
from ...types import GenerationRequest, Response
from ..stats import RequestStats
from .pipeline import RequestPipeline, Step

__all__ = ["EngineRequest", "BatchAdapter", "Scheduler"]

_DONE = ("done", None)
Emit = Callable[[tuple[str, Any]], None]


@dataclass(eq=False)
class EngineRequest:
    """One request: what was asked (``request``), where its chunks go (``emit``), its cancel flag
    (``token``: anything with ``cancelled``) and output pipeline. ``priority`` is the caller's; ``seq`` (arrival
    order) and ``submitted_at`` are set by ``Scheduler.submit``. An adapter may set up ``pipeline`` and wrap
    ``emit`` in ``admit``; its own per-request state stays in the adapter."""

    request: GenerationRequest
    emit: Emit
    token: Any
    pipeline: RequestPipeline
    priority: int = 1
    seq: int = 0
    submitted_at: float = 0.0

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params


class BatchAdapter(Protocol):
    """What the scheduler needs of a model (``adapter.ModelAdapter`` implements it over MLX)."""

    @property
    def capacity(self) -> int:
        """How many requests the batch holds at most."""

    def admit(self, req: EngineRequest) -> bool:
        """Add ``req`` to the batch (True); False: not now (it waits until the batch changes); raises: it fails."""

    def step(self) -> list[tuple[EngineRequest, Step]]:
        """Advance the batch once: at most one ``Step`` per admitted request."""

    def release(self, req: EngineRequest, *, failed: bool = False) -> None:
        """Take ``req`` out of the batch (ended, cancelled, or ``failed``)."""

    def recover(self) -> None:
        """After a failed step: drop the whole batch, and make the next one possible."""


def _same(exc: BaseException) -> BaseException:
    return exc


class Scheduler:
    """See the module docstring. ``capacity``: the batch size now (asked whenever needed); ``convert``: an
    error as the caller gets it; ``peak_memory``: for the last chunk (None: not reported); ``on_end``: called
    once per request as it ends (the engine's worker stops tracking its cancel token)."""

    def __init__(self, *, max_queue_size: int, capacity: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic, aging_s: float = PRIORITY_AGING_S,
                 convert: Callable[[BaseException], BaseException] = _same,
                 peak_memory: Callable[[], int | None] = lambda: None,
                 on_end: Callable[[EngineRequest], None] = lambda req: None) -> None:
        self.max_queue_size = max_queue_size
        self.capacity = capacity
        self.clock = clock
        self.aging_s = aging_s
        self.stats = RequestStats()
        self._convert = convert
        self._peak_memory = peak_memory
        self._on_end = on_end
        self._lock = threading.Lock()
        self._waiting: list[EngineRequest] = []
        self._active: list[EngineRequest] = []
        self._seq = 0
        self._last_step_end: float | None = None  # when the last step ended (None: not in a run)

    # ------------------------------------------------------------------ any thread
    def submit(self, req: EngineRequest) -> None:
        """Queue ``req`` (its ``seq`` and ``submitted_at`` are set here, even when it is refused);
        ``QueueFullError`` when ``max_queue_size`` requests already wait for a slot."""
        with self._lock:
            self._seq += 1
            req.seq, req.submitted_at = self._seq, self.clock()
            # the queue holds the requests a free slot is about to take, too (a cancelled request's slot
            # frees at the next step): those are not waiting for a slot
            free = max(0, self.capacity() - sum(1 for r in self._active if not r.token.cancelled))
            if len(self._waiting) >= self.max_queue_size + free:
                retry = max(1.0, self.stats.average_response_time or 1.0)
                raise QueueFullError(
                    f"The request queue is full ({len(self._waiting)} waiting, max_queue_size="
                    f"{self.max_queue_size}); retry in about {retry:.0f} s.",
                    queue_size=len(self._waiting), retry_after_s=retry)
            self._waiting.append(req)

    @property
    def queue_length(self) -> int:
        """Requests waiting (not yet admitted)."""
        return len(self._waiting)

    @property
    def active_count(self) -> int:
        """Requests in the batch."""
        return len(self._active)

    def has_waiting(self) -> bool:
        return bool(self._waiting)

    def has_room(self) -> bool:
        """The batch holds fewer requests than ``capacity()``."""
        return len(self._active) < self.capacity()

    def any_cancelled_active(self) -> bool:
        return any(r.token.cancelled for r in self._active)

    def find_active(self, seq: int) -> EngineRequest | None:
        """The request ``seq`` in the batch, if it is there."""
        return next((r for r in self._active if r.seq == seq), None)

    def effective_priority(self, req: EngineRequest, now: float) -> int:
        """``req``'s priority plus one level per ``aging_s`` seconds it has waited."""
        return int(req.priority) + int((now - req.submitted_at) // self.aging_s)

    # ------------------------------------------------------------------ the loop's thread
    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around one run of a loop (from busy to idle): its time counts as busy (``stats.busy_s``)."""
        started = self.clock()
        self._last_step_end = None
        try:
            yield
        finally:
            self.stats.busy_s += self.clock() - started

    def turn(self, adapter: BatchAdapter | None, admit_with: BatchAdapter | None = None) -> bool:
        """One turn of the one-process loop: cancelled requests end, waiting ones join the batch (with
        ``admit_with``; None: none join, e.g. while a reload waits for the batch to drain), and ``adapter``
        steps the batch once (a failed step fails the batch alone). False when there was nothing to step."""
        self.end_cancelled_waiting()
        if admit_with is not None:
            self.admit(admit_with)
        self.end_cancelled_active(adapter)
        if not self._active or adapter is None:
            return False
        try:
            self.step(adapter)
        except BaseException as exc:
            self.fail_batch(adapter, exc)
        return True

    def end_cancelled_waiting(self) -> list[EngineRequest]:
        """End the waiting requests whose callers cancelled; returns them."""
        with self._lock:
            gone = [r for r in self._waiting if r.token.cancelled]
            if gone:
                self._waiting = [r for r in self._waiting if not r.token.cancelled]
        for req in gone:
            self._end(req, req.pipeline.final("cancelled"))
        return gone

    def end_cancelled_active(self, adapter: BatchAdapter | None, *, everything: bool = False) -> list[EngineRequest]:
        """Take the cancelled requests (``everything``: all) out of the batch; returns them."""
        gone = [r for r in self._active if everything or r.token.cancelled]
        for req in gone:
            self.finish(adapter, req, "cancelled")
        return gone

    def admit(self, adapter: BatchAdapter, *, on_admitted: Callable[[EngineRequest], None] | None = None,
              on_failed: Callable[[EngineRequest, BaseException], None] | None = None) -> None:
        """Waiting requests into the batch while it has room, best first (see the module docstring).
        ``on_admitted`` / ``on_failed`` see each outcome (the lock-step loop tells the other ranks)."""
        while self.has_room():
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
                with self._lock:
                    self._waiting.append(req)
                return
            self._active.append(req)
            if on_admitted is not None:
                on_admitted(req)

    def join(self, req: EngineRequest) -> None:
        """Put ``req``, which the adapter already admitted, into the batch, outside the queue (a rank that
        follows rank 0 admits what rank 0 admitted)."""
        self._active.append(req)

    def step(self, adapter: BatchAdapter) -> float:
        """Advance the batch once and deliver its steps; the seconds ``adapter.step()`` took. What it raises
        goes to the caller, the batch untouched (one process: ``fail_batch``; lock-step: the group stops)."""
        decoding = any(r.pipeline.first_at is not None for r in self._active)
        started = self.clock()
        results = adapter.step()
        took = self.clock() - started
        self._deliver(adapter, results, decoding)
        return took

    def finish(self, adapter: BatchAdapter | None, req: EngineRequest, reason: str | None) -> None:
        """``req`` leaves the batch (``reason`` None: as its pipeline says; else e.g. "cancelled"); the adapter
        releases it (a cache that cannot be stored is not the request's failure)."""
        self._active.remove(req)
        try:
            adapter.release(req)  # type: ignore[union-attr]
        except Exception:
            pass
        self._end(req, req.pipeline.final(reason, peak_memory_bytes=self._peak_memory()))

    def fail_waiting(self, exc: BaseException) -> list[EngineRequest]:
        """Fail every waiting request with ``exc`` (the model could not load, the loop ends); returns them."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for req in waiting:
            self._fail(req, exc)
        return waiting

    def fail_batch(self, adapter: BatchAdapter | None, exc: BaseException) -> None:
        """A step failed: every request in the batch gets ``exc``; the adapter drops the batch (its caches may
        be half-updated and are not stored) and recovers. ``adapter`` None: the loop is ending for good."""
        failed, self._active = self._active, []
        try:
            if adapter is not None:
                for req in failed:
                    try:
                        adapter.release(req, failed=True)
                    except Exception:
                        pass
                adapter.recover()
        finally:
            for req in failed:
                self._fail(req, exc)

    def stats_dict(self, cache_hits: int = 0, cache_lookups: int = 0) -> dict[str, Any]:
        """``RequestStats.as_dict`` with the queue and the batch."""
        return self.stats.as_dict(queue_length=self.queue_length, active=self.active_count, cache_hits=cache_hits,
                                  cache_lookups=cache_lookups)

    # ------------------------------------------------------------------ internals
    def _pop_next(self) -> EngineRequest | None:
        with self._lock:
            if not self._waiting:
                return None
            now = self.clock()
            best = max(self._waiting, key=lambda r: (self.effective_priority(r, now), -r.seq))
            self._waiting.remove(best)
            return best

    def _deliver(self, adapter: BatchAdapter, results: list[tuple[EngineRequest, Step]], decoding: bool) -> None:
        """A step's tokens to their requests (the ended ones finish), and the step into the statistics
        (``decoding``: some request already had a token before it, so it waited for this step)."""
        now = self.clock()
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
                self.finish(adapter, req, None)

    def _end(self, req: EngineRequest, last: Response) -> None:
        self.stats.record(last)
        req.emit(("item", last))
        req.emit(_DONE)
        self._on_end(req)

    def _fail(self, req: EngineRequest, exc: BaseException) -> None:
        self.stats.failed += 1
        req.emit(("error", self._convert(exc)))
        self._on_end(req)
