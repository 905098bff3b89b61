"""``JobStore``: the jobs in a database, SQLite (default, one file) or PostgreSQL (many machines).

One code path over SQLAlchemy Core serves both. What differs is said once, here:

- SQLite: WAL journal (readers never wait for the writer), ``synchronous=NORMAL``, a 30 s busy timeout,
  and every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock at once, so two
  processes never deadlock upgrading a read lock). Use it on one machine (WAL needs a local disk).
- PostgreSQL (``postgresql://`` URLs, through psycopg 3): a worker claims jobs with ``WITH picked AS
  MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... WHERE id IN (SELECT id FROM picked)``, so
  workers on any number of machines share one queue and no job is handed to two of them.
- The clock is the database's (``clock_timestamp()`` / ``julianday('now')``), so leases mean the same on
  every machine.

Exactly one result per job: a worker writes a result only while it still holds the job, checked in the
same statement (``status='processing'``, its ``worker_id`` and the attempt number it claimed); a job
taken back from it (lease expired, cancelled) refuses its late result.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..exceptions import AbstractLLMError
from ..params import JOB_LEASE_S
from .config import JobSpec, default_db_url
from .errors import JobNotFoundError, JobStateError, JobStoreError
from .job import Job, JobStatus, WorkerIdentity

try:
    import sqlalchemy as sa
except ImportError as _exc:  # pragma: no cover - the extra is missing
    raise JobStoreError('The job store needs SQLAlchemy: pip install "abstractllm[jobs]"') from _exc

from .migrations import migrate
from .schema import jobs

__all__ = ["JobStore", "open_store"]

Q, P, C, F, X = (s.value for s in (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED,
                                   JobStatus.CANCELLED))
#: errors that a later attempt may not repeat (the backend failed, a remote server was unreachable)
_RETRYABLE = ("GenerationError", "ProviderConnectionError", "RequestTimeoutError", "QuotaExceededError")


def _url(url: str | Path | None) -> sa.URL:
    raw = default_db_url(create_folder=True) if url is None else str(url)
    if "://" not in raw:
        if raw in ("", ":memory:"):
            raise JobStoreError("The job store must be a file (or a postgresql:// URL): an in-memory SQLite "
                                "database is not shared between a worker's connections.")
        raw = "sqlite:///" + str(Path(raw).expanduser().absolute())
    try:
        parsed = sa.make_url(raw)
    except Exception as exc:
        raise JobStoreError(f"Not a database URL or file path: {raw!r} ({exc}).") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise JobStoreError("The job store must be a SQLite file, not an in-memory database.")
        folder = Path(parsed.database).expanduser().absolute().parent
        if not folder.is_dir():
            raise JobStoreError(f"Cannot open the job store {parsed.database}: the folder {folder} does not "
                                "exist (create it first).")
        return parsed
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise JobStoreError(f"Unsupported job store {parsed.render_as_string(hide_password=True)!r}: use a SQLite "
                        "file path or a postgresql:// URL.")


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the sqlite3 module
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class JobStore:
    """The job store at ``url``: a SQLite file path (its folder must exist), a ``sqlite:///`` or
    ``postgresql://user:password@host/dbname`` URL, or None for the default (``$ABSTRACTLLM_JOBS_DB``, else
    ``jobs.db`` in the user's data folder). Opening it creates or upgrades the tables (``migrations``).
    Thread-safe; close it with ``close()`` or ``with JobStore(...) as store:``."""

    def __init__(self, url: str | Path | None = None) -> None:
        self.url = _url(url)
        self.dialect = self.url.get_backend_name()
        try:
            if self.dialect == "sqlite":
                self._engine = _sqlite_engine(self.url)
            else:
                self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=4, max_overflow=8,
                                                connect_args={"connect_timeout": 10})
            self._now = self._clock()
            self._stmts: dict[Any, Any] = {}
            with self._tx() as conn:
                self.schema_version = migrate(conn, self.now)
        except ImportError as exc:
            raise JobStoreError(f'The PostgreSQL job store needs psycopg 3 ({exc.name} is missing): '
                                'pip install "abstractllm[jobs]"') from exc
        except sa.exc.SQLAlchemyError as exc:
            raise JobStoreError(f"Cannot open the job store {self}: {_db_message(exc)}") from exc

    def __repr__(self) -> str:
        return f"JobStore({self})"

    def __str__(self) -> str:
        if self.dialect == "sqlite":
            return self.url.database or ""
        return self.url.render_as_string(hide_password=True)

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's connections."""
        self._engine.dispose()

    # ------------------------------------------------------------------ plumbing
    @property
    def now(self) -> sa.ColumnElement:
        """The database's clock, in seconds since the epoch, as an SQL expression."""
        return self._now

    def _clock(self) -> sa.ColumnElement:
        if self.dialect == "postgresql":
            return sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Float(precision=53))
        return (sa.func.julianday("now") - 2440587.5) * 86400.0

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn = conn.execution_options(write=True)
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise JobStoreError(f"The job store {self} failed: {_db_message(exc)}") from exc

    def _jobs(self, conn: sa.Connection, stmt: Any) -> list[Job]:
        return sorted((Job.from_row(r._mapping) for r in conn.execute(stmt)), key=lambda j: j.id)

    @staticmethod
    def _scope(model: str | None = None, batches: bool | None = None, batch_id: str | None = None) -> list[Any]:
        conds: list[Any] = []
        if model is not None:
            conds.append(sa.or_(jobs.c.model.is_(None), jobs.c.model == model))
        if batches is not None:  # True: the Batch API's jobs only; False: plain jobs only
            conds.append(jobs.c.batch_id.is_not(None) if batches else jobs.c.batch_id.is_(None))
        if batch_id is not None:
            conds.append(jobs.c.batch_id == batch_id)
        return conds

    # ------------------------------------------------------------------ submitting and reading
    def submit(self, specs: JobSpec | Iterable[JobSpec]) -> list[int]:
        """Queue validated jobs (``config.job_spec``) in one transaction; returns their ids in order."""
        with self._tx() as conn:
            return self._insert(conn, specs)

    def _insert(self, conn: sa.Connection, specs: JobSpec | Iterable[JobSpec]) -> list[int]:
        specs = [specs] if isinstance(specs, JobSpec) else list(specs)
        if not specs:
            return []
        rows = [{"status": Q, "model": s.model, "prompt": s.prompt, "system_prompt": s.system_prompt,
                 "messages": s.messages, "images": list(s.images), "params": dict(s.params), "attempts": 0,
                 "max_attempts": s.max_attempts, "batch_id": s.batch_id, "custom_id": s.custom_id,
                 "meta": s.metadata} for s in specs]
        stmt = sa.insert(jobs).values(created_at=self.now).returning(jobs.c.id, sort_by_parameter_order=True)
        return [int(r[0]) for r in conn.execute(stmt, rows)]

    def get(self, job_id: int) -> Job:
        """The job ``job_id`` (``JobNotFoundError`` if there is none)."""
        with self._tx(write=False) as conn:
            found = self._jobs(conn, sa.select(jobs).where(jobs.c.id == _job_id(job_id)))
        if not found:
            raise JobNotFoundError(f"No job with id {job_id!r} in the job store {self}.", job_id=job_id)
        return found[0]

    def list(self, status: str | Iterable[str] | None = None, *, batch_id: str | None = None,
             model: str | None = None, limit: int | None = None, after_id: int = 0) -> list[Job]:
        """Jobs by id, optionally of some ``status`` (one or several), of a batch or for a model."""
        stmt = sa.select(jobs).where(jobs.c.id > after_id, *self._scope(model, batch_id=batch_id))
        if status is not None:
            statuses = [str(status)] if isinstance(status, (str, JobStatus)) else [str(s) for s in status]
            bad = [s for s in statuses if s not in {m.value for m in JobStatus}]
            if bad:
                from ..exceptions import InvalidParameterError

                raise InvalidParameterError(f"Unknown job status {bad[0]!r}: expected one of "
                                            f"{', '.join(m.value for m in JobStatus)}.", param="status")
            stmt = stmt.where(jobs.c.status.in_(statuses))
        stmt = stmt.order_by(jobs.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._tx(write=False) as conn:
            return self._jobs(conn, stmt)

    def iter_jobs(self, status: str | Iterable[str] | None = None, *, batch_id: str | None = None,
                  page: int = 500) -> Iterator[Job]:
        """Every job (optionally filtered), read a page at a time."""
        after = 0
        while True:
            chunk = self.list(status, batch_id=batch_id, limit=page, after_id=after)
            yield from chunk
            if len(chunk) < page:
                return
            after = chunk[-1].id

    def counts(self, *, model: str | None = None, batches: bool | None = None,
               batch_id: str | None = None) -> dict[str, int]:
        """How many jobs are in each status (every status present, 0 included)."""
        stmt = (sa.select(jobs.c.status, sa.func.count()).where(*self._scope(model, batches, batch_id))
                .group_by(jobs.c.status))
        out = {s.value: 0 for s in JobStatus}
        with self._tx(write=False) as conn:
            out.update({status: int(n) for status, n in conn.execute(stmt)})
        return out

    # ------------------------------------------------------------------ user operations
    def cancel(self, job_id: int) -> Job:
        """Cancel a queued or running job (a worker running it stops it at its next lease renewal, and its
        result is not stored). A cancelled job is returned as is; a finished one raises ``JobStateError``."""
        jid = _job_id(job_id)
        with self._tx() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == jid, jobs.c.status.in_((Q, P)))
                         .values(status=X, finished_at=self.now, lease_until=None))
            found = self._jobs(conn, sa.select(jobs).where(jobs.c.id == jid))
        if not found:
            raise JobNotFoundError(f"No job with id {job_id!r} in the job store {self}.", job_id=job_id)
        if found[0].status in (C, F):
            raise JobStateError(f"Job {jid} is already {found[0].status}: it cannot be cancelled.",
                                status=found[0].status)
        return found[0]

    def retry_failed(self, ids: Iterable[int] | None = None, *, batch_id: str | None = None) -> int:
        """Queue failed jobs again with fresh attempts (all, or those of ``ids`` / a batch); returns how many."""
        stmt = sa.update(jobs).where(jobs.c.status == F, *self._scope(batch_id=batch_id))
        if ids is not None:
            stmt = stmt.where(jobs.c.id.in_([_job_id(i) for i in ids]))
        stmt = stmt.values(status=Q, attempts=0, error=None, error_type=None, worker_id=None, worker_host=None,
                           worker_pid=None, lease_until=None, started_at=None, finished_at=None)
        with self._tx() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    # ------------------------------------------------------------------ workers
    def claim(self, worker: WorkerIdentity, n: int, *, model: str | None = None, batches: bool = False,
              lease_s: float = JOB_LEASE_S) -> list[Job]:
        """Take up to ``n`` queued jobs (oldest first) for ``worker``, leased for ``lease_s`` seconds: jobs
        for no model or for ``model``; plain jobs, or with ``batches`` the Batch API's jobs (a server runs
        those, with its media rules)."""
        if n <= 0:
            return []
        key = ("claim", model is None, bool(batches))
        if key not in self._stmts:  # built once per scope: only the values change between claims
            scope = [] if model is None else [sa.or_(jobs.c.model.is_(None), jobs.c.model == sa.bindparam("c_model"))]
            pick = (sa.select(jobs.c.id).where(jobs.c.status == Q, *scope, *self._scope(batches=bool(batches)))
                    .order_by(jobs.c.id).limit(sa.bindparam("c_n", type_=sa.Integer)))
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            # Materialized, so the pick runs once: as a plain IN (subquery) PostgreSQL may re-run it for
            # each row it updates (a nested-loop semi join), and each run locks and takes more rows than n.
            picked = pick.cte("picked").prefix_with("MATERIALIZED")
            self._stmts[key] = (
                sa.update(jobs).where(jobs.c.id.in_(sa.select(picked.c.id)), jobs.c.status == Q)
                .values(status=P, attempts=jobs.c.attempts + 1, worker_id=sa.bindparam("c_wid"),
                        worker_host=sa.bindparam("c_host"), worker_pid=sa.bindparam("c_pid", type_=sa.Integer),
                        started_at=self.now, lease_until=self.now + sa.bindparam("c_lease", type_=sa.Float),
                        error=None, error_type=None)
                .returning(*jobs.c))
        values = {"c_n": int(n), "c_wid": worker.id, "c_host": worker.host, "c_pid": worker.pid,
                  "c_lease": float(lease_s)}
        if model is not None:
            values["c_model"] = model
        with self._tx() as conn:
            return sorted((Job.from_row(r._mapping) for r in conn.execute(self._stmts[key], values)),
                          key=lambda j: j.id)

    def _held(self, worker: WorkerIdentity, job: Job) -> list[Any]:
        return [jobs.c.id == job.id, jobs.c.status == P, jobs.c.worker_id == worker.id,
                jobs.c.attempts == job.attempts]

    def heartbeat(self, worker: WorkerIdentity, held: Mapping[int, int], lease_s: float = JOB_LEASE_S) -> set[int]:
        """Renew the leases of the jobs ``worker`` holds (``{job id: attempt}``); returns the ids it still
        holds (the others were cancelled or taken back: stop running them)."""
        if not held:
            return set()
        stmt = (sa.update(jobs).where(jobs.c.id.in_(list(held)), jobs.c.status == P, jobs.c.worker_id == worker.id)
                .values(lease_until=self.now + lease_s).returning(jobs.c.id, jobs.c.attempts))
        with self._tx() as conn:
            return {int(i) for i, attempt in conn.execute(stmt) if held.get(int(i)) == attempt}

    def complete(self, worker: WorkerIdentity, job: Job, response: Any) -> bool:
        """Store ``response`` (a ``Response``) as the job's result, if ``worker`` still holds the job;
        returns whether it was stored (False: the job was cancelled or taken back meanwhile)."""
        return job.id in self.complete_many(worker, [(job, response)])

    def complete_many(self, worker: WorkerIdentity, results: Iterable[tuple[Job, Any]]) -> set[int]:
        """``complete`` for several jobs in one transaction; returns the ids whose result was stored."""
        if "complete" not in self._stmts:
            self._stmts["complete"] = (
                sa.update(jobs).where(jobs.c.id == sa.bindparam("r_id"), jobs.c.status == P,
                                      jobs.c.worker_id == sa.bindparam("r_wid"),
                                      jobs.c.attempts == sa.bindparam("r_attempt"))
                .values(status=C, response=sa.bindparam("r_text"), finish_reason=sa.bindparam("r_finish"),
                        usage=sa.bindparam("r_usage", type_=jobs.c.usage.type), error=None, error_type=None,
                        finished_at=self.now, lease_until=None))
        stored: set[int] = set()
        with self._tx() as conn:
            for job, response in results:
                usage = getattr(response, "usage", None)
                row = {"r_id": job.id, "r_wid": worker.id, "r_attempt": job.attempts, "r_text": response.content,
                       "r_finish": response.finish_reason, "r_usage": dict(usage) if usage is not None else None}
                if conn.execute(self._stmts["complete"], row).rowcount == 1:
                    stored.add(job.id)
        return stored

    def fail(self, worker: WorkerIdentity, job: Job, error: BaseException, *, retry: bool | None = None) -> str | None:
        """Record ``error`` for a job ``worker`` holds: ``failed``, or ``queued`` again when the error is
        worth retrying (``retry``; default: backend and connection errors) and attempts are left.
        Returns the new status (None: the job was no longer held)."""
        name = type(error).__name__
        retry = name in _RETRYABLE if retry is None else retry
        again = retry and job.attempts < job.max_attempts
        message = str(error) if isinstance(error, AbstractLLMError) else f"{name}: {error}"
        if again:
            message += f" (attempt {job.attempts} of {job.max_attempts}; queued again)"
        values = dict(status=Q if again else F, error=message[:10_000], error_type=name, lease_until=None,
                      finished_at=None if again else self.now)
        if again:
            values.update(worker_id=None, worker_host=None, worker_pid=None)
        with self._tx() as conn:
            stored = conn.execute(sa.update(jobs).where(*self._held(worker, job)).values(**values)).rowcount == 1
        return values["status"] if stored else None

    def release(self, worker: WorkerIdentity, jobs_held: Iterable[Job]) -> int:
        """Put jobs ``worker`` holds back in the queue without spending an attempt (a stopping worker, a
        full engine queue); returns how many."""
        n = 0
        with self._tx() as conn:
            for job in jobs_held:
                n += conn.execute(sa.update(jobs).where(*self._held(worker, job)).values(
                    status=Q, attempts=jobs.c.attempts - 1, worker_id=None, worker_host=None, worker_pid=None,
                    lease_until=None, started_at=None)).rowcount or 0
        return n

    def _requeue(self, reason: str) -> dict[str, Any]:
        exhausted = jobs.c.attempts >= jobs.c.max_attempts
        return dict(status=sa.case((exhausted, F), else_=Q),
                    error=sa.case((exhausted, f"The worker running this job stopped ({reason}) and no attempt "
                                              "is left (max_attempts)."), else_=None),
                    error_type=sa.case((exhausted, "WorkerLostError"), else_=None),
                    finished_at=sa.case((exhausted, self.now), else_=None),
                    worker_id=None, worker_host=None, worker_pid=None, lease_until=None)

    def recover(self, worker: WorkerIdentity | None = None) -> int:
        """Take back the jobs of workers that stopped: leases that expired, and at once those of worker
        processes of this host that are gone. Each goes back to ``queued`` (or ``failed`` when its attempts
        are spent). Returns how many jobs were taken back."""
        me = worker or WorkerIdentity.new()
        n = 0
        with self._tx() as conn:
            n += conn.execute(sa.update(jobs).where(jobs.c.status == P, jobs.c.lease_until < self.now)
                              .values(**self._requeue("its lease expired"))).rowcount or 0
            local = conn.execute(sa.select(jobs.c.worker_id, jobs.c.worker_pid).distinct()
                                 .where(jobs.c.status == P, jobs.c.worker_host == me.host)).all()
            for wid, pid in local:
                if wid != me.id and not WorkerIdentity.alive(wid, pid):
                    n += conn.execute(sa.update(jobs).where(jobs.c.status == P, jobs.c.worker_id == wid)
                                      .values(**self._requeue("its process is gone"))).rowcount or 0
        return n

    def pending(self, *, model: str | None = None, batches: bool | None = None) -> int:
        """Jobs not finished (queued or processing) for ``model`` (and jobs for no model)."""
        counts = self.counts(model=model, batches=batches)
        return counts[Q] + counts[P]

    def _connection(self, write: bool = True) -> contextlib.AbstractContextManager[sa.Connection]:
        """A transaction on the store (for ``batches.py``)."""
        return self._tx(write)


def _job_id(job_id: Any) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)) or not str(job_id).strip().isdigit():
        raise JobNotFoundError(f"Job ids are positive integers, got {job_id!r}.", job_id=job_id)
    return int(job_id)


def _db_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_store(url: str | Path | JobStore | None = None) -> JobStore:
    """A ``JobStore`` for ``url`` (a store is returned as is)."""
    return url if isinstance(url, JobStore) else JobStore(url)

