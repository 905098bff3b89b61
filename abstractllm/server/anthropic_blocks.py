"""Anthropic Messages API content blocks (the ``content`` of a message of ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``) as pydantic models, and the messages' translation into the provider's chat
messages (``anthropic_schemas`` holds the rest of the request, and the reply's shape).

Blocks: ``text``; ``image`` with a ``base64`` or ``url`` source; ``document`` with a plain-text or content source,
given to the model as text; ``search_result``, as text; ``tool_use`` in assistant turns; ``tool_result`` in user
turns, answering an earlier ``tool_use`` (its ``tool_reference`` blocks name deferred tools to show the model);
``thinking`` in assistant turns (their text is that turn's reasoning, the signature is not checked);
``redacted_thinking``, accepted and dropped; the blocks of server tools, ignored. Unknown block types, blocks in
the wrong role, a ``tool_result`` without its ``tool_use``, PDF documents and ``file`` sources (no Files API) are
a 400 in Anthropic's error shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from .errors import APIError
from .fields import Body, note_ignored

__all__ = ["TextBlock", "ImageBlock", "DocumentBlock", "SearchResultBlock", "ToolReferenceBlock", "ToolUseBlock",
           "ToolResultBlock", "ThinkingBlock", "RedactedThinkingBlock", "ServerBlock", "Block", "AnthropicMessage",
           "to_chat_messages"]


class _Body(Body):
    pass


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


class _FileSource(_Body):
    type: Literal["file"]
    file_id: str


class ImageBlock(_Body):
    type: Literal["image"]
    source: Annotated[Union[_Base64Source, _URLSource, _FileSource], Field(discriminator="type")]
    cache_control: Any = None

    def to_part(self, where: str) -> dict[str, Any]:
        src = self.source
        if isinstance(src, _FileSource):
            raise APIError(400, f"{where}: image sources of type 'file' need the Files API, which this server does "
                           "not have; send the image as base64 or a URL.", param="messages")
        url = src.url if isinstance(src, _URLSource) else f"data:{src.media_type};base64,{src.data}"
        return {"type": "image_url", "image_url": {"url": url}}


class _TextSource(_Body):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class _ContentSource(_Body):
    type: Literal["content"]
    content: Union[str, list[TextBlock]]


class DocumentBlock(_Body):
    """A document: plain text (``text`` source) or text blocks (``content`` source) reach the model as text."""

    _ignored = {"citations": None, "context": None}
    type: Literal["document"]
    source: Annotated[Union[_TextSource, _ContentSource, _Base64Source, _URLSource, _FileSource],
                      Field(discriminator="type")]
    title: str | None = None
    context: str | None = None
    citations: Any = None
    cache_control: Any = None

    def text(self, where: str) -> str:
        src = self.source
        if isinstance(src, _TextSource):
            body = src.data
        elif isinstance(src, _ContentSource):
            body = src.content if isinstance(src.content, str) else "\n".join(b.text for b in src.content)
        else:
            raise APIError(400, f"{where}: documents of source type '{src.type}' (PDF, Files API) are not supported "
                           "by this server; send the text as a 'text' source or a text block.", param="messages")
        return f"{self.title}\n\n{body}" if self.title else body


class SearchResultBlock(_Body):
    """A search result (its text blocks, under its title and source) reaches the model as text."""

    _ignored = {"citations": None}
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]
    citations: Any = None
    cache_control: Any = None

    def text(self) -> str:
        return f"{self.title} ({self.source})\n" + "\n".join(b.text for b in self.content)


class ToolReferenceBlock(_Body):
    """Inside a ``tool_result``: a deferred tool the tool search found (``tool_name``), now shown to the model."""

    type: Literal["tool_reference"]
    tool_name: str
    cache_control: Any = None


class ToolUseBlock(_Body):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    cache_control: Any = None
    caller: Any = None


_ResultPart = Annotated[Union[TextBlock, ImageBlock, DocumentBlock, SearchResultBlock, ToolReferenceBlock],
                        Field(discriminator="type")]


class ToolResultBlock(_Body):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Union[str, list[_ResultPart]] = ""
    is_error: bool | None = None
    cache_control: Any = None

    def text(self, where: str) -> str:
        if isinstance(self.content, str):
            text = self.content
        else:
            if any(isinstance(b, ImageBlock) for b in self.content):
                raise APIError(400, f"{where}: images inside tool_result blocks are not supported by this server; "
                               "send them in a user text/image turn.", param="messages")
            parts = []
            for b in self.content:
                if isinstance(b, TextBlock):
                    parts.append(b.text)
                elif isinstance(b, DocumentBlock):
                    parts.append(b.text(where))
                elif isinstance(b, SearchResultBlock):
                    parts.append(b.text())
                elif isinstance(b, ToolReferenceBlock):
                    parts.append(f"Tool {b.tool_name} loaded.")
            text = "\n".join(parts)
        return f"Error: {text}" if self.is_error else text

    def references(self) -> list[str]:
        return [] if isinstance(self.content, str) else \
            [b.tool_name for b in self.content if isinstance(b, ToolReferenceBlock)]


class ThinkingBlock(_Body):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None  # not checked
    cache_control: Any = None


class RedactedThinkingBlock(_Body):
    type: Literal["redacted_thinking"]
    data: str
    cache_control: Any = None


#: blocks of Anthropic's server tools and containers: accepted, ignored (their tools are not run here)
_SERVER_BLOCKS = ("server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
                  "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
                  "tool_search_tool_result", "mcp_tool_use", "mcp_tool_result", "container_upload")


class ServerBlock(Body):
    """A block of a server tool's call or result, or a container upload: ignored (``messages.content.<type>``)."""

    _lenient = _opaque = True
    type: Literal[_SERVER_BLOCKS]  # type: ignore[valid-type]


Block = Annotated[Union[TextBlock, ImageBlock, DocumentBlock, SearchResultBlock, ToolUseBlock, ToolResultBlock,
                        ThinkingBlock, RedactedThinkingBlock, ServerBlock], Field(discriminator="type")]


class AnthropicMessage(_Body):
    _ignored = {"output_config": None}
    role: Literal["user", "assistant", "system"]
    content: Union[str, list[Block]]
    output_config: Any = None  # per-turn control (Claude Code's system turns): the request's own applies


def _system_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, b in enumerate(content):
        if not isinstance(b, TextBlock):
            raise APIError(400, f"messages.{i}.content.{j}: a system turn holds text blocks only, not '{b.type}'.",
                           param="messages")
        texts.append(b.text)
    return "\n".join(texts)


def _assistant(blocks: list[Any], i: int, called: set[str]) -> dict[str, Any]:
    texts, calls, thoughts = [], [], []
    for j, b in enumerate(blocks):
        if isinstance(b, TextBlock):
            texts.append(b.text)
        elif isinstance(b, ThinkingBlock):
            thoughts.append(b.thinking)  # the signature is not checked
        elif isinstance(b, RedactedThinkingBlock):
            continue  # encrypted by another server: nothing to give the model
        elif isinstance(b, ServerBlock):
            note_ignored(f"messages.content.{b.type}", "a server tool's block")
        elif isinstance(b, ToolUseBlock):
            called.add(b.id)
            calls.append({"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}})
        else:
            raise APIError(400, f"messages.{i}.content.{j}: an assistant turn cannot hold a '{b.type}' block "
                           "(images, documents and tool results come from the user).", param="messages")
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
            parts.append(b.to_part(where))
        elif isinstance(b, DocumentBlock):
            parts.append({"type": "text", "text": b.text(where)})
        elif isinstance(b, SearchResultBlock):
            parts.append({"type": "text", "text": b.text()})
        elif isinstance(b, ServerBlock):
            note_ignored(f"messages.content.{b.type}", "a server tool's block")
        else:
            raise APIError(400, f"{where}: a user turn cannot hold a '{b.type}' block (tool calls and thinking come "
                           "from the assistant).", param="messages")
    return results + ([{"role": "user", "content": parts}] if parts else [])


def to_chat_messages(system: str | list[TextBlock] | None, messages: list[AnthropicMessage]) -> list[dict[str, Any]]:
    """The provider's chat messages (``system`` first; tool results as ``tool`` messages; ``system`` turns where
    they were)."""
    out: list[dict[str, Any]] = []
    system = system if isinstance(system, str) else "\n".join(b.text for b in system or [])
    if system:
        out.append({"role": "system", "content": system})
    called: set[str] = set()
    for i, m in enumerate(messages):
        if m.role == "system":
            out.append({"role": "system", "content": _system_text(m.content, i)})
        elif isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
        elif m.role == "assistant":
            out.append(_assistant(m.content, i, called))
        else:
            out.extend(_user(m.content, i, called))
    return out
