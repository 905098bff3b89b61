"""The job store on a real PostgreSQL server (``$ABSTRACTLLM_TEST_POSTGRES_URL``, else a throwaway
cluster started here; skipped with the reason when neither is possible): the same operations as on
SQLite, claims from many connections that never overlap (``FOR UPDATE SKIP LOCKED``), leases on the
database's clock, and two real worker processes sharing one queue without running any job twice."""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid

import pytest

from jobs_support import cli, postgres_server, wait_for

sa = pytest.importorskip("sqlalchemy", reason="the jobs extra is not installed")
pytest.importorskip("psycopg", reason="the jobs extra is not installed (psycopg)")

from abstractllm.jobs import JobStateError, queue_inference  # noqa: E402
from abstractllm.jobs.config import job_spec  # noqa: E402
from abstractllm.jobs.job import WorkerIdentity  # noqa: E402
from abstractllm.jobs.store import JobStore  # noqa: E402
from abstractllm.types import Response, Usage  # noqa: E402


@pytest.fixture(scope="module")
def server():
    srv, why = postgres_server()
    if srv is None:
        pytest.skip(why)
    yield srv
    srv.stop()


@pytest.fixture()
def pg_url(server):
    """A fresh database per test on the server (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sa.make_url(server.url).set(drivername="postgresql+psycopg"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(server.url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_store_operations_on_postgres(pg_url):
    with JobStore(pg_url) as store:
        assert store.dialect == "postgresql" and store.schema_version == 1
        a = queue_inference({"prompt": "one", "max_tokens": 3, "logit_bias": {7: -1}}, store=store)
        b = queue_inference({"prompt": "two", "max_attempts": 1}, store=store)
        assert store.get(a.id).params == {"max_tokens": 3, "logit_bias": {"7": -1.0}}
        me = WorkerIdentity.new()
        (held,) = store.claim(me, 1, lease_s=30)
        assert held.id == a.id and held.lease_until - held.started_at == pytest.approx(30, abs=0.5)
        assert store.complete(me, held, Response(content="x", finish_reason="stop", usage=Usage(1, 1, 2, 0)))
        with pytest.raises(JobStateError):
            store.cancel(a.id)
        far = WorkerIdentity("other:9:0:aa", "other-host", 9)
        (lost,) = store.claim(far, 1, lease_s=0.2)
        assert wait_for(lambda: store.recover(), 30, "the lease to expire on the database's clock") == 1
        assert store.get(b.id).status == "failed"  # its one attempt was spent by the lost worker
        assert store.complete(far, lost, Response(content="late")) is False
    with JobStore(pg_url) as again:  # reopening: migrated once
        assert again.counts()["completed"] == 1


def test_concurrent_claims_never_overlap_on_postgres(pg_url):
    with JobStore(pg_url) as store:
        store.submit([job_spec({"prompt": f"p{i}"}) for i in range(400)])
    claimed: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with JobStore(pg_url) as mine:  # its own connections, as another machine would have
                me = WorkerIdentity.new()
                while batch := mine.claim(me, 3):
                    claimed.extend(j.id for j in batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(claimed) == 400 and len(set(claimed)) == 400


def test_two_workers_share_one_queue(tiny_model, tiny_llm, pg_url):
    prompts = [f"Describe the colour number {i}." for i in range(48)]
    procs = [subprocess.Popen(cli("batch", "run", "--model", str(tiny_model), "--concurrency", "4", "--watch",
                                  "--db", pg_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:  # both loaded and polling before any job exists, so both take part
            line = p.stderr.readline()
            assert line.startswith("worker on "), line + (p.stderr.read() if p.poll() is not None else "")
            threading.Thread(target=p.stderr.read, daemon=True).start()  # drain the progress lines
        with JobStore(pg_url) as store:
            store.submit([job_spec({"prompt": p, "max_tokens": 48, "min_tokens": 48, "temperature": 0})
                          for p in prompts])
            wait_for(lambda: store.counts()["completed"] == len(prompts), 180, "every job to complete", 0.1)
            for p in procs:
                p.send_signal(signal.SIGTERM)  # a clean stop: exit code 0
            assert [p.wait(60) for p in procs] == [0, 0]
            jobs = store.list()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(jobs) == len(prompts) and all(j.status == "completed" for j in jobs)
    assert all(j.attempts == 1 for j in jobs)  # each job was claimed exactly once
    workers = {j.worker_id for j in jobs}
    assert len(workers) == 2  # both workers ran jobs
    expected = tiny_llm.generate(prompts, max_tokens=48, min_tokens=48, temperature=0.0)
    assert [j.response for j in jobs] == [e.content for e in expected]
