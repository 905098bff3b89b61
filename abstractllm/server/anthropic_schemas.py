"""Anthropic Messages API bodies (``POST /v1/messages``, ``POST /v1/messages/count_tokens``) as pydantic
models, their translation into the provider's chat messages and parameters, and the reply's shape (the content
blocks, and the messages' translation, are in ``anthropic_blocks``).

Accepted: ``system`` (a string or text blocks), ``messages`` of ``user`` / ``assistant`` turns, and ``system``
turns inside them (as Claude Code sends them; ``generation.place_system_messages`` keeps them in place where the
model's chat template takes several system messages, else merges them into the system prompt), whose content is
a string or blocks (``text``; ``image`` with a ``base64`` or ``url`` source, the URL fetched by the server under
its private-address policy; ``document`` with a plain-text or content source, given to the model as text;
``search_result``, as text; ``tool_use`` in assistant turns; ``tool_result`` in user turns, answering an
earlier ``tool_use``), ``max_tokens`` (required, as in Anthropic's API; above ``--max-tokens-limit`` it is
clamped), ``temperature``, ``top_p``, ``top_k``, ``stop_sequences``, ``stream``, ``tools`` (``name``,
``description``, ``input_schema``; ``defer_loading: true`` tools are shown to the model only once a
``tool_reference`` block in a ``tool_result`` names them, as Anthropic's tool search does) and ``tool_choice``
(``auto``, ``any``, ``tool`` with a ``name``, ``none``), structured output as ``output_config.format``
(``{"type": "json_schema", "schema": ...}``: the reply is JSON of the schema), and extended thinking:

- ``thinking: {"type": "enabled", "budget_tokens": N}``: the model thinks (``thinking=True``, a 400 naming the
  model if it cannot), for at most N tokens (``thinking_budget``; Anthropic's minimum of 1024 is not applied);
  ``{"type": "adaptive"}``: it thinks where it can, without a budget. ``output_config.effort`` (``low``,
  ``medium``, ``high``, ``max``) then gives the level (without ``thinking``, it is the level where the model
  thinks anyway). The reply starts with a ``thinking`` block (``{"type": "thinking", "thinking",
  "signature"}``; ``display: "omitted"`` leaves its text empty).
- ``{"type": "disabled"}`` (or ``between_tools``): thinking off where the model has a switch for it.
- without ``thinking``, the model does what it does by default, and its reasoning is left out of the reply.

The ``signature`` is opaque (an HMAC of the thinking under a per-process key) and is not checked when the block
comes back: assistant turns sent back with ``thinking`` blocks give their text to the model as that turn's
reasoning; ``redacted_thinking`` blocks are accepted and dropped.

Ignored (``fields.py``: logged once, listed in ``x-abstractllm-ignored``): ``metadata``, ``service_tier``,
``context_management``, ``container``, ``mcp_servers``, ``speed``, ``inference_geo``, the SDK's routing fields,
server tools (``web_search_*``, ``code_execution_*``, ...) and the blocks of their results, and unknown fields
(a 400 with ``--strict-fields``). ``cache_control`` marks are accepted: the server's prefix cache reuses
every repeated prefix by itself. ``anthropic-beta`` headers are accepted and need nothing. Unknown block types,
blocks in the wrong role, a ``tool_result`` without its ``tool_use``, PDF documents and ``file`` sources (no
Files API) are a 400 in Anthropic's error shape.

Usage follows Anthropic's meaning: ``input_tokens`` are the prompt tokens not read from the prompt cache,
``cache_read_input_tokens`` those that were (their sum is the prompt's length).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from ..types import Response
from .anthropic_blocks import AnthropicMessage, TextBlock, ToolResultBlock, to_chat_messages
from .errors import APIError
from .fields import Body, note_ignored, parse_model
from .reasoning import sign_thinking
from .schemas import ParsedRequest

__all__ = ["MessagesRequest", "CountTokensRequest", "parse_messages", "parse_count_tokens", "message_body",
           "content_blocks", "thinking_block", "stop_of", "usage_of", "new_message_id"]


class _Body(Body):
    pass


class _Tool(_Body):
    """A client tool (``type`` absent or ``custom``): the model may call it."""

    _ignored = {"input_examples": None, "eager_input_streaming": None, "allowed_callers": None, "strict": None}
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: Any = None
    defer_loading: bool | None = None
    strict: bool | None = None
    input_examples: Any = None
    eager_input_streaming: Any = None
    allowed_callers: Any = None

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description or "",
                                                 "parameters": self.input_schema}}


class _TypedTool(Body):
    """A tool of Anthropic's own types (``web_search_20250305``, ``bash_20250124``, ``code_execution_...``,
    ``mcp_toolset``, ...): ignored (``tools.<type>``), the server runs none of them."""

    _lenient = _opaque = True
    type: str
    name: str | None = None


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "typed"


AnyTool = Annotated[Union[Annotated[_Tool, Tag("custom")], Annotated[_TypedTool, Tag("typed")]],
                    Discriminator(_tool_kind)]


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
    effort: str | None = None
    format: _OutputFormat | None = None

    def level(self) -> str | None:
        """The thinking level of ``effort`` (an effort this server does not know is ignored)."""
        if self.effort is None:
            return None
        level = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}.get(self.effort)
        if level is None:
            note_ignored("output_config.effort", f"unknown effort {self.effort!r}")
        return level


class _Conversation(_Body):
    """What both endpoints take: the conversation and its tools."""

    model: str | None = None
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: Union[str, list[TextBlock], None] = None
    tools: list[AnyTool] | None = None
    tool_choice: _ToolChoice | None = None
    thinking: _Thinking | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The provider's chat messages (system first; tool results as ``tool`` messages; ``system`` turns where
        they were)."""
        return to_chat_messages(self.system, self.messages)

    def tool_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        referenced = {name for m in self.messages if isinstance(m.content, list)
                      for b in m.content if isinstance(b, ToolResultBlock) for name in b.references()}
        forced = self.tool_choice.name if self.tool_choice is not None and self.tool_choice.type == "tool" else None
        tools = []
        for t in self.tools or []:
            if isinstance(t, _TypedTool):
                note_ignored(f"tools.{t.type}", "a server tool this server cannot run")
            elif not t.defer_loading or t.name in referenced or t.name == forced:
                tools.append(t.to_openai())
        if tools:
            params["tools"] = tools
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice.to_provider()
        return params


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    _ignored = {"metadata": None, "service_tier": ("auto", "standard_only"), "context_management": None,
                "container": None, "mcp_servers": None, "speed": None, "inference_geo": None, "diagnostics": None,
                "user_profile_id": None, "workspace_id": None}
    max_tokens: int
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    output_config: _OutputConfig | None = None
    metadata: dict[str, Any] | None = None
    service_tier: Any = None
    cache_control: Any = None  # automatic caching: the prefix cache does it
    context_management: Any = None
    container: Any = None
    mcp_servers: Any = None
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
        parsed = ParsedRequest(messages=self.chat_messages(), params=params, stream=bool(self.stream), model=self.model,
                               max_tokens_asked=self.max_tokens)
        self._thinking_into(parsed)
        return parsed

    def _thinking_into(self, parsed: ParsedRequest) -> None:
        """``thinking`` as the provider's parameters (see the module docstring), and whether the reply shows it."""
        t = self.thinking
        level = self.output_config.level() if self.output_config is not None else None
        if t is None or not t.on:
            parsed.reasoning_display = "hidden"
            if t is not None:
                parsed.soft_thinking = False
            elif level is not None:
                parsed.soft_thinking = level  # the effort: the level where the model thinks anyway
            return
        if t.type == "enabled":
            parsed.params["thinking"] = level or True
            parsed.params["thinking_budget"] = t.budget_tokens
        else:
            parsed.soft_thinking = level or True
        parsed.reasoning_display = "omitted" if t.display == "omitted" else "shown"


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``."""

    _ignored = {"context_management": None, "mcp_servers": None}
    context_management: Any = None
    mcp_servers: Any = None
    output_config: Any = None


def parse_messages(data: dict[str, Any], strict: bool = False) -> ParsedRequest:
    return parse_model(MessagesRequest, data, strict).to_parsed()


def parse_count_tokens(data: dict[str, Any], strict: bool = False) -> CountTokensRequest:
    return parse_model(CountTokensRequest, data, strict)


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
