"""Request bodies of the OpenAI-compatible endpoints, as pydantic models (FastAPI's way).

Every mistake is a 400 in the OpenAI error shape naming the ``param`` (never FastAPI's 422): unknown fields
are refused, not ignored; a few OpenAI fields this server has no use for are accepted and ignored
(``user``, ``metadata``, ``store``, ...); fields it cannot honour are accepted only at their neutral value
(``echo: false``, ``best_of: 1``). Sampling values are validated by the provider (``abstractllm.params``),
so the provider's own error (with its ``param``) is what the client sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import APIError

__all__ = ["ParsedRequest", "parse_json", "parse_chat", "parse_completion", "parse_vlm_generate",
           "ChatCompletionRequest", "CompletionRequest", "validation_error"]


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

    def to_provider(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class _StreamOptions(_Body):
    include_usage: bool = False
    include_obfuscation: bool | None = None


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
    tool_choice: Union[str, dict[str, Any], None] = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    def to_parsed(self) -> ParsedRequest:
        params: dict[str, Any] = _one_max_tokens(("max_completion_tokens", self.max_completion_tokens),
                                                 ("max_tokens", self.max_tokens))
        if self.logprobs:
            params["logprobs"] = True
        if self.top_logprobs is not None:
            params["top_logprobs"] = self.top_logprobs
        if self.tools:
            params["tools"] = self.tools
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice
        if self.response_format is not None and self.response_format != {"type": "text"}:
            params["response_format"] = self.response_format
        return self.parsed([m.to_provider() for m in self.messages], params)


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
