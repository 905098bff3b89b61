"""Request bodies of the OpenAI-compatible endpoints, as pydantic models (FastAPI's way).

Every mistake is a 400 in the OpenAI error shape naming the ``param`` (never FastAPI's 422). Every documented
field is accepted; those the server cannot honour (``user``, ``metadata``, ``store``, ``prompt_cache_key``,
``safety_identifier``, ``verbosity``, ``modalities``, ``audio``, ``prediction``, ``web_search_options``,
``echo``, ``best_of``, ``suffix``, tools of another type than ``function``, ...) are ignored and listed in the
``x-abstractllm-ignored`` header, and so are unknown fields unless ``--strict-fields`` (``fields.py``).
The legacy ``functions`` / ``function_call`` are the tools and ``tool_choice`` they became; a request that
uses them gets its call back as ``message.function_call`` (finish reason ``function_call``), and assistant
``function_call`` / ``function`` role messages sent back are a tool call and its result. Sampling values are
validated by the provider (``abstractllm.params``), so the provider's own error (with its ``param``) is what
the client sees.

Reasoning models (``reasoning``): ``reasoning_effort`` ("none", "minimal", "low", "medium", "high", "xhigh")
asks for ``thinking`` where the model can take it (ignored by a model that does not reason); the extensions
``thinking``, ``thinking_budget`` and ``chat_template_kwargs`` go to the provider as they are. Assistant messages
sent back may carry their reasoning as ``reasoning_content``, ``reasoning`` or ``thinking``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import Field, ValidationError, field_validator

from .errors import APIError
from .fields import Body, note_ignored, parse_model
from .fields import validation_error as _validation_error
from .reasoning import effort_thinking

__all__ = ["ParsedRequest", "parse_json", "parse_chat", "parse_completion", "parse_vlm_generate",
           "ChatCompletionRequest", "CompletionRequest", "AllowedToolChoice", "validation_error",
           "reasoning_params"]


@dataclass
class ParsedRequest:
    """What an endpoint hands to the provider."""

    messages: list[Any]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    model: str | None = None
    max_tokens_param: str = "max_tokens"  # how the request's API names max_tokens (in error messages)
    soft_thinking: Any = None  # a ``thinking`` applied where the served model can take it (``reasoning``)
    reasoning_display: str = "shown"  # the reply's reasoning: "shown", "hidden" or "omitted" (its text left out)
    legacy_functions: bool = False  # chat: the request used ``functions``: calls come back as ``function_call``
    max_tokens_asked: Any = None  # the request's own max_tokens (before the server's default or clamp)


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    return data


def validation_error(exc: ValidationError, data: Any = None) -> APIError:
    """A pydantic validation error as a 400 naming the offending field (``fields.validation_error``)."""
    return _validation_error(exc, data)


_Body = Body


class _Lenient(Body):
    """Objects clients echo back from an earlier reply: their unknown keys are ignored even with
    ``--strict-fields``."""

    _lenient = True


class _ToolCallFunction(_Lenient):
    name: str
    arguments: Union[str, dict[str, Any]] = "{}"

    def to_provider(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


class _ToolCall(_Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: _ToolCallFunction
    index: Any = None  # streamed deltas put together by some clients keep it

    def to_provider(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": self.function.to_provider()}


class ChatMessage(_Lenient):
    """One message; what clients send back from an earlier reply (``refusal``, ``audio``, ``annotations``) is
    ignored. ``function`` (legacy) is a tool's result, and an assistant ``function_call`` a tool call."""

    _ignored = {"audio": None, "refusal": None, "annotations": ([],)}
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[Any], None] = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: _ToolCallFunction | None = None  # legacy: the assistant's call
    reasoning_content: Any = None  # an earlier reply's reasoning, a string under any of the three names (other
    reasoning: Any = None  # shapes some clients send back, such as reasoning objects, are ignored)
    thinking: Any = None
    refusal: Any = None
    audio: Any = None
    annotations: Any = None

    def to_provider(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_provider() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        reasoning = next((r for r in (self.reasoning_content, self.reasoning, self.thinking) if isinstance(r, str)),
                         None)
        if reasoning is not None and self.role == "assistant":
            out["reasoning_content"] = reasoning
        return out


def _provider_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages for the provider; legacy assistant ``function_call`` turns become a tool call (with an id
    made here) and ``function`` messages its result (matched by name, else the last call)."""
    out: list[dict[str, Any]] = []
    legacy: dict[str, str] = {}  # function name -> id of its last legacy call
    last_id: str | None = None
    for i, m in enumerate(messages):
        if m.role == "assistant" and m.function_call is not None and not m.tool_calls:
            msg = m.to_provider()
            last_id = legacy[m.function_call.name] = f"call_legacy_{i}"
            msg["tool_calls"] = [{"id": last_id, "type": "function", "function": m.function_call.to_provider()}]
            msg["content"] = m.content or None
            out.append(msg)
        elif m.role == "function":
            call_id = legacy.get(m.name or "", last_id)
            if call_id is None:
                raise APIError(400, f"messages.{i}: a 'function' message answers an assistant 'function_call', and "
                               "no earlier message made one.", param="messages", code="invalid_value")
            out.append({"role": "tool", "tool_call_id": call_id, "content": m.content})
        else:
            out.append(m.to_provider())
    return out


class _StreamOptions(_Body):
    _ignored = {"include_obfuscation": False}
    include_usage: bool = False
    include_obfuscation: bool | None = None


class _FunctionName(_Lenient):
    name: str


class _AllowedTool(_Lenient):
    type: Literal["function"] = "function"
    function: _FunctionName


class _AllowedTools(_Body):
    mode: Literal["auto", "required"]
    tools: list[_AllowedTool] = Field(min_length=1)


class AllowedToolChoice(_Body):
    """``tool_choice: {"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}``: the model may call only
    the listed tools (``mode`` ``"required"``: it must call one of them). OpenAI keeps every tool in the
    prompt and restricts the calls; here the model is shown only the allowed tools (as clients that cannot
    send ``allowed_tools`` do by filtering their tools list), with ``tool_choice`` set to ``mode``."""

    type: Literal["allowed_tools"]
    allowed_tools: _AllowedTools

    def select(self, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The allowed subset of ``tools``, in their order; a 400 naming ``tool_choice`` for a name that
        is not one of ``tools``."""
        names = {t.function.name for t in self.allowed_tools.tools}
        known = {_tool_name(t) for t in tools or []}
        unknown = sorted(names - known)
        if unknown:
            raise APIError(400, f"tool_choice.allowed_tools names {', '.join(map(repr, unknown))}, which "
                           f"{'is' if len(unknown) == 1 else 'are'} not in 'tools'.", param="tool_choice",
                           code="invalid_value")
        return [t for t in tools or [] if _tool_name(t) in names]


def _forces_a_call(choice: Any) -> bool:
    """Whether ``tool_choice`` makes the reply a tool call ("required", or one tool by name)."""
    if isinstance(choice, dict):
        return choice.get("type") == "function" or "name" in choice
    return isinstance(choice, str) and choice not in ("auto", "none")


def _tool_name(tool: Any) -> Any:
    """The name of a tool as sent (``{"type": "function", "function": {"name"}}`` or the inner dict)."""
    if not isinstance(tool, dict):
        return None
    inner = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    return inner.get("name")


#: extension fields some OpenAI-compatible servers take (vLLM, llama.cpp), passed to the provider
_EXTENSIONS = ("top_k", "min_p", "repetition_penalty", "repetition_context_size", "min_tokens", "stop_token_ids",
               "priority")


class _Sampling(_Body):
    """The sampling fields of chat and completion requests (values checked by the provider)."""

    _ignored = {"user": None, "metadata": None, "store": False, "service_tier": ("auto", "default"),
                "prompt_cache_key": None, "prompt_cache_retention": None, "safety_identifier": None}

    model: str | None = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    min_p: Any = None
    repetition_penalty: Any = None
    repetition_context_size: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None
    logit_bias: Any = None
    seed: Any = None
    stop: Any = None
    min_tokens: Any = None
    stop_token_ids: Any = None
    priority: Any = None
    n: int = Field(default=1, ge=1)
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    user: Any = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None
    prompt_cache_key: Any = None  # the prefix cache serves repeated prefixes without a key
    prompt_cache_retention: Any = None
    safety_identifier: Any = None

    def sampling(self) -> dict[str, Any]:
        names = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias", "seed", "stop",
                 *_EXTENSIONS)
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def parsed(self, messages: list[Any], params: dict[str, Any]) -> ParsedRequest:
        stream = bool(self.stream)
        if self.stream_options is not None and not stream:
            raise APIError(400, "'stream_options' is only allowed with 'stream': true.", param="stream_options",
                           code="invalid_value")
        return ParsedRequest(messages=messages, params={**self.sampling(), **params}, stream=stream,
                             include_usage=bool(self.stream_options and self.stream_options.include_usage),
                             n=self.n, model=self.model, max_tokens_asked=params.get("max_tokens"))


def _one_max_tokens(*given: tuple[str, Any]) -> dict[str, Any]:
    values = [(name, v) for name, v in given if v is not None]
    if len({json.dumps(v) for _, v in values}) > 1:
        raise APIError(400, f"Give one of {' or '.join(n for n, _ in given)}, not different values for both.",
                       param=given[0][0], code="invalid_value")
    return {"max_tokens": values[0][1]} if values else {}


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    _ignored = {**_Sampling._ignored, "audio": None, "modalities": (["text"],), "prediction": None,
                "web_search_options": None, "verbosity": None, "parallel_tool_calls": True}
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Any = None
    max_completion_tokens: Any = None
    logprobs: bool | None = None
    top_logprobs: Any = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Union[str, dict[str, Any], AllowedToolChoice, None] = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    thinking: Any = None  # extensions (values checked by the provider)
    thinking_budget: Any = None
    chat_template_kwargs: Any = None
    functions: list[dict[str, Any]] | None = None  # legacy tools
    function_call: Union[Literal["none", "auto"], _FunctionName, None] = None  # legacy tool_choice
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    verbosity: Any = None

    @field_validator("tool_choice", mode="wrap")
    @classmethod
    def _allowed_tools(cls, value: Any, handler: Any) -> Any:
        """The ``allowed_tools`` form is checked here (its errors name its fields); the others by the
        provider."""
        if isinstance(value, dict) and value.get("type") == "allowed_tools":
            return AllowedToolChoice.model_validate(value)
        return handler(value)

    def to_parsed(self) -> ParsedRequest:
        """The provider's parameters. ``tool_choice: allowed_tools`` becomes the allowed tools and its mode.
        A ``response_format`` applies to a text reply (as OpenAI applies it), so it is not passed on when
        ``tool_choice`` makes the reply a tool call ("required" or a named tool)."""
        params: dict[str, Any] = _one_max_tokens(("max_completion_tokens", self.max_completion_tokens),
                                                 ("max_tokens", self.max_tokens))
        if self.logprobs:
            params["logprobs"] = True
        if self.top_logprobs is not None:
            params["top_logprobs"] = self.top_logprobs
        tools, choice = _function_tools(self.tools), self.tool_choice
        legacy = bool(self.functions) and not tools
        if self.functions:
            tools = (tools or []) + [{"type": "function", "function": f} for f in self.functions]
        if self.function_call is not None and choice is None:
            choice = self.function_call if isinstance(self.function_call, str) else \
                {"type": "function", "function": {"name": self.function_call.name}}
        if isinstance(choice, AllowedToolChoice):
            tools, choice = choice.select(tools), choice.allowed_tools.mode
        if tools:
            params["tools"] = tools
        if choice is not None:
            params["tool_choice"] = choice
        if self.response_format is not None and self.response_format != {"type": "text"}:
            if not (tools and _forces_a_call(choice)):
                params["response_format"] = self.response_format
        params.update(reasoning_params(self))
        parsed = self.parsed(_provider_messages(self.messages), params)
        parsed.soft_thinking = effort_thinking(self.reasoning_effort)
        parsed.legacy_functions = legacy
        return parsed


def _function_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The ``function`` tools; others (``custom``, ...) are ignored (``tools.<type>``)."""
    if tools is None:
        return None
    kept = []
    for tool in tools:
        kind = tool.get("type", "function")
        if kind == "function":
            kept.append(tool)
        else:
            note_ignored(f"tools.{kind}", "a tool type this server cannot run")
    return kept


def reasoning_params(body: Any) -> dict[str, Any]:
    """The reasoning extensions of a request body (``thinking``, ``thinking_budget``, ``chat_template_kwargs``),
    passed to the provider as they are."""
    names = ("thinking", "thinking_budget", "chat_template_kwargs")
    return {k: getattr(body, k) for k in names if getattr(body, k, None) is not None}


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: the prompt is sent as one user message through the chat template."""

    _ignored = {**_Sampling._ignored, "echo": False, "best_of": 1, "suffix": ""}
    prompt: Union[str, list[str]]
    max_tokens: Any = 16  # OpenAI's default for completions
    logprobs: int | None = None  # the legacy API: how many alternatives
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    def to_parsed(self) -> ParsedRequest:
        prompt = self.prompt[0] if isinstance(self.prompt, list) and len(self.prompt) == 1 else self.prompt
        if not isinstance(prompt, str):
            raise APIError(400, "'prompt' must be a string (batches of prompts are not supported).", param="prompt",
                           code="invalid_value")
        params: dict[str, Any] = {"max_tokens": self.max_tokens} if self.max_tokens is not None else {}
        if self.logprobs is not None:
            params.update(logprobs=True, top_logprobs=self.logprobs)
        parsed = self.parsed([{"role": "user", "content": prompt}], params)
        parsed.max_tokens_asked = self.max_tokens
        return parsed


class _VLMGenerate(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_new_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    seed: Any = None
    stop: Any = None
    model: str | None = None


def parse_chat(data: dict[str, Any], strict: bool = False) -> ParsedRequest:
    """``POST /v1/chat/completions`` (``strict``: unknown fields are a 400, ``--strict-fields``)."""
    return parse_model(ChatCompletionRequest, data, strict).to_parsed()


def parse_completion(data: dict[str, Any], strict: bool = False) -> ParsedRequest:
    """``POST /v1/completions``."""
    return parse_model(CompletionRequest, data, strict).to_parsed()


def parse_vlm_generate(data: dict[str, Any], strict: bool = False) -> ParsedRequest:
    """``POST /api/v1/generate``: ``{messages, max_new_tokens, temperature, top_p}``."""
    body = parse_model(_VLMGenerate, data, strict)
    params = {k: getattr(body, k) for k in ("temperature", "top_p", "top_k", "seed", "stop") if getattr(body, k) is not None}
    if body.max_new_tokens is not None:
        params["max_tokens"] = body.max_new_tokens
    return ParsedRequest(messages=_provider_messages(body.messages), params=params,
                         max_tokens_asked=body.max_new_tokens)
