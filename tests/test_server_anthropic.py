"""The Anthropic Messages API of ``abstractllm serve`` (``/v1/messages``, ``/v1/messages/count_tokens``),
driven with the official ``anthropic`` SDK and raw ``httpx`` for the event stream. Replies are compared with
the library's own greedy generation on the same tiny model; bad input is a 400 in Anthropic's error shape,
never a 500, and the server keeps working."""

from __future__ import annotations

import base64
import io
import json
import signal
import time

import anthropic
import httpx
import pytest

from test_server_support import ServerProcess

MSGS = [{"role": "user", "content": "Tell me a story."}]
GREEDY = {"extra_body": {"temperature": 0}}  # newer SDKs take sampling parameters only in the body
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                            "required": ["city"]}}
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = ServerProcess(tiny_model, "--max-body-size", str(BODY_LIMIT), "--max-tokens-limit", "200000")
    yield srv
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


@pytest.fixture(scope="module")
def client(server):
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def vision(vision_model):
    from abstractllm.server import ServerConfig, start_server

    with start_server(ServerConfig(model=str(vision_model), port=0)) as srv:
        with anthropic.Anthropic(base_url=srv.url, api_key="unused", max_retries=0, timeout=60) as c:
            yield srv, c


def _png_b64(color=(10, 120, 200)) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _prompt_tokens(usage) -> int:
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def test_create_matches_library_greedy(client, tiny_llm):
    expected = tiny_llm.generate(messages=MSGS, system_prompt="Be terse.", temperature=0.0, max_tokens=10)
    m = client.messages.create(model="anything", max_tokens=10, system="Be terse.", messages=MSGS, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == expected.content
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None
    assert _prompt_tokens(m.usage) == expected.usage.prompt_tokens and m.usage.output_tokens == 10
    # the system prompt as text blocks is the same prompt
    blocks = client.messages.create(model="m", max_tokens=10, system=[{"type": "text", "text": "Be terse."}],
                                    messages=MSGS, **GREEDY)
    assert blocks.content[0].text == expected.content


def test_stream_equals_create(client):
    whole = client.messages.create(model="m", max_tokens=12, messages=MSGS, **GREEDY)
    with client.messages.stream(model="m", max_tokens=12, messages=MSGS, **GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text == final.content[0].text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 12
    assert _prompt_tokens(final.usage) == _prompt_tokens(whole.usage)


def _events(server, body: dict) -> list[tuple[str, dict]]:
    with httpx.stream("POST", server.url + "/v1/messages", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    out = []
    for name, data in zip(lines[::2], lines[1::2]):
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:]  # every event is named as its type, as Anthropic sends them
        out.append((name[7:], payload))
    return out


def test_raw_event_stream_order(server):
    events = _events(server, {"model": "m", "max_tokens": 6, "messages": MSGS, "temperature": 0})
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * (len(names) - 6)
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    assert start["usage"]["input_tokens"] + start["usage"]["cache_read_input_tokens"] > 0  # known at once
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert all(p["delta"]["type"] == "text_delta" and p["index"] == 0 for n, p in events if n == "content_block_delta")
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 6


def test_stop_sequences(client, tiny_llm):
    full = tiny_llm.generate(messages=MSGS, temperature=0.0, max_tokens=16).content
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip()
    expected = tiny_llm.generate(messages=MSGS, temperature=0.0, max_tokens=16, stop=[stop])
    m = client.messages.create(model="m", max_tokens=16, messages=MSGS, stop_sequences=["never-there", stop], **GREEDY)
    assert m.content[0].text == expected.content and stop not in m.content[0].text
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    with client.messages.stream(model="m", max_tokens=16, messages=MSGS, stop_sequences=[stop], **GREEDY) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_tools_forced_and_their_results(client, server):
    ask = [{"role": "user", "content": "What is the weather in Rome?"}]
    m = client.messages.create(model="m", max_tokens=64, messages=ask, tools=[WEATHER], tool_choice={"type": "any"},
                               **GREEDY)
    assert m.stop_reason == "tool_use"
    (call,) = [b for b in m.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input["city"] in ("Paris", "Rome") and call.id
    named = client.messages.create(model="m", max_tokens=64, messages=ask, tools=[WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"}, **GREEDY)
    assert named.stop_reason == "tool_use"
    with client.messages.stream(model="m", max_tokens=64, messages=ask, tools=[WEATHER],
                                tool_choice={"type": "any"}, **GREEDY) as stream:
        final = stream.get_final_message()
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed.name == "get_weather" and streamed.input == call.input and final.stop_reason == "tool_use"
    events = _events(server, {"model": "m", "max_tokens": 64, "messages": ask, "tools": [WEATHER],
                              "tool_choice": {"type": "any"}, "temperature": 0})
    tool_events = [(n, p) for n, p in events if n.startswith("content_block")
                   and (p.get("content_block", {}).get("type") == "tool_use" or "partial_json" in p.get("delta", {}))]
    assert [n for n, _ in tool_events] == ["content_block_start", "content_block_delta"]
    assert json.loads(tool_events[1][1]["delta"]["partial_json"]) == call.input
    # the result goes back as a tool_result block answering the call
    history = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"},
                                                  {"type": "text", "text": "So?"}]}]
    follow = client.messages.create(model="m", max_tokens=4, messages=history, tools=[WEATHER], **GREEDY)
    assert follow.usage.output_tokens <= 4
    with_tool = client.messages.count_tokens(model="m", messages=history, tools=[WEATHER]).input_tokens
    assert with_tool == _prompt_tokens(follow.usage)


def test_count_tokens_is_the_prompt_of_a_generation(client):
    n = client.messages.count_tokens(model="m", messages=MSGS, system="Be terse.").input_tokens
    m = client.messages.create(model="m", max_tokens=2, messages=MSGS, system="Be terse.", **GREEDY)
    assert n == _prompt_tokens(m.usage) > 0
    more = client.messages.count_tokens(model="m", messages=MSGS, system="Be terse.", tools=[WEATHER]).input_tokens
    assert more > n  # the tools are part of the prompt


def test_structured_output(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    m = client.messages.create(model="m", max_tokens=64, messages=MSGS,
                               output_config={"format": {"type": "json_schema", "schema": schema}}, **GREEDY)
    assert isinstance(json.loads(m.content[0].text)["ok"], bool) and m.stop_reason == "end_turn"


def test_images_on_a_vision_model(vision):
    srv, client = vision
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _png_b64()}}
    text_only = client.messages.create(model="m", max_tokens=4, messages=MSGS, **GREEDY)
    m = client.messages.create(model="m", max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}], **GREEDY)
    assert _prompt_tokens(m.usage) > _prompt_tokens(text_only.usage) and m.usage.output_tokens >= 1
    with client.messages.stream(model="m", max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}], **GREEDY) as s:
        assert s.get_final_message().content[0].text == m.content[0].text
    counted = client.messages.count_tokens(model="m", messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]).input_tokens
    assert counted == _prompt_tokens(m.usage)
    # a URL on a private address is refused before anything is fetched, in Anthropic's shape
    private = {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/cat.png"}}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="m", max_tokens=4, messages=[{"role": "user", "content": [private]}])
    assert info.value.body["type"] == "error" and "private address" in info.value.body["error"]["message"]


def test_image_to_a_text_model_is_400(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _png_b64()}}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="m", max_tokens=4, messages=[{"role": "user", "content": [image]}])
    assert "text-only" in info.value.body["error"]["message"]


def _call(role="assistant"):
    return {"role": role, "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                       "input": {"city": "Rome"}}]}


BAD = [
    ({"max_tokens": None}, "max_tokens"),  # required, as in Anthropic's API
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"stop_sequences": [""]}, "stop"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages"),  # the system prompt is its own field
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "audio", "data": "x"}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]},
     "messages"),  # a result without its call
    ({"messages": [_call("user")]}, "messages"),  # a call from the user
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "/etc/passwd"}}]}]},
     "messages"),
    ({"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}, "tools"),
    ({"tools": [{"name": "f"}]}, "tools"),
    ({"tools": [{"type": "custom", "name": "f"}]}, "tools"),  # server tools are ignored (test_server_fields.py)
    ({"tool_choice": {"type": "any"}}, "tool_choice"),  # without tools
    ({"tool_choice": {"type": "tool"}, "tools": [WEATHER]}, "tool_choice"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"thinking": {"type": "sometimes"}}, "thinking"),  # unknown fields are ignored (test_server_fields.py)
    ({"system": 5}, "system"),
]


@pytest.mark.parametrize("change, param", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_400_in_anthropic_shape(server, change, param):
    body = {"model": "m", "max_tokens": 4, "messages": MSGS, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(server.url + "/v1/messages", json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    assert param.split(".")[0] in err["error"]["message"] or param in ("messages", "stop"), err


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_bodies_and_paths(server, body):
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_limits_and_the_server_keeps_working(server, client):
    r = httpx.post(server.url + "/v1/messages", json={"model": "m", "max_tokens": 2, "messages": [
        {"role": "user", "content": "x" * (BODY_LIMIT + 10)}]})
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    r = httpx.get(server.url + "/v1/messages/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(server.url + "/v1/messages")
    assert r.status_code == 405 and r.json()["type"] == "error"
    r = httpx.post(server.url + "/v1/messages/count_tokens", json={"model": "m", "messages": [{"role": "user"}]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    m = client.messages.create(model="m", max_tokens=3, messages=MSGS, **GREEDY)
    assert m.usage.output_tokens == 3


def test_a_client_leaving_mid_stream_stops_its_generation(server):
    before = httpx.get(server.url + "/stats").json()
    body = {"model": "m", "max_tokens": 200000, "messages": MSGS, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(16)]  # a few events of a generation that would run for long
        assert sum(ln.startswith("data: ") for ln in got) >= 5
    deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
    while (s := httpx.get(server.url + "/stats").json())["active_requests"]:
        assert time.monotonic() < deadline, f"generation not cancelled: {s}"
        time.sleep(0.05)
    assert s["requests_cancelled"] == before["requests_cancelled"] + 1
    assert s["requests_served"] == before["requests_served"]
