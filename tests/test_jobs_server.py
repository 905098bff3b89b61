"""The OpenAI Batch API of ``abstractllm serve`` (``--jobs-db``), driven with the official ``openai``
client: upload, create, poll, download the output and error files (replies equal the library's greedy
generation), invalid lines reported with their numbers, cancel, live requests served beside a running
batch, and a server killed with ``kill -9`` mid-batch that finishes the batch after a restart."""

from __future__ import annotations

import json
import signal

import openai
import pytest

from jobs_support import wait_for
from test_server_support import ServerProcess

pytest.importorskip("sqlalchemy", reason="the jobs extra is not installed")


def _line(cid: str, content, max_tokens: int = 8, **body) -> dict:
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "local", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                     "temperature": 0, **body}}


def _upload(client: openai.OpenAI, lines: list) -> str:
    data = "".join(json.dumps(line) + "\n" if isinstance(line, dict) else line + "\n" for line in lines)
    return client.files.create(file=("requests.jsonl", data.encode()), purpose="batch").id


def _wait_done(client: openai.OpenAI, batch_id: str, timeout: float = 180):
    return wait_for(lambda: (b := client.batches.retrieve(batch_id)).status in ("completed", "failed", "cancelled")
                    and b, timeout, f"batch {batch_id} to finish", 0.1)


def _no_eos(model) -> dict:
    """A logit_bias that keeps the model from ending early (the chat endpoint has no min_tokens)."""
    eos = json.loads((model / "config.json").read_text())["eos_token_id"]
    return {str(i): -100 for i in (eos if isinstance(eos, list) else [eos])}


def _client(srv: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    srv = ServerProcess(tiny_model, "--jobs-db", str(tmp_path_factory.mktemp("batchdb") / "jobs.db"))
    with _client(srv) as client:
        yield srv, client
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


def test_batch_round_trip_with_the_openai_client(served, tiny_llm):
    _, client = served
    prompts = [f"Tell me about the number {i}." for i in range(6)]
    image = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    fid = _upload(client, [_line(f"req-{i}", p) for i, p in enumerate(prompts)] + [_line("img", image)])
    assert client.files.retrieve(fid).purpose == "batch"
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"run": "test"})
    assert batch.status == "in_progress" and batch.request_counts.total == 7 and batch.metadata == {"run": "test"}
    done = _wait_done(client, batch.id)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (6, 1)
    assert done.completed_at >= done.in_progress_at and done.id in [b.id for b in client.batches.list()]
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(6)]
    for o, prompt in zip(out, prompts):
        expected = tiny_llm.generate(prompt, max_tokens=8, temperature=0.0)
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == expected.content
        assert body["usage"]["completion_tokens"] == expected.usage.completion_tokens
    (err,) = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert err["custom_id"] == "img" and err["response"]["status_code"] == 400  # a text model given an image
    assert "text-only" in err["response"]["body"]["error"]["message"]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(done.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_unknown")


def test_invalid_lines_fail_the_batch_with_their_numbers(served):
    _, client = served
    fid = _upload(client, [_line("a", "fine"), "not json", _line("a", "duplicate id"),
                           _line("b", "cold", temperature=-1), {**_line("c", "x"), "url": "/v1/embeddings"},
                           _line("d", "x", stream=True)])
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed" and batch.request_counts.total == 0
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "invalid_request"), (5, "invalid_url"),
        (6, "invalid_request")]
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="1h")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")


def _running(client: openai.OpenAI, batch_id: str, completed: int):
    b = client.batches.retrieve(batch_id)
    assert b.status == "in_progress", b
    return b.request_counts.completed >= completed


def test_live_requests_run_beside_a_batch_and_cancel(served, tiny_model, tiny_llm):
    _, client = served
    fid = _upload(client, [_line(f"long-{i}", f"Story {i}", max_tokens=400, logit_bias=_no_eos(tiny_model))
                           for i in range(40)])
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    wait_for(lambda: _running(client, batch.id, 1), 120, "the batch to run")
    reply = client.chat.completions.create(model="local", messages=[{"role": "user", "content": "Hello there"}],
                                           max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == tiny_llm.generate("Hello there", max_tokens=8, temperature=0.0).content
    assert client.batches.retrieve(batch.id).status == "in_progress"  # served while the batch still runs
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = _wait_done(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert 1 <= done.request_counts.completed < 40
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert errors and all(e["error"]["code"] == "batch_cancelled" for e in errors)
    assert len(errors) + done.request_counts.completed == 40


def test_kill_9_mid_batch_then_restart_finishes_it(tiny_model, tiny_llm, tmp_path):
    db = str(tmp_path / "jobs.db")
    prompts = [f"Count to {i}." for i in range(16)]
    srv = ServerProcess(tiny_model, "--jobs-db", db)
    try:
        with _client(srv) as client:
            fid = _upload(client, [_line(f"r{i}", p, max_tokens=96, logit_bias=_no_eos(tiny_model))
                                   for i, p in enumerate(prompts)])
            batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
            wait_for(lambda: _running(client, batch.id, 2), 120, "the batch to run")
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
    finally:
        srv._kill_if_running()
    from abstractllm.jobs.store import JobStore

    with JobStore(db) as store:  # killed mid-batch: requests were left queued or held by the dead server
        left = store.counts()
    assert left["queued"] + left["processing"] > 0 and left["completed"] >= 2
    srv = ServerProcess(tiny_model, "--jobs-db", db)  # the same store: the batch resumes
    try:
        with _client(srv) as client:
            done = _wait_done(client, batch.id)
            out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    finally:
        assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)
    assert done.status == "completed" and done.request_counts.completed == 16 and done.error_file_id is None
    assert [o["custom_id"] for o in out] == [f"r{i}" for i in range(16)]  # each request exactly once
    expected = tiny_llm.generate(prompts, max_tokens=96, logit_bias={int(k): v for k, v in _no_eos(tiny_model).items()},
                                 temperature=0.0)
    assert [o["response"]["body"]["choices"][0]["message"]["content"] for o in out] == [e.content for e in expected]
