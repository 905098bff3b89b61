"""The worker on real MLX execution (offline tiny models): jobs batched on the provider's engine give the
same replies as the library's own greedy generation; failing jobs fail alone; a cancelled running job is
stopped; a full engine queue spends no attempt; do_inference runs one config."""

from __future__ import annotations

import threading

import pytest

from abstractllm import create_llm
from abstractllm.jobs import InvalidConfigError, do_inference, queue_inference, run_worker
from jobs_support import wait_for, write_images

pytest.importorskip("sqlalchemy", reason="the jobs extra is not installed")

from abstractllm.jobs.store import JobStore  # noqa: E402

PROMPTS = [f"Tell me about the number {i}." for i in range(16)]


@pytest.fixture()
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def test_jobs_run_batched_and_match_greedy_generation(tiny_model, tiny_llm, store):
    for p in PROMPTS:
        queue_inference({"prompt": p, "max_tokens": 12, "temperature": 0.0}, store=store)
    seen: list = []
    with create_llm("mlx", model=str(tiny_model), max_batch_size=8) as llm:
        report = run_worker(store, llm=llm, concurrency=8, on_progress=seen.append, progress_s=0.0)
        stats = llm.get_stats()
    assert report.completed == 16 and report.failed == 0 and report.finished and report.counts["completed"] == 16
    assert stats["average_batch_size"] > 1.5  # the jobs ran together in the engine's batch
    assert seen and seen[-1].done == seen[-1].total == 16 and seen[-1].eta_s in (None, 0.0)
    for job in store.list():
        expected = tiny_llm.generate(job.prompt, max_tokens=12, temperature=0.0)
        assert job.status == "completed" and job.response == expected.content
        assert job.usage["completion_tokens"] == expected.usage.completion_tokens and job.attempts == 1


def test_failed_jobs_fail_alone(vision_model, tmp_path, store):
    paths = write_images(tmp_path / "imgs", 3, bad=("broken.png",))
    for p in [*paths[:2], tmp_path / "imgs" / "broken.png", paths[2]]:
        queue_inference({"prompt": "Describe this image.", "image_path": str(p), "max_tokens": 6, "temperature": 0},
                        store=store)
    queue_inference({"prompt": "Describe.", "image_url": "data:image/png;base64,AAAA", "max_tokens": 6}, store=store)
    other = queue_inference({"prompt": "for another model", "model": "some/other-model"}, store=store)
    report = run_worker(store, model=str(vision_model), concurrency=4)
    jobs = store.list()
    assert [j.status for j in jobs] == ["completed", "completed", "failed", "completed", "failed", "queued"]
    assert jobs[2].error_type == "ImageProcessingError" and "broken.png" in jobs[2].error and jobs[2].attempts == 1
    assert jobs[4].error_type == "ImageProcessingError"  # input errors are not retried
    assert report.completed == 3 and report.failed == 2 and store.get(other.id).status == "queued"
    with create_llm("mlx", model=str(vision_model)) as llm:  # the same reply as one call of the library
        expected = do_inference({"prompt": "Describe this image.", "image_path": str(paths[1]), "max_tokens": 6,
                                 "temperature": 0}, llm=llm)
    assert jobs[1].response == expected.content


def test_text_model_refuses_image_jobs_and_do_inference(tiny_model, tiny_llm, tmp_path, store):
    (img,) = write_images(tmp_path, 1)
    job = queue_inference({"prompt": "Describe.", "image_path": str(img)}, store=store)
    run_worker(store, model=str(tiny_model))
    done = store.get(job.id)
    assert done.status == "failed" and done.error_type == "UnsupportedFeatureError"
    reply = do_inference({"prompt": "Hello there", "model": str(tiny_model), "max_tokens": 8, "temperature": 0})
    assert reply.content == tiny_llm.generate("Hello there", max_tokens=8, temperature=0.0).content
    with pytest.raises(InvalidConfigError, match="model: required"):
        do_inference({"prompt": "Hello"})


def test_cancelling_a_running_job_stops_it(tiny_model, store):
    job = queue_inference({"prompt": "Go on forever.", "max_tokens": 200_000, "min_tokens": 200_000}, store=store)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=run_worker(store, model=str(tiny_model), lease_s=1.5)))
    thread.start()
    try:
        wait_for(lambda: store.get(job.id).status == "processing", 120, "the job to start")
        store.cancel(job.id)
        thread.join(120)  # the worker notices at its next lease renewal (every 0.5 s here) and stops the job
        assert not thread.is_alive()
    finally:
        if thread.is_alive():  # pragma: no cover - keep the session usable
            store.cancel(job.id)
            thread.join(300)
    final = store.get(job.id)
    assert final.status == "cancelled" and final.response is None and result["r"].completed == 0


def test_a_full_engine_queue_spends_no_attempt(tiny_model, store):
    for i in range(8):
        queue_inference({"prompt": f"Count {i}", "max_tokens": 6, "max_attempts": 1}, store=store)
    with create_llm("mlx", model=str(tiny_model), max_batch_size=1, max_queue_size=1) as llm:
        report = run_worker(store, llm=llm, concurrency=6, poll_s=0.05)
    assert store.counts()["completed"] == 8 and all(j.attempts == 1 for j in store.list())
    assert report.completed == 8 and report.failed == 0 and report.requeued > 0  # put back, then run
