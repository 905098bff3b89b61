"""The worker: claims jobs from a store and runs them concurrently on one provider's batching engine.

``run_worker(store, model=..., concurrency=8)`` keeps up to ``concurrency`` jobs in flight, each an
``await llm.generate_async(...)``: the MLX provider's engine decodes the text ones together in one batch
(vision requests are served one at a time by the same engine). Around that loop:

- every claim is a lease (``JOB_LEASE_S``), renewed every ``JOB_HEARTBEAT_S``; a job found no longer held
  at a renewal (cancelled, or taken back after a stall) is stopped, and its late result is refused;
- each result is stored as it comes (results that end together share one transaction), so a crash
  loses only the jobs in flight;
  those go back to ``queued`` when the lease expires, or at once when a worker of the same host sees the
  process is gone (``JobStore.recover``, run at start and while polling);
- a job's error fails that job only (bad image, text model given an image, memory refusal); backend
  errors are retried while attempts are left; a full engine queue (``QueueFullError``, when the worker
  shares the provider with live traffic) puts the job back without spending an attempt;
- with ``exit_when_done`` the worker returns once no job it could run is queued or held by anyone (it
  waits for other workers' leases rather than exit while they may come back).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..exceptions import ModelLoadError, QueueFullError
from ..params import JOB_HEARTBEAT_S, JOB_LEASE_S, JOB_POLL_S, PARAMS, default_of
from .job import ACTIVE_WORKERS, Job, WorkerIdentity

__all__ = ["run_worker", "arun_worker", "WorkerProgress"]


@dataclass
class WorkerProgress:
    """What ``on_progress`` receives (and ``run_worker`` returns, at the end). ``counts``: the store's jobs
    per status within the worker's scope; ``completed`` / ``failed``: this worker's own results;
    ``jobs_per_s``: its rate since it started; ``eta_s``: the remaining jobs at that rate."""

    counts: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    requeued: int = 0
    elapsed_s: float = 0.0
    finished: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("completed", "failed", "cancelled"))

    @property
    def jobs_per_s(self) -> float:
        return (self.completed + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done
        return left / self.jobs_per_s if self.jobs_per_s > 0 else None


class _Worker:
    def __init__(self, store: Any, llm: Any, model_key: str | None, *, concurrency: int, priority: Any,
                 lease_s: float, poll_s: float, heartbeat_s: float, batches_only: bool,
                 prepare: Callable[[Job], Awaitable[dict[str, Any]]] | None,
                 on_progress: Callable[[WorkerProgress], None] | None, progress_s: float) -> None:
        self.store, self.llm, self.model_key = store, llm, model_key
        self.concurrency, self.priority = concurrency, priority
        self.lease_s, self.poll_s, self.heartbeat_s = lease_s, poll_s, heartbeat_s
        self.batches_only, self.prepare = batches_only, prepare
        self.on_progress, self.progress_s = on_progress, progress_s
        self.me = WorkerIdentity.new()
        self.inflight: dict[int, tuple[asyncio.Task, Job]] = {}
        self.progress = WorkerProgress()
        self.t0 = time.monotonic()
        self.backoff_until = 0.0
        self._results: list[tuple[Job, Any, asyncio.Future]] = []
        self._writing: set[int] = set()  # generated, result being stored: no lease to renew, nothing to stop
        self._writer: asyncio.Task | None = None

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _scope(self) -> dict[str, Any]:
        return {"model": self.model_key, "batches": self.batches_only}

    async def run_one(self, job: Job) -> None:
        try:
            kwargs = await self.prepare(job) if self.prepare is not None else job.generate_kwargs()
            response = await self.llm.generate_async(**kwargs, priority=self.priority)
        except asyncio.CancelledError:
            raise
        except QueueFullError:  # the engine is busy with other traffic: later, without spending an attempt
            self.backoff_until = time.monotonic() + self.poll_s
            await self._db(self.store.release, self.me, [job])
            self.progress.requeued += 1
            return
        except ModelLoadError:  # the worker cannot go on: the job goes back, unspent
            await self._db(self.store.release, self.me, [job])
            raise
        except Exception as exc:  # this job's failure only: the others go on
            status = await self._db(self.store.fail, self.me, job, exc)
            if status == "failed":
                self.progress.failed += 1
            elif status == "queued":
                self.progress.requeued += 1
            return
        if await self._store_result(job, response):
            self.progress.completed += 1

    async def _store_result(self, job: Job, response: Any) -> bool:
        """Hand the result to the writer; True once stored. Results that end together (a batch's rows end
        in the same engine step) are written in one transaction: one commit, not one per job."""
        future = asyncio.get_running_loop().create_future()
        self._results.append((job, response, future))
        self._writing.add(job.id)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_results())
        try:
            return await future
        finally:
            self._writing.discard(job.id)

    async def _write_results(self) -> None:
        while self._results:
            items, self._results = self._results, []
            try:
                stored = await self._db(self.store.complete_many, self.me, [(j, r) for j, r, _ in items])
            except BaseException as exc:
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for job, _, future in items:
                if not future.done():
                    future.set_result(job.id in stored)

    async def _report(self, finished: bool = False) -> None:
        if self.on_progress is None and not finished:
            return
        self.progress.counts = await self._db(self.store.counts, **self._scope())
        self.progress.elapsed_s = time.monotonic() - self.t0
        self.progress.finished = finished
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def run(self, stop: asyncio.Event, exit_when_done: bool, max_jobs: int | None) -> WorkerProgress:
        ACTIVE_WORKERS.add(self.me.id)
        try:
            await self._loop(stop, exit_when_done, max_jobs)
        finally:
            tasks = [t for t, _ in self.inflight.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._writer is not None:  # results already handed over are stored before the rest goes back
                await asyncio.gather(asyncio.shield(self._writer), return_exceptions=True)
            held = [job for _, job in self.inflight.values()]
            if held:  # stopped with jobs in flight: they go back to the queue, attempts unspent
                await asyncio.shield(self._db(self.store.release, self.me, held))
            self.inflight.clear()
            ACTIVE_WORKERS.discard(self.me.id)
        await self._report(finished=True)
        return self.progress

    async def _loop(self, stop: asyncio.Event, exit_when_done: bool, max_jobs: int | None) -> None:
        await self._db(self.store.recover, self.me)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await self._poll(stop, stopping, exit_when_done, max_jobs)
        finally:
            stopping.cancel()

    async def _poll(self, stop: asyncio.Event, stopping: asyncio.Future, exit_when_done: bool,
                    max_jobs: int | None) -> None:
        last_beat = last_recover = last_report = time.monotonic()
        claimed_total = 0
        while not stop.is_set():
            now = time.monotonic()
            free = self.concurrency - len(self.inflight)
            if max_jobs is not None:
                free = min(free, max_jobs - claimed_total)
            claimed: list[Job] = []
            if free > 0 and now >= self.backoff_until:
                claimed = await self._db(self.store.claim, self.me, free, lease_s=self.lease_s, **self._scope())
                claimed_total += len(claimed)
                for job in claimed:
                    self.inflight[job.id] = (asyncio.get_running_loop().create_task(self.run_one(job)), job)
            if not self.inflight:
                if max_jobs is not None and claimed_total >= max_jobs:
                    return
                if exit_when_done and not claimed and await self._db(self.store.pending, **self._scope()) == 0:
                    return
                if now - last_recover >= self.poll_s:
                    await self._db(self.store.recover, self.me)
                    last_recover = now
                await asyncio.wait({stopping}, timeout=self.poll_s)
            else:  # until a job ends (its slot is refilled at once), a stop, or the next poll
                await asyncio.wait({t for t, _ in self.inflight.values()} | {stopping}, timeout=self.poll_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                for jid, (task, _) in list(self.inflight.items()):
                    if task.done():
                        del self.inflight[jid]
                        if not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
            now = time.monotonic()
            if now - last_beat >= self.heartbeat_s:
                last_beat = now
                await self._heartbeat()
            if now - last_recover >= max(self.heartbeat_s, self.poll_s):
                last_recover = now
                await self._db(self.store.recover, self.me)
            if now - last_report >= self.progress_s:
                last_report = now
                await self._report()

    async def _heartbeat(self) -> None:
        held = {jid: job.attempts for jid, (_, job) in self.inflight.items() if jid not in self._writing}
        kept = await self._db(self.store.heartbeat, self.me, held, self.lease_s)
        for jid in set(held) - kept:  # cancelled, or taken back: stop generating it
            task, _ = self.inflight.pop(jid, (None, None))
            if task is not None:
                task.cancel()


async def arun_worker(store: Any, *, model: str | None = None, llm: Any = None, concurrency: int | None = None,
                      priority: Any = None, lease_s: float = JOB_LEASE_S, poll_s: float = JOB_POLL_S,
                      heartbeat_s: float | None = None, exit_when_done: bool = True, max_jobs: int | None = None,
                      batches_only: bool = False, stop: asyncio.Event | None = None,
                      prepare: Callable[[Job], Awaitable[dict[str, Any]]] | None = None,
                      on_progress: Callable[[WorkerProgress], None] | None = None, progress_s: float = 0.5,
                      **llm_config: Any) -> WorkerProgress:
    """``run_worker`` from an event loop (the server runs its batch worker this way). ``stop``: an event
    that ends the worker (jobs in flight go back to the queue); ``prepare``: an async function of a job
    that returns its ``generate_async`` arguments (default ``Job.generate_kwargs``)."""
    from ..enums import RequestPriority
    from .store import open_store

    if lease_s <= 0 or lease_s > 3600:
        raise ValueError(f"lease_s must be in (0, 3600], got {lease_s!r}")
    concurrency = int(concurrency or PARAMS["max_batch_size"].default)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    own_store = not hasattr(store, "claim")
    store = open_store(store) if own_store else store
    own_llm = llm is None
    try:
        if llm is None:
            if not model:
                raise ValueError("run_worker needs model= (or llm=)")
            from ..registry import create_llm

            llm_config.setdefault("max_batch_size", concurrency)
            llm_config.setdefault("max_queue_size", max(default_of("max_queue_size"), concurrency))
            llm = create_llm("mlx", model=str(model), **llm_config)
            await asyncio.to_thread(llm.load)  # a model that cannot load fails here, before any claim
        model_key = str(model) if model else (getattr(llm, "config", {}) or {}).get("model")
        worker = _Worker(store, llm, model_key, concurrency=concurrency,
                         priority=RequestPriority.NORMAL if priority is None else priority, lease_s=lease_s,
                         poll_s=poll_s, heartbeat_s=heartbeat_s or min(JOB_HEARTBEAT_S, lease_s / 3),
                         batches_only=batches_only, prepare=prepare, on_progress=on_progress, progress_s=progress_s)
        return await worker.run(stop or asyncio.Event(), exit_when_done, max_jobs)
    finally:
        if own_llm and llm is not None:
            await asyncio.to_thread(llm.close)
        if own_store:
            store.close()


def run_worker(store: Any = None, *, model: str | None = None, concurrency: int | None = None,
               **kwargs: Any) -> WorkerProgress:
    """Run jobs from ``store`` (a ``JobStore``, a path or URL; None: the default store) on ``model`` until
    none is left (``exit_when_done=True``): up to ``concurrency`` at once (default: ``max_batch_size``),
    batched by the provider's engine. Runs the jobs queued for no model or for this ``model`` (the Batch
    API's jobs are left to servers, which run them under their media rules: ``batches_only=True``).

    Keyword arguments: ``llm`` (a provider to use instead of loading ``model``; it stays open),
    ``lease_s``, ``poll_s``, ``max_jobs`` (stop after claiming that many), ``exit_when_done`` (False: keep
    polling for new jobs until interrupted), ``priority`` (a ``RequestPriority``), ``on_progress`` (called
    with a ``WorkerProgress`` every ``progress_s`` seconds), and ``create_llm`` configuration
    (``max_tokens``, ``memory_limit``, ...). Returns the final ``WorkerProgress``."""
    if isinstance(store, (str, Path)) or store is None:
        from .store import open_store

        store = open_store(store)
        try:
            return asyncio.run(arun_worker(store, model=model, concurrency=concurrency, **kwargs))
        finally:
            store.close()
    return asyncio.run(arun_worker(store, model=model, concurrency=concurrency, **kwargs))

