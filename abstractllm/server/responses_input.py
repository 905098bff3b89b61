"""The OpenAI Responses API's input (``input`` of ``POST /v1/responses``) as pydantic models, and its
translation into the provider's chat messages (``responses_schemas`` holds the rest of the request).

Accepted: ``input`` as a string or a list of items: messages (``role`` ``user``, ``system``, ``developer`` or
``assistant``; ``content`` a string or parts: ``input_text`` and ``input_image`` with an ``image_url`` (data URI
or http(s) URL) from the user side, ``output_text`` / ``refusal`` from the assistant), ``function_call`` and
``function_call_output`` items, ``custom_tool_call`` and ``custom_tool_call_output`` items, and ``reasoning``
items sent back (their ``reasoning_text`` content, else their summary, is the reasoning of the assistant turn
that follows; ``encrypted_content`` is ignored). Input items of types this server has no use for
(``item_reference``, ``web_search_call``, ``compaction``, ...) are ignored; an unknown type is too, or a 400
with ``--strict-fields``. A 400 in OpenAI's error shape: unknown part types, ``input_file`` parts and ``file_id``
images (no Files API), a part in the wrong role, a ``function_call_output`` whose ``call_id`` no earlier
``function_call`` made.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import Discriminator, Field, Tag

from .errors import APIError
from .fields import Body, note_ignored

__all__ = ["Item", "continue_history", "check_item_types"]

#: the name the model knows a client's tool by, from its ``name`` and ``namespace``
_Namer = Callable[[str, str | None], str]


class _Body(Body):
    pass


class _InputText(_Body):
    type: Literal["input_text"]
    text: str


class _InputImage(_Body):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class _InputFile(Body):
    _lenient = _opaque = True
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
    phase: Any = None


class _FunctionCall(_Body):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    namespace: str | None = None  # Codex: the namespace tool the function belongs to
    arguments: str = "{}"
    id: str | None = None
    status: str | None = None


class _CallOutput(_Body):
    """What a tool call (function or custom) returned, for its ``call_id``."""

    call_id: str = Field(min_length=1)
    output: Union[str, list[Part]]
    id: str | None = None
    status: str | None = None


class _FunctionCallOutput(_CallOutput):
    type: Literal["function_call_output"]


class _CustomToolCall(_Body):
    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1)
    name: str
    namespace: str | None = None
    input: str = ""
    id: str | None = None
    status: str | None = None


class _CustomToolCallOutput(_CallOutput):
    type: Literal["custom_tool_call_output"]


class _ReasoningText(_Body):
    type: Literal["reasoning_text", "text"]
    text: str


class _SummaryText(_Body):
    type: Literal["summary_text"]
    text: str


class _ReasoningItem(_Body):
    """A reasoning item of an earlier reply, sent back (Codex sends it without its ``id``)."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[_SummaryText] = Field(default_factory=list)
    content: list[_ReasoningText] | None = None
    encrypted_content: str | None = None  # made by another server: nothing to give the model
    status: str | None = None

    def text(self) -> str:
        parts = self.content if self.content else self.summary
        return "".join(p.text for p in parts)


#: input items the server has no use for (hosted tools' calls, references to stored items, compactions):
#: ignored (``input.<type>``)
_OTHER_ITEMS = ("item_reference", "web_search_call", "file_search_call", "computer_call", "computer_call_output",
                "image_generation_call", "code_interpreter_call", "local_shell_call", "local_shell_call_output",
                "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
                "mcp_approval_request", "mcp_approval_response", "mcp_call", "compaction", "compaction_summary",
                "tool_search_call", "tool_search_output", "additional_tools")


class _OtherItem(Body):
    """An input item the server has no use for, or of an unknown type: ignored (a 400 with ``--strict-fields``
    for an unknown type)."""

    _lenient = _opaque = True
    type: str


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type") or ("message" if "role" in value else None)
    else:
        kind = getattr(value, "type", None) or "message"
    if kind in ("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
                "reasoning"):
        return kind
    return "other" if isinstance(kind, str) else None


Item = Annotated[Union[Annotated[_MessageItem, Tag("message")], Annotated[_FunctionCall, Tag("function_call")],
                       Annotated[_FunctionCallOutput, Tag("function_call_output")],
                       Annotated[_CustomToolCall, Tag("custom_tool_call")],
                       Annotated[_CustomToolCallOutput, Tag("custom_tool_call_output")],
                       Annotated[_ReasoningItem, Tag("reasoning")], Annotated[_OtherItem, Tag("other")]],
                 Discriminator(_item_kind)]

def _append(history: list[dict[str, Any]], item: Any, i: int, called: set[str], model_name: _Namer) -> None:
    where = f"input[{i}]"
    if isinstance(item, (_FunctionCall, _CustomToolCall)):
        if isinstance(item, _CustomToolCall):
            arguments: Any = {"input": item.input}
        else:
            try:
                arguments = json.loads(item.arguments) if item.arguments.strip() else {}
            except ValueError as exc:
                raise APIError(400, f"{where}: the function_call's arguments are not JSON: {exc}.",
                               param="input") from None
            if not isinstance(arguments, dict):
                raise APIError(400, f"{where}: the function_call's arguments must be a JSON object.", param="input")
        call = {"id": item.call_id, "type": "function",
                "function": {"name": model_name(item.name, item.namespace), "arguments": arguments}}
        called.add(item.call_id)
        last = history[-1] if history else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
            last["tool_calls"] = [*last["tool_calls"], call]  # consecutive calls: one assistant turn
        else:
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
        return
    if isinstance(item, (_FunctionCallOutput, _CustomToolCallOutput)):
        if item.call_id not in called:
            raise APIError(400, f"{where}: {item.type} answers call_id {item.call_id!r}, which no earlier "
                           f"{item.type[:-len('_output')]} made.", param="input")
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


def continue_history(previous: list[dict[str, Any]] | None, items: str | list[Any],
                     model_name: _Namer) -> list[dict[str, Any]]:
    """The chat messages of ``previous`` (a stored response's) continued by ``items`` (a request's ``input``);
    ``model_name(name, namespace)``: the name the model knows a client's tool by."""
    history = [dict(m) for m in previous or []]
    called = {c["id"] for m in history for c in m.get("tool_calls") or []}
    items = [_MessageItem(role="user", content=items)] if isinstance(items, str) else items
    thought: str | None = None  # a reasoning item's text, for the assistant turn that follows it
    for i, item in enumerate(items):
        if isinstance(item, _ReasoningItem):
            thought = (thought or "") + item.text()
            continue
        if isinstance(item, _OtherItem):
            note_ignored(f"input.{item.type}", "an input item this server has no use for")
            continue
        _append(history, item, i, called, model_name)
        assistant = isinstance(item, (_FunctionCall, _CustomToolCall)) or \
            (isinstance(item, _MessageItem) and item.role == "assistant")
        if thought and assistant:
            turn = history[-1]
            turn["reasoning_content"] = turn.get("reasoning_content", "") + thought
        thought = None  # a reasoning item not followed by the assistant's turn has nothing to go with
    return history


def check_item_types(items: str | list[Any]) -> None:
    """``--strict-fields``: an input item of an unknown type is a 400."""
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, _OtherItem) and item.type not in _OTHER_ITEMS:
            raise APIError(400, f"Invalid 'input[{i}].type': unknown input item type {item.type!r}.",
                           param="input", code="invalid_value")
