"""Operating ``abstractllm serve``: ``GET /metrics`` (parsed with prometheus_client's own parser),
``GET /vram_status``, the ``x-request-id`` of every response, JSON access logs (``--log-format json``), and
the API key sent the Anthropic way (``x-api-key``) as well as the OpenAI way, on every endpoint."""

from __future__ import annotations

import json
import re
import signal
import time

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_server_support import ServerProcess

KEY = "sk-ops-456"
MSGS = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = ServerProcess(tiny_model, "--log-format", "json", "--api-key", KEY)
    srv.auth = {"Authorization": f"Bearer {KEY}"}
    yield srv
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


def _get(srv, path: str, **kw) -> httpx.Response:
    return httpx.get(srv.url + path, headers={**srv.auth, **kw.pop("headers", {})}, timeout=30, **kw)


def _metrics(srv) -> dict[str, list]:
    r = _get(srv, "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_requests_tokens_and_latency(server):
    httpx.request("BREW", server.url + "/v1/models", headers=server.auth)  # any method token: counted as other
    before = _metrics(server)
    done = _value(before.get("abstractllm_http_requests", []), "abstractllm_http_requests_total",
                  endpoint="/v1/chat/completions", status="200")
    usage = []
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
        for n in (3, 5):
            usage.append(client.chat.completions.create(model="m", messages=MSGS, max_tokens=n, temperature=0).usage)
        stream = client.chat.completions.create(model="m", messages=MSGS, max_tokens=4, stream=True,
                                                stream_options={"include_usage": True})
        usage.append([c for c in stream][-1].usage)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="m", messages=MSGS, max_tokens=4, temperature=-1)
    after = _metrics(server)
    requests = after["abstractllm_http_requests"]
    ok = _value(requests, "abstractllm_http_requests_total", endpoint="/v1/chat/completions", status="200")
    assert ok == done + 3
    assert _value(requests, "abstractllm_http_requests_total", endpoint="/v1/chat/completions", status="400") >= 1
    assert _value(requests, "abstractllm_http_requests_total", endpoint="/metrics", method="GET") >= 1
    grew = {name: _value(after[name], name + "_total") - _value(before.get(name, []), name + "_total")
            for name in ("abstractllm_input_tokens", "abstractllm_output_tokens")}
    assert grew["abstractllm_output_tokens"] == sum(u.completion_tokens for u in usage) == 12
    assert grew["abstractllm_input_tokens"] == sum(u.prompt_tokens for u in usage)
    ttft = after["abstractllm_time_to_first_token_seconds"]
    assert _value(ttft, "abstractllm_time_to_first_token_seconds_count", endpoint="/v1/chat/completions") >= 3
    latency = after["abstractllm_http_request_duration_seconds"]
    count = _value(latency, "abstractllm_http_request_duration_seconds_count", endpoint="/v1/chat/completions")
    assert count >= 4 and _value(latency, "abstractllm_http_request_duration_seconds_sum",
                                 endpoint="/v1/chat/completions") > 0
    assert _value(requests, "abstractllm_http_requests_total", method="BREW") == 0  # methods: a bounded label
    assert _value(requests, "abstractllm_http_requests_total", method="other") >= 1
    for gauge in ("abstractllm_queue_length", "abstractllm_active_requests", "abstractllm_prompt_cache_hit_rate"):
        assert after[gauge][0].value >= 0
    assert after["abstractllm_model_loaded"][0].value == 1
    served = _value(after["abstractllm_generations"], "abstractllm_generations_total", outcome="served")
    assert served >= 3
    assert _value(after["abstractllm_prompt_cache_hits"], "abstractllm_prompt_cache_hits_total") >= 1  # same prompt
    memory = {s.labels["kind"]: s.value for s in after["abstractllm_memory_bytes"]}
    assert memory["process_rss"] > 0 and memory["mlx_active"] > 0


def test_vram_status(server):
    v = _get(server, "/vram_status").json()
    for key in ("allocated_gb", "reserved_gb", "free_gb", "total_gb", "usage_percentage"):
        assert isinstance(v[key], float), (key, v)
    assert 0 < v["allocated_gb"] <= v["reserved_gb"] < v["total_gb"]
    assert 0 <= v["free_gb"] <= v["total_gb"] and 0 < v["usage_percentage"] <= 100
    assert v["device"] == "cpu" and v["model_loaded"] is True and v["process_rss_gb"] > 0


def test_every_response_carries_a_request_id(server):
    seen = set()
    for r in (_get(server, "/v1/models"), _get(server, "/v1/nothing"), httpx.get(server.url + "/health"),
              httpx.get(server.url + "/v1/models"),  # 401: refused before routing, still numbered
              httpx.post(server.url + "/v1/messages", headers={"x-api-key": KEY}, content=b"{bad")):
        rid = r.headers["x-request-id"]
        assert re.fullmatch(r"req_[0-9a-f]{24}", rid) and rid not in seen
        seen.add(rid)
    r = _get(server, "/v1/models", headers={"x-request-id": "client-id-42"})
    assert r.headers["x-request-id"] == "client-id-42"
    r = _get(server, "/v1/models", headers={"x-request-id": "bad id with spaces"})
    assert r.headers["x-request-id"].startswith("req_")  # not echoed: a new one
    body = {"model": "m", "messages": MSGS, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body,
                      headers={**server.auth, "x-request-id": "stream-7"}) as r:
        assert r.headers["x-request-id"] == "stream-7"
        r.read()


def test_json_access_log_lines(server):
    with anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0) as client:
        m = client.messages.create(model="m", max_tokens=4, messages=MSGS,
                                   extra_headers={"x-request-id": "log-check-1"})
    deadline = time.monotonic() + 10
    line = None
    while line is None and time.monotonic() < deadline:
        line = next((ln for ln in list(server.log) if "log-check-1" in ln), None)
        time.sleep(0.05)
    assert line is not None, "".join(server.log)
    record = json.loads(line)
    assert record["event"] == "access" and record["logger"] == "abstractllm.server.access"
    assert record["method"] == "POST" and record["endpoint"] == "/v1/messages" and record["status"] == 200
    assert record["output_tokens"] == m.usage.output_tokens == 4
    assert record["input_tokens"] == m.usage.input_tokens + m.usage.cache_read_input_tokens
    assert record["duration_ms"] >= record["first_byte_ms"] > 0 and record["ttft_ms"] > 0
    assert all(json.loads(ln) for ln in server.log if ln.strip())  # every line is JSON, uvicorn's too


def test_api_key_by_header_on_every_endpoint(server):
    anthropic_key = {"x-api-key": KEY}
    assert httpx.get(server.url + "/v1/models", headers=anthropic_key).status_code == 200
    for path in ("/metrics", "/vram_status", "/v1/models"):
        r = httpx.get(server.url + path, headers={"x-api-key": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    refused = _metrics(server)["abstractllm_http_requests"]  # counted under the route they were refused on
    assert _value(refused, "abstractllm_http_requests_total", endpoint="/vram_status", status="401") >= 1
    r = httpx.post(server.url + "/v1/messages", json={"model": "m", "max_tokens": 2, "messages": MSGS})
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    with anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="m", max_tokens=2, messages=MSGS)
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as good:
        assert good.responses.create(model="m", input="x", max_output_tokens=2).usage.output_tokens <= 2
    with openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.responses.create(model="m", input="x", max_output_tokens=2)


def test_two_apps_in_one_process_count_apart(tiny_llm):
    from abstractllm.server import ServerConfig, start_server

    config = ServerConfig(model="unused", port=0)
    with start_server(config, tiny_llm) as a, start_server(config, tiny_llm) as b:
        for _ in range(2):
            httpx.get(a.url + "/v1/models")
        httpx.get(b.url + "/v1/models")
        count = {}
        for name, srv in (("a", a), ("b", b)):
            families = {f.name: f.samples for f in text_string_to_metric_families(httpx.get(srv.url + "/metrics").text)}
            count[name] = _value(families["abstractllm_http_requests"], "abstractllm_http_requests_total",
                                 endpoint="/v1/models")
    assert count == {"a": 2, "b": 1}
