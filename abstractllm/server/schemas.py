"""Request bodies of the OpenAI-compatible endpoints, as pydantic models (FastAPI's way).

Every mistake is a 400 in the OpenAI error shape naming the ``param`` (never FastAPI's 422): unknown fields
are refused, not ignored; a few OpenAI fields this server has no use for are accepted and ignored
(``user``, ``metadata``, ``store``, ...); fields it cannot honour are accepted only at their neutral value
(``echo: false``, ``best_of: 1``). Sampling values are validated by the provider (``abstractllm.params``),
so the provider's own error (with its ``param``) is what the client sees.

Reasoning models (``reasoning``): ``reasoning_effort`` ("none", "minimal", "low", "medium", "high", "xhigh")
asks for ``thinking`` where the model can take it (ignored by a model that does not reason); the extensions
``thinking``, ``thinking_budget`` and ``chat_template_kwargs`` go to the provider as they are. Assistant messages
sent back may carry their reasoning as ``reasoning_content``, ``reasoning`` or ``thinking``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import APIError
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


def validation_error(exc: ValidationError) -> APIError:
    """A pydantic validation error as a 400 naming the first offending field."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    param = loc[0] if loc else None
    where = ".".join(loc) or "body"
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {where}", param=loc[-1] if loc else None,
                        code="invalid_value")
    return APIError(400, f"Invalid '{where}': {first.get('msg')}.", param=param, code="invalid_value")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: Union[str, dict[str, Any]] = "{}"


class _ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: Literal["function"] = "function"
    function: _ToolCallFunction


class ChatMessage(BaseModel):
    """One message; fields a client sends back from an earlier reply (``refusal``, ``audio``) are ignored."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[Any], None] = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: Any = None  # an earlier reply's reasoning, a string under any of the three names (other
    reasoning: Any = None  # shapes some clients send back, such as reasoning objects, are ignored)
    thinking: Any = None

    def to_provider(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        reasoning = next((r for r in (self.reasoning_content, self.reasoning, self.thinking) if isinstance(r, str)),
                         None)
        if reasoning is not None and self.role == "assistant":
            out["reasoning_content"] = reasoning
        return out


class _StreamOptions(_Body):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class _FunctionName(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


class _AllowedTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
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
                             n=self.n, model=self.model)


def _one_max_tokens(*given: tuple[str, Any]) -> dict[str, Any]:
    values = [(name, v) for name, v in given if v is not None]
    if len({json.dumps(v) for _, v in values}) > 1:
        raise APIError(400, f"Give one of {' or '.join(n for n, _ in given)}, not different values for both.",
                       param=given[0][0], code="invalid_value")
    return {"max_tokens": values[0][1]} if values else {}


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

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
        tools, choice = self.tools, self.tool_choice
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
        parsed = self.parsed([m.to_provider() for m in self.messages], params)
        parsed.soft_thinking = effort_thinking(self.reasoning_effort)
        return parsed


def reasoning_params(body: Any) -> dict[str, Any]:
    """The reasoning extensions of a request body (``thinking``, ``thinking_budget``, ``chat_template_kwargs``),
    passed to the provider as they are."""
    names = ("thinking", "thinking_budget", "chat_template_kwargs")
    return {k: getattr(body, k) for k in names if getattr(body, k, None) is not None}


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: the prompt is sent as one user message through the chat template."""

    prompt: Union[str, list[str]]
    max_tokens: Any = 16  # OpenAI's default for completions
    logprobs: int | None = None  # the legacy API: how many alternatives
    echo: Literal[False] = False
    best_of: Literal[1] | None = None
    suffix: Literal[""] | None = None

    def to_parsed(self) -> ParsedRequest:
        prompt = self.prompt[0] if isinstance(self.prompt, list) and len(self.prompt) == 1 else self.prompt
        if not isinstance(prompt, str):
            raise APIError(400, "'prompt' must be a string (batches of prompts are not supported).", param="prompt",
                           code="invalid_value")
        params: dict[str, Any] = {"max_tokens": self.max_tokens} if self.max_tokens is not None else {}
        if self.logprobs is not None:
            params.update(logprobs=True, top_logprobs=self.logprobs)
        return self.parsed([{"role": "user", "content": prompt}], params)


class _VLMGenerate(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_new_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    seed: Any = None
    stop: Any = None
    model: str | None = None


def _parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_chat(data: dict[str, Any]) -> ParsedRequest:
    """``POST /v1/chat/completions``."""
    return _parse(ChatCompletionRequest, data).to_parsed()


def parse_completion(data: dict[str, Any]) -> ParsedRequest:
    """``POST /v1/completions``."""
    return _parse(CompletionRequest, data).to_parsed()


def parse_vlm_generate(data: dict[str, Any]) -> ParsedRequest:
    """``POST /api/v1/generate``: ``{messages, max_new_tokens, temperature, top_p}``."""
    body = _parse(_VLMGenerate, data)
    params = {k: getattr(body, k) for k in ("temperature", "top_p", "top_k", "seed", "stop") if getattr(body, k) is not None}
    if body.max_new_tokens is not None:
        params["max_tokens"] = body.max_new_tokens
    return ParsedRequest(messages=[m.to_provider() for m in body.messages], params=params)
