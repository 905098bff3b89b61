"""Python agent frameworks against the project's own server, for real: openai-agents (a chat-completions model
and a Responses model, a function tool, an output type), LangGraph's ``create_react_agent`` with
``langchain-openai``'s ``ChatOpenAI`` (tools auto and forced), smolagents' ``ToolCallingAgent`` (it always
sends ``tool_choice: "required"``), litellm (``openai/`` and ``hosted_vllm/`` models, streaming, forced tools,
``reasoning_effort``) and dspy (``Predict``, ``ReAct``). docs/agents.md shows the setup of each.

The server runs in this process on zoo models (``abstractllm.testing.zoo``), so every run is deterministic
and takes well under a second of generation:

* a scripted Qwen3 model whose greedy reply to any prompt is one call of ``get_weather`` (``CALL``): the
  framework runs the tool, sends the result back, the model calls again, and the framework's own step limit
  ends the loop; what is asserted is that the tool ran with the parsed arguments and that its result was in
  the next request the server received (``Recorder`` keeps the messages each request handed the provider);
* a random-weight Qwen3 model (the real family's tokenizer and template) where the call is forced
  (``tool_choice`` "required" or a tool's name) or the reply has a schema: constrained decoding makes it a
  valid call of the tool / JSON of the schema, so a forced call on the Qwen tokenizer is checked end to end;
* scripted replies in the framework's own text format where it has one (dspy's ``[[ ## field ## ]]``) or a
  reasoning block (litellm's ``reasoning_content``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

import pytest
from pydantic import BaseModel

# litellm (and dspy, through it) downloads its model price map at import unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
THINK = "<think>\nThe user wants the weather.\n</think>\n\nSunny in Paris."
DSPY_ANSWER = "[[ ## answer ## ]]\nSunny in Paris.\n\n[[ ## completed ## ]]"
#: every field dspy's ReAct asks for, in its turns and in its final extraction (each takes the fields it needs)
DSPY_REACT = ('[[ ## next_thought ## ]]\nI check the weather.\n\n[[ ## next_tool_name ## ]]\nget_weather\n\n'
              '[[ ## next_tool_args ## ]]\n{"city": "Paris"}\n\n[[ ## reasoning ## ]]\nIt is sunny.\n\n'
              '[[ ## answer ## ]]\nSunny in Paris.\n\n[[ ## completed ## ]]')
ASK = "What is the weather in Paris?"
#: the frameworks' own import-time noise (pydantic on litellm's TypedDicts, smolagents on decorated tools)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema"),
              pytest.mark.filterwarnings("ignore:Function 'get_weather' has decorators other than @tool")]
MAX_TOKENS = 96


class Recorder:
    """The provider the server is given, recording what each request hands it (``messages`` as OpenAI-style
    dicts, and the generation parameters); everything else is the provider's."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    async def generate_async(self, *args: Any, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        return await self._llm.generate_async(*args, **kwargs)

    def tool_results(self, i: int) -> list[tuple[str | None, str]]:
        """``(tool_call_id, content)`` of the tool results the ``i``-th request carried."""
        return [(m.get("tool_call_id"), _text(m.get("content"))) for m in self.requests[i]["messages"]
                if m.get("role") == "tool"]

    def texts(self, i: int) -> str:
        return "\n".join(_text(m.get("content")) for m in self.requests[i]["messages"])


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class Served:
    def __init__(self, script: str | None) -> None:
        from abstractllm import create_llm
        from abstractllm.server import ServerConfig, start_server
        from abstractllm.testing.zoo import family_model

        path = family_model("qwen3", script=script)
        self.llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX_TOKENS)
        self.recorder = Recorder(self.llm)
        self.server = start_server(ServerConfig(model=str(path), port=0), llm=self.recorder)
        self.base_url = self.server.base_url

    def close(self) -> None:
        self.server.stop()
        self.llm.close()


@pytest.fixture(scope="module")
def serve():
    """``serve(script)``: the server of that scripted Qwen3 model (``None``: random weights), started once."""
    running: dict[str | None, Served] = {}

    def get(script: str | None) -> Served:
        if script not in running:
            running[script] = Served(script)
        served = running[script]
        served.recorder.requests.clear()
        return served

    yield get
    for served in running.values():
        served.close()


class Verdict(BaseModel):
    city: Literal["Paris", "Rome"]
    sunny: bool


CITY = Literal["Paris", "Rome"]  # a random model forced to call picks one (the grammar allows no other)


# ---------------------------------------------------------------------------------------------- openai-agents
@pytest.fixture(scope="module")
def agents():
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # traces would go to OpenAI's servers
    return agents


def _agents_model(agents: Any, api: str, base_url: str) -> Any:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-local", max_retries=0, timeout=60)
    cls = agents.OpenAIChatCompletionsModel if api == "chat" else agents.OpenAIResponsesModel
    return cls(model="local", openai_client=client)


def _weather_tool(agents: Any, ran: list[str]) -> Any:
    @agents.function_tool
    def get_weather(city: CITY) -> str:
        """The current weather in a city."""
        ran.append(city)
        return f"Sunny in {city}"

    return get_weather


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_agents_tool_round_trip(agents, serve, api):
    """The model calls the tool; the runner runs it and sends the result back; the scripted model calls
    again, and ``max_turns`` ends the run."""
    served = serve(CALL)
    ran: list[str] = []
    agent = agents.Agent(name="weather", instructions="Use the tools.", tools=[_weather_tool(agents, ran)],
                         model=_agents_model(agents, api, served.base_url))
    with pytest.raises(agents.exceptions.MaxTurnsExceeded):
        asyncio.run(agents.Runner.run(agent, ASK, max_turns=2))
    assert ran == ["Paris", "Paris"]
    rec = served.recorder
    assert len(rec.requests) == 2 and rec.tool_results(0) == []
    ((call_id, content),) = rec.tool_results(1)
    assert content == "Sunny in Paris"
    (assistant,) = [m for m in rec.requests[1]["messages"] if m.get("tool_calls")]
    assert [c["id"] for c in assistant["tool_calls"]] == [call_id]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_agents_forced_tool(agents, serve, api):
    """``tool_choice="required"`` on the random Qwen3 model: the grammar makes the call; the run stops on the
    tool's result."""
    served = serve(None)
    ran: list[str] = []
    agent = agents.Agent(name="weather", tools=[_weather_tool(agents, ran)], tool_use_behavior="stop_on_first_tool",
                         model=_agents_model(agents, api, served.base_url),
                         model_settings=agents.ModelSettings(tool_choice="required"))
    result = asyncio.run(agents.Runner.run(agent, ASK, max_turns=2))
    (city,) = ran
    assert result.final_output == f"Sunny in {city}"
    assert served.recorder.requests[0]["tool_choice"] == "required"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_agents_output_type(agents, serve, api):
    """``output_type``: a strict JSON schema (``response_format`` / ``text.format``); the reply validates."""
    served = serve(None)
    agent = agents.Agent(name="weather", output_type=Verdict, model=_agents_model(agents, api, served.base_url))
    result = asyncio.run(agents.Runner.run(agent, ASK, max_turns=1))
    assert isinstance(result.final_output, Verdict)
    fmt = served.recorder.requests[0]["response_format"]  # as the server hands it on
    schema = fmt["json_schema"]["schema"] if isinstance(fmt, dict) else fmt.schema
    assert schema["properties"]["city"]["enum"] == ["Paris", "Rome"]


# ---------------------------------------------------------------------------------------------- LangGraph
@pytest.fixture(scope="module")
def langgraph():
    pytest.importorskip("langchain_openai")
    return pytest.importorskip("langgraph.prebuilt")


def _lc_tool(ran: list[str]) -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: CITY) -> str:
        """The current weather in a city."""
        ran.append(city)
        return f"Sunny in {city}"

    return get_weather


def _react(langgraph: Any, model: Any, tools: list[Any]) -> Any:
    import warnings

    with warnings.catch_warnings():  # moved to langchain.agents.create_agent in LangGraph 1.0, still there
        warnings.simplefilter("ignore")
        return langgraph.create_react_agent(model, tools)


@pytest.mark.parametrize("forced", [False, True], ids=["auto", "forced"])
def test_langgraph_react_agent(langgraph, serve, forced):
    """``create_react_agent`` over ``ChatOpenAI``: the tool runs on the call's arguments, its ``ToolMessage``
    goes back in the next request; ``recursion_limit`` ends the loop. Forced: ``bind_tools(tool_choice=
    "any")`` (sent as "required") on the random Qwen3 model."""
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    served = serve(None if forced else CALL)
    ran: list[str] = []
    get_weather = _lc_tool(ran)
    chat = ChatOpenAI(base_url=served.base_url, api_key="sk-local", model="local", temperature=0, max_retries=0,
                      timeout=60)
    model = chat.bind_tools([get_weather], tool_choice="any") if forced else chat
    out = _react(langgraph, model, [get_weather]).invoke({"messages": [("user", ASK)]}, {"recursion_limit": 4})
    messages = out["messages"]
    (city,) = ran
    assert forced or city == "Paris"
    call = messages[1]
    assert isinstance(call, AIMessage) and [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("get_weather", {"city": city})]
    assert isinstance(messages[2], ToolMessage) and messages[2].content == f"Sunny in {city}"
    rec = served.recorder
    assert len(rec.requests) == 2
    assert rec.tool_results(1) == [(call.tool_calls[0]["id"], f"Sunny in {city}")]
    assert [r.get("tool_choice") for r in rec.requests] == (["required"] * 2 if forced else [None, None])


# ---------------------------------------------------------------------------------------------- smolagents
def test_smolagents_tool_calling_agent(serve):
    """``ToolCallingAgent.run`` sends ``tool_choice: "required"`` every step (its tools and its
    ``final_answer``): on the random Qwen3 model each step's call is valid JSON of one of them, each
    ``get_weather`` call runs, and its observation is in the next request; ``max_steps`` ends the run."""
    smolagents = pytest.importorskip("smolagents")
    served = serve(None)
    ran: list[str] = []

    @smolagents.tool
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: the city's name.
        """
        ran.append(city)
        return f"Sunny in {city}"

    model = smolagents.OpenAIServerModel(model_id="local", api_base=served.base_url, api_key="sk-local",
                                         max_tokens=MAX_TOKENS)
    agent = smolagents.ToolCallingAgent(tools=[get_weather], model=model, max_steps=2, verbosity_level=0)
    agent.run(ASK)
    steps = [s for s in agent.memory.steps if isinstance(s, smolagents.memory.ActionStep)]
    assert steps and all(s.error is None for s in steps[:-1])
    calls = [c for s in steps for c in s.tool_calls or []]
    assert calls and all(c.name in ("get_weather", "final_answer") and isinstance(c.arguments, dict) for c in calls)
    assert ran == [c.arguments["city"] for c in calls if c.name == "get_weather"]
    rec = served.recorder
    with_tools = [r for r in rec.requests if r.get("tools")]
    assert with_tools and all(r["tool_choice"] == "required" for r in with_tools)
    for i, city in enumerate(ran):  # each observation went back in the next request (smolagents strips it)
        assert f"Observation:\nSunny in {city}".strip() in rec.texts(i + 1)


# ---------------------------------------------------------------------------------------------- litellm
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def litellm():
    litellm = pytest.importorskip("litellm")
    litellm.suppress_debug_info = True
    return litellm


@pytest.mark.parametrize("prefix", ["openai/", "hosted_vllm/"])
def test_litellm_tool_round_trip_and_stream(litellm, serve, prefix):
    served = serve(CALL)
    kw = dict(model=prefix + "local", api_base=served.base_url, api_key="sk-local", tools=[WEATHER])
    messages: list[Any] = [{"role": "user", "content": ASK}]
    r = litellm.completion(messages=messages, **kw)
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    messages += [r.choices[0].message.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}]
    litellm.completion(messages=messages, **kw)
    assert served.recorder.tool_results(1) == [(call.id, "Sunny")]
    chunks = list(litellm.completion(messages=messages[:1], stream=True, **kw))
    whole = litellm.stream_chunk_builder(chunks)
    (streamed,) = whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "tool_calls"
    assert (streamed.function.name, streamed.function.arguments) == ("get_weather", '{"city": "Paris"}')


@pytest.mark.parametrize("prefix", ["openai/", "hosted_vllm/"])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_litellm_forced_tool(litellm, serve, prefix, choice, stream):
    """Forced on the random Qwen3 model: one valid call."""
    served = serve(None)
    out = litellm.completion(model=prefix + "local", api_base=served.base_url, api_key="sk-local", tools=[WEATHER],
                             tool_choice=choice, stream=stream, messages=[{"role": "user", "content": ASK}])
    r = litellm.stream_chunk_builder(list(out)) if stream else out
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments in ('{"city": "Paris"}', '{"city": "Rome"}')
    assert served.recorder.requests[0]["tool_choice"] == choice


@pytest.mark.parametrize("prefix", ["openai/", "hosted_vllm/"])
def test_litellm_reasoning_effort(litellm, serve, prefix):
    """``reasoning_effort`` passes through to the server; the reasoning comes back apart
    (``reasoning_content``)."""
    served = serve(THINK)
    r = litellm.completion(model=prefix + "local", api_base=served.base_url, api_key="sk-local",
                           reasoning_effort="low", messages=[{"role": "user", "content": ASK}])
    message = r.choices[0].message
    assert message.content == "Sunny in Paris." and message.reasoning_content == "The user wants the weather."
    assert served.recorder.requests[0]["thinking"] == "low"


# ---------------------------------------------------------------------------------------------- dspy
@pytest.fixture(scope="module")
def dspy():
    return pytest.importorskip("dspy")


def _dspy_lm(dspy: Any, served: Served) -> Any:
    return dspy.LM("openai/local", api_base=served.base_url, api_key="sk-local", cache=False, temperature=0.0,
                   max_tokens=MAX_TOKENS)


def test_dspy_predict(dspy, serve):
    served = serve(DSPY_ANSWER)
    with dspy.context(lm=_dspy_lm(dspy, served)):
        out = dspy.Predict("question -> answer")(question=ASK)
    assert out.answer == "Sunny in Paris."


def test_dspy_react(dspy, serve):
    """``ReAct`` runs the tool on the parsed arguments, the observation is in the next request, ``max_iters``
    ends the loop, and the final extraction answers."""
    served = serve(DSPY_REACT)
    ran: list[str] = []

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        ran.append(city)
        return f"Sunny in {city}"

    with dspy.context(lm=_dspy_lm(dspy, served)):
        out = dspy.ReAct("question -> answer", tools=[get_weather], max_iters=2)(question=ASK)
    assert ran == ["Paris", "Paris"] and out.answer == "Sunny in Paris."
    assert out.trajectory["tool_args_0"] == {"city": "Paris"} and out.trajectory["observation_0"] == "Sunny in Paris"
    rec = served.recorder
    assert len(rec.requests) == 3  # two steps, then the extraction
    assert "Sunny in Paris" not in rec.texts(0) and "Sunny in Paris" in rec.texts(1)


def test_dspy_json_fallback_carries_the_schema(dspy, serve):
    """docs/agents.md's setup for small models: the model registered with litellm as taking a response schema
    and ``engine="litellm"``. The random model does not follow dspy's format; dspy asks again with the
    signature's JSON schema, which the server's grammar enforces, and the answer parses."""
    import litellm

    served = serve(None)
    name = "local-json"
    litellm.register_model({f"openai/{name}": {"litellm_provider": "openai", "mode": "chat",
                                               "supports_response_schema": True}})
    lm = dspy.LM(f"openai/{name}", api_base=served.base_url, api_key="sk-local", cache=False, temperature=0.0,
                 max_tokens=MAX_TOKENS, engine="litellm")
    with dspy.context(lm=lm):
        out = dspy.Predict("question -> answer: bool")(question=ASK)
    assert isinstance(out.answer, bool)
    first, second = served.recorder.requests
    assert "response_format" not in first and second["response_format"]["type"] == "json_schema"
