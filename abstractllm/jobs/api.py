"""The functions of ``abstractllm.jobs``: one config dict per job, a store, a worker.

Each function takes ``store=``: a ``JobStore``, a SQLite path or a ``postgresql://`` URL; by default the
default store (``$ABSTRACTLLM_JOBS_DB``, else ``jobs.db`` in the user's data folder), opened once per
process.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping

from .config import default_db_url, job_spec
from .errors import InvalidConfigError
from .job import Job

__all__ = ["do_inference", "queue_inference", "get_job", "list_jobs", "cancel_job", "retry_failed", "get_store"]

_STORES: dict[str, Any] = {}
_LOCK = threading.Lock()


def get_store(store: Any = None) -> Any:
    """``store`` if it is a ``JobStore``; else the store at that path or URL (None: the default one),
    opened once per process and reused."""
    if store is not None and hasattr(store, "claim"):
        return store
    from .store import JobStore

    key = str(store) if store is not None else default_db_url(create_folder=True)
    with _LOCK:
        if key not in _STORES:
            _STORES[key] = JobStore(key)
        return _STORES[key]


def _kwargs(config: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    spec = job_spec(config)
    job = Job(id=0, status="queued", prompt=spec.prompt, model=spec.model, system_prompt=spec.system_prompt,
              images=spec.images, params=spec.params)
    return spec, job.generate_kwargs()


def do_inference(config: Mapping[str, Any], *, llm: Any = None) -> Any:
    """Run one job config now and return the ``Response`` (no store involved). The model is the config's
    ``model`` (loaded for this call, then freed) unless a provider is given as ``llm`` (kept open: pass one
    to run many configs without reloading). Raises ``InvalidConfigError`` before any model is loaded, and
    the provider's typed errors (``ImageProcessingError``, ``MemoryLimitError``, ...) after."""
    spec, kwargs = _kwargs(config)
    if llm is not None:
        return llm.generate(**kwargs)
    if not spec.model:
        raise InvalidConfigError(["model: required by do_inference (or pass a provider as llm=)"], param="model")
    from ..registry import create_llm

    with create_llm("mlx", model=spec.model) as own:
        return own.generate(**kwargs)


def queue_inference(config: Mapping[str, Any], *, store: Any = None) -> Job:
    """Validate ``config`` (``InvalidConfigError`` lists every problem) and queue it as a job; returns the
    ``Job`` (status ``queued``). A worker (``run_worker``, ``abstractllm batch run``) runs it."""
    spec = job_spec(config)
    s = get_store(store)
    return s.get(s.submit(spec)[0])


def get_job(job_id: int, *, store: Any = None) -> Job:
    """The job ``job_id`` as it is now (``JobNotFoundError`` if there is none)."""
    return get_store(store).get(job_id)


def list_jobs(status: str | Iterable[str] | None = None, *, store: Any = None, limit: int | None = None,
              batch_id: str | None = None) -> list[Job]:
    """Jobs by id, optionally only those of ``status`` (``"queued"``, ``"processing"``, ``"completed"``,
    ``"failed"``, ``"cancelled"``, or a list of them)."""
    return get_store(store).list(status, limit=limit, batch_id=batch_id)


def cancel_job(job_id: int, *, store: Any = None) -> Job:
    """Cancel a queued or running job; returns it (status ``cancelled``). A worker running it stops it
    within a few seconds and its result is not stored. A finished job raises ``JobStateError``."""
    return get_store(store).cancel(job_id)


def retry_failed(*, store: Any = None, ids: Iterable[int] | None = None) -> int:
    """Queue the failed jobs again (all, or those of ``ids``) with fresh attempts; returns how many."""
    return get_store(store).retry_failed(ids)
