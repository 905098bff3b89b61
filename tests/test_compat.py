"""The AbstractLLM 1.x surface on the real MLX provider: names and import paths, create_llm with a
positional model, the response and usage shapes, capabilities as a mapping, every 1.x ModelParameter
(implemented or a documented no-op), the config API with reloads, the 1.x exception tree, generate's 1.x
positional order and aliases, text files inlined, and what MLX implements of the 1.x keys (penalties and
logit_bias token for token against raw mlx-lm, load_in_4bit, device, cache_dir, context limits)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from abstractllm import (
    AbstractLLMError,
    ContextWindowExceededError,
    FileProcessingError,
    InvalidParameterError,
    ModelCapability,
    ModelParameter,
    UnsupportedFeatureError,
    create_llm,
)
from text_oracle import chat, raw_generate, raw_prompt_ids

#: every ModelParameter member of AbstractLLM 1.x (abstractllm/enums.py of lpalbou/AbstractLLM)
PARAMETERS_1X = [
    "TEMPERATURE", "MAX_TOKENS", "SYSTEM_PROMPT", "TOP_P", "FREQUENCY_PENALTY", "PRESENCE_PENALTY", "STOP", "MODEL",
    "API_KEY", "BASE_URL", "TIMEOUT", "RETRY_COUNT", "LOGIT_BIAS", "SEED", "TOP_K", "REPETITION_PENALTY",
    "MAX_INPUT_TOKENS", "MAX_OUTPUT_TOKENS", "CONTEXT_WINDOW", "TRUNCATION_STRATEGY", "DEVICE", "DEVICE_MAP",
    "LOAD_IN_8BIT", "LOAD_IN_4BIT", "CACHE_DIR", "ORGANIZATION", "USER", "PROXY", "REQUEST_TIMEOUT", "MAX_RETRIES",
    "IMAGE", "IMAGES", "IMAGE_DETAIL", "TOOLS", "TOOL_CHOICE", "CONTENT_FILTER", "MODERATION", "LOGGING_ENABLED",
]
#: 1.x ModelCapability members and their 1.x string values
CAPABILITIES_1X = {
    "STREAMING": "streaming", "MAX_TOKENS": "max_tokens", "SYSTEM_PROMPT": "supports_system_prompt",
    "ASYNC": "supports_async", "FUNCTION_CALLING": "supports_function_calling", "TOOL_USE": "supports_tool_use",
    "VISION": "supports_vision", "FINE_TUNING": "supports_fine_tuning", "EMBEDDINGS": "supports_embeddings",
    "MULTILINGUAL": "supports_multilingual", "RAG": "supports_rag", "MULTI_TURN": "supports_multi_turn",
    "PARALLEL_INFERENCE": "supports_parallel_inference", "IMAGE_GENERATION": "supports_image_generation",
    "AUDIO_PROCESSING": "supports_audio_processing", "JSON_MODE": "supports_json_mode",
}
PROMPT = "Write a short poem about the sea."


# ---------------------------------------------------------------------------------------------- names
def test_1x_names_and_import_paths():
    import abstractllm
    from abstractllm.enums import MessageRole
    from abstractllm.factory import create_llm as factory_create_llm, create_session, get_llm_providers
    from abstractllm.interface import AbstractLLMInterface
    from abstractllm.session import Session
    from abstractllm.types import GenerateResponse, Message, Response

    assert factory_create_llm is create_llm and GenerateResponse is Response
    assert {"mlx", "openai", "ollama", "lmstudio"} <= set(get_llm_providers())
    assert [r.value for r in MessageRole] == ["system", "user", "assistant", "tool"]
    m = Message(role="user", content="hi")
    assert m.content == m.text == "hi" and Message(MessageRole.USER, "x").role == "user"
    for name in ("AbstractLLMInterface", "GenerateResponse", "Session", "BasicSession", "create_session",
                 "get_llm_providers", "MessageRole", "ProviderAPIError", "ModelLoadingError", "MemoryExceededError"):
        assert hasattr(abstractllm, name), name
    assert issubclass(abstractllm.BaseProvider, AbstractLLMInterface) and callable(create_session) and Session


def test_import_is_light_and_imports_no_sdk_and_no_backend():
    code = ("import sys, time\nt = time.perf_counter()\nimport abstractllm\nelapsed = time.perf_counter() - t\n"
            "third = sorted(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names "
            "and not m.startswith(('abstractllm', '_')))\n"
            "print(third, 'asyncio' in sys.modules, 'importlib.metadata' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # no third-party module at all (no mlx, openai, numpy, PIL, httpx, pydantic), nor asyncio or
    # importlib.metadata (imported when first needed): what `import abstractllm` costs is its own code
    assert r.stdout.split() == ["[]", "False", "False"]


def test_every_1x_parameter_and_capability_exists():
    for name in PARAMETERS_1X:
        assert hasattr(ModelParameter, name), name
    for name, value in CAPABILITIES_1X.items():
        assert ModelCapability(value) is getattr(ModelCapability, name), name
    assert ModelCapability.MULTI_TURN is ModelCapability.CHAT_HISTORY
    with pytest.raises(ValueError):
        ModelCapability("supports_teleportation")


def test_exception_tree_of_1x():
    import abstractllm.exceptions as E

    assert E.ModelLoadingError is E.ModelLoadError and E.MemoryExceededError is E.MemoryLimitError
    assert issubclass(E.UnsupportedProviderError, ValueError)
    assert issubclass(E.InvalidParameterError, E.InvalidRequestError) and issubclass(E.InvalidRequestError, ValueError)
    assert issubclass(E.ContextWindowExceededError, E.InvalidRequestError)
    for cls in (E.AuthenticationError, E.QuotaExceededError, E.ContentFilterError):
        assert issubclass(cls, E.ProviderAPIError)
    assert issubclass(E.ProviderConnectionError, ConnectionError) and issubclass(E.RequestTimeoutError, TimeoutError)
    assert issubclass(E.ImageProcessingError, E.FileProcessingError)
    assert issubclass(E.MemoryLimitError, E.ResourceExceededError) and issubclass(E.MemoryLimitError, MemoryError)
    for name in E.__all__:
        cls = getattr(E, name)
        if isinstance(cls, type):
            err = cls("boom", provider="x", details={"k": 1}) if cls is not E.AbstractLLMError else cls("boom")
            assert err.provider in ("x", None) and isinstance(err.details, dict) and err.original_exception is None
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise E.GenerationError("outer") from exc
    except E.GenerationError as err:
        assert isinstance(err.original_exception, KeyError)  # the cause, when none was given


def test_unknown_provider_and_anthropic_needs_a_key(monkeypatch):
    from abstractllm import AuthenticationError, UnsupportedProviderError, available_providers

    with pytest.raises(UnsupportedProviderError, match="Did you mean 'openai'"):
        create_llm("opneai", model="x")
    assert "anthropic" in available_providers()
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):  # api.anthropic.com needs a key
        create_llm("anthropic", model="claude")


# ---------------------------------------------------------------------------------------------- create_llm
def test_create_llm_takes_the_model_positionally_or_by_key(tiny_model):
    a = create_llm("mlx", str(tiny_model), temperature=0.0)
    b = create_llm("mlx", **{ModelParameter.MODEL: str(tiny_model), ModelParameter.TEMPERATURE: 0.0})
    try:
        assert a.get_param(ModelParameter.MODEL) == b.get_param("model") == str(tiny_model)
        assert a.generate("Hi", max_tokens=4).content == b.generate("Hi", max_tokens=4).content
    finally:
        a.close()
        b.close()


def test_mlx_accepts_remote_keys_as_no_ops_and_refuses_unknown_keys(tiny_model):
    keys = dict(api_key=None, base_url=None, timeout=60, request_timeout=30, max_retries=3, retry_count=2,
                organization="org", proxy=None, user="u1", device_map="auto", image_detail="high",
                truncation_strategy="auto", content_filter="none", moderation=False, logging_enabled=True)
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, **keys) as llm, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0) as plain:
        assert llm.generate("Hi", max_tokens=4, user="someone").token_ids == plain.generate("Hi", max_tokens=4).token_ids
    with pytest.raises(InvalidParameterError, match="Did you mean 'api_key'"):
        create_llm("mlx", model=str(tiny_model), api_kye="x")
    with pytest.raises(InvalidParameterError, match="timeout"):
        create_llm("mlx", model=str(tiny_model), timeout=-5)


# ---------------------------------------------------------------------------------------------- responses
def test_response_and_usage_shapes(tiny_llm):
    r = tiny_llm.generate(PROMPT, max_tokens=6)
    u = r.usage
    assert u["prompt_tokens"] == u.prompt_tokens and u.get("total_tokens") == u.total_tokens
    assert dict(u) == {"prompt_tokens": u.prompt_tokens, "completion_tokens": 6,
                       "total_tokens": u.prompt_tokens + 6, "cached_tokens": u.cached_tokens,
                       "reasoning_tokens": u.reasoning_tokens}
    assert u["input_tokens"] == r.input_tokens == u.prompt_tokens and r.output_tokens == 6
    assert r.total_tokens == u.total_tokens and u.get("nope") is None
    assert r.raw_response is None and r.tool_calls is None and not r.has_tool_calls() and r.image_paths is None
    d = r.to_dict()
    assert d["usage"]["completion_tokens"] == 6 and "raw_response" not in d


def test_capabilities_of_text_and_vision_models(tiny_llm, vision_model):
    from collections.abc import Mapping

    caps = tiny_llm.get_capabilities()
    assert isinstance(caps, Mapping)
    assert caps.get(ModelCapability.VISION) is False and ModelCapability.VISION not in caps
    assert caps[ModelCapability.STREAMING] is True and caps["supports_async"] is True
    assert caps.get(ModelCapability.MAX_TOKENS) == 40960  # the tiny preset's max_position_embeddings
    assert caps.get(ModelCapability.FUNCTION_CALLING) is True and caps.get(ModelCapability.JSON_MODE) is True
    assert caps.get(ModelCapability.EMBEDDINGS) is False and caps.get(ModelCapability.AUDIO_PROCESSING) is False
    assert set(caps) >= {ModelCapability.TEXT, ModelCapability.CHAT_HISTORY, ModelCapability.PROMPT_CACHE}
    assert caps.to_dict()["vision"] is False
    with create_llm("mlx", model=str(vision_model)) as vlm:
        vcaps = vlm.get_capabilities()
        assert vcaps.get(ModelCapability.VISION) is True and "supports_vision" in vcaps
        assert ModelCapability.VIDEO in vcaps


# ---------------------------------------------------------------------------------------------- generate
def test_generate_positional_order_and_aliases(tiny_llm, tmp_path):
    from abstractllm.testing.media import png_bytes

    a = tiny_llm.generate(PROMPT, "Be brief.", None, False, None, max_tokens=5)
    b = tiny_llm.generate(prompt=PROMPT, system_prompt="Be brief.", max_tokens=5)
    assert a.token_ids == b.token_ids
    chunks = list(tiny_llm.generate(PROMPT, "Be brief.", None, True, max_tokens=5))
    assert [t for c in chunks for t in c.token_ids] == a.token_ids
    assert asyncio.run(tiny_llm.agenerate(PROMPT, "Be brief.", max_tokens=5)).token_ids == a.token_ids
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    for kwargs in ({"media": [str(img)]}, {"image": str(img)}, {"images": [str(img)]}):
        with pytest.raises(UnsupportedFeatureError, match="text-only"):  # the images reached the check
            tiny_llm.generate("Describe.", **kwargs)
    r = tiny_llm.generate("What time is it?", None, None, False, [{"type": "function", "function": {"name": "t"}}],
                          tool_choice="required", max_tokens=80)
    assert [c.name for c in r.tool_calls] == ["t"] and r.finish_reason == "tool_calls"
    assert tiny_llm.generate(PROMPT, max_output_tokens=3).usage.completion_tokens == 3
    with pytest.raises(InvalidParameterError, match="max_output_tokens"):
        tiny_llm.generate(PROMPT, max_tokens=4, max_output_tokens=3)


def test_text_files_are_inlined_in_the_prompt(tiny_llm, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\nShip on Friday.\n", encoding="utf-8")
    table = tmp_path / "data.csv"
    table.write_text("a,b\n1,2\n", encoding="utf-8")
    request = tiny_llm._prepare("Summarize.", None, [str(notes), table], None, {})
    text = request.messages[-1].text
    assert text == "Summarize.\n\n===== notes.md =====\n# Plan\nShip on Friday.\n\n\n===== data.csv =====\na,b\n1,2\n"
    assert not request.messages[-1].images
    inlined = tiny_llm.generate(messages=[{"role": "user", "content": text}], max_tokens=4)
    assert tiny_llm.generate("Summarize.", files=[str(notes), table], max_tokens=4).token_ids == inlined.token_ids


@pytest.mark.parametrize("case", ["missing", "too_large", "not_utf8", "audio"])
def test_bad_files_are_typed_errors_and_the_provider_goes_on(tiny_llm, tmp_path, case):
    from abstractllm.testing.media import wav_bytes

    path = tmp_path / ("sound.wav" if case == "audio" else "notes.txt")
    if case == "too_large":
        path.write_text("x" * 2000)
    elif case == "not_utf8":
        path.write_bytes(b"\xff\xfe\x00bad")
    elif case == "audio":
        path.write_bytes(wav_bytes())
    expected = UnsupportedFeatureError if case == "audio" else FileProcessingError
    with pytest.raises(expected) as info:
        tiny_llm.generate("Read it.", files=[str(path)], max_text_file_bytes=1000)
    assert info.value.provider == "mlx"
    assert tiny_llm.generate("Hi", max_tokens=2).usage.completion_tokens == 2


# ---------------------------------------------------------------------------------------------- config API
def test_config_api_and_reload_on_a_model_change(tiny_model, llama_model):
    with create_llm("mlx", model=str(llama_model), temperature=0.0, max_tokens=5) as llama:
        expected_llama = llama.generate(PROMPT).token_ids
    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=5)
    try:
        tiny_ids = llm.generate(PROMPT).token_ids
        config = llm.get_config()
        assert config["model"] == str(tiny_model) and config["max_tokens"] == 5 and config["top_p"] == 1.0
        llm.set_config(max_tokens=3)
        assert llm.get_param(ModelParameter.MAX_TOKENS) == 3 and len(llm.generate(PROMPT).token_ids) == 3
        with pytest.raises(InvalidParameterError):
            llm.update_config({"max_tokens": 0})
        with pytest.raises(InvalidParameterError):
            llm.update_config({"not_a_key": 1})
        assert llm.get_param("max_tokens") == 3  # a refused update changes nothing
        llm.update_config({ModelParameter.MODEL: str(llama_model), "max_tokens": 5})
        assert llm.get_capabilities() is not None and llm.get_model_info()["model_type"] == "llama"
        assert llm.generate(PROMPT).token_ids == expected_llama  # the next call reloaded the model
        llm.update_config({"model": str(tiny_model)})
        assert llm.generate(PROMPT).token_ids == tiny_ids
    finally:
        llm.close()


def test_default_system_prompt_from_the_config(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=5,
                    **{ModelParameter.SYSTEM_PROMPT: "You are a pirate."}) as llm:
        default = llm.generate(PROMPT)
        explicit = llm.generate(PROMPT, "You are a pirate.")
        other = llm.generate(PROMPT, "You are a judge.")
        own_system = llm.generate(messages=[{"role": "system", "content": "You are a judge."},
                                            {"role": "user", "content": PROMPT}])
    assert default.token_ids == explicit.token_ids
    assert other.token_ids == own_system.token_ids  # a system message of the caller's wins over the default


# ---------------------------------------------------------------------------------------------- MLX implements
@pytest.mark.parametrize("params", [
    {"frequency_penalty": 1.5}, {"presence_penalty": 1.5}, {"frequency_penalty": 0.8, "presence_penalty": -0.5},
    {"logit_bias": {"65": 4.0, 120: -100}},
], ids=["frequency", "presence", "both", "logit_bias"])
def test_penalties_and_logit_bias_match_raw_mlx_lm(tiny_model, params):
    ids = raw_prompt_ids(tiny_model, chat(PROMPT))
    raw_kwargs = {k: ({int(t): b for t, b in v.items()} if k == "logit_bias" else v) for k, v in params.items()}
    raw = raw_generate(tiny_model, ids, max_tokens=24, **raw_kwargs)
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, prompt_cache_bytes=0) as llm:
        got = llm.generate(PROMPT, max_tokens=24, **params)
        plain = llm.generate(PROMPT, max_tokens=24)
    assert got.token_ids == raw.tokens
    assert got.token_ids != plain.token_ids  # the processors changed the greedy path


def test_logit_bias_forces_a_token_and_is_validated(tiny_llm):
    r = tiny_llm.generate(PROMPT, max_tokens=5, logit_bias={77: 100})
    assert r.token_ids == [77] * 5
    with pytest.raises(InvalidParameterError, match="vocabulary"):
        tiny_llm.generate(PROMPT, logit_bias={10_000_000: 1})
    with pytest.raises(InvalidParameterError):
        tiny_llm.generate(PROMPT, logit_bias={"x": 1})
    with pytest.raises(InvalidParameterError):
        tiny_llm.generate(PROMPT, frequency_penalty=3)


def test_load_in_4bit_and_8bit_quantize_on_load(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, load_in_4bit=True) as q4, \
            create_llm("mlx", model=str(tiny_model), temperature=0.0, quantize=4) as ref:
        assert q4.generate(PROMPT, max_tokens=6).token_ids == ref.generate(PROMPT, max_tokens=6).token_ids
        assert q4.get_model_info()["quantize_on_load"] == 4
    with create_llm("mlx", model=str(tiny_model), load_in_8bit=True) as q8:
        assert q8.get_model_info()["quantize_on_load"] == 8
    with pytest.raises(InvalidParameterError, match="say different things"):
        create_llm("mlx", model=str(tiny_model), load_in_4bit=True, quantize=8)


def test_device_config(tiny_model):
    import mlx.core as mx

    with create_llm("mlx", model=str(tiny_model), temperature=0.0, device="cpu", max_tokens=3) as llm:
        assert llm.generate("Hi").usage.completion_tokens == 3
    with pytest.raises(InvalidParameterError, match="Did you mean"):
        create_llm("mlx", model=str(tiny_model), device="cpuu")
    if not mx.is_available(mx.gpu):
        with create_llm("mlx", model=str(tiny_model), device="mps") as llm:
            with pytest.raises(UnsupportedFeatureError, match="no GPU backend"):
                llm.generate("Hi", max_tokens=2)


def test_cache_dir_is_where_hub_ids_are_found(tiny_model, tmp_path, monkeypatch):
    from test_text_loading import _fake_hub_cache

    _fake_hub_cache(tmp_path / "my-cache", "tiny-org/tiny-model", tiny_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with create_llm("mlx", model="tiny-org/tiny-model", cache_dir=str(tmp_path / "my-cache"), max_tokens=2) as llm:
        assert llm.generate("Hi").usage.completion_tokens == 2
    with create_llm("mlx", model="tiny-org/tiny-model", cache_dir=str(tmp_path / "elsewhere")) as llm:
        with pytest.raises(AbstractLLMError, match="elsewhere"):
            llm.generate("Hi")


def test_context_limits(tiny_llm):
    n = tiny_llm.generate(PROMPT, max_tokens=1).usage.prompt_tokens
    assert tiny_llm.generate(PROMPT, max_tokens=2, max_input_tokens=n).usage.completion_tokens == 2
    with pytest.raises(ContextWindowExceededError) as info:
        tiny_llm.generate(PROMPT, max_input_tokens=n - 1)
    assert info.value.content_length == n and info.value.context_window == n - 1
    with pytest.raises(ContextWindowExceededError):
        tiny_llm.generate(PROMPT, max_tokens=10, context_window=n + 9)
    assert tiny_llm.generate(PROMPT, max_tokens=10, context_window=n + 10).usage.completion_tokens == 10


def test_config_changes_reach_the_loaded_model_and_image_is_a_call_argument(tiny_model):
    from abstractllm import MemoryLimitError

    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=2) as llm:
        llm.generate("Hi")  # loaded
        llm.update_config({"memory_limit": "80MB"})  # below what the loaded model already holds + the KV
        with pytest.raises(MemoryLimitError):
            llm.generate("Hi", max_tokens=1_000_000)
        llm.update_config({"memory_limit": None})
        assert llm.generate("Hi").usage.completion_tokens == 2
    with pytest.raises(InvalidParameterError, match="argument of generate"):
        create_llm("mlx", model=str(tiny_model), image="photo.png")


def test_an_empty_system_prompt_turns_the_configured_one_off(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=4, system_prompt="Be a pirate.") as llm:
        off = llm._prepare(PROMPT, "", None, None, {}).messages
        on = llm._prepare(PROMPT, None, None, None, {}).messages
    assert [m.role for m in off] == ["user"] and [m.role for m in on] == ["system", "user"]


def test_1x_exception_attributes():
    import abstractllm.exceptions as E

    err = E.InvalidParameterError("bad", param="temperature", value=-1)
    assert err.parameter == "temperature" and err.value == -1
    assert E.UnsupportedFeatureError("no", feature=ModelCapability.VISION).feature is ModelCapability.VISION
    f = E.FileProcessingError("x", details={"file_path": "/a.txt", "file_type": "text"})
    assert f.file_path == "/a.txt" and f.file_type == "text"
    assert issubclass(E.UnsupportedModelError, E.ModelLoadError)


# ---------------------------------------------------------------------------------------------- 1.x tools
def test_1x_tool_names_are_ours():
    import abstractllm.tools.core as core
    from abstractllm.tools import (ToolCall, ToolCallRequest, ToolCallResponse, ToolContext, ToolDefinition,
                                   ToolResult, register, tool)
    from abstractllm.types import Response, ToolCall as OurToolCall

    assert tool is register and ToolCall is OurToolCall and ToolCallRequest is ToolCallResponse
    assert core.ToolDefinition is ToolDefinition and ToolContext and ToolResult("c1", 8).success

    def calculator(a: float, b: float) -> float:
        """Add.

        Args:
            a: first
            b: second
        """
        return a + b

    d = ToolDefinition.from_function(calculator)
    assert d.to_dict()["input_schema"] == d.parameters and d.to_dict()["name"] == "calculator"
    assert ToolDefinition(name="c", input_schema={"type": "object", "properties": {}}).parameters["type"] == "object"
    # response.tool_calls: our list, and 1.x's ToolCallResponse (.tool_calls, .content)
    r = Response(content="ok", tool_calls=[OurToolCall("i", "calculator", {"a": 1, "b": 2})])
    assert r.tool_calls[0].name == "calculator" and r.tool_calls.tool_calls[0].name == "calculator"
    assert r.tool_calls.content == "ok" and r.has_tool_calls() and r.get_tools_executed() == []
    assert not Response(content="x", tool_calls=ToolCallRequest(tool_calls=[])).has_tool_calls()


def test_1x_tool_decorator_options_and_pydantic_fields():
    from pydantic import Field

    from abstractllm.tool_runner import ToolRunner
    from abstractllm.tools import ToolContext, tool
    from abstractllm.types import ToolCall

    @tool(retry_on_error=True, timeout=30.0, requires_context=True, when_to_use="for searches", tags=["web"])
    def search(query: str = Field(description="Search query", min_length=1),
               max_results: int = Field(default=10, ge=1, le=100), context: ToolContext = None) -> list:
        """Search."""
        return [query, max_results, context.tool_name]

    d = search.tool_definition
    props = d.parameters["properties"]
    assert set(props) == {"query", "max_results"} and d.parameters["required"] == ["query"]
    assert props["query"]["minLength"] == 1 and props["max_results"] == {"type": "integer", "minimum": 1,
                                                                         "maximum": 100, "default": 10}
    assert d.metadata["tags"] == ["web"] and "for searches" in d.description
    [msg] = ToolRunner([search], True).run([ToolCall("c", "search", {"query": "x"})])
    assert json.loads(msg.content) == ["x", 10, "search"]
    with pytest.raises(InvalidParameterError, match="Unknown tool option"):
        tool(retries=3)


def test_common_tools_stay_inside_their_root(tmp_path):
    from abstractllm.tools.common_tools import file_tools, list_files, read_file, set_root

    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / ".secret").write_text("key")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("no")
    (tmp_path / "link.txt").symlink_to(outside)
    read, listing, search = file_tools(tmp_path)
    assert read("a.txt") == "one\ntwo\n" and "a.txt" in listing(".") and "a.txt" in search("two")
    for bad in ("../" + outside.name, str(outside), "link.txt"):
        assert read(bad).startswith("Error:") and "outside" in read(bad)
    assert read(".secret").startswith("Error:") and ".secret" not in listing(".")
    set_root(tmp_path)
    try:
        assert read_file("a.txt", should_read_entire_file=False, start_line_one_indexed=2).strip() == "2: two"
        assert list_files("..").startswith("Error:")
    finally:
        set_root(None)


def test_session_runs_python_tools_by_default_and_keeps_1x_records(tiny_model):
    from abstractllm.session import Session
    from abstractllm.types import Response, ToolCall

    log = []

    def get_weather(city: str) -> dict:
        """Weather."""
        log.append(city)
        return {"city": city}

    class Scripted:  # a provider whose first reply calls the tool
        calls = 0

        def get_config(self):
            return {}

        def generate(self, messages=None, stream=False, **params):
            Scripted.calls += 1
            if Scripted.calls == 1:
                return Response(content="", tool_calls=[ToolCall("c1", "get_weather", {"city": "Oslo"})])
            return Response(content="sunny")

    s = Session(provider=Scripted(), tools=[get_weather], max_tool_calls=3)
    assert [t.name for t in s.tools] == ["get_weather"]
    r = s.generate("Weather?")
    assert log == ["Oslo"] and r.content == "sunny" and r.get_tools_executed() == ["get_weather"]
    assert s.messages[1].tool_results[0]["output"] == {"city": "Oslo"}
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant"]
    assert s.execute_tool_call(ToolCall("c2", "get_weather", {"city": "Rome"}))["output"] == {"city": "Rome"}
    Scripted.calls = 0
    events = list(Session(provider=_StreamingScripted(), tools=[get_weather]).generate("W?", stream=True))
    assert [e["type"] for e in events if isinstance(e, dict)] == ["tool_result"]
    assert "".join(e.content for e in events) == "sunny"  # the event reads as an empty chunk
    with pytest.warns(DeprecationWarning):
        Session(provider=Scripted(), tools=[get_weather]).generate_with_tools(prompt="again")


class _StreamingScripted:
    def __init__(self):
        self.calls = 0

    def get_config(self):
        return {}

    def generate(self, messages=None, stream=False, **params):
        from abstractllm.types import Response, ToolCall

        self.calls += 1
        if self.calls == 1:
            return iter([Response(content="", tool_calls=[ToolCall("c1", "get_weather", {"city": "Oslo"})])])
        return iter([Response(content="sun"), Response(content="ny")])


def test_1x_defaults_aliases_exceptions_and_capabilities():
    import warnings

    from abstractllm.exceptions import ContextWindowExceededError as CWE, ModelNotFoundError, UnsupportedFeatureError
    from abstractllm.interface import AbstractLLMInterface
    from abstractllm.media.factory import MediaFactory
    from abstractllm.providers.lmstudio_provider import LMStudioProvider
    from abstractllm.providers.ollama import OllamaProvider
    from abstractllm.providers.openai import OpenAIProvider

    assert OllamaProvider.__name__ == "OllamaProvider" and LMStudioProvider
    assert OpenAIProvider({"api_key": "x"}).config["model"] == "gpt-4o"
    e = InvalidParameterError("temperature", 5)
    assert (e.parameter, e.value) == ("temperature", 5) and "temperature" in str(e)
    assert CWE(100, 200).content_length == 200 and UnsupportedFeatureError("vision").feature == "vision"
    assert ModelNotFoundError("org/model", "not cached").model_name == "org/model"
    caps = AbstractLLMInterface.get_capabilities(None)
    assert caps[ModelCapability.FUNCTION_CALLING] is False and json.dumps(caps)
    assert MediaFactory.from_source("t.csv").media_type == "tabular"
    llm = OpenAIProvider({"api_key": "x", "base_url": "http://127.0.0.1:9/v1", "max_retries": 0, "timeout": 1})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(AbstractLLMError):
            llm.generate("hi", model="gpt-4")
    assert any(issubclass(w.category, DeprecationWarning) and "ignored" in str(w.message) for w in seen)
