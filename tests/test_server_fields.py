"""What agent clients send, and the server's answers to it: the field policy (documented fields accepted, those
the server cannot honour ignored and listed in ``x-abstractllm-ignored``, unknown ones too unless
``--strict-fields``, legacy ``functions``), Anthropic's Messages as Claude Code speaks them (``system`` turns
inside ``messages``, ``context_management``, ``output_config``, beta headers, ``HEAD /``, tool streams,
``cache_control``), the Responses API as Codex speaks it (``client_metadata``, ``store: false`` with the history
resent, ``namespace`` tools, hosted tools), the reply's length (no ``max_tokens``: to the end of the context;
above ``--max-tokens-limit``: clamped; a forced call cut short: its partial arguments), and errors and logs (a
500 says only "internal error" and the request id; JSON logs, stderr included).

Driven with the official ``openai`` and ``anthropic`` SDKs (extra fields through ``extra_body``) and raw
``httpx`` for headers, on scripted zoo models whose greedy replies are exact."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import anthropic
import httpx
import openai
import pytest

from test_server_support import ServerProcess

HEADER = "x-abstractllm-ignored"
DONE = "Done."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
LONG = " ".join(f"w{i}" for i in range(60))  # 60 words: a reply longer than any old default cut it to
HI = [{"role": "user", "content": "Hi"}]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string"}}}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather.",
                                                 "parameters": WEATHER_SCHEMA}},
              {"type": "function", "function": {"name": "get_time", "description": "The time.",
                                                 "parameters": TIME_SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "The weather.", "input_schema": WEATHER_SCHEMA},
                   {"name": "get_time", "description": "The time.", "input_schema": TIME_SCHEMA}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather.",
                    "parameters": WEATHER_SCHEMA},
                   {"type": "function", "name": "get_time", "description": "The time.", "parameters": TIME_SCHEMA}]


class _Served:
    """A zoo model served in this process (``start_server``), with the two SDKs pointed at it."""

    def __init__(self, script: str | None, family: str = "qwen3", **config) -> None:
        from abstractllm.server import ServerConfig, start_server
        from abstractllm.testing.zoo import family_model

        self.path = family_model(family, script=script)
        self.server = start_server(ServerConfig(model=str(self.path), port=0, **config))
        self.url, self.base_url = self.server.url, self.server.base_url
        self.openai = openai.OpenAI(base_url=self.base_url, api_key="unused", max_retries=0, timeout=120)
        self.anthropic = anthropic.Anthropic(base_url=self.url, api_key="unused", max_retries=0, timeout=120)

    @property
    def llm(self):
        return self.server.app.state.server.llm

    def close(self) -> None:
        self.openai.close()
        self.anthropic.close()
        self.server.stop()


@pytest.fixture(scope="module")
def done():
    served = _Served(DONE)
    yield served
    served.close()


@pytest.fixture(scope="module")
def caller():
    served = _Served(CALL)
    yield served
    served.close()


def _ignored(headers) -> set[str]:
    value = headers.get(HEADER)
    return set(value.split(",")) if value else set()


def _events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


# ------------------------------------------------------------------------------------------- 1. field policy
def test_documented_openai_fields_are_accepted_and_listed(done):
    extra = {"prompt_cache_key": "k1", "prompt_cache_retention": "24h", "safety_identifier": "user-1",
             "verbosity": "low", "modalities": ["text"], "prediction": {"type": "content", "content": "Done."},
             "web_search_options": {}, "store": True, "user": "u", "metadata": {"a": "b"}, "service_tier": "auto",
             "parallel_tool_calls": False, "reasoning_effort": "low", "audio": {"voice": "alloy", "format": "wav"}}
    raw = done.openai.chat.completions.with_raw_response.create(model="m", messages=HI, extra_body=extra)
    assert raw.parse().choices[0].message.content == DONE
    assert _ignored(raw.headers) == {"prompt_cache_key", "prompt_cache_retention", "safety_identifier", "verbosity",
                                     "prediction", "web_search_options", "store", "user", "metadata",
                                     "parallel_tool_calls", "audio"}  # neutral values (modalities text, ...) not
    raw = done.openai.responses.with_raw_response.create(model="m", input="Hi", extra_body={
        "prompt_cache_key": "k", "prompt_cache_retention": "24h", "safety_identifier": "s", "include": [
            "reasoning.encrypted_content"], "store": False, "background": False, "truncation": "disabled"})
    assert raw.parse().output_text == DONE
    assert _ignored(raw.headers) == {"prompt_cache_key", "prompt_cache_retention", "safety_identifier", "include"}
    plain = httpx.post(done.base_url + "/chat/completions", json={"messages": HI})
    assert plain.status_code == 200 and HEADER not in plain.headers


def test_unknown_fields_are_ignored_and_listed_by_default(done):
    body = {"messages": [{"role": "user", "content": "Hi", "frob": 1}], "frobnicate": {"x": 1},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "zz": 1}]}
    r = httpx.post(done.base_url + "/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert _ignored(r.headers) == {"frobnicate", "messages.frob"}  # raw tool dicts go to the provider as sent
    r = httpx.post(done.url + "/v1/messages", json={"max_tokens": 8, "messages": HI, "frobnicate": 1,
                                                    "tools": [{**ANTHROPIC_TOOLS[0], "zz": 2}]})
    assert r.status_code == 200 and _ignored(r.headers) == {"frobnicate", "tools.zz"}
    r = httpx.post(done.base_url + "/responses", json={"input": "Hi", "frobnicate": 1, "text": {"zz": 1},
                                                       "input_extra": True})
    assert r.status_code == 200 and _ignored(r.headers) == {"frobnicate", "text.zz", "input_extra"}


@pytest.fixture(scope="module")
def strict():
    served = _Served(DONE, strict_fields=True)
    yield served
    served.close()


def test_strict_fields_refuses_unknown_fields_only(strict):
    for path, body in (("/v1/chat/completions", {"messages": HI}), ("/v1/responses", {"input": "Hi"}),
                       ("/v1/messages", {"max_tokens": 8, "messages": HI})):
        r = httpx.post(strict.url + path, json={**body, "frobnicate": 1})
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert "frobnicate" in message
        if path != "/v1/messages":
            assert r.json()["error"]["param"] == "frobnicate"
    r = httpx.post(strict.url + "/v1/messages", json={"max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi", "frob": 1}]}]})
    assert r.status_code == 400 and "messages.content.frob" in r.json()["error"]["message"]
    # what agent clients send is documented (or declared), so a strict server still takes it
    r = httpx.post(strict.base_url + "/responses", json={"input": "Hi", "client_metadata": {"a": "b"},
                                                         "prompt_cache_key": "k", "include": ["x"]})
    assert r.status_code == 200 and _ignored(r.headers) == {"client_metadata", "prompt_cache_key", "include"}
    r = httpx.post(strict.url + "/v1/messages", json={"max_tokens": 8, "messages": HI, "context_management": {
        "edits": []}, "metadata": {"user_id": "u"}})
    assert r.status_code == 200 and _ignored(r.headers) == {"context_management", "metadata"}
    r = httpx.post(strict.base_url + "/chat/completions", json={"messages": HI, "prompt_cache_key": "k"})
    assert r.status_code == 200


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", {"messages": HI, "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"messages": HI, "reasoning_effort": "extreme"}, "reasoning_effort"),
    ("/v1/chat/completions", {"messages": HI, "tools": "get_weather"}, "tools"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages"),
    ("/v1/chat/completions", {"messages": HI, "functions": {"name": "f"}}, "functions"),
    ("/v1/responses", {"input": "Hi", "max_output_tokens": "many"}, "max_tokens"),
    ("/v1/responses", {"input": "Hi", "tools": [{"type": "function"}]}, "tools"),
    ("/v1/messages", {"max_tokens": "many", "messages": HI}, "max_tokens"),
    ("/v1/messages", {"max_tokens": 8, "messages": HI, "thinking": {"type": "sometimes"}}, "thinking"),
])
def test_wrong_types_of_used_fields_stay_400(done, path, body, param):
    r = httpx.post(done.url + path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    if path == "/v1/messages":
        assert param in err["message"]
    else:
        assert err["param"] == param, err


@pytest.mark.parametrize("path, body, where", [
    ("/v1/responses", {"input": [{"type": "reasoning", "summary": [{"type": "summary_text"}]}]},
     "input.0.summary.0.text"),
    ("/v1/messages", {"max_tokens": 8, "messages": [HI[0], {"role": "assistant", "content": [
        {"type": "thinking", "signature": "s"}]}, HI[0]]}, "messages.1.content.0.thinking"),
    ("/v1/messages", {"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain"}}]}]},
     "messages.0.content.0.source.data"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text"}]}, {"role": "user"}]},
     None),
])
def test_errors_name_the_field_not_a_union_branch(done, path, body, where):
    r = httpx.post(done.url + path, json=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert ".str" not in message and "list[" not in message and "tagged-union" not in message, message
    if where:
        assert where in message, message


def test_documents_and_search_results_reach_the_model_as_text(done):
    source = {"type": "text", "media_type": "text/plain", "data": "The sky is green here."}
    m = done.anthropic.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": [
        {"type": "document", "source": source, "title": "Notes", "citations": {"enabled": True}},
        {"type": "search_result", "source": "https://example.com", "title": "Sky",
         "content": [{"type": "text", "text": "Green."}]},
        {"type": "text", "text": "What colour?"}]}])
    assert m.content[0].text == DONE
    with pytest.raises(anthropic.BadRequestError) as info:
        done.anthropic.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]}])
    assert "document" in info.value.message and "messages.0.content.0" in info.value.message


def test_legacy_functions_are_tools_and_come_back_as_function_call(caller):
    functions = [t["function"] for t in CHAT_TOOLS]
    r = caller.openai.chat.completions.create(model="m", messages=HI, functions=functions)
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Paris"}
    forced = caller.openai.chat.completions.create(model="m", messages=HI, functions=functions, max_tokens=64,
                                                   function_call={"name": "get_time"})  # forced by its grammar
    assert forced.choices[0].message.function_call.name == "get_time"
    chunks = list(caller.openai.chat.completions.create(model="m", messages=HI, functions=functions, stream=True))
    deltas = [c.choices[0].delta.function_call for c in chunks if c.choices and c.choices[0].delta.function_call]
    assert deltas[0].name == "get_weather" and json.loads("".join(d.arguments or "" for d in deltas)) == {
        "city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "function_call"
    history = HI + [{"role": "assistant", "content": None, "function_call": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}, {"role": "function", "name": "get_weather",
                                                                    "content": "Sunny"}]
    r = caller.openai.chat.completions.create(model="m", messages=history, functions=functions, function_call="none")
    assert r.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError):
        caller.openai.chat.completions.create(model="m", messages=HI + [{"role": "function", "name": "f",
                                                                          "content": "x"}])


# ------------------------------------------------------------------------------- 2. Messages as Claude Code
def _claude_code_body(**change) -> dict:
    """The shape of Claude Code's requests (2.1.x): system blocks with cache marks, a system turn inside the
    messages (with its per-turn ``output_config``), deferred tools, adaptive thinking, context management."""
    body = {
        "model": "claude-opus-4", "max_tokens": 128000, "stream": True, "metadata": {"user_id": "{}"},
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
                   {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                         {"type": "text", "text": "Say hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": [{"type": "text", "text": "Mid-conversation instructions.",
                                            "cache_control": {"type": "ephemeral"}}],
             "output_config": {"effort": "medium"}}],
        "tools": [{"name": "Bash", "description": "Run a command.", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
            {"name": "DeferredToolPlaceholder", "description": "later", "defer_loading": True,
             "input_schema": {"type": "object", "properties": {}}}],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }
    body.update(change)
    return body


BETAS = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
         "anthropic-version": "2023-06-01", "x-api-key": "unused"}


def test_claude_code_request_is_served(done):
    assert httpx.head(done.url + "/").status_code == 200
    assert httpx.get(done.url + "/").status_code == 200
    r = httpx.post(done.url + "/v1/messages?beta=true", json=_claude_code_body(), headers=BETAS, timeout=120)
    assert r.status_code == 200, r.text
    assert _ignored(r.headers) == {"metadata", "context_management", "messages.output_config"}
    events = _events(r)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == DONE
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    # the SDK, beta namespace and all
    body = _claude_code_body(stream=False)
    extra = {k: body.pop(k) for k in ("context_management", "output_config")}
    m = done.anthropic.messages.create(**body, extra_body=extra, extra_headers={"anthropic-beta": BETAS["anthropic-beta"]})
    assert m.content[-1].text == DONE and m.stop_reason == "end_turn"


def test_system_turns_kept_where_the_template_takes_them(done):
    turns = [{"role": "user", "content": "A"}, {"role": "system", "content": "Speak French."},
             {"role": "user", "content": "B"}]
    n = done.anthropic.messages.count_tokens(model="m", messages=turns).input_tokens
    kept = done.llm.count_tokens(messages=turns)
    assert n == kept
    assert done.server.app.state.server.multi_system is True  # qwen3's template renders later system turns
    assert done.anthropic.messages.create(model="m", max_tokens=8, messages=turns).content[0].text == DONE
    r = done.openai.chat.completions.create(model="m", messages=[{"role": "developer", "content": "Be brief."}, *turns])
    assert r.choices[0].message.content == DONE


@pytest.fixture(scope="module")
def mistral():
    served = _Served(None, family="mistral")
    yield served
    served.close()


def test_system_turns_merged_where_the_template_wants_one(mistral):
    turns = [{"role": "user", "content": "A"}, {"role": "system", "content": "Speak French."},
             {"role": "user", "content": "B"}]
    n = mistral.anthropic.messages.count_tokens(model="m", messages=turns).input_tokens
    merged = mistral.llm.count_tokens(messages=[{"role": "system", "content": "Speak French."},
                                                {"role": "user", "content": "A\n\nB"}])
    assert n == merged and mistral.server.app.state.server.multi_system is False
    m = mistral.anthropic.messages.create(model="m", max_tokens=3, messages=turns)
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == merged
    r = mistral.openai.chat.completions.create(model="m", max_tokens=3, messages=[
        {"role": "system", "content": "S"}, {"role": "user", "content": "A"}, {"role": "assistant", "content": "x"},
        {"role": "developer", "content": "Speak French."}, {"role": "user", "content": "B"}])
    assert r.usage.completion_tokens >= 1


def test_tool_use_stream_with_input_json_delta_and_its_result(caller):
    with httpx.stream("POST", caller.url + "/v1/messages", headers=BETAS, timeout=120, json={
            "max_tokens": 200, "stream": True, "tools": ANTHROPIC_TOOLS, "messages": HI}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert starts[-1]["content_block"]["type"] == "tool_use" and starts[-1]["content_block"]["name"] == "get_weather"
    partial = "".join(e["delta"]["partial_json"] for e in events
                      if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    with caller.anthropic.messages.stream(model="m", max_tokens=200, tools=ANTHROPIC_TOOLS, messages=HI) as s:
        final = s.get_final_message()
    call = final.content[-1]
    assert call.type == "tool_use" and call.input == {"city": "Paris"} and final.stop_reason == "tool_use"
    history = HI + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": [
                        {"type": "text", "text": "Sunny", "cache_control": {"type": "ephemeral"}}]}]}]
    again = caller.anthropic.messages.create(model="m", max_tokens=200, tools=ANTHROPIC_TOOLS, messages=history)
    assert again.stop_reason == "tool_use"  # the scripted model calls again: what matters is the 200


def test_cache_control_and_cache_read_tokens(done):
    system = [{"type": "text", "text": "You are terse. " * 40, "cache_control": {"type": "ephemeral"}}]
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}]
    first = done.anthropic.messages.create(model="m", max_tokens=8, system=system, messages=msgs,
                                           extra_body={"cache_control": {"type": "ephemeral"}})
    second = done.anthropic.messages.create(model="m", max_tokens=8, system=system, messages=msgs)
    total = done.anthropic.messages.count_tokens(model="m", system=system, messages=msgs).input_tokens
    assert second.usage.cache_read_input_tokens > 0
    for m in (first, second):
        assert m.usage.input_tokens + m.usage.cache_read_input_tokens == total


def test_deferred_tools_are_shown_once_referenced(done):
    deferred = {"name": "get_time", "description": "The time.", "input_schema": TIME_SCHEMA, "defer_loading": True}
    tools = [ANTHROPIC_TOOLS[0], deferred]
    without = done.anthropic.messages.count_tokens(model="m", messages=HI, tools=tools[:1]).input_tokens
    assert done.anthropic.messages.count_tokens(model="m", messages=HI, tools=tools).input_tokens == without
    history = HI + [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch",
                                                       "input": {"query": "time"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "tool_reference", "tool_name": "get_time"}]}]}]
    shown = done.anthropic.messages.count_tokens(model="m", messages=history, tools=tools).input_tokens
    hidden = done.anthropic.messages.count_tokens(model="m", messages=history, tools=tools[:1]).input_tokens
    assert shown > hidden


def test_anthropic_server_tools_are_ignored(done):
    raw = done.anthropic.messages.with_raw_response.create(model="m", max_tokens=8, messages=HI, tools=[
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "code_execution_20250825", "name": "code_execution"}, ANTHROPIC_TOOLS[0]])
    assert raw.parse().content[0].text == DONE
    assert _ignored(raw.headers) == {"tools.web_search_20250305", "tools.code_execution_20250825"}


# --------------------------------------------------------------------------------- 3. Responses as Codex
def _codex_body(**change) -> dict:
    """The shape of Codex's requests (0.17x): developer messages, function and namespace tools, a hosted tool,
    ``store: false``, ``include``, ``prompt_cache_key``, ``client_metadata``, no ``max_output_tokens``."""
    body = {
        "model": "local-model", "stream": True, "tool_choice": "auto", "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a2", "client_metadata": {"installation_id": "x"},
        "input": [{"type": "message", "id": "msg_1", "role": "developer", "content": [
                      {"type": "input_text", "text": "You are Codex."}]},
                  {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}],
        "tools": [{"type": "function", "name": "exec_command", "description": "Run.", "strict": False,
                   "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                                  "additionalProperties": False}},
                  {"type": "namespace", "name": "multi_agent_v1", "description": "Agents.", "tools": [
                      {"type": "function", "name": "close_agent", "description": "Close.", "strict": False,
                       "parameters": {"type": "object", "properties": {"target": {"type": "string"}}}}]},
                  {"type": "web_search", "external_web_access": False}],
    }
    body.update(change)
    return body


def test_codex_request_and_its_resent_history(done):
    headers = {"authorization": "Bearer x", "x-codex-beta-features": "remote_compaction_v2"}
    r = httpx.post(done.base_url + "/responses", json=_codex_body(), headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    assert _ignored(r.headers) == {"include", "prompt_cache_key", "client_metadata", "reasoning.summary",
                                   "tools.web_search"}
    events = _events(r)
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert final["output"][-1]["content"][0]["text"] == DONE and final["store"] is False
    assert final["usage"]["output_tokens"] == 2 or final["usage"]["output_tokens"] >= 1
    # store: false: the next turn resends everything, reasoning items without ids, calls with their namespace
    history = _codex_body()["input"] + [
        {"type": "reasoning", "summary": [], "content": None, "encrypted_content": None},
        {"type": "function_call", "name": "close_agent", "namespace": "multi_agent_v1", "arguments": '{"target": "a"}',
         "call_id": "call_1"},
        {"type": "function_call_output", "call_id": "call_1", "output": "closed"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Closed."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]}]
    r = httpx.post(done.base_url + "/responses", json=_codex_body(input=history, stream=False), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["output"][-1]["content"][0]["text"] == DONE
    assert httpx.get(done.base_url + "/responses/" + r.json()["id"]).status_code == 404  # store: false


def test_namespace_tools_are_served_as_their_functions(caller):
    tools = [{"type": "namespace", "name": "weather", "description": "Weather tools.", "tools": RESPONSES_TOOLS}]
    r = caller.openai.responses.create(model="m", input="Hi", tools=tools)
    call = r.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {
        "city": "Paris"}
    assert r.model_dump()["output"][-1]["namespace"] == "weather"
    r = httpx.post(caller.base_url + "/responses", json={"input": "Hi", "tools": tools, "stream": True}, timeout=120)
    done_items = [e["item"] for e in _events(r) if e["type"] == "response.output_item.done"]
    assert done_items[-1]["type"] == "function_call" and done_items[-1]["namespace"] == "weather"
    history = [{"role": "user", "content": "Hi"},
               {"type": "function_call", "name": "get_weather", "namespace": "weather", "call_id": "c1",
                "arguments": '{"city": "Paris"}'}, {"type": "function_call_output", "call_id": "c1", "output": "Sun"}]
    assert caller.openai.responses.create(model="m", input=history, tools=tools).output[-1].namespace == "weather"
    # names that clash between a namespace and the top level: the model sees them qualified
    clash = tools + [RESPONSES_TOOLS[0]]
    r = caller.openai.responses.create(model="m", input="Hi", tools=clash)
    assert r.output[-1].name == "get_weather" and r.model_dump()["output"][-1].get("namespace") is None


def test_custom_tools_come_back_as_custom_tool_calls(caller):
    tools = [{"type": "custom", "name": "get_weather", "description": "Free-form input."}]
    r = httpx.post(caller.base_url + "/responses", json={"input": "Hi", "tools": tools}, timeout=120)
    item = r.json()["output"][-1]
    assert item["type"] == "custom_tool_call" and item["name"] == "get_weather" and isinstance(item["input"], str)
    history = [{"role": "user", "content": "Hi"}, {k: item[k] for k in ("type", "call_id", "name", "input")},
               {"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "Sun"}]
    r = httpx.post(caller.base_url + "/responses", json={"input": history, "tools": tools}, timeout=120)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "web_search_preview"},
                                  {"type": "file_search", "vector_store_ids": ["vs_1"]},
                                  {"type": "code_interpreter", "container": {"type": "auto"}},
                                  {"type": "computer_use_preview", "display_width": 1024, "display_height": 768,
                                   "environment": "linux"},
                                  {"type": "image_generation"}, {"type": "mcp", "server_label": "x"}])
def test_hosted_tools_are_ignored_never_400(done, tool):
    raw = done.openai.responses.with_raw_response.create(model="m", input="Hi", tools=[tool, RESPONSES_TOOLS[0]])
    assert raw.parse().output_text == DONE
    assert _ignored(raw.headers) == {f"tools.{tool['type']}"}
    r = httpx.post(done.base_url + "/responses", json={"input": "Hi", "tools": [tool],
                                                       "tool_choice": {"type": tool["type"]}})
    assert r.status_code == 200 and f"tool_choice.{tool['type']}" in _ignored(r.headers)


# ------------------------------------------------------------------------------------------ 4. output length
@pytest.fixture(scope="module")
def long_reply():
    served = _Served(LONG)
    yield served
    served.close()


def test_without_max_tokens_a_reply_runs_to_its_end(long_reply):
    r = long_reply.openai.chat.completions.create(model="m", messages=HI)
    assert r.choices[0].message.content.strip() == LONG and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 32
    out = long_reply.openai.responses.create(model="m", input="Hi")
    assert out.status == "completed" and out.output_text.strip() == LONG
    m = long_reply.anthropic.messages.create(model="m", max_tokens=128000, messages=HI)
    assert m.stop_reason == "end_turn" and m.content[0].text.strip() == LONG
    assert long_reply.server.app.state.server.context_length == 40960  # the zoo's qwen3 layout


@pytest.fixture(scope="module")
def limited():
    served = _Served(LONG, max_tokens_limit=5)
    yield served
    served.close()


def test_above_the_limit_is_clamped_not_refused(limited):
    r = limited.openai.chat.completions.create(model="m", messages=HI, max_tokens=32000)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    r = limited.openai.chat.completions.create(model="m", messages=HI)  # no max_tokens: up to the limit
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    m = limited.anthropic.messages.create(model="m", max_tokens=128000, messages=HI)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 5
    out = limited.openai.responses.create(model="m", input="Hi", max_output_tokens=10**6)
    assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"
    assert out.usage.output_tokens == 5
    assert limited.openai.completions.create(model="m", prompt="Hi", max_tokens=99).usage.completion_tokens == 5


def test_the_default_limit_is_the_context_and_a_prompt_past_it_is_400(done):
    r = done.openai.chat.completions.create(model="m", messages=HI, max_tokens=10**7)
    assert r.choices[0].message.content == DONE
    big = "word " * 50_000  # past the zoo model's 40960-token context
    for call in (lambda: done.openai.chat.completions.create(model="m", messages=[{"role": "user", "content": big}]),
                 lambda: done.openai.responses.create(model="m", input=big, max_output_tokens=10**7)):
        with pytest.raises(openai.BadRequestError) as info:
            call()
        assert info.value.body["code"] == "context_length_exceeded"
        assert "prompt is too long" in info.value.body["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        done.anthropic.messages.create(model="m", max_tokens=128000, messages=[{"role": "user", "content": big}])
    assert "prompt is too long" in info.value.message


def _cut(arguments: str) -> bool:
    """The arguments of the forced ``get_weather`` call as generated up to the limit: started, not closed."""
    if not arguments.startswith('{"city":'):
        return False
    try:
        json.loads(arguments)
    except ValueError:
        return True
    return False


def test_a_forced_call_cut_by_the_limit_returns_its_partial_arguments(caller):
    forced = {"type": "function", "function": {"name": "get_weather"}}
    r = caller.openai.chat.completions.create(model="m", messages=HI, tools=CHAT_TOOLS, max_tokens=34,
                                              tool_choice=forced)
    choice = r.choices[0]
    assert choice.finish_reason == "length"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and _cut(call.function.arguments), call
    chunks = list(caller.openai.chat.completions.create(model="m", messages=HI, tools=CHAT_TOOLS, max_tokens=34,
                                                        tool_choice=forced, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather" and _cut("".join(d.function.arguments or "" for d in deltas))
    assert chunks[-1].choices[0].finish_reason == "length"
    # the name itself cut: the forced tool, no arguments yet
    r = caller.openai.chat.completions.create(model="m", messages=HI, tools=CHAT_TOOLS, max_tokens=10,
                                              tool_choice=forced)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert r.choices[0].message.tool_calls[0].function.arguments == ""
    # Anthropic: the partial input streamed as input_json_delta, the block's input closed into an object
    m = caller.anthropic.messages.create(model="m", max_tokens=34, tools=ANTHROPIC_TOOLS, messages=HI,
                                         tool_choice={"type": "tool", "name": "get_weather"})
    assert m.stop_reason == "max_tokens" and m.content[-1].type == "tool_use"
    assert m.content[-1].name == "get_weather" and set(m.content[-1].input) <= {"city"}
    r = httpx.post(caller.url + "/v1/messages", timeout=120, json={
        "max_tokens": 34, "stream": True, "tools": ANTHROPIC_TOOLS, "messages": HI,
        "tool_choice": {"type": "tool", "name": "get_weather"}})
    events = _events(r)
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
                      and e["delta"]["type"] == "input_json_delta")
    assert _cut(partial) and events[-2]["delta"]["stop_reason"] == "max_tokens"
    # Responses: an incomplete function_call
    out = caller.openai.responses.create(model="m", input="Hi", tools=RESPONSES_TOOLS, max_output_tokens=34,
                                         tool_choice={"type": "function", "name": "get_weather"})
    assert out.status == "incomplete" and out.output[-1].type == "function_call"
    assert _cut(out.output[-1].arguments) and out.output[-1].status == "incomplete"
    r = httpx.post(caller.base_url + "/responses", timeout=120, json={
        "input": "Hi", "tools": RESPONSES_TOOLS, "max_output_tokens": 34, "stream": True,
        "tool_choice": {"type": "function", "name": "get_weather"}})
    events = _events(r)
    assert events[-1]["type"] == "response.incomplete"
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert len(items) == 1 and items[0]["name"] == "get_weather" and _cut(items[0]["arguments"])


# ------------------------------------------------------------------------------------------ 5. errors and logs
class _Failing:
    """A provider whose generation fails inside, with internals in its message."""

    is_loaded = True
    config: dict = {}
    name = "failing"

    def get_capabilities(self):
        return {}

    async def generate_async(self, **kwargs):
        raise RuntimeError("grammar state: rule json_string at byte 17; parser stack [object, member]")

    def close(self):
        pass


def test_a_500_says_internal_error_with_the_request_id_and_logs_the_traceback(caplog):
    from abstractllm.server import ServerConfig, start_server
    from abstractllm.server.logs import JSONFormatter

    with start_server(ServerConfig(model="failing", port=0), llm=_Failing()) as server:
        with caplog.at_level(logging.ERROR, logger="abstractllm.server"):
            for path, body in (("/v1/chat/completions", {"messages": HI}), ("/v1/responses", {"input": "Hi"}),
                               ("/v1/messages", {"max_tokens": 8, "messages": HI}),
                               ("/v1/chat/completions", {"messages": HI, "stream": True})):
                r = httpx.post(server.url + path, json=body, headers={"x-request-id": "req-test-500"})
                assert r.status_code == 500, r.text
                assert r.headers["x-request-id"] == "req-test-500"
                assert "internal error (request id req-test-500)" in r.text
                assert "grammar" not in r.text and "parser" not in r.text and "RuntimeError" not in r.text
    records = [rec for rec in caplog.records if rec.levelno == logging.ERROR and rec.exc_info]
    assert len(records) == 4 and all("req-test-500" in rec.getMessage() for rec in records)
    line = json.loads(JSONFormatter().format(records[0]))
    assert line["level"] == "error" and "RuntimeError: grammar state" in line["exception"]


def test_json_logs_take_native_stderr_lines_and_warnings_too(tmp_path):
    code = ("import logging, logging.config, os, warnings\n"
            "from abstractllm.server.logs import configure_logging, route_stderr\n"
            "logging.config.dictConfig(configure_logging('info', 'json'))\n"
            "route_stderr()\n"
            "os.write(2, b'WARNING: grammar has a warning (native line)\\n')\n"
            "warnings.warn('a library warning')\n"
            "logging.getLogger('abstractllm.server').error('an error line')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "stderr" and "native line" in line["message"] for line in lines)
    assert any(line["logger"] == "py.warnings" and "a library warning" in line["message"] for line in lines)
    assert any(line["level"] == "error" and line["message"] == "an error line" for line in lines)


def test_served_json_logs_and_ignored_fields_logged_once(tmp_path):
    from abstractllm.testing.zoo import family_model

    srv = ServerProcess(family_model("qwen3", script=DONE), "--log-format", "json")
    try:
        for _ in range(2):
            r = httpx.post(srv.base_url + "/chat/completions", json={"messages": HI, "prompt_cache_key": "k",
                                                                     "frobnicate": 1})
            assert r.status_code == 200 and _ignored(r.headers) == {"prompt_cache_key", "frobnicate"}
    finally:
        assert srv.stop() == 0
    lines = [line for line in srv.log if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's and the stderr's included
    notes = [p["message"] for p in parsed if "ignoring the request field" in p.get("message", "")]
    assert sum("'prompt_cache_key'" in n for n in notes) == 1 and sum("'frobnicate'" in n for n in notes) == 1
    access = [p for p in parsed if p.get("event") == "access" and p["path"] == "/v1/chat/completions"]
    assert len(access) == 2 and all(p["status"] == 200 for p in access)


def test_special_tokens_never_reach_the_content(done, caller):
    r = done.openai.chat.completions.create(model="m", messages=HI)
    assert r.choices[0].message.content == DONE
    r = caller.openai.chat.completions.create(model="m", messages=HI, tools=CHAT_TOOLS)
    message = r.choices[0].message
    assert message.tool_calls and not message.content
    for text in (message.content or "", done.anthropic.messages.create(model="m", max_tokens=16,
                                                                       messages=HI).content[0].text):
        assert "<|im_end|>" not in text and "<tool_call>" not in text and "<|endoftext|>" not in text
