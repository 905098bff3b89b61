"""The batching engine over several ranks in lock-step: every rank runs the same batch, step for step,
because each step of a sharded model exchanges activations between the ranks (an all-reduce per layer under
tensor parallelism). Rank 0 decides; the others follow.

One loop per rank, on the provider's worker thread, for the provider's life (``DistributedEngine``):

1. Rank 0 makes a ``Plan``: it cancels the requests whose callers cancelled, admits waiting requests into
   its batch (priorities, the bounded queue, the memory checks: its ``Scheduler``'s, as in one process), and
   notes the requests that ended before admission (errors, cancellations). Idle, it waits for work up to
   ``DISTRIBUTED_HEARTBEAT_S`` and then sends an empty plan: a heartbeat.
2. The plan goes to every rank (``distributed.share``: one small ``all_sum``, two when it is not empty),
   with the number of steps to take before the next one (1 while anything waits for a decision, else as
   many as fit in ``DISTRIBUTED_SYNC_S``: a message costs a round trip between the ranks, and waiting for
   it on the generation stream stops the overlap of the next step's graph building with the current
   step's compute). The others
   apply it as rank 0 did: the same cancellations, then the same admissions in the same order (their
   prompt caches must give the same cached prefix; if not, the ranks are out of step and stop).
3. Every rank advances the batch by that many steps; finished requests end on every rank alike (same
   tokens: the all-reduce gives every rank the same logits; samplers draw from the request's own key, and
   rank 0 fills in a random ``seed`` for a sampled request that has none, before the others see it).

Where the results go: rank 0's callers get their requests' chunks. On the other ranks, a script that
makes the same calls as rank 0 (SPMD) gets the same results: its calls are paired with rank 0's requests
in call order (``ranks.Pairing``); ``follow()`` drops them instead (a server's other ranks).

Failure: a collective that fails (a rank died: MLX reports the lost connection) or a step that fails on
one rank ends the loop for good (``fatal``); every caller gets a ``GenerationError`` and later calls too.
A rank that waits on the others longer than ``distributed_timeout`` is ended by the ``Watchdog``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import AbstractLLMError, GenerationError, QueueFullError
from ...params import DISTRIBUTED_HEARTBEAT_S, DISTRIBUTED_MAX_STEPS_PER_PLAN, DISTRIBUTED_SYNC_S
from ...types import GenerationRequest
from ..worker import CancelToken, Emit, SerialWorker
from .backend import import_backend
from .distributed import World, gather, share
from .engine import EngineBase, EngineRequest, Jobs
from .pipeline import RequestPipeline
from .ranks import Pairing, Plan, Watchdog, describe_error, rebuild_error, wire_request

if TYPE_CHECKING:
    from .adapter import ModelAdapter

__all__ = ["DistributedEngine", "LockstepWorker"]

log = logging.getLogger("abstractllm.providers.mlx")
_DONE = ("done", None)


class LockstepWorker(SerialWorker):
    """The provider's worker thread, which the lock-step loop occupies for the provider's life: ``call``
    from another thread runs the function between two steps of the loop (``DistributedEngine.call``)."""

    engine: "DistributedEngine | None" = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        engine = self.engine
        if engine is not None and engine.loop_running and threading.current_thread() is not self.thread:
            return engine.call(lambda: fn(*args, **kwargs))
        return super().call(fn, *args, **kwargs)


class DistributedEngine(EngineBase):
    """See the module docstring: the lock-step loop over this rank's ``Scheduler``. ``world``: this rank and
    the group; ``timeout_s``: the watchdog's."""

    def __init__(self, worker: SerialWorker, *, world: World, timeout_s: float, model: str, max_batch_size: int,
                 max_queue_size: int, adapter_for_run: Callable[[], "ModelAdapter"],
                 convert: Callable[[BaseException], BaseException], heartbeat_s: float = DISTRIBUTED_HEARTBEAT_S) -> None:
        super().__init__(worker, model=model, max_batch_size=max_batch_size, max_queue_size=max_queue_size,
                         convert=convert)
        self._adapter_for_run = adapter_for_run
        self.world = world
        self.heartbeat_s = heartbeat_s
        where = f"rank {world.rank} of {world.size}"
        self.watchdog = Watchdog(timeout_s, where)
        self.fatal: BaseException | None = None  # why the loop ended for good
        self.ranks: list[dict[str, Any]] = []  # every rank's memory, as last gathered
        self.gathered_at: float | None = None
        self.jobs = Jobs()
        self._lock = threading.Lock()
        self._running = False
        self._wake = threading.Event()
        self._loaded = threading.Event()
        self._finished = threading.Event()
        self._stop_requested = False
        self._ended: list[tuple[int, str, Any]] = []  # rank 0: requests that ended before admission
        self._ops: list[tuple[str, Future]] = []
        self._ops_sent: list[tuple[str, Future]] = []  # rank 0: the ops of the plan in flight
        self._pairs = Pairing()
        self._on_fatal: list[Callable[[BaseException], None]] = []
        self._stream: Any = None
        self._step_s: float | None = None  # rank 0: moving average of a step's duration

    # ------------------------------------------------------------------ from any thread
    @property
    def loop_running(self) -> bool:
        return self._running

    @property
    def finished(self) -> bool:
        """The loop ended for good (rank 0 stopped the group, or it failed)."""
        return self._finished.is_set()

    def on_fatal(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback(error)`` (on the worker thread) when the loop ends for good on an error."""
        self._on_fatal.append(callback)

    def _check_usable(self) -> None:
        if self.fatal is not None:
            raise self.fatal
        if self._finished.is_set() or self._stop_requested:
            raise AbstractLLMError("This distributed provider is closed: rank 0 stopped the group.", provider="mlx")

    def submit(self, request: GenerationRequest, emit: Emit, token: CancelToken) -> None:
        """Rank 0: queue the request (``QueueFullError`` when full, as the single-process engine). Other
        ranks: pair this call with rank 0's request of the same call number."""
        self._check_usable()
        if not self.world.is_leader:
            self._pairs.local(emit)
            self._ensure_loop()
            return
        params = request.params
        if float(params.get("temperature") or 0) > 0 and params.get("seed") is None:
            # every rank must draw the same tokens: the seed is chosen here, before the others see it
            request = replace(request, params={**params, "seed": int.from_bytes(os.urandom(8), "little") >> 1})
        req = self.new_request(request, emit, token)
        self.worker.track(token)
        try:
            self.scheduler.submit(req)
        except QueueFullError as exc:
            self.worker.untrack(token)
            with self._lock:  # the other ranks' call of this number gets the same error
                self._ended.append((req.seq, "error", describe_error(exc)))
            raise
        with self._lock:
            start = not self._running
            self._running = True
        if start:  # a loop that ended for good starts to fail it (see _run)
            self._start_loop()
        self._wake.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker between two steps of the loop (at once when no loop runs)."""
        if threading.current_thread() is self.worker.thread:
            return fn()
        with self._lock:
            future = self.jobs.add(fn) if self._running else None
        if future is None:
            return self.worker.call(fn)
        self._wake.set()
        return future.result()

    def run_op(self, name: str) -> None:
        """Rank 0: have every rank do ``name`` (``"clear_cache"``) at the same point of the loop."""
        future: Future = Future()
        with self._lock:
            if not self._running:
                return
            self._ops.append((name, future))
        self._wake.set()
        future.result()

    def ensure_loaded(self) -> "ModelAdapter":
        """Start the loop (every rank loads its shard first) and wait for the load; its error raises."""
        if self.fatal is not None and not self._loaded.is_set():
            raise self.fatal
        self._ensure_loop()
        self._loaded.wait()
        if self.adapter is None:
            raise self.fatal or AbstractLLMError("The distributed provider is closed.", provider="mlx")
        return self.adapter

    def follow(self) -> None:
        """Another rank with no calls of its own (a server's): run rank 0's requests, drop their output,
        until rank 0 stops the group (returns) or the group fails (raises)."""
        self._pairs.discard = True
        self.ensure_loaded()
        self._finished.wait()
        if self.fatal is not None:
            raise self.fatal

    def stop(self) -> None:
        """End the loop: rank 0 tells the others and stops after the current step; another rank waits
        for rank 0 to stop (every rank makes the same calls: rank 0's ``close()`` comes)."""
        with self._lock:
            running = self._running
        if self.world.is_leader:
            self._stop_requested = True
            self._wake.set()
        if running and threading.current_thread() is not self.worker.thread:
            self._finished.wait()

    def _ensure_loop(self) -> None:
        with self._lock:
            start = not self._running and not self._finished.is_set()
            self._running = self._running or start
        if start:
            self._start_loop()

    def _start_loop(self) -> None:
        try:
            self.worker.submit(self._run)
        except BaseException as exc:  # the worker is closed
            self._end_for_good(exc)

    # ------------------------------------------------------------------ the loop (worker thread)
    def _run(self) -> None:
        try:
            if not self._finished.is_set():
                self._lockstep()
        finally:
            self._end_for_good(self.fatal or AbstractLLMError(
                "This distributed provider is closed: rank 0 stopped the group.", provider="mlx"))

    def _end_for_good(self, error: BaseException) -> None:
        with self._lock:
            self._running = False
            ops, self._ops = self._ops + self._ops_sent, []
            self._ops_sent = []
        self._finished.set()
        self._loaded.set()
        self.jobs.run()  # maintenance still runs (on the worker: no step in flight)
        for _, future in ops:
            future.set_result(None)
        self.scheduler.fail_waiting(error)
        self._pairs.close(error)

    def _lockstep(self) -> None:
        mx = import_backend("mlx.core")
        mx.reset_peak_memory()
        try:
            self.adapter = self._adapter_for_run()  # every rank: its shard (sharded_load ends in a barrier)
        except BaseException as exc:
            self.fatal = exc
            return
        finally:
            self._loaded.set()
        # the control collectives run on the stream the batch generates on (see distributed.share)
        self._stream = getattr(getattr(self.adapter, "_batch", None), "stream", None) or \
            import_backend("mlx_lm.generate").generation_stream
        self.watchdog.start()
        try:
            self._iterate()
        except BaseException as exc:
            self._die(exc)
        finally:
            self.watchdog.stop()

    def _iterate(self) -> None:
        leader = self.world.is_leader
        while True:
            plan = self._plan() if leader else None
            steps = self._steps_until_next_plan(plan) if leader else 0
            self.watchdog.arm("sending the next step to the other ranks" if leader else
                              "waiting for rank 0's next step")
            plan, steps = share(self.world, plan, self._stream, steps)
            self.watchdog.disarm()
            if not leader:
                self.jobs.run()
                if plan is not None:
                    self._follow(plan)
            if plan is not None:
                for name in plan.ops:
                    self._apply_op(name)
                if plan.gather:
                    self._gather_memory()
                if leader:
                    self._finish_ops()
                if plan.stop:
                    return
            for _ in range(max(1, steps)):  # the same number on every rank (an empty batch ends it early)
                if not self.scheduler.active_count:
                    break
                self._step()
            # (no _yield_gil here: a rank that gives its core away stalls every other rank)

    # ------------------------------------------------------------------ rank 0
    def _plan(self) -> Plan | None:
        scheduler = self.scheduler
        self.jobs.run()
        if not (scheduler.active_count or scheduler.has_waiting() or self.jobs or self._ops or self._ended
                or self._stopping()):
            self._wake.wait(self._heartbeat_wait())
            self._wake.clear()
            self.jobs.run()
        plan = Plan()
        with self._lock:
            plan.ended, self._ended = self._ended, []
            self._ops_sent, self._ops = self._ops, []
        plan.ops = [name for name, _ in self._ops_sent]
        plan.ended += [(req.seq, "cancelled", None) for req in scheduler.end_cancelled_waiting()]
        stop = self._stopping()
        # here now; on the others before they admit
        plan.cancel = [req.seq for req in scheduler.end_cancelled_active(self.adapter, everything=stop)]
        if stop:
            plan.stop = True
            error = AbstractLLMError("The distributed provider was closed before this request started.",
                                     provider="mlx")
            plan.ended += [(req.seq, "error", describe_error(error)) for req in scheduler.fail_waiting(error)]
        else:
            self._admit_into(plan)
        plan.gather = self.gathered_at is None or time.monotonic() - self.gathered_at >= self.heartbeat_s
        return plan if plan else None

    def _steps_until_next_plan(self, plan: Plan | None) -> int:
        """How many steps every rank takes before the next plan: one while anything waits for a decision
        (a request that a free slot could take, a cancellation, maintenance), else as many as fit in
        ``DISTRIBUTED_SYNC_S`` (a request waiting for a full batch waits for a slot anyway)."""
        scheduler = self.scheduler
        if self._step_s is None or not scheduler.active_count or (plan is not None and plan.stop):
            return 1
        with self._lock:
            busy = bool((scheduler.has_waiting() and scheduler.has_room()) or self.jobs or self._ops or self._ended)
        if busy or self._stopping() or scheduler.any_cancelled_active():
            return 1
        return max(1, min(DISTRIBUTED_MAX_STEPS_PER_PLAN, int(DISTRIBUTED_SYNC_S / max(self._step_s, 1e-6))))

    def _stopping(self) -> bool:
        return self._stop_requested or self.worker.closed

    def _heartbeat_wait(self) -> float:
        if self.gathered_at is None:
            return 0.0
        return max(0.0, self.heartbeat_s - (time.monotonic() - self.gathered_at))

    def _admit_into(self, plan: Plan) -> None:
        """The scheduler's admission, as in one process, noting each outcome in ``plan``."""
        adapter = self.adapter

        def admitted(req: EngineRequest) -> None:
            plan.admit.append((req.seq, wire_request(req.request), adapter.cached_tokens(req)))

        def failed(req: EngineRequest, exc: BaseException) -> None:
            plan.ended.append((req.seq, "error", describe_error(exc)))

        self.scheduler.admit(adapter, on_admitted=admitted, on_failed=failed)

    def _finish_ops(self) -> None:
        ops, self._ops_sent = self._ops_sent, []
        for _, future in ops:
            future.set_result(None)

    # ------------------------------------------------------------------ the other ranks
    def _follow(self, plan: Plan) -> None:
        """Apply rank 0's plan here, in rank 0's order: cancellations, ended requests, admissions."""
        adapter, scheduler = self.adapter, self.scheduler
        for seq in plan.cancel:
            req = scheduler.find_active(seq)
            if req is not None:
                scheduler.finish(adapter, req, "cancelled")
        for seq, kind, detail in plan.ended:
            emit = self._pairs.emit_for(seq)
            if kind == "error":
                emit(("error", rebuild_error(detail)))
            else:
                emit(("item", RequestPipeline(model=self.model).final("cancelled")))
                emit(_DONE)
        for seq, request, cached in plan.admit:
            req = self.new_request(request, self._pairs.emit_for(seq), CancelToken(), seq=seq)
            try:
                admitted = adapter.admit(req)
            except BaseException as exc:
                raise GenerationError(f"rank {self.world.rank} could not admit the request rank 0 admitted "
                                      f"({type(exc).__name__}: {exc})") from exc
            if not admitted or adapter.cached_tokens(req) != cached:
                raise GenerationError(
                    f"rank {self.world.rank} is out of step with rank 0 (request {seq}: "
                    f"{'not admitted' if not admitted else 'its prompt cache differs'})")
            scheduler.join(req)

    # ------------------------------------------------------------------ every rank
    def _step(self) -> None:
        self.watchdog.arm("a generation step (it waits on the other ranks)")
        took = self.scheduler.step(self.adapter)
        self.watchdog.disarm()
        self._step_s = took if self._step_s is None else 0.8 * self._step_s + 0.2 * took

    def _apply_op(self, name: str) -> None:
        if name == "clear_cache" and self.adapter is not None:
            self.adapter.clear_cache()
            import_backend("mlx.core").clear_cache()

    def _gather_memory(self) -> None:
        import socket

        import psutil

        mx = import_backend("mlx.core")
        info = getattr(self.adapter, "info", {}) or {}
        mine = {"rank": self.world.rank, "host": socket.gethostname(), "pid": os.getpid(),
                "weights_bytes": info.get("weights_bytes"), "mlx_active": int(mx.get_active_memory()),
                "mlx_peak": int(mx.get_peak_memory()), "mlx_cache": int(mx.get_cache_memory()),
                "process_rss": int(psutil.Process().memory_info().rss)}
        self.watchdog.arm("gathering every rank's memory")
        self.ranks = gather(self.world, mine, self._stream)
        self.watchdog.disarm()
        self.gathered_at = time.monotonic()

    def _die(self, exc: BaseException) -> None:
        """The group cannot go on: fail everything here with one clear error, for good."""
        self.watchdog.disarm()
        where = f"rank {self.world.rank} of {self.world.size}"
        if isinstance(exc, RuntimeError) and "peer" in str(exc).lower():
            error: BaseException = GenerationError(
                f"distributed: {where} lost its connection to the other ranks ({exc}): a rank died or was "
                "stopped. This provider cannot generate any more; restart every rank.", provider="mlx")
        elif isinstance(exc, GenerationError) and str(exc).startswith("rank "):
            error = GenerationError(f"distributed: {exc}; restart every rank.", provider="mlx")
        else:
            error = GenerationError(
                f"distributed: a step failed on {where} ({type(exc).__name__}: {exc}); the ranks cannot stay in "
                "step, so this provider stops. Restart every rank.", provider="mlx")
        error.__cause__ = exc
        self.fatal = error
        log.error("%s", error)
        self.scheduler.fail_batch(None, error)
        for callback in self._on_fatal:
            try:
                callback(error)
            except Exception:
                log.exception("a distributed on_fatal callback failed")
