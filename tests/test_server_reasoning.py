"""Reasoning models behind ``abstractllm serve``: chat completions (``reasoning_content`` / ``reasoning``,
``reasoning_effort``, ``chat_template_kwargs``, the ``thinking`` / ``thinking_budget`` extensions), the Responses
API (``reasoning`` items and events, ``reasoning.effort``) and Anthropic's Messages (``thinking`` blocks and
events), driven with the official ``openai`` and ``anthropic`` SDKs on scripted zoo models whose greedy replies
are exact. Each server runs in this process on the same provider the tests ask directly, so prompts and usage
are compared with the library's own numbers."""

from __future__ import annotations

import base64
import json

import anthropic
import httpx
import openai
import pytest

THINK = "<think>\nA B C\n</think>\n\nD E F"  # qwen3 layout: reasoning "A B C", answer "D E F"
HARMONY = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Done."
HI = [{"role": "user", "content": "Hi"}]
OFF = {"enable_thinking": False}


def _serve(family: str, script: str | None):
    from abstractllm import create_llm
    from abstractllm.server import ServerConfig, start_server
    from abstractllm.testing.zoo import family_model

    path = family_model(family, script=script)
    llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=40)
    server = start_server(ServerConfig(model=str(path), port=0), llm=llm)
    oa = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    an = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    return path, llm, server, oa, an


class _Served:
    def __init__(self, family: str, script: str | None) -> None:
        self.path, self.llm, self.server, self.openai, self.anthropic = _serve(family, script)

    def close(self) -> None:
        self.openai.close()
        self.anthropic.close()
        self.server.stop()
        self.llm.close()


@pytest.fixture(scope="module")
def qwen():
    served = _Served("qwen3", THINK)
    yield served
    served.close()


@pytest.fixture(scope="module")
def harmony():
    served = _Served("gpt_oss", HARMONY)
    yield served
    served.close()


@pytest.fixture(scope="module")
def llama():
    served = _Served("llama", None)
    yield served
    served.close()


def _prompt(llm, messages=HI, **params) -> int:
    return llm.generate(messages=messages, **params).usage.prompt_tokens


def _extra(obj, name):
    return (obj.model_extra or {}).get(name)


# ---------------------------------------------------------------------------------------------- chat
def test_chat_reply_carries_the_reasoning_apart(qwen):
    direct = qwen.llm.generate(messages=HI)
    assert (direct.reasoning, direct.content) == ("A B C", "D E F")
    r = qwen.openai.chat.completions.create(model="m", messages=HI)
    msg = r.choices[0].message
    assert msg.content == "D E F"
    assert _extra(msg, "reasoning_content") == _extra(msg, "reasoning") == "A B C"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == direct.usage.completion_tokens
    assert r.usage.completion_tokens_details.reasoning_tokens == direct.usage.reasoning_tokens > 0
    assert r.usage.prompt_tokens == direct.usage.prompt_tokens


def test_chat_stream_joins_to_the_reply(qwen):
    chunks = list(qwen.openai.chat.completions.create(model="m", messages=HI, stream=True,
                                                      stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thoughts = [(_extra(d, "reasoning_content"), _extra(d, "reasoning")) for d in deltas if _extra(d, "reasoning")]
    assert thoughts and all(a == b for a, b in thoughts)
    assert "".join(a for a, _ in thoughts) == "A B C"
    assert "".join(d.content or "" for d in deltas) == "D E F"
    kinds = ["r" if _extra(d, "reasoning") else "c" for d in deltas if _extra(d, "reasoning") or d.content]
    assert kinds == sorted(kinds, reverse=True)  # the reasoning first, then the answer
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == \
        qwen.llm.generate(messages=HI).usage.reasoning_tokens


def test_chat_template_kwargs_reasoning_effort_and_thinking_reach_the_template(qwen):
    default, off = _prompt(qwen.llm), _prompt(qwen.llm, chat_template_kwargs=OFF)
    assert off > default  # the template's empty think block, added when thinking is off
    assert off == _prompt(qwen.llm, thinking=False)

    def prompt(**kwargs) -> int:
        return qwen.openai.chat.completions.create(model="m", messages=HI, **kwargs).usage.prompt_tokens

    assert prompt() == default
    assert prompt(extra_body={"chat_template_kwargs": OFF}) == off
    assert prompt(extra_body={"chat_template_kwargs": {"not_read_by_the_template": 1}}) == default
    assert prompt(reasoning_effort="none") == prompt(reasoning_effort="minimal") == off
    assert prompt(reasoning_effort="low") == _prompt(qwen.llm, thinking="low") == default
    assert prompt(extra_body={"thinking": False}) == off
    # the request's own thinking wins over the effort
    assert prompt(reasoning_effort="none", extra_body={"thinking": True}) == default


def test_chat_thinking_budget_cuts_the_reasoning(qwen):
    for budget in (0, 1, 2):
        direct = qwen.llm.generate(messages=HI, thinking_budget=budget)
        # cut (how many words a token budget holds is the tokenizer's), and the answer follows
        assert "A B C".startswith(direct.reasoning or "") and direct.reasoning != "A B C"
        assert direct.content == "D E F"
        msg = qwen.openai.chat.completions.create(model="m", messages=HI,
                                                  extra_body={"thinking_budget": budget}).choices[0].message
        assert (_extra(msg, "reasoning_content"), _extra(msg, "reasoning"), msg.content) == \
            (direct.reasoning, direct.reasoning, "D E F")


@pytest.mark.parametrize("name", ["reasoning_content", "reasoning", "thinking"])
def test_chat_history_reasoning_reaches_the_template(qwen, name):
    def convo(reasoning):
        turn = {"role": "assistant", "content": "D E F"}
        if reasoning:
            turn[name] = reasoning
        return [*HI, turn, {"role": "user", "content": "More"}]

    direct = _prompt(qwen.llm, messages=convo("I thought about it."))
    assert direct > _prompt(qwen.llm, messages=convo(None))
    r = qwen.openai.chat.completions.create(model="m", messages=convo("I thought about it."), max_tokens=1)
    assert r.usage.prompt_tokens == direct


@pytest.mark.parametrize("change, param", [
    ({"chat_template_kwargs": "enable_thinking=false"}, "chat_template_kwargs"),
    ({"chat_template_kwargs": [["enable_thinking", False]]}, "chat_template_kwargs"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"thinking": "maximal"}, "thinking"),
    ({"thinking_budget": -1}, "thinking_budget"),
])
def test_chat_bad_reasoning_fields_are_400(qwen, change, param):
    r = httpx.post(qwen.server.base_url + "/chat/completions", json={"model": "m", "messages": HI, **change})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text


def test_a_model_that_does_not_reason(llama):
    # reasoning_effort is ignored, as OpenAI ignores it on models that do not reason
    direct = llama.llm.generate(messages=HI, max_tokens=4)
    r = llama.openai.chat.completions.create(model="m", messages=HI, max_tokens=4, reasoning_effort="high")
    msg = r.choices[0].message
    assert msg.content == direct.content and _extra(msg, "reasoning_content") is None
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    assert llama.openai.chat.completions.create(model="m", messages=HI, max_tokens=4,
                                                reasoning_effort="none").choices[0].message.content == direct.content
    # the explicit extension is the provider's: a 400 naming the model
    with pytest.raises(openai.BadRequestError) as info:
        llama.openai.chat.completions.create(model="m", messages=HI, max_tokens=4, extra_body={"thinking": True})
    err = info.value.body
    assert str(llama.path) in err["message"] and err["code"] == "unsupported_feature"
    # the Responses API and Anthropic's adaptive thinking ignore it too; Anthropic's enabled thinking is a 400
    resp = llama.openai.responses.create(model="m", input="Hi", max_output_tokens=4, reasoning={"effort": "high"})
    assert [i.type for i in resp.output] == ["message"] and resp.output_text == direct.content
    m = llama.anthropic.messages.create(model="m", max_tokens=4, messages=HI, thinking={"type": "adaptive"})
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == direct.content
    with pytest.raises(anthropic.BadRequestError) as ainfo:
        llama.anthropic.messages.create(model="m", max_tokens=4, messages=HI,
                                        thinking={"type": "enabled", "budget_tokens": 8})
    assert str(llama.path) in ainfo.value.body["error"]["message"]


def test_harmony_effort_levels_and_no_switch(harmony):
    direct = harmony.llm.generate(messages=HI)
    assert (direct.reasoning, direct.content) == ("Think.", "Done.")
    low = _prompt(harmony.llm, thinking="low")
    assert low != direct.usage.prompt_tokens  # the level is in the prompt
    r = harmony.openai.chat.completions.create(model="m", messages=HI, reasoning_effort="low")
    assert r.usage.prompt_tokens == low
    assert (_extra(r.choices[0].message, "reasoning"), r.choices[0].message.content) == ("Think.", "Done.")
    # its thinking cannot be switched off: "none" is ignored, not refused
    r = harmony.openai.chat.completions.create(model="m", messages=HI, reasoning_effort="none")
    assert r.usage.prompt_tokens == direct.usage.prompt_tokens
    assert (_extra(r.choices[0].message, "reasoning"), r.choices[0].message.content) == ("Think.", "Done.")
    m = harmony.anthropic.messages.create(model="m", max_tokens=40, messages=HI, thinking={"type": "disabled"})
    assert [(b.type, b.text) for b in m.content] == [("text", "Done.")]
    # while the explicit thinking=False is the provider's 400
    with pytest.raises(openai.BadRequestError):
        harmony.openai.chat.completions.create(model="m", messages=HI, extra_body={"thinking": False})


# ---------------------------------------------------------------------------------------------- responses
def test_responses_reasoning_item_and_usage(qwen):
    direct = qwen.llm.generate(messages=HI)
    r = qwen.openai.responses.create(model="m", input="Hi", reasoning={"effort": "high", "summary": "auto"})
    assert r.status == "completed" and r.output_text == "D E F"
    assert [i.type for i in r.output] == ["reasoning", "message"]
    item = r.output[0].model_dump(exclude_none=True)
    assert item == {"type": "reasoning", "id": item["id"], "status": "completed", "summary": [],
                    "content": [{"type": "reasoning_text", "text": "A B C"}]}
    assert item["id"].startswith("rs_")
    assert r.usage.output_tokens_details.reasoning_tokens == direct.usage.reasoning_tokens
    assert r.usage.output_tokens == direct.usage.completion_tokens
    assert r.reasoning.effort == "high" and r.reasoning.summary == "auto"
    off = qwen.openai.responses.create(model="m", input="Hi", reasoning={"effort": "none"})
    assert off.usage.input_tokens == _prompt(qwen.llm, thinking=False) > r.usage.input_tokens
    tmpl = qwen.openai.responses.create(model="m", input="Hi", extra_body={"chat_template_kwargs": OFF})
    assert tmpl.usage.input_tokens == off.usage.input_tokens
    cut = qwen.openai.responses.create(model="m", input="Hi", extra_body={"thinking_budget": 2})
    reasoning = qwen.llm.generate(messages=HI, thinking_budget=2).reasoning
    assert reasoning != "A B C" and [c.text for c in cut.output[0].content] == [reasoning]
    assert cut.output_text == "D E F"


def test_responses_stream_events(qwen):
    whole = qwen.openai.responses.create(model="m", input="Hi")
    events = list(qwen.openai.responses.create(model="m", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress",
                     "response.output_item.added", "response.content_part.added",
                     *["response.reasoning_text.delta"] * kinds.count("response.reasoning_text.delta"),
                     "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
                     "response.output_item.added", "response.content_part.added",
                     *["response.output_text.delta"] * kinds.count("response.output_text.delta"),
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = events[2]
    assert added.output_index == 0 and added.item.type == "reasoning" and added.item.status == "in_progress"
    rid = added.item.id
    deltas = [e for e in events if e.type == "response.reasoning_text.delta"]
    assert all((e.item_id, e.output_index, e.content_index) == (rid, 0, 0) for e in deltas)
    assert "".join(e.delta for e in deltas) == "A B C"
    done = next(e for e in events if e.type == "response.reasoning_text.done")
    assert (done.item_id, done.text) == (rid, "A B C")
    item_done = next(e for e in events if e.type == "response.output_item.done")
    assert item_done.item.model_dump(exclude_none=True) == {
        "type": "reasoning", "id": rid, "status": "completed", "summary": [],
        "content": [{"type": "reasoning_text", "text": "A B C"}]}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text == "D E F"
    final = events[-1].response

    def shape(resp):
        return [i.model_dump(exclude={"id"}, exclude_none=True) for i in resp.output]

    assert shape(final) == shape(whole)
    assert final.usage.output_tokens_details.reasoning_tokens == whole.usage.output_tokens_details.reasoning_tokens
    # the SDK's stream helper builds the same reply
    with qwen.openai.responses.stream(model="m", input="Hi") as stream:
        for _ in stream:
            pass
        assert shape(stream.get_final_response()) == shape(whole)


def test_responses_reasoning_items_sent_back(qwen):
    call = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"x": 1}'}
    output = {"type": "function_call_output", "call_id": "call_1", "output": "ok"}
    thought = {"type": "reasoning", "id": "rs_1", "summary": [],
               "content": [{"type": "reasoning_text", "text": "I should call f."}]}
    chat_call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    history = [*HI, {"role": "assistant", "content": None, "tool_calls": [chat_call],
                     "reasoning_content": "I should call f."},
               {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    direct = _prompt(qwen.llm, messages=history)
    r = qwen.openai.responses.create(model="m", input=[*HI, thought, call, output], max_output_tokens=2)
    assert r.usage.input_tokens == direct
    without = qwen.openai.responses.create(model="m", input=[*HI, call, output], max_output_tokens=2)
    assert without.usage.input_tokens < direct
    # a reply's own items, sent back as they came (the SDK's dump), are accepted
    first = qwen.openai.responses.create(model="m", input="Hi")
    items = [i.model_dump(exclude_none=True) for i in first.output]
    again = qwen.openai.responses.create(model="m", input=[*HI, *items, {"role": "user", "content": "More"}],
                                         max_output_tokens=2)
    assert again.status == "incomplete"
    # the stored reply keeps its reasoning for previous_response_id
    follow = qwen.openai.responses.create(model="m", previous_response_id=first.id, input="More", max_output_tokens=2)
    assert follow.usage.input_tokens == again.usage.input_tokens


# ---------------------------------------------------------------------------------------------- messages
def _signature_ok(signature: str) -> bool:
    return len(base64.b64decode(signature, validate=True)) == 32


def test_messages_thinking_blocks(qwen):
    direct = qwen.llm.generate(messages=HI)
    m = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI,
                                       thinking={"type": "enabled", "budget_tokens": 100})
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert (m.content[0].thinking, m.content[1].text) == ("A B C", "D E F")
    assert _signature_ok(m.content[0].signature) and m.stop_reason == "end_turn"
    assert m.usage.output_tokens == direct.usage.completion_tokens
    adaptive = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI, thinking={"type": "adaptive"})
    assert [b.model_dump() for b in adaptive.content] == [b.model_dump() for b in m.content]
    # without thinking the model still thinks (its default), but the reply has no thinking block (nor its text)
    plain = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI)
    assert [(b.type, b.text) for b in plain.content] == [("text", "D E F")]
    # disabled: the model's switch is turned off (the template's empty think block is in the prompt)
    off = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI, thinking={"type": "disabled"})
    assert [b.type for b in off.content] == ["text"]
    assert off.usage.input_tokens + off.usage.cache_read_input_tokens == _prompt(qwen.llm, thinking=False)
    # a small budget cuts the reasoning; the answer follows
    cut = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI,
                                         thinking={"type": "enabled", "budget_tokens": 2})
    reasoning = qwen.llm.generate(messages=HI, thinking=True, thinking_budget=2).reasoning
    assert reasoning and reasoning != "A B C"
    assert [(b.type, getattr(b, "thinking", None) or b.text) for b in cut.content] == [("thinking", reasoning),
                                                                                        ("text", "D E F")]
    omitted = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI,
                                             thinking={"type": "adaptive", "display": "omitted"})
    assert omitted.content[0].thinking == "" and omitted.content[0].signature == m.content[0].signature


def _anthropic_events(server, body: dict) -> list[tuple[str, dict]]:
    out = []
    with httpx.stream("POST", server.url + "/v1/messages", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                assert data["type"] == name
                out.append((name, data))
    return out


def test_messages_stream_events(qwen):
    body = {"model": "m", "max_tokens": 40, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 100}}
    events = _anthropic_events(qwen.server, body)
    kinds = [(n, d.get("index"), (d.get("delta") or d.get("content_block") or {}).get("type")) for n, d in events]
    n_think = sum(1 for k in kinds if k[2] == "thinking_delta")
    n_text = sum(1 for k in kinds if k[2] == "text_delta")
    assert kinds == [("message_start", None, None), ("content_block_start", 0, "thinking"), ("ping", None, None),
                     *[("content_block_delta", 0, "thinking_delta")] * n_think,
                     ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
                     ("content_block_start", 1, "text"),
                     *[("content_block_delta", 1, "text_delta")] * n_text,
                     ("content_block_stop", 1, None), ("message_delta", None, None), ("message_stop", None, None)]
    assert "".join(d["delta"]["thinking"] for n, d in events if n == "content_block_delta"
                   and d["delta"]["type"] == "thinking_delta") == "A B C"
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta"
                   and d["delta"]["type"] == "text_delta") == "D E F"
    signature = next(d["delta"]["signature"] for n, d in events if n == "content_block_delta"
                     and d["delta"]["type"] == "signature_delta")
    whole = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI,
                                           thinking={"type": "enabled", "budget_tokens": 100})
    assert signature == whole.content[0].signature
    # the SDK's stream helper builds the same message
    with qwen.anthropic.messages.stream(model="m", max_tokens=40, messages=HI,
                                        thinking={"type": "enabled", "budget_tokens": 100}) as stream:
        thinking = "".join(e.thinking for e in stream if e.type == "thinking")
        final = stream.get_final_message()
    assert thinking == "A B C"
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in whole.content]
    # without thinking: only the text block
    plain = _anthropic_events(qwen.server, {"model": "m", "max_tokens": 40, "messages": HI})
    starts = [d["content_block"]["type"] for n, d in plain if n == "content_block_start"]
    assert starts == ["text"] and not any(n == "content_block_delta" and d["delta"]["type"] != "text_delta"
                                          for n, d in plain)


def test_messages_thinking_blocks_sent_back(qwen):
    chat_call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    history = [*HI, {"role": "assistant", "content": None, "tool_calls": [chat_call],
                     "reasoning_content": "I should call f."},
               {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
    direct = _prompt(qwen.llm, messages=history)
    tool = {"name": "f", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}
    messages = [*HI, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "I should call f.", "signature": "not-checked"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]
    m = qwen.anthropic.messages.create(model="m", max_tokens=2, messages=messages)
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == direct
    # a reply sent back as it came
    first = qwen.anthropic.messages.create(model="m", max_tokens=40, messages=HI,
                                           thinking={"type": "enabled", "budget_tokens": 100})
    again = qwen.anthropic.messages.create(model="m", max_tokens=2, thinking={"type": "enabled", "budget_tokens": 100},
                                           messages=[*HI, {"role": "assistant", "content": first.content},
                                                     {"role": "user", "content": "More"}])
    assert again.stop_reason == "max_tokens"


@pytest.mark.parametrize("change", [
    {"thinking": {"type": "enabled"}},  # no budget
    {"thinking": {"type": "enabled", "budget_tokens": -1}},
    {"thinking": {"type": "sometimes"}},
    {"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]},
])
def test_messages_bad_thinking_is_400(qwen, change):
    r = httpx.post(qwen.server.url + "/v1/messages", json={"model": "m", "max_tokens": 4, "messages": HI, **change})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
