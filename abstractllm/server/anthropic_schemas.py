"""Anthropic Messages API bodies (``POST /v1/messages``, ``POST /v1/messages/count_tokens``) as pydantic
models, their translation into the provider's chat messages and parameters, and the reply's shape.

Accepted: ``system`` (a string or text blocks), ``messages`` of ``user`` / ``assistant`` turns whose content
is a string or blocks (``text``; ``image`` with a ``base64`` or ``url`` source, the URL fetched by the server
under its private-address policy; ``tool_use`` in assistant turns; ``tool_result`` in user turns, answering
an earlier ``tool_use``), ``max_tokens`` (required, as in Anthropic's API), ``temperature``, ``top_p``,
``top_k``, ``stop_sequences``, ``stream``, ``tools`` (``name``, ``description``, ``input_schema``) and
``tool_choice`` (``auto``, ``any``, ``tool`` with a ``name``, ``none``), structured output as
``output_config.format`` (``{"type": "json_schema", "schema": ...}``: the reply is JSON of the schema), and
extended thinking:

- ``thinking: {"type": "enabled", "budget_tokens": N}``: the model thinks (``thinking=True``, a 400 naming the
  model if it cannot), for at most N tokens (``thinking_budget``; Anthropic's minimum of 1024 is not applied);
  ``{"type": "adaptive"}``: it thinks where it can, without a budget. ``output_config.effort`` (``low``,
  ``medium``, ``high``, ``max``) then gives the level. The reply starts with a ``thinking`` block
  (``{"type": "thinking", "thinking", "signature"}``; ``display: "omitted"`` leaves its text empty).
- ``{"type": "disabled"}`` (or ``between_tools``): thinking off where the model has a switch for it.
- without ``thinking``, the model does what it does by default, and its reasoning is left out of the reply.

The ``signature`` is opaque (an HMAC of the thinking under a per-process key) and is not checked when the block
comes back: assistant turns sent back with ``thinking`` blocks give their text to the model as that turn's
reasoning; ``redacted_thinking`` blocks are accepted and dropped.

``metadata``, ``service_tier``, ``speed``, ``cache_control`` marks and the SDK's routing fields
(``inference_geo``, ``workspace_id``, ...) are accepted and ignored. Anything else (unknown fields or block
types, blocks in the wrong role, a ``tool_result`` without its ``tool_use``) is a 400 in Anthropic's error
shape.

Usage follows Anthropic's meaning: ``input_tokens`` are the prompt tokens not read from the prompt cache,
``cache_read_input_tokens`` those that were (their sum is the prompt's length).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..types import Response
from .errors import APIError
from .reasoning import sign_thinking
from .schemas import ParsedRequest, validation_error

__all__ = ["MessagesRequest", "CountTokensRequest", "parse_messages", "parse_count_tokens", "message_body",
           "content_blocks", "thinking_block", "stop_of", "usage_of", "new_message_id"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextBlock(_Body):
    type: Literal["text"]
    text: str
    cache_control: Any = None
    citations: Any = None


class _Base64Source(_Body):
    type: Literal["base64"]
    media_type: str
    data: str


class _URLSource(_Body):
    type: Literal["url"]
    url: str


class ImageBlock(_Body):
    type: Literal["image"]
    source: Annotated[Union[_Base64Source, _URLSource], Field(discriminator="type")]
    cache_control: Any = None

    def to_part(self) -> dict[str, Any]:
        src = self.source
        url = src.url if isinstance(src, _URLSource) else f"data:{src.media_type};base64,{src.data}"
        return {"type": "image_url", "image_url": {"url": url}}


class ToolUseBlock(_Body):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    cache_control: Any = None


class ToolResultBlock(_Body):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Union[str, list[Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]]] = ""
    is_error: bool | None = None
    cache_control: Any = None

    def text(self, where: str) -> str:
        if isinstance(self.content, str):
            text = self.content
        else:
            if any(isinstance(b, ImageBlock) for b in self.content):
                raise APIError(400, f"{where}: images inside tool_result blocks are not supported by this server; "
                               "send them in a user text/image turn.", param="messages")
            text = "\n".join(b.text for b in self.content if isinstance(b, TextBlock))
        return f"Error: {text}" if self.is_error else text


class ThinkingBlock(_Body):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None  # not checked
    cache_control: Any = None


class RedactedThinkingBlock(_Body):
    type: Literal["redacted_thinking"]
    data: str
    cache_control: Any = None


Block = Annotated[Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock],
                  Field(discriminator="type")]


class AnthropicMessage(_Body):
    role: Literal["user", "assistant"]
    content: Union[str, list[Block]]


class _Tool(_Body):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: Any = None

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description or "",
                                                 "parameters": self.input_schema}}


class _ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    def to_provider(self) -> Any:
        if self.type == "tool":
            if not self.name:
                raise APIError(400, "tool_choice: {\"type\": \"tool\"} needs the tool's 'name'.", param="tool_choice")
            return self.name
        return {"auto": "auto", "any": "required", "none": "none"}[self.type]


class _Thinking(_Body):
    type: Literal["enabled", "adaptive", "disabled", "between_tools"]
    budget_tokens: int | None = Field(default=None, ge=0)
    display: Literal["summarized", "omitted"] | None = None

    @model_validator(mode="after")
    def _budget(self) -> "_Thinking":
        if self.type == "enabled" and self.budget_tokens is None:
            raise ValueError("thinking of type 'enabled' needs 'budget_tokens'")
        return self

    @property
    def on(self) -> bool:
        return self.type in ("enabled", "adaptive")


class _OutputFormat(_Body):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class _OutputConfig(_Body):
    effort: Any = None
    format: _OutputFormat | None = None


class _Conversation(_Body):
    """What both endpoints take: the conversation and its tools."""

    model: str | None = None
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: Union[str, list[TextBlock], None] = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    thinking: _Thinking | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The provider's chat messages (system first; tool results as ``tool`` messages)."""
        out: list[dict[str, Any]] = []
        system = self.system if isinstance(self.system, str) else "\n".join(b.text for b in self.system or [])
        if system:
            out.append({"role": "system", "content": system})
        called: set[str] = set()
        for i, m in enumerate(self.messages):
            if isinstance(m.content, str):
                out.append({"role": m.role, "content": m.content})
            elif m.role == "assistant":
                out.append(_assistant(m.content, i, called))
            else:
                out.extend(_user(m.content, i, called))
        return out

    def tool_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.tools:
            params["tools"] = [t.to_openai() for t in self.tools]
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice.to_provider()
        return params


def _assistant(blocks: list[Any], i: int, called: set[str]) -> dict[str, Any]:
    texts, calls, thoughts = [], [], []
    for j, b in enumerate(blocks):
        if isinstance(b, TextBlock):
            texts.append(b.text)
        elif isinstance(b, ThinkingBlock):
            thoughts.append(b.thinking)  # the signature is not checked
        elif isinstance(b, RedactedThinkingBlock):
            continue  # encrypted by another server: nothing to give the model
        elif isinstance(b, ToolUseBlock):
            called.add(b.id)
            calls.append({"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}})
        else:
            raise APIError(400, f"messages.{i}.content.{j}: an assistant turn cannot hold a '{b.type}' block "
                           "(images and tool results come from the user).", param="messages")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if any(thoughts):
        msg["reasoning_content"] = "".join(thoughts)
    return msg


def _user(blocks: list[Any], i: int, called: set[str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, b in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        if isinstance(b, ToolResultBlock):
            if b.tool_use_id not in called:
                raise APIError(400, f"{where}: tool_result answers tool_use_id {b.tool_use_id!r}, which no earlier "
                               "assistant tool_use block made.", param="messages")
            results.append({"role": "tool", "tool_call_id": b.tool_use_id, "content": b.text(where)})
        elif isinstance(b, TextBlock):
            parts.append({"type": "text", "text": b.text})
        elif isinstance(b, ImageBlock):
            parts.append(b.to_part())
        else:
            raise APIError(400, f"{where}: a user turn cannot hold a '{b.type}' block (tool calls and thinking come "
                           "from the assistant).", param="messages")
    return results + ([{"role": "user", "content": parts}] if parts else [])


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    max_tokens: int
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    output_config: _OutputConfig | None = None
    metadata: dict[str, Any] | None = None
    service_tier: Any = None
    cache_control: Any = None
    speed: Any = None
    diagnostics: Any = None
    inference_geo: Any = None
    user_profile_id: Any = None
    workspace_id: Any = None

    def to_parsed(self) -> ParsedRequest:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, **self.tool_params()}
        for name in ("temperature", "top_p", "top_k"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        if self.stop_sequences:
            params["stop"] = list(self.stop_sequences)
        fmt = self.output_config.format if self.output_config is not None else None
        if fmt is not None:
            params["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.schema_,
                                                                                "strict": True}}
        parsed = ParsedRequest(messages=self.chat_messages(), params=params, stream=bool(self.stream), model=self.model)
        self._thinking_into(parsed)
        return parsed

    def _thinking_into(self, parsed: ParsedRequest) -> None:
        """``thinking`` as the provider's parameters (see the module docstring), and whether the reply shows it."""
        t = self.thinking
        if t is None or not t.on:
            parsed.reasoning_display = "hidden"
            if t is not None:
                parsed.soft_thinking = False
            return
        effort = self.output_config.effort if self.output_config is not None else None
        level = {"low": "low", "medium": "medium", "high": "high", "max": "high"}.get(effort) \
            if isinstance(effort, str) else None
        if t.type == "enabled":
            parsed.params["thinking"] = level or True
            parsed.params["thinking_budget"] = t.budget_tokens
        else:
            parsed.soft_thinking = level or True
        parsed.reasoning_display = "omitted" if t.display == "omitted" else "shown"


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``."""


def _parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_messages(data: dict[str, Any]) -> ParsedRequest:
    return _parse(MessagesRequest, data).to_parsed()


def parse_count_tokens(data: dict[str, Any]) -> CountTokensRequest:
    return _parse(CountTokensRequest, data)


# ---------------------------------------------------------------------------------------------- replies
def stop_of(resp: Response) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``) of a reply."""
    if resp.finish_reason == "length":
        return "max_tokens", None
    if resp.finish_reason == "tool_calls" or (resp.tool_calls and resp.finish_reason != "length"):
        return "tool_use", None
    matched = resp.metadata.get("stop_sequence") if resp.metadata else None
    if resp.finish_reason == "stop" and matched:
        return "stop_sequence", matched
    return "end_turn", None


def usage_of(resp: Response) -> dict[str, int]:
    u = resp.usage
    prompt, cached, completion = (u.prompt_tokens, u.cached_tokens, u.completion_tokens) if u else (0, 0, 0)
    return {"input_tokens": prompt - cached, "output_tokens": completion, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached}


def thinking_block(text: str, display: str = "shown") -> dict[str, Any]:
    """A ``thinking`` block (its text left out for ``display`` "omitted"); the signature covers the text."""
    return {"type": "thinking", "thinking": "" if display == "omitted" else text, "signature": sign_thinking(text)}


def content_blocks(resp: Response, display: str = "hidden") -> list[dict[str, Any]]:
    """The reply's blocks: its ``thinking`` (when the request asked for it and the model thought), its text, its
    tool calls."""
    blocks: list[dict[str, Any]] = []
    if resp.reasoning and display != "hidden":
        blocks.append(thinking_block(resp.reasoning, display))
    if resp.content or not (resp.tool_calls or blocks):  # a reply cut in its thinking: that block alone
        blocks.append({"type": "text", "text": resp.content})
    for call in resp.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def message_body(msg_id: str, model: str, resp: Response, display: str = "hidden") -> dict[str, Any]:
    """The whole reply: ``{"id", "type": "message", "role", "model", "content", "stop_reason", ...}``."""
    reason, sequence = stop_of(resp)
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": content_blocks(resp, display),
            "stop_reason": reason, "stop_sequence": sequence, "usage": usage_of(resp)}


def new_message_id() -> str:
    import uuid

    return f"msg_{uuid.uuid4().hex[:24]}"
