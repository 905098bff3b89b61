"""Tool-calling details of the server's OpenAI compatibility that real clients rely on (see
tests/test_clients.py): ``tool_choice: {"type": "allowed_tools", ...}`` (pydantic-ai sends it when a step may
call only some of its tools), and a ``response_format`` sent together with a ``tool_choice`` that forces a
call (pydantic-ai's ``NativeOutput`` with tools): OpenAI applies ``response_format`` to text replies only.

The server serves a random-weight model, so every reply checked here is one constrained decoding forces
(a tool call of a forced choice, JSON of a schema); schemas are bounded so the model ends within
``max_tokens``."""

from __future__ import annotations

import json
import signal

import openai
import pytest

from test_server_support import ServerProcess


def _tool(name: str, **properties: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"The {name} tool.", "parameters": {
        "type": "object", "properties": properties, "required": list(properties)}}}


TOOLS = [
    _tool("switch_light", room={"enum": ["kitchen", "bedroom"]}, on={"type": "boolean"}),
    _tool("read_sensor", sensor={"enum": ["heat", "smoke"]}),
    _tool("open_door", door={"enum": ["front", "back"]}),
]
ANSWER = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}
MSGS = [{"role": "user", "content": "Check the house."}]


def _allowed(mode: str, *names: str) -> dict:
    return {"type": "allowed_tools",
            "allowed_tools": {"mode": mode, "tools": [{"type": "function", "function": {"name": n}} for n in names]}}


@pytest.fixture(scope="module")
def client(tiny_model):
    srv = ServerProcess(tiny_model, "--max-tokens", "128")
    with openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


def _calls(reply) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in reply.choices[0].message.tool_calls or []]


@pytest.mark.parametrize("allowed", [("read_sensor",), ("switch_light", "open_door")])
def test_allowed_tools_required_calls_only_an_allowed_tool(client, allowed):
    r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, temperature=0,
                                       tool_choice=_allowed("required", *allowed))
    assert r.choices[0].finish_reason == "tool_calls"
    (name, args), = _calls(r)
    assert name in allowed
    schema = next(t for t in TOOLS if t["function"]["name"] == name)["function"]["parameters"]
    assert set(args) == set(schema["properties"])


def test_allowed_tools_streamed(client):
    stream = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, temperature=0, stream=True,
                                            tool_choice=_allowed("required", "open_door"))
    deltas = [c.choices[0] for c in stream if c.choices]
    names = [tc.function.name for d in deltas for tc in d.delta.tool_calls or [] if tc.function.name]
    args = "".join(tc.function.arguments or "" for d in deltas for tc in d.delta.tool_calls or [])
    assert names == ["open_door"] and json.loads(args)["door"] in ("front", "back")
    assert deltas[-1].finish_reason == "tool_calls"


def test_allowed_tools_auto_is_accepted(client):
    """``mode: auto``: the model may answer in text (a random model does); any call is an allowed one."""
    r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, temperature=0, max_tokens=8,
                                       tool_choice=_allowed("auto", "read_sensor"))
    assert r.choices[0].finish_reason in ("length", "stop", "tool_calls")
    assert all(name == "read_sensor" for name, _ in _calls(r))


@pytest.mark.parametrize("choice", [
    _allowed("required", "make_coffee"),  # not in tools
    _allowed("sometimes", "read_sensor"),
    {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}},
    {"type": "allowed_tools"},
])
def test_bad_allowed_tools_are_400(client, choice):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, max_tokens=4, tool_choice=choice)
    assert info.value.status_code == 400 and info.value.body["param"] == "tool_choice"


def test_allowed_tools_without_tools_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=MSGS, max_tokens=4,
                                       tool_choice=_allowed("required", "read_sensor"))
    assert info.value.body["param"] == "tool_choice"


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "read_sensor"}},
                                    _allowed("required", "read_sensor")])
def test_response_format_with_a_forced_call_gives_the_call(client, choice):
    """The reply is a tool call, to which a ``response_format`` does not apply (OpenAI's behaviour)."""
    r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, temperature=0, tool_choice=choice,
                                       response_format=ANSWER)
    (name, args), = _calls(r)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    if choice != "required":
        assert name == "read_sensor" and args["sensor"] in ("heat", "smoke")


def test_response_format_with_tools_and_tool_choice_none_is_json(client):
    r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, temperature=0, tool_choice="none",
                                       response_format=ANSWER)
    assert not r.choices[0].message.tool_calls
    assert isinstance(json.loads(r.choices[0].message.content)["ok"], bool)


def test_response_format_with_tools_and_auto_is_a_call_or_json(client):
    """With ``auto`` the reply is constrained to either: one call of a tool, or JSON of the schema (seeded
    samples of the random model give both)."""
    kinds = set()
    for seed in range(8):
        r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS, max_tokens=96, temperature=1.0,
                                           seed=seed, response_format=ANSWER)
        choice = r.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls" and _calls(r)[0][0] in {t["function"]["name"] for t in TOOLS}
            kinds.add("call")
        else:
            assert isinstance(json.loads(choice.message.content)["ok"], bool)
            kinds.add("json")
    assert kinds == {"call", "json"}
