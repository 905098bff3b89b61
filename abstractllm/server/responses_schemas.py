"""OpenAI Responses API request bodies (``POST /v1/responses``) as pydantic models, and their translation
into the provider's chat messages and parameters.

Accepted: ``input`` as a string or a list of items: messages (``role`` ``user``, ``system``, ``developer`` or
``assistant``; ``content`` a string or parts: ``input_text`` and ``input_image`` with an ``image_url`` (data URI
or http(s) URL) from the user side, ``output_text`` / ``refusal`` from the assistant), ``function_call`` and
``function_call_output`` items, and ``reasoning`` items sent back (their ``reasoning_text`` content, else their
summary, is the reasoning of the assistant turn that follows); ``instructions``, ``max_output_tokens``,
``temperature``, ``top_p``, ``stream``, ``text.format`` (``text``, ``json_object``, ``json_schema``), function
``tools`` and ``tool_choice``, ``previous_response_id``, ``store``, ``reasoning.effort`` (as chat completions'
``reasoning_effort``: ``thinking`` where the model can take it; ``reasoning.summary`` is accepted and ignored);
the extension fields ``top_k``, ``min_p``, ``repetition_penalty``, ``seed``, ``thinking``, ``thinking_budget``,
``chat_template_kwargs``. OpenAI fields with no effect here are accepted and ignored (``metadata``, ``user``,
``include``, ``parallel_tool_calls``, ``service_tier``, ``truncation``, ``prompt_cache_key``, ...). Anything
else (unknown fields, item or part types, hosted tools, file inputs, a part in the wrong role, a
``function_call_output`` whose ``call_id`` no earlier ``function_call`` made) is a 400 in OpenAI's error shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from .errors import APIError
from .reasoning import effort_thinking
from .schemas import ParsedRequest, reasoning_params, validation_error

__all__ = ["ResponsesRequest", "parse_responses", "Conversation"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _InputText(_Body):
    type: Literal["input_text"]
    text: str


class _InputImage(_Body):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class _InputFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_file"]


class _OutputText(_Body):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: Any = None


class _Refusal(_Body):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[Union[_InputText, _InputImage, _InputFile, _OutputText, _Refusal], Field(discriminator="type")]
_USER_SIDE = ("input_text", "input_image", "input_file")


class _MessageItem(_Body):
    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: Union[str, list[Part]]
    id: str | None = None
    status: str | None = None


class _FunctionCall(_Body):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str = "{}"
    id: str | None = None
    status: str | None = None


class _FunctionCallOutput(_Body):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: Union[str, list[Part]]
    id: str | None = None
    status: str | None = None


class _ReasoningText(_Body):
    type: Literal["reasoning_text"]
    text: str


class _SummaryText(_Body):
    type: Literal["summary_text"]
    text: str


class _ReasoningItem(_Body):
    """A reasoning item of an earlier reply, sent back (``id`` and ``summary`` required, as in OpenAI's API)."""

    type: Literal["reasoning"]
    id: str
    summary: list[_SummaryText]
    content: list[_ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    def text(self) -> str:
        parts = self.content if self.content else self.summary
        return "".join(p.text for p in parts)


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type") or ("message" if "role" in value else None)
    return getattr(value, "type", None) or "message"


Item = Annotated[Union[Annotated[_MessageItem, Tag("message")], Annotated[_FunctionCall, Tag("function_call")],
                       Annotated[_FunctionCallOutput, Tag("function_call_output")],
                       Annotated[_ReasoningItem, Tag("reasoning")]], Discriminator(_item_kind)]


class _FunctionTool(_Body):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def to_chat(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description or "",
                                                 "parameters": self.parameters or {"type": "object", "properties": {}}}}


class _NamedFunction(_Body):
    type: Literal["function"]
    name: str


class _FormatText(_Body):
    type: Literal["text"]


class _FormatJSONObject(_Body):
    type: Literal["json_object"]


class _FormatJSONSchema(_Body):
    type: Literal["json_schema"]
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class _TextConfig(_Body):
    format: Optional[Annotated[Union[_FormatText, _FormatJSONObject, _FormatJSONSchema],
                               Field(discriminator="type")]] = None
    verbosity: Any = None


class _Reasoning(_Body):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class Conversation:
    """The chat messages of a request (``messages``, ``instructions`` first) and what a stored reply
    continues (``history``: the same without ``instructions``)."""

    def __init__(self, messages: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.messages, self.history = messages, history


class ResponsesRequest(_Body):
    """``POST /v1/responses``."""

    model: str | None = None
    input: Union[str, list[Item]]
    instructions: str | None = None
    max_output_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    min_p: Any = None
    repetition_penalty: Any = None
    seed: Any = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    text: _TextConfig | None = None
    tools: list[_FunctionTool] | None = None
    tool_choice: Union[Literal["auto", "none", "required"], _NamedFunction, None] = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = True
    metadata: dict[str, Any] | None = None
    user: Any = None
    service_tier: Any = None
    truncation: Literal["disabled", "auto"] | None = None
    reasoning: _Reasoning | None = None
    thinking: Any = None  # extensions (values checked by the provider)
    thinking_budget: Any = None
    chat_template_kwargs: Any = None
    include: list[str] | None = None
    background: Literal[False] | None = None
    prompt_cache_key: Any = None
    safety_identifier: Any = None
    max_tool_calls: Any = None
    top_logprobs: Literal[0] | None = None

    def params(self) -> dict[str, Any]:
        """The provider's parameters (values checked by the provider)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
        out: dict[str, Any] = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        if self.max_output_tokens is not None:
            out["max_tokens"] = self.max_output_tokens
        if self.tools:
            out["tools"] = [t.to_chat() for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice if isinstance(self.tool_choice, str) else self.tool_choice.name
        fmt = self.text.format if self.text is not None else None
        if isinstance(fmt, _FormatJSONObject):
            out["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, _FormatJSONSchema):
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}}
        out.update(reasoning_params(self))
        return out

    def conversation(self, previous: list[dict[str, Any]] | None) -> Conversation:
        """The conversation: ``previous`` (a stored response's) continued by this request's ``input``."""
        history = [dict(m) for m in previous or []]
        called = {c["id"] for m in history for c in m.get("tool_calls") or []}
        items = [_MessageItem(role="user", content=self.input)] if isinstance(self.input, str) else self.input
        thought: str | None = None  # a reasoning item's text, for the assistant turn that follows it
        for i, item in enumerate(items):
            if isinstance(item, _ReasoningItem):
                thought = (thought or "") + item.text()
                continue
            _append(history, item, i, called)
            assistant = isinstance(item, _FunctionCall) or (isinstance(item, _MessageItem) and item.role == "assistant")
            if thought and assistant:
                turn = history[-1]
                turn["reasoning_content"] = turn.get("reasoning_content", "") + thought
            thought = None  # a reasoning item not followed by the assistant's turn has nothing to go with
        system = [{"role": "system", "content": self.instructions}] if self.instructions else []
        return Conversation(system + history, history)

    def to_parsed(self, previous: list[dict[str, Any]] | None) -> tuple[ParsedRequest, Conversation]:
        convo = self.conversation(previous)
        parsed = ParsedRequest(messages=convo.messages, params=self.params(), stream=bool(self.stream),
                               model=self.model, max_tokens_param="max_output_tokens",
                               soft_thinking=effort_thinking(self.reasoning.effort if self.reasoning else None))
        return parsed, convo


def _append(history: list[dict[str, Any]], item: Any, i: int, called: set[str]) -> None:
    where = f"input[{i}]"
    if isinstance(item, _FunctionCall):
        try:
            arguments = json.loads(item.arguments) if item.arguments.strip() else {}
        except ValueError as exc:
            raise APIError(400, f"{where}: the function_call's arguments are not JSON: {exc}.", param="input") from None
        if not isinstance(arguments, dict):
            raise APIError(400, f"{where}: the function_call's arguments must be a JSON object.", param="input")
        call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": arguments}}
        called.add(item.call_id)
        last = history[-1] if history else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
            last["tool_calls"] = [*last["tool_calls"], call]  # consecutive calls: one assistant turn
        else:
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
        return
    if isinstance(item, _FunctionCallOutput):
        if item.call_id not in called:
            raise APIError(400, f"{where}: function_call_output answers call_id {item.call_id!r}, which no earlier "
                           "function_call made.", param="input")
        output = item.output if isinstance(item.output, str) else "\n".join(_texts(item.output, "user", where))
        history.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
        return
    role = "system" if item.role == "developer" else item.role
    if isinstance(item.content, str):
        history.append({"role": role, "content": item.content})
    elif item.role == "assistant":
        history.append({"role": "assistant", "content": "".join(_texts(item.content, "assistant", where))})
    else:
        history.append({"role": role, "content": _user_parts(item.content, where)})


def _check_side(part: Any, side: str, where: str) -> None:
    user_part = part.type in _USER_SIDE
    if (side == "assistant") == user_part:
        expected = "output_text or refusal" if side == "assistant" else "input_text or input_image"
        raise APIError(400, f"{where}: a '{part.type}' part cannot be in a {side} message (expected {expected}).",
                       param="input")
    if isinstance(part, _InputFile):
        raise APIError(400, f"{where}: input_file parts are not supported by this server.", param="input")


def _texts(parts: list[Any], side: str, where: str) -> list[str]:
    out = []
    for part in parts:
        _check_side(part, side, where)
        if isinstance(part, _InputImage):
            raise APIError(400, f"{where}: images are not supported in a function_call_output here; send them in "
                           "a user message.", param="input")
        out.append(part.refusal if isinstance(part, _Refusal) else part.text)
    return out


def _user_parts(parts: list[Any], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        _check_side(part, "user", where)
        if isinstance(part, _InputText):
            out.append({"type": "text", "text": part.text})
        elif part.image_url is None:
            raise APIError(400, f"{where}: input_image needs an 'image_url' (a data: URI or an http(s) URL): this "
                           "server has no Files API for 'file_id'.", param="input")
        else:
            out.append({"type": "image_url", "image_url": {"url": part.image_url}})
    return out


def parse_responses(data: dict[str, Any]) -> ResponsesRequest:
    """``POST /v1/responses`` (400 naming the first offending field)."""
    try:
        return ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
