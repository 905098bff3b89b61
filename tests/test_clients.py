"""Real client libraries against the project's own server: LangChain (``langchain-openai``), pydantic-ai,
instructor, the official ``openai`` SDK's structured-output helpers, and simonw's ``llm``. No mocks: one
``abstractllm serve`` subprocess on loopback serves the offline random-weight tiny model, and each client
talks to it over HTTP exactly as it would to OpenAI.

A random-weight model follows no instruction: left to itself (``tool_choice`` "auto", plain JSON mode) it
writes gibberish. Every reply checked here is therefore one the server's constrained decoding makes valid:
a forced tool call (``tool_choice`` "required", a named tool, ``allowed_tools``) or JSON of a schema
(``response_format`` json_schema). Where a client cannot force a call, the test says how it gets one
honestly (pydantic-ai: its own per-step ``tool_choice``; ``llm``: see its tests). Schemas are bounded
(enums, booleans, small integers) so the model ends well within ``max_tokens``. What is asserted is what
the client hands to its user: tool names and argument dicts, tools actually executed, validated pydantic
instances.

instructor is not in the ``test`` extra (its pins conflict with pydantic-ai's openai; see pyproject.toml):
its tests are skipped when it is not installed.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from test_server_support import ServerProcess

MAX_TOKENS = 128  # a tool call of the schemas below is about 60 tokens of the tiny model's tokenizer
PROMPT = "Turn on the kitchen light."


class Answer(BaseModel):
    """A structured reply with bounded fields."""

    color: Literal["red", "green", "blue"]
    count: int = Field(ge=0, le=9)
    ok: bool


class SetLight(BaseModel):
    """Switch a light on or off."""

    room: Literal["kitchen", "bedroom"]
    on: bool


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = ServerProcess(tiny_model, "--max-tokens", str(MAX_TOKENS))
    yield srv
    assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)


def _valid_light_args(args: dict) -> bool:
    return set(args) == {"room", "on"} and args["room"] in ("kitchen", "bedroom") and isinstance(args["on"], bool)


# ---------------------------------------------------------------------------------------------- LangChain
@pytest.fixture(scope="module")
def chat(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(base_url=server.base_url, api_key="sk-local", model="local",
                                       max_tokens=MAX_TOKENS, temperature=0, max_retries=0, timeout=60)


#: the calls LangChain's tool below ran
EXECUTED: list[tuple[str, bool]] = []


@pytest.fixture(scope="module")
def set_light_tool():
    from langchain_core.tools import tool

    @tool
    def set_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        EXECUTED.append((room, on))
        return f"The {room} light is {'on' if on else 'off'}."

    return set_light


@pytest.mark.parametrize("tool_choice", ["required", "set_light"])
def test_langchain_bind_tools_and_tool_loop(chat, set_light_tool, tool_choice):
    """``bind_tools(..., tool_choice=...)`` -> ``AIMessage.tool_calls`` with the name and an args dict; the
    tool runs on them, and its ``ToolMessage`` goes back to the server (a ``role: tool`` message)."""
    from langchain_core.messages import HumanMessage

    msg = chat.bind_tools([set_light_tool], tool_choice=tool_choice).invoke(PROMPT)
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    assert not msg.invalid_tool_calls
    (call,) = msg.tool_calls
    assert call["name"] == "set_light" and call["id"].startswith("call_")
    assert _valid_light_args(call["args"])
    EXECUTED.clear()
    result = set_light_tool.invoke(call)  # a ToolMessage answering this call
    assert EXECUTED == [(call["args"]["room"], call["args"]["on"])]
    assert result.tool_call_id == call["id"]
    final = chat.bind(max_tokens=6).invoke([HumanMessage(PROMPT), msg, result])
    assert final.response_metadata["finish_reason"] in ("stop", "length") and not final.tool_calls


def test_langchain_streamed_tool_call(chat, set_light_tool):
    """The tool call streamed (id and name first, then the arguments) adds up to the same call."""
    chunks = list(chat.bind_tools([set_light_tool], tool_choice="set_light").stream(PROMPT))
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    (call,) = whole.tool_calls
    assert call["name"] == "set_light" and _valid_light_args(call["args"])
    assert whole.response_metadata.get("finish_reason") == "tool_calls"


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output(chat, method):
    out = chat.with_structured_output(Answer, method=method, include_raw=True).invoke("Pick a color.")
    assert out["parsing_error"] is None
    parsed = out["parsed"]
    assert isinstance(parsed, Answer)
    raw = out["raw"]
    if method == "json_schema":  # response_format json_schema (strict): the content is the JSON
        assert Answer.model_validate_json(raw.content) == parsed
    else:  # a forced call of a tool named after the model
        (call,) = raw.tool_calls
        assert call["name"] == "Answer" and Answer(**call["args"]) == parsed


class Prefs(BaseModel):
    """Every field has a default: JSON mode carries no schema, so any JSON object may come back."""

    color: str = "none"
    ok: bool = False


def test_langchain_json_mode(server, tiny_model):
    """``method="json_mode"`` sends ``response_format: {"type": "json_object"}`` and nothing else: the schema
    is only in the prompt, for the model to follow. A random-weight model does not, and in JSON mode it
    opens a string and never closes it (the reply is cut by ``max_tokens`` and LangChain raises). So the
    model is steered, through the client's own ``logit_bias`` (a plain OpenAI parameter), towards ``{`` and
    ``}``: the grammar lets it write ``{`` then ``}``, the reply is ``{}``, and LangChain validates it into
    ``Prefs`` (defaults). The control shows the JSON comes from the server's JSON mode: the same bias
    without it gives text that is not JSON."""
    langchain_openai = pytest.importorskip("langchain_openai")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tiny_model) / "tokenizer.json"))
    bias = {tok.token_to_id("{"): 100, tok.token_to_id("}"): 100}
    steered = langchain_openai.ChatOpenAI(base_url=server.base_url, api_key="sk-local", model="local",
                                          max_tokens=16, temperature=0, max_retries=0, logit_bias=bias)
    out = steered.with_structured_output(Prefs, method="json_mode", include_raw=True).invoke(
        "Answer in JSON with the keys color and ok.")
    assert out["parsing_error"] is None
    assert out["raw"].content == "{}" and out["raw"].response_metadata["finish_reason"] == "stop"
    assert out["parsed"] == Prefs()
    control = steered.invoke("Answer in JSON with the keys color and ok.").content
    with pytest.raises(ValueError):
        json.loads(control)


# ---------------------------------------------------------------------------------------------- pydantic-ai
class Verdict(BaseModel):
    room: Literal["kitchen", "bedroom"]
    lit: bool


@pytest.fixture(scope="module")
def pai_model(server):
    pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel("local", provider=OpenAIProvider(base_url=server.base_url, api_key="sk-local"))


def _steps(first_choice):
    """pydantic-ai's documented way to force a tool on the first step only: model settings as a callable
    of the run context. Later steps allow only the output (``ToolOrOutput`` without function tools)."""
    from pydantic_ai.settings import ToolOrOutput

    def settings(ctx):
        choice = first_choice if ctx.run_step == 1 else ToolOrOutput(function_tools=[])
        return {"max_tokens": MAX_TOKENS, "temperature": 0, "tool_choice": choice}

    return settings


def _tool_calls(result) -> list[tuple[str, dict]]:
    from pydantic_ai.messages import ModelResponse, ToolCallPart

    return [(p.tool_name, p.args_as_dict()) for m in result.all_messages() if isinstance(m, ModelResponse)
            for p in m.parts if isinstance(p, ToolCallPart)]


def test_pydantic_ai_agent_runs_its_tool_then_returns_output(pai_model):
    """An agent with a structured ``output_type`` (an output tool, called with ``tool_choice`` "required"
    by pydantic-ai) and one function tool. A random model does not choose the function tool, so the
    first step forces it (pydantic-ai sends a named ``tool_choice``); the tool runs, its result goes
    back as a ``role: tool`` message, and the second step ends the run with the validated output."""
    from pydantic_ai import Agent

    executed: list[tuple[str, bool]] = []
    agent = Agent(pai_model, output_type=Verdict, model_settings=_steps(["switch_light"]))

    @agent.tool_plain
    def switch_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        executed.append((room, on))
        return "done"

    result = agent.run_sync(PROMPT)
    calls = _tool_calls(result)
    assert [name for name, _ in calls] == ["switch_light", "final_result"]
    assert _valid_light_args(calls[0][1]) and executed == [(calls[0][1]["room"], calls[0][1]["on"])]
    assert isinstance(result.output, Verdict) and result.output == Verdict(**calls[1][1])


def test_pydantic_ai_allowed_tools(pai_model):
    """A first step that may call either of two function tools (not the output): pydantic-ai sends
    ``tool_choice: {"type": "allowed_tools", ...}``; the call is one of the two, and it runs."""
    from pydantic_ai import Agent

    executed: list[str] = []
    agent = Agent(pai_model, output_type=Verdict, model_settings=_steps(["switch_light", "read_sensor"]))

    @agent.tool_plain
    def switch_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        executed.append("switch_light")
        return "done"

    @agent.tool_plain
    def read_sensor(sensor: Literal["heat", "smoke"]) -> str:
        """Read a sensor."""
        executed.append("read_sensor")
        return "normal"

    result = agent.run_sync(PROMPT)
    names = [name for name, _ in _tool_calls(result)]
    assert len(names) == 2 and names[0] in ("switch_light", "read_sensor") and names[1] == "final_result"
    assert executed == names[:1]
    assert isinstance(result.output, Verdict)


def test_pydantic_ai_native_output_with_a_tool(pai_model):
    """``NativeOutput``: the output is ``response_format`` json_schema, sent on every step along with the
    tools. The first step forces the tool (the server then applies no ``response_format`` to that reply,
    a tool call, as OpenAI does); the second allows no tool, and the JSON reply is the output."""
    from pydantic_ai import Agent, NativeOutput

    executed: list[tuple[str, bool]] = []

    def settings(ctx):
        return {"max_tokens": MAX_TOKENS, "temperature": 0,
                "tool_choice": ["switch_light"] if ctx.run_step == 1 else "none"}

    agent = Agent(pai_model, output_type=NativeOutput(Answer), model_settings=settings)

    @agent.tool_plain
    def switch_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        executed.append((room, on))
        return "done"

    result = agent.run_sync(PROMPT)
    assert [name for name, _ in _tool_calls(result)] == ["switch_light"] and len(executed) == 1
    assert isinstance(result.output, Answer)


def test_pydantic_ai_native_output_with_a_tool_the_model_may_call(pai_model):
    """``NativeOutput`` with a tool, nothing forced (``tool_choice`` auto): the server constrains each reply
    to a call of the tool or JSON of the output schema, so the run ends with a validated output whatever
    the model chooses at each step; every call it made was executed."""
    from pydantic_ai import Agent, NativeOutput

    executed: list[tuple[str, bool]] = []
    agent = Agent(pai_model, output_type=NativeOutput(Answer),
                  model_settings={"max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": 3})

    @agent.tool_plain
    def switch_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        executed.append((room, on))
        return "done"

    result = agent.run_sync(PROMPT)
    assert isinstance(result.output, Answer)
    assert len(_tool_calls(result)) == len(executed) and all(_valid_light_args({"room": r, "on": o})
                                                            for r, o in executed)


def test_langchain_structured_output_with_tools(chat, set_light_tool):
    """``with_structured_output(..., tools=[...])`` (json_schema method): the reply is a tool call or the
    structured answer, never anything else."""
    kinds = set()
    for seed in range(8):
        bound = chat.model_copy(update={"temperature": 1.0, "seed": seed}).with_structured_output(
            Answer, method="json_schema", tools=[set_light_tool], strict=True, include_raw=True)
        out = bound.invoke(PROMPT)
        raw = out["raw"]
        if raw.tool_calls:
            assert raw.tool_calls[0]["name"] == "set_light" and _valid_light_args(raw.tool_calls[0]["args"])
            kinds.add("call")
        else:
            assert out["parsing_error"] is None and isinstance(out["parsed"], Answer)
            kinds.add("json")
    assert kinds == {"call", "json"}


def test_pydantic_ai_streamed_output(pai_model):
    """``run_stream``: the output tool's arguments arrive as streamed tool-call deltas."""
    from pydantic_ai import Agent

    agent = Agent(pai_model, output_type=Verdict, model_settings={"max_tokens": MAX_TOKENS, "temperature": 0})

    async def run():
        async with agent.run_stream(PROMPT) as stream:
            return await stream.get_output()

    assert isinstance(asyncio.run(run()), Verdict)


# ---------------------------------------------------------------------------------------------- instructor
@pytest.fixture(scope="module")
def openai_client(server):
    import openai

    with openai.OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0, timeout=60) as c:
        yield c


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_instructor(openai_client, mode):
    instructor = pytest.importorskip("instructor")

    client = instructor.from_openai(openai_client, mode=getattr(instructor.Mode, mode))
    answer, completion = client.chat.completions.create_with_completion(
        model="local", response_model=Answer, messages=[{"role": "user", "content": "Pick a color."}],
        max_tokens=MAX_TOKENS, temperature=0, max_retries=0)  # instructor's retries: none, a failure shows
    assert isinstance(answer, Answer)  # (instructor returns an instance of its subclass of Answer)
    message = completion.choices[0].message
    if mode == "TOOLS":  # a forced call of the tool named after the model
        (call,) = message.tool_calls
        assert call.function.name == "Answer"
        assert Answer.model_validate_json(call.function.arguments).model_dump() == answer.model_dump()
    else:
        assert Answer.model_validate_json(message.content).model_dump() == answer.model_dump()


def test_instructor_partial_stream(openai_client):
    """``create_partial`` (Mode.TOOLS, streamed): partial objects as the arguments stream, the last one whole."""
    instructor = pytest.importorskip("instructor")

    client = instructor.from_openai(openai_client, mode=instructor.Mode.TOOLS)
    partials = list(client.chat.completions.create_partial(
        model="local", response_model=Answer, messages=[{"role": "user", "content": "Pick a color."}],
        max_tokens=MAX_TOKENS, temperature=0, max_retries=0))
    assert partials and Answer.model_validate(partials[-1].model_dump())


# ---------------------------------------------------------------------------------------------- openai SDK
def test_openai_parse_response_format(openai_client):
    completions = getattr(openai_client.chat.completions, "parse", None) or openai_client.beta.chat.completions.parse
    r = completions(model="local", messages=[{"role": "user", "content": "Pick a color."}], response_format=Answer,
                    max_tokens=MAX_TOKENS, temperature=0)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "stop" and isinstance(message.parsed, Answer)
    assert Answer.model_validate_json(message.content) == message.parsed


def test_openai_parse_strict_tool(openai_client):
    import openai

    r = openai_client.chat.completions.parse(model="local", messages=[{"role": "user", "content": PROMPT}],
                                             tools=[openai.pydantic_function_tool(SetLight)],
                                             tool_choice="required", max_tokens=MAX_TOKENS, temperature=0)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "SetLight" and isinstance(call.function.parsed_arguments, SetLight)


def test_openai_stream_helper_tool_call(openai_client):
    """``chat.completions.stream``: the helper accumulates the streamed tool call (id and name, then the
    argument deltas) into events and a final completion with the parsed arguments."""
    import openai

    with openai_client.chat.completions.stream(
            model="local", messages=[{"role": "user", "content": PROMPT}],
            tools=[openai.pydantic_function_tool(SetLight)], tool_choice={"type": "function", "function": {"name": "SetLight"}},
            max_tokens=MAX_TOKENS, temperature=0, stream_options={"include_usage": True}) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    (event,) = done
    assert event.name == "SetLight" and isinstance(event.parsed_arguments, SetLight)
    (call,) = final.choices[0].message.tool_calls
    assert call.id.startswith("call_") and call.function.parsed_arguments == event.parsed_arguments
    assert final.choices[0].finish_reason == "tool_calls" and final.usage.completion_tokens > 0


def test_openai_stream_helper_response_format(openai_client):
    with openai_client.chat.completions.stream(
            model="local", messages=[{"role": "user", "content": "Pick a color."}], response_format=Answer,
            max_tokens=MAX_TOKENS, temperature=0) as stream:
        done = [e for e in stream if e.type == "content.done"]
        final = stream.get_final_completion()
    (event,) = done
    assert isinstance(event.parsed, Answer) and final.choices[0].message.parsed == event.parsed


# ---------------------------------------------------------------------------------------------- llm
@pytest.fixture(scope="module")
def llm_model(server, tmp_path_factory):
    """simonw's ``llm`` with the server as an OpenAI-compatible model, configured the documented way:
    ``extra-openai-models.yaml`` in the user directory (``LLM_USER_PATH``)."""
    llm = pytest.importorskip("llm")
    home = tmp_path_factory.mktemp("llm-home")
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: abstractllm-local\n  model_name: local\n  api_base: {server.base_url}\n"
        "  supports_tools: true\n  supports_schema: true\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_USER_PATH", str(home))
        yield llm.get_model("abstractllm-local")


def test_llm_schema(llm_model):
    """``model.prompt(..., schema=PydanticModel)`` sends ``response_format`` json_schema (streamed)."""
    response = llm_model.prompt("Pick a color.", schema=Answer, temperature=0, max_tokens=MAX_TOKENS)
    answer = Answer.model_validate_json(response.text())
    assert response.response_json["finish_reason"] == "stop" and isinstance(answer, Answer)


def _run_chain(chain) -> list:
    responses = []
    for response in chain.responses():
        response.text()
        responses.append(response)
    return responses


def test_llm_tools_auto(llm_model):
    """``llm`` 0.36 has no ``tool_choice`` option (its OpenAI chat options are temperature, max_tokens,
    top_p, penalties, stop, logit_bias, seed, json_object), so its tool requests are "auto", and a
    random-weight model answers them in text. This checks the server takes llm's tool requests as they
    are (streamed, non-strict schemas) and that llm ends the chain on a reply without calls."""
    executed: list = []

    def set_light(room: str, on: bool) -> str:
        """Switch a light on or off."""
        executed.append((room, on))
        return "done"

    responses = _run_chain(llm_model.chain(PROMPT, tools=[set_light], options={"temperature": 0, "max_tokens": 8}))
    assert not responses[-1].tool_calls() and responses[-1].response_json["finish_reason"] in ("stop", "length")
    assert len(executed) == sum(len(r.tool_calls()) for r in responses)  # whatever llm parsed as calls, it ran


def test_llm_tool_chain(llm_model, server):
    """``model.chain(..., tools=[fn])`` with a call forced on the first turn. As llm cannot send
    ``tool_choice`` (see above), the test subclasses llm's own OpenAI ``Chat`` model with the one thing
    it lacks: ``tool_choice: "required"`` on a turn that carries no tool results yet (a plugin could do the
    same). Everything else is llm's: the streamed call is accumulated and parsed, the Python function runs,
    and its result goes back in the next request (``role: tool``), whose text reply ends the chain."""
    from llm.default_plugins.openai_models import Chat

    class ToolChoiceChat(Chat):
        needs_key = None

        def build_kwargs(self, prompt, stream):
            kwargs = super().build_kwargs(prompt, stream)
            if prompt.tools and not prompt.tool_results:
                kwargs["tool_choice"] = "required"
            return kwargs

    model = ToolChoiceChat(model_id="abstractllm-forced", model_name="local", api_base=server.base_url,
                           supports_tools=True)
    executed: list[tuple[str, bool]] = []

    def set_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
        """Switch a light on or off."""
        executed.append((room, on))
        return "done"

    first, second = _run_chain(model.chain(PROMPT, tools=[set_light],
                                           options={"temperature": 0, "max_tokens": MAX_TOKENS}))
    (call,) = first.tool_calls()
    assert call.name == "set_light" and _valid_light_args(call.arguments)
    assert executed == [(call.arguments["room"], call.arguments["on"])]
    (result,) = second.prompt.tool_results
    assert result.tool_call_id == call.tool_call_id and result.output == "done"
    assert not second.tool_calls() and second.response_json["finish_reason"] in ("stop", "length")
