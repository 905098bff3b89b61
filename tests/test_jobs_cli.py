"""``abstractllm batch`` in subprocesses on the offline models: a folder of images through submit / run /
results (a bad image fails alone, exit code 1), JSONL input with every bad line reported, a worker killed
with ``kill -9`` mid-run and restarted (every job gets exactly one result), and a worker that waits for
another machine's lease instead of exiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from jobs_support import cli, run_cli, wait_for, write_images

pytest.importorskip("sqlalchemy", reason="the jobs extra is not installed")

from abstractllm.jobs.config import job_spec  # noqa: E402
from abstractllm.jobs.job import WorkerIdentity  # noqa: E402
from abstractllm.jobs.store import JobStore  # noqa: E402


def test_folder_of_images_submit_run_results(vision_model, tmp_path):
    images = write_images(tmp_path / "photos", 4, bad=("corrupt.jpg",))
    (tmp_path / "photos" / "notes.txt").write_text("not an image: skipped")
    db = str(tmp_path / "jobs.db")
    r = run_cli("batch", "submit", str(tmp_path / "photos"), "--prompt", "Describe this photo.", "--max-tokens", "8",
                "--temperature", "0", "--db", db)
    assert r.returncode == 0 and "queued 5 jobs (ids 1-5)" in r.stderr, r.stderr
    r = run_cli("batch", "run", "--model", str(vision_model), "--concurrency", "4", "--db", db)
    assert r.returncode == 1, r.stderr  # one job failed
    assert "5/5 done" in r.stderr and "1 failed" in r.stderr and "jobs/s" in r.stderr
    status = run_cli("batch", "status", "--db", db, "--json")
    assert json.loads(status.stdout)["counts"] == {"queued": 0, "processing": 0, "completed": 4, "failed": 1,
                                                   "cancelled": 0}
    out = tmp_path / "results.jsonl"
    assert run_cli("batch", "results", "--db", db, "-o", str(out)).returncode == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [1, 2, 3, 4, 5]
    assert all({"id", "status", "response", "error", "usage"} <= set(line) for line in lines)
    bad = [line for line in lines if line["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["images"][0].endswith("corrupt.jpg") and "not an image" in bad[0]["error"]
    from abstractllm import create_llm
    from abstractllm.jobs import do_inference

    good = {line["images"][0]: line for line in lines if line["status"] == "completed"}
    with create_llm("mlx", model=str(vision_model)) as llm:
        for path in images:
            expected = do_inference({"prompt": "Describe this photo.", "image_path": str(path), "max_tokens": 8,
                                     "temperature": 0}, llm=llm)
            assert good[str(path)]["response"] == expected.content
            assert good[str(path)]["usage"]["completion_tokens"] == expected.usage.completion_tokens


def test_submit_errors_are_reported_and_queue_nothing(tmp_path):
    db = str(tmp_path / "jobs.db")
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "ok"}\n{"prompt": 3}\n\n{"prompt": "x", "temperature": -1}\nnope\n')
    r = run_cli("batch", "submit", str(src), "--db", db)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr  # one line, every bad line in it
    assert "line 2: prompt" in r.stderr and "line 4: temperature" in r.stderr and "line 5: not valid JSON" in r.stderr
    assert json.loads(run_cli("batch", "status", "--db", db, "--json").stdout)["total"] == 0
    (tmp_path / "empty").mkdir()
    r = run_cli("batch", "submit", str(tmp_path / "empty"), "--db", db)
    assert r.returncode == 2 and "needs --prompt" in r.stderr
    r = run_cli("batch", "submit", str(tmp_path / "empty"), "--prompt", "x", "--db", db)
    assert r.returncode == 1 and "no image files" in r.stderr
    r = run_cli("batch", "status", "--db", str(tmp_path / "nope" / "jobs.db"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = run_cli("batch", "cancel", "99", "--db", db)
    assert r.returncode == 1 and "No job with id 99" in r.stderr


def test_kill_9_mid_run_then_restart_gives_every_job_one_result(tiny_model, tiny_llm, tmp_path):
    db = str(tmp_path / "jobs.db")
    prompts = [f"Write about item {i}." for i in range(40)]
    with JobStore(db) as store:
        store.submit([job_spec({"prompt": p, "max_tokens": 64, "min_tokens": 64, "temperature": 0})
                      for p in prompts])
        proc = subprocess.Popen(cli("batch", "run", "--model", str(tiny_model), "--concurrency", "4", "--db", db),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: (c := store.counts())["completed"] >= 4 and c["processing"] >= 1, 120,
                     "the worker to be mid-run")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            assert proc.wait(30) == -signal.SIGKILL
        before = {j.id: j for j in store.list("completed")}
        held = {j.id: j for j in store.list("processing")}
        assert before and held and len(before) < len(prompts)
        t0 = time.monotonic()
        r = run_cli("batch", "run", "--model", str(tiny_model), "--concurrency", "4", "--db", db)
        assert r.returncode == 0, r.stderr
        after = store.list()
    assert len(after) == len(prompts) and all(j.status == "completed" and j.response for j in after)
    for job in after:
        if job.id in before:  # stored once, never run again
            assert (job.worker_id, job.finished_at, job.response) == (before[job.id].worker_id,
                                                                     before[job.id].finished_at, before[job.id].response)
            assert job.attempts == 1
        elif job.id in held:  # taken back at once (the process is gone), not after the 30 s lease
            assert job.attempts == 2 and job.started_at < held[job.id].lease_until
    assert time.monotonic() - t0 < 120
    expected = tiny_llm.generate(prompts, max_tokens=64, min_tokens=64, temperature=0.0)  # one batch
    assert [j.response for j in after] == [e.content for e in expected]


def test_run_waits_for_another_machines_lease(tiny_model, tmp_path):
    db = str(tmp_path / "jobs.db")
    with JobStore(db) as store:
        (jid,) = store.submit(job_spec({"prompt": "Hello", "max_tokens": 4}))
        other = WorkerIdentity("gpu-box-2:4242:0:beef", "gpu-box-2", 4242)  # a worker on another machine
        (leased,) = store.claim(other, 1, lease_s=3)
        r = run_cli("batch", "run", "--model", str(tiny_model), "--db", db)
        assert r.returncode == 0, r.stderr
        job = store.get(jid)
    assert job.status == "completed" and job.attempts == 2
    assert job.started_at >= leased.lease_until  # it waited for the lease, then ran the job
