"""The OpenAI Responses API of ``abstractllm serve`` (``/v1/responses``), driven with the official ``openai``
SDK (``responses.create``, ``responses.stream``, ``responses.parse``) and raw ``httpx`` for the typed event
stream. Replies are compared with the library's own greedy generation on the same tiny model; bad input is
a 400 in OpenAI's error shape, never a 500, and the server keeps working."""

from __future__ import annotations

import base64
import io
import json
import signal
import time

import httpx
import openai
import pytest
from pydantic import BaseModel

from test_server_support import ServerProcess

TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                       "required": ["city"], "additionalProperties": False}}
STORE = 4


class Verdict(BaseModel):
    ok: bool


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = ServerProcess(tiny_model, "--max-tokens-limit", "200000", "--responses-store-size", str(STORE))
    yield srv
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def _png_data_uri() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_create_matches_library_greedy(client, tiny_llm):
    expected = tiny_llm.generate("Tell me a story.", system_prompt="Be terse.", temperature=0.0, max_tokens=10)
    r = client.responses.create(model="anything", input="Tell me a story.", instructions="Be terse.",
                                max_output_tokens=10, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.instructions == "Be terse."
    assert r.output_text == expected.content
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert r.usage.input_tokens == expected.usage.prompt_tokens and r.usage.output_tokens == 10
    assert r.usage.total_tokens == r.usage.input_tokens + 10 and r.usage.input_tokens_details.cached_tokens >= 0
    # the same conversation as message items, with parts
    items = [{"role": "developer", "content": "Be terse."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a story."}]}]
    r2 = client.responses.create(model="m", input=items, max_output_tokens=10, temperature=0)
    assert r2.output_text == expected.content


def test_stream_events_and_final_response(client):
    whole = client.responses.create(model="m", input="Tell me a story.", max_output_tokens=8, temperature=0)
    with client.responses.stream(model="m", input="Tell me a story.", max_output_tokens=8, temperature=0) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]  # cut by max_output_tokens
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.usage.output_tokens == 8 and events[-1].response.output_text == whole.output_text
    # a reply that ends by itself: structured output, parsed by the SDK
    with client.responses.stream(model="m", input="Is it ok?", text_format=Verdict, max_output_tokens=64,
                                 temperature=0) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and isinstance(final.output_parsed, Verdict)


def _events(server, body: dict) -> list[dict]:
    with httpx.stream("POST", server.base_url + "/responses", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    out = []
    for name, data in zip(lines[::2], lines[1::2]):
        payload = json.loads(data[6:])
        assert name == f"event: {payload['type']}"
        out.append(payload)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def test_raw_event_stream(server):
    events = _events(server, {"model": "m", "input": "Hello", "max_output_tokens": 5, "temperature": 0})
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    added = events[2]
    assert added["item"]["type"] == "message" and added["item"]["status"] == "in_progress"
    assert added["output_index"] == 0
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas and all(e["item_id"] == added["item"]["id"] and e["content_index"] == 0 for e in deltas)
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "".join(e["delta"] for e in deltas)
    last = events[-1]["response"]
    assert last["id"] == created["id"] and last["status"] == "incomplete"
    assert last["output"][0]["id"] == added["item"]["id"] and last["output"][0]["content"][0]["text"] == done["text"]


def test_forced_tool_calls_and_their_outputs(client, server, tiny_llm):
    r = client.responses.create(model="m", input="Weather in Rome?", tools=[TOOL], tool_choice="required",
                                max_output_tokens=64, temperature=0)
    assert r.status == "completed"
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] in ("Paris", "Rome") and call.call_id
    named = client.responses.create(model="m", input="Weather?", tools=[TOOL], max_output_tokens=64, temperature=0,
                                    tool_choice={"type": "function", "name": "get_weather"})
    assert [o.type for o in named.output] == ["function_call"]
    events = _events(server, {"model": "m", "input": "Weather in Rome?", "tools": [TOOL], "tool_choice": "required",
                              "max_output_tokens": 64, "temperature": 0})
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert json.loads(events[4]["arguments"]) == json.loads(call.arguments) and events[4]["name"] == "get_weather"
    with client.responses.stream(model="m", input="Weather in Rome?", tools=[TOOL], tool_choice="required",
                                 max_output_tokens=64, temperature=0) as stream:
        final = stream.get_final_response()
    assert [o.type for o in final.output] == ["function_call"] and final.output[0].arguments == call.arguments
    # the output goes back: by previous_response_id, or with the call in the input
    # (tools are not carried over from the previous response, as in OpenAI's API: they are sent again)
    follow = client.responses.create(model="m", previous_response_id=r.id, max_output_tokens=4, temperature=0, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}], tools=[TOOL])
    again = client.responses.create(model="m", max_output_tokens=4, temperature=0, input=[
        {"role": "user", "content": "Weather in Rome?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}], tools=[TOOL])
    assert follow.output_text == again.output_text and follow.usage.input_tokens == again.usage.input_tokens


def test_parse_with_a_pydantic_model(client):
    r = client.responses.parse(model="m", input="Is it ok?", text_format=Verdict, max_output_tokens=64, temperature=0)
    assert r.status == "completed" and isinstance(r.output_parsed, Verdict)
    assert r.text.format.type == "json_schema"
    r = client.responses.create(model="m", input="Any JSON object.", text={"format": {"type": "json_object"}},
                                max_output_tokens=64)
    assert r.output_text.startswith("{")  # JSON mode: an object (which a random model may not finish in 64 tokens)
    assert r.status == "incomplete" or isinstance(json.loads(r.output_text), dict)


def test_previous_response_id_and_the_store(client, server, tiny_llm):
    first = client.responses.create(model="m", input="Tell me a story.", instructions="Be terse.", max_output_tokens=6,
                                    temperature=0)
    second = client.responses.create(model="m", input="And then?", previous_response_id=first.id,
                                     max_output_tokens=6, temperature=0)
    expected = tiny_llm.generate(messages=[{"role": "user", "content": "Tell me a story."},
                                           {"role": "assistant", "content": first.output_text},
                                           {"role": "user", "content": "And then?"}], temperature=0.0, max_tokens=6)
    assert second.output_text == expected.content  # instructions are not carried over, as OpenAI does
    assert second.usage.input_tokens == expected.usage.prompt_tokens
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).output_text == second.output_text
    deleted = httpx.delete(f"{server.base_url}/responses/{second.id}").json()
    assert deleted == {"id": second.id, "object": "response", "deleted": True}
    assert httpx.get(f"{server.base_url}/responses/{second.id}").status_code == 404
    unstored = client.responses.create(model="m", input="x", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    for _ in range(STORE):  # the store keeps the last STORE responses
        client.responses.create(model="m", input="x", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="y", previous_response_id=first.id, max_output_tokens=2)
    assert info.value.body["code"] == "previous_response_not_found"
    assert info.value.body["param"] == "previous_response_id"


def test_images(vision_model):
    from abstractllm.server import ServerConfig, start_server

    with start_server(ServerConfig(model=str(vision_model), port=0)) as srv, \
            openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0) as client:
        content = [{"type": "input_text", "text": "What is this?"},
                   {"type": "input_image", "image_url": _png_data_uri()}]
        plain = client.responses.create(model="m", input="What is this?", max_output_tokens=4, temperature=0)
        r = client.responses.create(model="m", input=[{"role": "user", "content": content}], max_output_tokens=4,
                                    temperature=0)
        assert r.usage.input_tokens > plain.usage.input_tokens and r.usage.output_tokens >= 1
        with client.responses.stream(model="m", input=[{"role": "user", "content": content}], max_output_tokens=4,
                                     temperature=0) as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert text == r.output_text
        for url, code in (("http://127.0.0.1:9/cat.png", "url_refused"), ("/etc/passwd", "local_file_refused")):
            with pytest.raises(openai.BadRequestError) as info:
                client.responses.create(model="m", max_output_tokens=2, input=[{"role": "user", "content": [
                    {"type": "input_image", "image_url": url}]}])
            assert info.value.body["code"] == code


def _fc(call_id="call_1"):
    return {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": '{"city": "Rome"}'}


BAD = [
    ({"input": None}, "input"),
    ({"input": 5}, "input"),
    ({"input": []}, "prompt"),  # nothing to answer
    ({"input": [{"role": "robot", "content": "x"}]}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input"),
    ({"input": [{"type": "reasoning", "summary": [{"type": "text", "text": "x"}]}]}, "input"),
    ({"input": [{"id": "msg_1"}]}, "input"),  # neither a type nor a role (item_reference is ignored)
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "input"),  # wrong side
    ({"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]},
     None),  # an image to a text-only model
    ({"input": [{"type": "function_call_output", "call_id": "call_9", "output": "x"}]}, "input"),  # no call
    ({"input": [{"role": "user", "content": "x"}, {**_fc(), "arguments": "{not json"}]}, "input"),
    ({"input": [{"role": "user", "content": "x"}, {**_fc(), "arguments": "[1]"}]}, "input"),
    ({"max_output_tokens": 0}, "max_tokens"),
    ({"max_output_tokens": -1}, "max_tokens"),  # above --max-tokens-limit: clamped (test_server_fields.py)
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"tools": [{"type": "function"}]}, "tools"),  # hosted tools are ignored (test_server_fields.py)
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),  # without tools
    ({"tool_choice": {"type": "function", "name": "g"}, "tools": [TOOL]}, "tool_choice"),
    ({"text": {"format": {"type": "xml"}}}, "text"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}}, "response_format"),
    ({"previous_response_id": "resp_nope"}, "previous_response_id"),
    ({"background": [1]}, "background"),  # background, conversation, unknown fields: ignored
    ({"reasoning": {"effort": "extreme"}}, "reasoning"),
]


@pytest.mark.parametrize("change, param", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_400_with_param(server, change, param):
    body = {"model": "m", "input": "Hello", "max_output_tokens": 4, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(server.base_url + "/responses", json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param, err


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b'"text"'])
def test_malformed_bodies_and_the_server_keeps_working(server, client, body):
    r = httpx.post(server.base_url + "/responses", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert client.responses.create(model="m", input="x", max_output_tokens=2).usage.output_tokens <= 2


def test_the_store_is_bounded_by_count_and_bytes():
    from abstractllm.server.responses_store import ResponseStore, StoredResponse

    def entry(text: str) -> StoredResponse:
        return StoredResponse({"id": "r"}, [{"role": "user", "content": text}])

    store = ResponseStore(3, max_bytes=1000)
    for i in range(4):
        assert store.put(f"r{i}", entry("x" * 10))
    assert store.get("r0") is None and all(store.get(f"r{i}") for i in (1, 2, 3))  # count: the oldest dropped
    store.get("r1")  # used: now the most recent
    assert store.put("big", entry("y" * 800))  # bytes: the least recently used make room
    assert store.get("r2") is None and store.get("r1") is not None and store.nbytes <= 1000
    assert not store.put("huge", entry("z" * 2000)) and store.get("huge") is None  # never kept
    assert store.delete("big") and not store.delete("big") and store.nbytes == store.get("r1").size() + \
        store.get("r3").size()
    assert not ResponseStore(0).put("r", entry("x"))


def test_a_client_leaving_mid_stream_stops_its_generation(server):
    before = httpx.get(server.url + "/stats").json()
    body = {"model": "m", "input": "Tell me a story.", "max_output_tokens": 200000, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/responses", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(16)]  # a few events of a generation that would run for long
        assert sum(ln.startswith("data: ") for ln in got) >= 5
    deadline = time.monotonic() + 60  # a wait for what the server shows, not a speed bound
    while (s := httpx.get(server.url + "/stats").json())["active_requests"]:
        assert time.monotonic() < deadline, f"generation not cancelled: {s}"
        time.sleep(0.05)
    assert s["requests_cancelled"] == before["requests_cancelled"] + 1
    assert s["requests_served"] == before["requests_served"]
