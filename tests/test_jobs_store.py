"""The job store on SQLite (always runs): configs checked with every problem reported, the store's
operations, migrations, leases, fencing of late results, dead local workers taken back at once, and
concurrent claims that never overlap. No model is loaded here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from abstractllm import InvalidParameterError
from abstractllm.jobs import (InvalidConfigError, JobNotFoundError, JobStateError, JobStoreError, cancel_job,
                              get_job, list_jobs, queue_inference, retry_failed, validate_config)
from abstractllm.types import Response, Usage
from jobs_support import wait_for

sa = pytest.importorskip("sqlalchemy", reason="the jobs extra is not installed")

from abstractllm.jobs.config import job_spec, read_jsonl  # noqa: E402
from abstractllm.jobs.job import WorkerIdentity  # noqa: E402
from abstractllm.jobs.store import JobStore  # noqa: E402

HEAVY = ("sqlalchemy", "psycopg", "mlx", "mlx.core", "mlx_lm", "mlx_vlm", "fastapi", "numpy", "PIL")


@pytest.fixture()
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def _reply(text: str = "ok") -> Response:
    return Response(content=text, finish_reason="stop", usage=Usage(3, 2, 5, 0))


def test_import_help_and_validation_stay_light(tmp_path):
    """`import abstractllm`, `abstractllm batch ... --help` and validate_config import no database library
    and no backend."""
    (tmp_path / "a.png").write_bytes(b"not decoded")
    code = ("import sys\nimport abstractllm, abstractllm.jobs\nfrom abstractllm.cli import main\n"
            "for argv in (['batch', '--help'], ['batch', 'submit', '--help'], ['batch', 'run', '--help'], "
            "['serve', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
            f"print(abstractllm.jobs.validate_config({{'prompt': 'x', 'image_path': {str(tmp_path / 'a.png')!r}}}))\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "--concurrency" in r.stdout and "--jobs-db" in r.stdout and "'images'" in r.stdout


def test_validate_config_reports_every_problem_at_once(tmp_path):
    with pytest.raises(InvalidConfigError) as info:
        validate_config({"prompt": "", "temprature": 0.5, "max_tokens": 0, "top_p": 1.5, "image_path": "/no/such.png",
                         "image_url": "ftp://x", "max_attempts": 0, "metadata": [1], "seed": -1})
    err = info.value
    fields = [p.split(":", 1)[0] for p in err.problems]
    assert fields == ["temprature", "prompt", "image_path", "image_url", "max_tokens", "seed", "top_p",
                      "max_attempts", "metadata"]
    assert "Did you mean 'temperature'" in str(err) and "below the minimum 1" in str(err)  # PARAMS' own words
    assert isinstance(err, InvalidParameterError) and err.param == "temprature"
    with pytest.raises(InvalidConfigError, match="prompt: required"):
        validate_config({"max_tokens": 5})
    img = tmp_path / "cat.jpg"
    img.write_bytes(b"anything: images are not decoded when jobs are checked")
    os.chdir(tmp_path)
    ok = validate_config({"prompt": "Describe.", "image_path": "cat.jpg", "image_urls": ["https://x/y.png"],
                          "stop": "END", "temperature": 0, "logit_bias": {5: 2}, "model": "m"})
    assert ok["images"] == [str(img), "https://x/y.png"] and ok["stop"] == ["END"]
    assert ok["logit_bias"] == {"5": 2.0} and ok["max_attempts"] == 3 and ok["model"] == "m"


def test_queue_get_list_cancel_retry(store):
    a = queue_inference({"prompt": "one", "max_tokens": 4}, store=store)
    b = queue_inference({"prompt": "two", "custom_id": "b", "metadata": {"k": 1}}, store=store)
    assert a.status == "queued" and a.params == {"max_tokens": 4} and b.metadata == {"k": 1}
    assert get_job(a.id, store=store).prompt == "one"
    assert [j.id for j in list_jobs("queued", store=store)] == [a.id, b.id]
    me = WorkerIdentity.new()
    held = store.claim(me, 1)
    assert [j.id for j in held] == [a.id] and held[0].attempts == 1 and held[0].worker_id == me.id
    assert store.complete(me, held[0], _reply("done")) is True
    done = get_job(a.id, store=store)
    assert done.status == "completed" and done.response == "done" and done.usage["total_tokens"] == 5
    with pytest.raises(JobStateError, match="already completed"):
        cancel_job(a.id, store=store)
    assert cancel_job(b.id, store=store).status == "cancelled"
    c = queue_inference({"prompt": "three"}, store=store)
    (held,) = store.claim(me, 5)
    assert store.fail(me, held, ValueError("bad input")) == "failed"
    failed = get_job(c.id, store=store)
    assert failed.error == "ValueError: bad input" and failed.error_type == "ValueError"
    assert retry_failed(store=store) == 1
    again = get_job(c.id, store=store)
    assert again.status == "queued" and again.attempts == 0 and again.error is None
    assert store.counts() == {"queued": 1, "processing": 0, "completed": 1, "failed": 0, "cancelled": 1}


def test_typed_errors(tmp_path, store):
    with pytest.raises(JobStoreError, match="does not exist"):
        JobStore(tmp_path / "missing" / "jobs.db")
    with pytest.raises(JobStoreError, match="Unsupported job store"):
        JobStore("mysql://u@h/db")
    with pytest.raises(JobStoreError, match="in-memory"):
        JobStore(":memory:")
    with pytest.raises(JobNotFoundError) as info:
        store.get(12345)
    assert info.value.job_id == 12345 and isinstance(info.value, LookupError)
    with pytest.raises(JobNotFoundError):
        store.cancel("abc")
    with pytest.raises(InvalidParameterError, match="Unknown job status 'done'"):
        store.list("done")


def test_jsonl_reports_bad_lines_with_numbers(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"x")
    path = tmp_path / "in.jsonl"
    lines = ['{"prompt": "fine", "image_path": "pics/a.png"}', "{not json", "", '{"prompt": "x", "top_k": -2}',
             "[1, 2]", '{"prompt": "y", "image_paths": ["pics/none.png"]}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidConfigError) as info:
        read_jsonl(path)
    assert info.value.line == 2
    text = "; ".join(info.value.problems)
    for n in (2, 4, 5, 6):
        assert f"line {n}:" in text
    assert "line 1:" not in text and "line 3:" not in text and "pics/none.png" in text
    path.write_text(lines[0] + "\n\n" + '{"prompt": "second"}\n')
    specs = read_jsonl(path, {"max_tokens": 7})
    assert specs[0].images == [str(tmp_path / "pics" / "a.png")]  # relative to the file's folder
    assert [s.params for s in specs] == [{"max_tokens": 7}, {"max_tokens": 7}]


def test_migrations_give_schema_and_refuse_newer(tmp_path):
    from abstractllm.jobs import schema
    from abstractllm.jobs.migrations import LATEST

    path = tmp_path / "jobs.db"
    JobStore(path).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        insp = sa.inspect(engine)
        for table in schema.metadata.sorted_tables:
            assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT max(version) FROM abstractllm_schema")).scalar() == LATEST
            conn.execute(sa.text("INSERT INTO abstractllm_schema VALUES (999, 'future', 0)"))
    finally:
        engine.dispose()
    with pytest.raises(JobStoreError, match="newer abstractllm"):
        JobStore(path)


def test_leases_expire_and_late_results_are_refused(store):
    ids = store.submit([job_spec({"prompt": f"p{i}", "max_attempts": 2}) for i in range(2)])
    slow = WorkerIdentity("elsewhere:1:0:abc", "another-host", 1)  # a worker on another machine
    first = store.claim(slow, 2, lease_s=0.3)
    assert store.recover() == 0  # another host's live lease: nobody takes it back early
    assert wait_for(lambda: store.recover(), 30, "the lease to expire") == 2
    assert store.complete(slow, first[0], _reply("late")) is False  # taken back: the late result is refused
    me = WorkerIdentity.new()
    again = store.claim(me, 2, lease_s=0.3)
    assert [j.attempts for j in again] == [2, 2]
    assert store.heartbeat(me, {again[0].id: 2, again[1].id: 1}, 60) == {again[0].id}  # attempt 1 is not ours
    store.cancel(again[0].id)
    assert store.heartbeat(me, {again[0].id: 2}, 60) == set()  # cancelled: the worker stops it
    assert store.complete(me, again[0], _reply()) is False and store.get(ids[0]).status == "cancelled"
    assert wait_for(lambda: store.recover(), 30, "the second lease to expire") == 1
    lost = store.get(ids[1])  # both attempts spent by workers that stopped: failed, not retried forever
    assert lost.status == "failed" and lost.error_type == "WorkerLostError" and "no attempt" in lost.error


def test_jobs_of_a_dead_local_worker_go_back_at_once(tmp_path, store):
    store.submit([job_spec({"prompt": f"p{i}"}) for i in range(3)])
    code = ("import sys; from abstractllm.jobs.store import JobStore; from abstractllm.jobs.job import WorkerIdentity\n"
            f"s = JobStore({str(store.url.database)!r}); print(len(s.claim(WorkerIdentity.new(), 2, lease_s=600)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    held = store.list("processing")
    assert len(held) == 2 and all(j.lease_until - j.started_at > 500 for j in held)
    assert store.recover() == 2  # its process is gone: no need to wait 600 s
    assert store.counts()["queued"] == 3 and all(j.attempts == 1 for j in store.list("queued")[:2])


def test_concurrent_claims_never_overlap(tmp_path):
    path = tmp_path / "jobs.db"
    with JobStore(path) as s:
        s.submit([job_spec({"prompt": f"p{i}"}) for i in range(300)])
    claimed: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with JobStore(path) as mine:
                me = WorkerIdentity.new()
                while batch := mine.claim(me, 4):
                    claimed.extend(j.id for j in batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(claimed) == 300 and len(set(claimed)) == 300


def test_results_lines_are_json(store):
    job = queue_inference({"prompt": "x", "image_url": "https://example.com/a.png"}, store=store)
    line = json.loads(json.dumps(store.get(job.id).result()))
    assert {"id", "status", "response", "error", "usage"} <= set(line) and line["images"] == ["https://example.com/a.png"]


def test_backend_errors_are_retried_a_bounded_number_of_times(store):
    from abstractllm import GenerationError, MemoryLimitError

    job_id = queue_inference({"prompt": "x", "max_attempts": 2}, store=store).id
    other = queue_inference({"prompt": "y"}, store=store).id
    me = WorkerIdentity.new()
    first = [j for j in store.claim(me, 2) if j.id == job_id][0]
    assert store.fail(me, first, GenerationError("backend hiccup")) == "queued"  # retried: an attempt is left
    assert "attempt 1 of 2; queued again" in store.get(job_id).error
    refused = store.get(other)
    assert store.fail(WorkerIdentity.new(), refused, MemoryLimitError("too big")) is None  # not its holder
    assert store.fail(me, refused, MemoryLimitError("too big")) == "failed"  # a memory refusal is not retried
    (second,) = store.claim(me, 1)
    assert second.id == job_id and second.attempts == 2 and second.error is None
    assert store.fail(me, second, GenerationError("again")) == "failed"  # attempts spent
    final = store.get(job_id)
    assert final.status == "failed" and final.error == "again" and final.error_type == "GenerationError"


def test_batch_api_jobs_are_left_to_servers(store):
    plain = job_spec({"prompt": "plain"})
    from_batch = job_spec({"prompt": "from a batch"})
    from_batch.batch_id = "batch_x"
    plain_id, batch_id = store.submit([plain, from_batch])
    me = WorkerIdentity.new()
    assert [j.id for j in store.claim(me, 5)] == [plain_id]  # what run_worker / batch run take
    assert [j.id for j in store.claim(me, 5, batches=True)] == [batch_id]  # what a server's worker takes
    assert store.counts()["processing"] == 2 and store.counts(batches=False)["processing"] == 1
