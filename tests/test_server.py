"""The OpenAI-compatible server, run for real: ``abstractllm serve`` in a subprocess on a loopback port,
driven with the official ``openai`` client and raw ``httpx``. Replies are compared token for token with
the library's own greedy generation on the same tiny model."""

from __future__ import annotations

import base64
import io
import json
import signal
import threading
import time

import httpx
import openai
import pytest

from test_server_support import ServerProcess

MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story."}]
BODY_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server(tiny_model):
    # the long generations below (cancelled mid-way) ask for 200000 tokens: above the default limit
    srv = ServerProcess(tiny_model, "--max-body-size", str(BODY_LIMIT), "--max-tokens", "24",
                        "--max-tokens-limit", "200000")
    yield srv
    rc = srv.stop(signal.SIGINT)
    assert rc == 0, "".join(srv.log)


@pytest.fixture(scope="module")
def narrow(tiny_model):
    """A server that batches one request at a time and queues at most two: queueing is visible."""
    # --max-concurrency 3 with a batch of 1: a queue of 2 (what --max-queue-size 2 would give)
    srv = ServerProcess(tiny_model, "--max-batch-size", "1", "--max-concurrency", "3", "--max-tokens-limit", "200000")
    yield srv
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_health_models_and_shapes(server, client):
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["model_loaded"] is True and h["device"] == "cpu"
    assert h["model"] == server_model_id(server) and h["uptime_s"] > 0
    assert h["blas"].startswith("OpenBLAS ")  # active (which library) or inactive (why)
    ids = [m.id for m in client.models.list()]
    assert ids == [server_model_id(server)]


def server_model_id(server) -> str:
    return httpx.get(server.url + "/v1/models").json()["data"][0]["id"]


def test_chat_matches_library_greedy(client, tiny_llm):
    expected = tiny_llm.generate(messages=MSGS, temperature=0.0, max_tokens=12)
    r = client.chat.completions.create(model="anything", messages=MSGS, temperature=0, max_tokens=12)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == expected.content
    assert r.choices[0].finish_reason == expected.finish_reason == "length"
    assert r.usage.prompt_tokens == expected.usage.prompt_tokens
    assert r.usage.completion_tokens == 12 == expected.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_max_completion_tokens_and_server_default(client):
    r = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_completion_tokens=5)
    assert r.usage.completion_tokens == 5
    r = client.chat.completions.create(model="m", messages=MSGS, temperature=0)  # --max-tokens 24
    assert r.usage.completion_tokens <= 24 and (r.choices[0].finish_reason == "stop" or r.usage.completion_tokens == 24)


def test_stream_with_usage_equals_plain(client, server):
    plain = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=16)
    stream = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=16, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert len({c.id for c in chunks}) == 1
    # without include_usage: no usage chunk; the raw stream ends with [DONE]
    with httpx.stream("POST", server.base_url + "/chat/completions", json={
            "messages": MSGS, "temperature": 0, "max_tokens": 4, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(ln[6:]) for ln in lines[:-1])


def test_stop_and_seed(client, tiny_llm):
    base = tiny_llm.generate(messages=MSGS, temperature=0.0, max_tokens=16).content
    stop = base[len(base) // 2: len(base) // 2 + 2]
    assert stop.strip()
    expected = tiny_llm.generate(messages=MSGS, temperature=0.0, max_tokens=16, stop=[stop])
    r = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=16, stop=[stop])
    assert r.choices[0].message.content == expected.content and stop not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    a, b, c = (client.chat.completions.create(model="m", messages=MSGS, temperature=1.5, top_p=0.95, max_tokens=16,
                                              seed=s).choices[0].message.content for s in (7, 7, 8))
    assert a == b and a != c


def test_multi_turn_reuses_the_prompt_cache(client, server):
    turn1 = [{"role": "user", "content": "First question, a long one about many things at once."}]
    r1 = client.chat.completions.create(model="m", messages=turn1, temperature=0, max_tokens=8)
    hits = server.stats()["prompt_cache"]["hits"]
    turn2 = turn1 + [{"role": "assistant", "content": r1.choices[0].message.content},
                     {"role": "user", "content": "And a second one."}]
    r2 = client.chat.completions.create(model="m", messages=turn2, temperature=0, max_tokens=8)
    assert r2.usage.prompt_tokens_details.cached_tokens > 0
    assert server.stats()["prompt_cache"]["hits"] == hits + 1


def test_completions_endpoint(client, tiny_llm):
    expected = tiny_llm.generate("Once upon a time", temperature=0.0, max_tokens=6)
    r = client.completions.create(model="m", prompt="Once upon a time", temperature=0, max_tokens=6)
    assert r.object == "text_completion" and r.choices[0].text == expected.content
    assert r.usage.completion_tokens == 6
    stream = client.completions.create(model="m", prompt="Once upon a time", temperature=0, max_tokens=6,
                                       stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected.content
    assert chunks[-1].usage.completion_tokens == 6
    r = client.completions.create(model="m", prompt="Once upon a time", temperature=0)
    assert r.usage.completion_tokens <= 16  # OpenAI's default max_tokens for completions


def test_vlm_generate_form(server, tiny_llm):
    msgs = [{"role": "user", "content": "Describe."}]
    expected = tiny_llm.generate(messages=msgs, temperature=0.0, max_tokens=7)
    r = httpx.post(server.url + "/api/v1/generate",
                   json={"messages": msgs, "max_new_tokens": 7, "temperature": 0.0, "top_p": 1.0})
    assert r.status_code == 200
    body = r.json()
    assert body["response"] == expected.content
    assert body["usage"] == {"input_tokens": expected.usage.prompt_tokens, "output_tokens": 7,
                             "total_tokens": expected.usage.prompt_tokens + 7}
    assert body["processing_time"] > 0
    bad = httpx.post(server.url + "/api/v1/generate", json={"messages": msgs, "max_new_tokens": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_tokens"


def _png_data_uri() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("kwargs, param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": [""]}, "stop"),
    ({"seed": -5}, "seed"),
    ({"n": 0}, "n"),
    ({"n": 9}, "n"),  # above --max-n (8)
    ({"extra_body": {"reasoning_effort": "extreme"}}, "reasoning_effort"),  # unknown fields: test_server_fields.py
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),  # a result without its call
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs
    ({"logprobs": True, "top_logprobs": 99}, "top_logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),  # without tools
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format"),

    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}, "messages"),
])
def test_bad_requests_are_400_with_param(client, kwargs, param):
    args = {"model": "m", "messages": MSGS, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**args)
    err = info.value
    assert err.status_code == 400
    assert err.body["type"] == "invalid_request_error" and err.body["param"] == param
    assert err.body["message"]


def test_image_to_text_model_is_400_and_server_keeps_working(client):
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": _png_data_uri()}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], max_tokens=4)
    assert info.value.body["code"] == "unsupported_feature" and "text-only" in info.value.body["message"]
    r = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=3)
    assert r.usage.completion_tokens == 3


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/passwd", "../../etc/passwd", "~/.ssh/id_rsa",
                                 "relative.png", "ftp://example.com/x.png"])
def test_local_paths_refused_by_default(server, url):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                       {"type": "image_url", "image_url": {"url": url}}]}]}
    r = httpx.post(server.base_url + "/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "local_file_refused"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b"", b'"text"', b"[" * 100_000,
                                  b'{"messages": [{"role": "user", "content": "x"}'])
def test_malformed_bodies(server, body):
    r = httpx.post(server.base_url + "/chat/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json"


def test_non_finite_numbers_are_400(server):
    body = b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN, "max_tokens": 2}'
    r = httpx.post(server.base_url + "/chat/completions", content=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    body = b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}'
    r = httpx.post(server.base_url + "/chat/completions", content=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


def test_oversize_body_is_413(server):
    big = {"messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}]}
    r = httpx.post(server.base_url + "/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit is enforced while reading
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(BODY_LIMIT // 4096 + 2):
            yield b"y" * 4096
        yield b'"}]}'

    r = httpx.post(server.base_url + "/chat/completions", content=chunked())
    assert r.status_code == 413
    assert httpx.get(server.url + "/health").status_code == 200


def test_unknown_paths_and_methods(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(server.base_url + "/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(server.url + "/v1/../../etc/passwd")
    assert r.status_code == 404


def test_stats_and_cache_clear(server, client):
    before = server.stats()
    client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=4)
    after = server.stats()
    assert after["requests_served"] == before["requests_served"] + 1
    assert after["total_tokens_generated"] == before["total_tokens_generated"] + 4
    assert after["average_response_time"] > 0 and after["average_ttft"] > 0
    assert after["active_requests"] == 0 and after["queue_length"] == 0 and after["uptime_s"] > 0
    for key in ("requests_failed", "requests_cancelled", "tokens_per_second", "cache_hit_rate", "batch_size",
                "average_batch_size", "memory_usage"):
        assert key in after, key
    mem = after["memory"]
    assert mem["process_rss"] > 10_000_000 and mem["mlx_active"] > 0 and mem["mlx_peak"] >= mem["mlx_active"]
    assert after["prompt_cache"]["entries"] >= 1
    r = httpx.post(server.base_url + "/cache/clear")
    assert r.status_code == 200 and r.json()["prompt_cache"]["entries"] == 0
    assert server.stats()["memory"]["mlx_cache"] == 0


def test_disconnect_mid_stream_cancels_and_queue_is_reported(narrow):
    server = narrow
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    before = server.stats()
    long_body = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 200000,
                 "stream": True}
    second: dict = {}

    def queued_request():
        second["r"] = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=3)

    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.base_url + "/chat/completions", json=long_body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            got = [next(lines) for _ in range(12)]
            assert sum(ln.startswith("data: ") for ln in got) >= 5
            assert server.stats()["active_requests"] == 1
            t = threading.Thread(target=queued_request)
            t.start()
            deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
            while server.stats()["queue_length"] != 1:
                assert time.monotonic() < deadline, "the second request never showed as queued"
                time.sleep(0.05)
        # leaving the block closes the connection mid-stream
    t.join(30)
    assert second["r"].usage.completion_tokens == 3  # it ran once the cancelled generation stopped
    deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
    while (s := server.stats())["active_requests"] or s["queue_length"]:
        assert time.monotonic() < deadline, f"generation not cancelled: {s}"
        time.sleep(0.05)
    assert s["requests_cancelled"] == before["requests_cancelled"] + 1
    # the cancelled generation is not counted as served; its tokens were far fewer than 200000
    assert s["requests_served"] == before["requests_served"] + 1


def test_sigterm_exits_zero(tiny_model):
    srv = ServerProcess(tiny_model)
    r = httpx.post(srv.base_url + "/chat/completions",
                   json={"messages": MSGS, "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200
    assert srv.stop(signal.SIGTERM) == 0, "".join(srv.log)


def test_client_timeout_on_a_plain_request_cancels_it(server, client):
    before = server.stats()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/chat/completions", timeout=1.0, json={
            "messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 200000})
    deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
    while (s := server.stats())["active_requests"]:
        assert time.monotonic() < deadline, f"generation not cancelled: {s}"
        time.sleep(0.05)
    assert s["requests_cancelled"] == before["requests_cancelled"] + 1
    assert s["requests_served"] == before["requests_served"]
    r = client.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=3)
    assert r.usage.completion_tokens == 3


def test_concurrent_requests_match_sequential(client, tiny_llm):
    prompts = ["Alpha beta", "Gamma delta epsilon", "Zeta"]
    expected = [tiny_llm.generate(p, temperature=0.0, max_tokens=10).content for p in prompts]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        if i % 2:
            stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompts[i]}],
                                                    temperature=0, max_tokens=10, stream=True)
            results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        else:
            r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompts[i]}],
                                               temperature=0, max_tokens=10)
            results[i] = r.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results.get(i) for i in range(len(prompts))] == expected


def test_a_queued_stream_whose_client_leaves_never_runs(narrow):
    server = narrow
    before = server.stats()
    long_body = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 200000,
                 "stream": True}
    with httpx.Client(timeout=30) as http, http.stream("POST", server.base_url + "/chat/completions",
                                                       json=long_body) as resp:
        lines = resp.iter_lines()  # keep it: a dropped line iterator closes the connection
        next(lines)
        with pytest.raises(httpx.ReadTimeout):  # queued behind the first: gives up waiting
            httpx.post(server.base_url + "/chat/completions", timeout=1.0, json={**long_body, "stream": True})
        deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
        while server.stats()["queue_length"]:
            assert time.monotonic() < deadline, "the abandoned request is still queued"
            time.sleep(0.05)
        # it left the queue while the first still runs (a batch of one): it never ran
        assert server.stats()["active_requests"] == 1
    deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
    while (s := server.stats())["active_requests"]:
        assert time.monotonic() < deadline, f"generation not cancelled: {s}"
        time.sleep(0.05)
    assert s["requests_cancelled"] == before["requests_cancelled"] + 2  # both ended as cancelled
    assert s["requests_failed"] == before["requests_failed"]


def test_a_full_queue_is_429_with_retry_after(narrow):
    """One request generating, two waiting (--max-batch-size 1 --max-queue-size 2): the next is refused
    at once with 429 and a Retry-After header, and the server goes on."""
    long_body = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 200000,
                 "stream": True}
    with httpx.Client(timeout=60) as http:
        streams = [http.stream("POST", narrow.base_url + "/chat/completions", json=long_body)]
        first = streams[0].__enter__()
        lines = first.iter_lines()  # keep it: a dropped line iterator closes the connection
        next(lines)  # generating
        waiting = []
        try:
            for _ in range(2):
                waiting.append(threading.Thread(target=lambda: httpx.post(
                    narrow.base_url + "/chat/completions", timeout=60, json={**long_body, "stream": False,
                                                                             "max_tokens": 2})))
                waiting[-1].start()
            deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
            while narrow.stats()["queue_length"] != 2:
                assert time.monotonic() < deadline, narrow.stats()
                time.sleep(0.05)
            r = httpx.post(narrow.base_url + "/chat/completions", timeout=60, json={**long_body, "stream": False})
            assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
            assert int(r.headers["retry-after"]) >= 1
            with pytest.raises(openai.RateLimitError):
                openai.OpenAI(base_url=narrow.base_url, api_key="x", max_retries=0).chat.completions.create(
                    model="m", messages=MSGS, max_tokens=2)
        finally:
            streams[0].__exit__(None, None, None)  # the long one ends: the waiting ones run
        for t in waiting:
            t.join(60)
    assert narrow.stats()["queue_length"] == 0
