"""Tool calls cut by ``max_tokens``: the provider leaves the markup it could not parse in
``Response.metadata["unparsed_tool_calls"]`` (e.g. ``'\\n{"name": "Bash", "arguments": {"command": "ec'``); the
server returns such a call as OpenAI does, with its partial arguments and the finish reason ``length``
(``recover_cut_calls``). The call's ``arguments`` are the partial JSON closed into an object
(``close_json``), and ``metadata["partial_arguments"]`` keeps the text as generated, by call id, for the APIs
that carry arguments as a string (chat completions, Responses, Anthropic's ``input_json_delta``).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ..types import Response, ToolCall

__all__ = ["recover_cut_calls", "close_json", "split_call"]

_NAME_PATTERNS = (re.compile(r"functions\.([A-Za-z0-9_\-.]+)"), re.compile(r"^\s*([A-Za-z0-9_\-.]+)\s*\[ARGS\]"))


def _scan_object(text: str) -> tuple[dict[str, tuple[int, int | None]], bool]:
    """The top-level keys of the (maybe cut) JSON object ``text`` starts with: key -> (value start, value end or
    None when the value is cut), and whether the object itself was closed."""
    keys: dict[str, tuple[int, int | None]] = {}
    depth, i, n = 0, 0, len(text)
    key: str | None = None
    value_start: int | None = None
    expecting_key = False
    while i < n:
        c = text[i]
        if c == '"':
            j, escaped = i + 1, False
            while j < n and (escaped or text[j] != '"'):
                escaped = (text[j] == "\\") and not escaped
                j += 1
            if depth == 1 and expecting_key:
                if j >= n:
                    break
                try:
                    key = json.loads(text[i:j + 1])
                except ValueError:
                    key = None
                expecting_key = False
            i = j + 1
            continue
        if c in "{[":
            depth += 1
            if depth == 1:
                expecting_key = True
        elif c in "}]":
            if depth == 1 and key is not None and value_start is not None:
                keys[key] = (value_start, i)
                key = value_start = None
            depth -= 1
            if depth == 0:
                return keys, True
        elif depth == 1 and c == ":" and key is not None:
            value_start = i + 1
        elif depth == 1 and c == ",":
            if key is not None and value_start is not None:
                keys[key] = (value_start, i)
            key, value_start, expecting_key = None, None, True
        i += 1
    if key is not None and value_start is not None:
        keys[key] = (value_start, None)
    return keys, False


def split_call(text: str, names: list[str], forced: str | None) -> tuple[str | None, str]:
    """(tool name, arguments as generated) of a cut call's text; the name is ``None`` when it cannot be told."""
    start = text.find("{")
    body = text[start:] if start >= 0 else ""
    keys, _ = _scan_object(body) if body else ({}, False)
    name: str | None = None
    if "name" in keys:
        a, b = keys["name"]
        if b is not None:
            try:
                value = json.loads(body[a:b])
                name = value if isinstance(value, str) else None
            except ValueError:
                name = None
        else:  # the name itself was cut: the one tool it can still be
            cut = body[a:].strip().lstrip('"')
            matches = [n for n in names if n.startswith(cut)]
            name = matches[0] if len(matches) == 1 else None
    if name is None and "name" in keys:
        name = forced  # the call's own name was cut: the one the request forced, if any
    if name is not None:
        for key in ("arguments", "parameters", "input"):
            if key in keys:
                a, b = keys[key]
                return name, body[a:b].strip() if b is not None else body[a:].lstrip()
        return name, ""
    head = text[:start] if start >= 0 else text
    for pattern in _NAME_PATTERNS:
        m = pattern.search(head)
        if m and m.group(1) in names:
            return m.group(1), body
    one = forced or (names[0] if len(names) == 1 else None)
    if one is None:
        return None, ""
    m = re.match(r'^\{\s*"?([A-Za-z_]*)$', body)
    if m and "name".startswith(m.group(1)):
        return one, ""  # cut in the wrapper's "name" key: no arguments yet
    return one, body


def _closers(text: str) -> str | None:
    """What closes ``text`` (open strings and containers), or ``None`` if it is not a JSON prefix."""
    stack: list[str] = []
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
    if escaped:
        return None
    return ('"' if in_string else "") + "".join(reversed(stack))


def close_json(prefix: str) -> dict[str, Any]:
    """The longest object a prefix of ``prefix`` closes into (``{}`` when none)."""
    text = prefix.strip()
    if not text.startswith("{"):
        return {}
    for cut in range(len(text), 0, -1):
        head = text[:cut].rstrip().rstrip(",:").rstrip()
        closers = _closers(head)
        if closers is None:
            continue
        try:
            value = json.loads(head + closers)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _tool_names(params: dict[str, Any]) -> list[str]:
    out = []
    for tool in params.get("tools") or []:
        inner = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            out.append(inner["name"])
    return out


def _forced(choice: Any) -> str | None:
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        inner = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        name = inner.get("name")
        return name if isinstance(name, str) else None
    return None


def recover_cut_calls(params: dict[str, Any], resp: Response) -> bool:
    """Give ``resp`` the calls ``max_tokens`` cut (see the module docstring); True if it got any."""
    if resp.finish_reason != "length" or resp.tool_calls:
        return False
    raw = (resp.metadata or {}).get("unparsed_tool_calls")
    names = _tool_names(params)
    if not raw or not names:
        return False
    calls, partial = [], {}
    for text in raw if isinstance(raw, list) else [raw]:
        if not isinstance(text, str):
            continue
        name, arguments = split_call(text, names, _forced(params.get("tool_choice")))
        if name is None:
            continue
        call = ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=name, arguments=close_json(arguments))
        calls.append(call)
        partial[call.id] = arguments
    if not calls:
        return False
    resp.tool_calls = calls
    resp.metadata = {**(resp.metadata or {}), "partial_arguments": partial}
    return True
