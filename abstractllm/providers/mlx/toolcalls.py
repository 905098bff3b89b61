"""Tool calls in a local model's reply: which format the model writes them in, and taking them out of the
stream.

The format is the backend's answer for the model's chat template: mlx-lm's tokenizer (``tool_parser``,
``tool_call_start`` / ``tool_call_end``) for text models, mlx-vlm's tool registry for vision models. The
Llama 3.1 style (a reply that is only ``{"name": ..., "parameters": ...}``, which neither library parses)
is recognised here from the template. ``ToolCallExtractor`` passes the reply's text through and takes
out each call whole: the call's markup never reaches ``content``, and each call comes out once, parsed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from ...types import ToolCall

__all__ = ["ToolFormat", "HARMONY", "is_harmony", "text_tool_format", "vision_tool_format", "ToolCallExtractor", "new_call_id",
           "tool_format_name"]

#: how the Llama 3.1 template asks for custom tool calls
_LLAMA3_MARK = '"parameters": dictionary of argument name and its value'


@dataclass(frozen=True)
class ToolFormat:
    """How a model writes tool calls: ``start`` / ``end`` markup around each call (``None``: the whole
    reply is one JSON call), and the backend's ``parse(text, tools)``."""

    name: str
    start: str | None
    end: str | None
    parse: Callable[[str, Any], Any]

    @property
    def json_key(self) -> str:
        """The key of the arguments in the format's JSON ("arguments", or "parameters" for Llama 3)."""
        return "parameters" if self.name == "llama3_json" else "arguments"


def _parse_llama3(text: str, tools: Any = None) -> Any:
    data = json.loads(text.strip())
    if isinstance(data, dict) and "parameters" in data and "arguments" not in data:
        data = {"name": data.get("name"), "arguments": data["parameters"]}
    return data


def _llama3(template: Any) -> ToolFormat | None:
    if isinstance(template, str) and _LLAMA3_MARK in template:
        return ToolFormat("llama3_json", None, None, _parse_llama3)
    return None


def _no_parse(text: str, tools: Any = None) -> Any:
    raise ValueError("harmony tool calls are parsed by the reasoning splitter")


#: gpt-oss's harmony format: a call is a ``commentary`` message addressed ``to=functions.NAME``; the reply's
#: channels are parsed by ``reasoning.HarmonySplitter`` (which takes the calls out), not by an extractor
HARMONY = ToolFormat("harmony", None, None, _no_parse)


def is_harmony(template: Any, vocab: Callable[[], dict[str, int]]) -> bool:
    """A harmony chat template (gpt-oss): its channel markup, with the tokens in the vocabulary."""
    return isinstance(template, str) and "<|channel|>" in template and "to=functions." in template and \
        all(t in vocab() for t in ("<|channel|>", "<|message|>", "<|constrain|>"))


def text_tool_format(tokenizer: Any) -> ToolFormat | None:
    """The tool-call format of an mlx-lm ``TokenizerWrapper`` (``None``: the model has none)."""
    if getattr(tokenizer, "has_tool_calling", False) and tokenizer.tool_parser is not None:
        name = getattr(tokenizer.tool_parser, "__module__", "").rsplit(".", 1)[-1] or "unknown"
        return ToolFormat(name, tokenizer.tool_call_start, tokenizer.tool_call_end, tokenizer.tool_parser)
    template = getattr(tokenizer, "chat_template", None)
    if is_harmony(template, tokenizer.get_vocab):
        return HARMONY
    return _llama3(template)


def vision_tool_format(processor: Any) -> ToolFormat | None:
    """The tool-call format of an mlx-vlm processor, from mlx-vlm's tool registry."""
    from mlx_vlm.tools import _infer_tool_parser_from_processor, load_tool_module

    name = _infer_tool_parser_from_processor(processor)
    if name:
        module = load_tool_module(name)
        return ToolFormat(name, module.tool_call_start, module.tool_call_end, module.parse_tool_call)
    tokenizer = getattr(processor, "tokenizer", processor)
    return _llama3(getattr(tokenizer, "chat_template", None))


def tool_format_name(kind: str, template: str | None, vocab: Callable[[], dict[str, int]]) -> str | None:
    """The tool-call format a model's chat template implies, before loading it: mlx-lm's (text) or
    mlx-vlm's (vision) own inference from the template, else the Llama 3.1 style; ``None``: no tools."""
    if kind == "vision":
        from mlx_vlm.tools import _infer_tool_parser

        name = _infer_tool_parser(template) if template else None
    else:
        from types import SimpleNamespace

        from mlx_lm.tokenizer_utils import _infer_tool_parser

        name = _infer_tool_parser(SimpleNamespace(chat_template=template, get_vocab=vocab))
    if name:
        return name
    if kind != "vision" and is_harmony(template, vocab):
        return HARMONY.name
    fmt = _llama3(template)
    return fmt.name if fmt is not None else None


#: formats whose templates require a call id of their own shape: Mistral's are 9 alphanumeric characters
_ID_SHAPES = {"mistral": 9}


def new_call_id(fmt: str | None = None) -> str:
    """A fresh tool-call id, in the shape the format's template accepts back in the history."""
    if fmt in _ID_SHAPES:
        import secrets
        import string

        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(_ID_SHAPES[fmt]))
    return f"call_{uuid.uuid4().hex[:24]}"


def _to_calls(parsed: Any, fmt: str | None = None) -> list[ToolCall]:
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"not a tool call: {item!r:.80}")
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise ValueError(f"the arguments of {item['name']!r} are not an object")
        model_id = item.get("id")  # a format whose calls carry their id (Mistral's 9 characters) keeps it
        calls.append(ToolCall(id=model_id if isinstance(model_id, str) and model_id else new_call_id(fmt),
                              name=item["name"], arguments=arguments))
    return calls


class ToolCallExtractor:
    """Streams a reply's text through and takes its tool calls out (see the module docstring).

    ``feed(text)`` returns ``(text to show, calls completed)``; ``finish()`` the same for what is left.
    A call that does not parse (a reply cut by ``max_tokens`` inside a call) is kept in ``unparsed``.
    ``forced``: decoding is constrained to calls (``tool_choice`` required or named), so a reply cut short
    is an unfinished call, even before its markup is complete: it goes to ``unparsed``, never to the text.
    """

    def __init__(self, fmt: ToolFormat, tools: Any, forced: bool = False) -> None:
        self.fmt = fmt
        self.tools = tools
        self.forced = forced
        self.calls: list[ToolCall] = []
        self.unparsed: list[str] = []
        self._pending = ""  # text that may be the beginning of the start markup
        self._call: str | None = None  # inside a call: its text so far
        self._whole: str | None = None if fmt.start else ""  # Llama 3 style: the reply so far (None: text)
        self._decided = fmt.start is not None

    def _parse(self, text: str) -> list[ToolCall]:
        try:
            calls = _to_calls(self.fmt.parse(text, self.tools), self.fmt.name)
        except Exception:
            self.unparsed.append(text)
            return []
        self.calls.extend(calls)
        return calls

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self.fmt.start is None:
            return self._feed_whole(text)
        start, end = self.fmt.start, self.fmt.end or ""
        out: list[str] = []
        calls: list[ToolCall] = []
        rest = self._pending + text
        self._pending = ""
        while rest:
            if self._call is not None:
                buffer = self._call + rest  # the end markup may arrive in pieces
                cut = buffer.find(end) if end else -1
                if cut < 0:
                    self._call = buffer
                    return "".join(out), calls
                calls += self._parse(buffer[:cut])
                self._call = None
                rest = buffer[cut + len(end):]
                continue
            cut = rest.find(start)
            if cut >= 0:
                out.append(rest[:cut])
                self._call = ""
                rest = rest[cut + len(start):]
                continue
            keep = next((n for n in range(min(len(start) - 1, len(rest)), 0, -1) if rest.endswith(start[:n])), 0)
            out.append(rest[: len(rest) - keep])
            self._pending = rest[len(rest) - keep:]
            break
        return "".join(out), calls

    def _feed_whole(self, text: str) -> tuple[str, list[ToolCall]]:
        if self._whole is None:
            return text, []
        self._whole += text
        if not self._decided:
            head = self._whole.lstrip()
            if not head:
                return "", []
            self._decided = True
            if not head.startswith("{"):  # plain text: not a call
                out, self._whole = self._whole, None
                return out, []
        return "", []

    def finish(self) -> tuple[str, list[ToolCall]]:
        """At the end of the reply: what is held back, and a call still open (complete or not)."""
        if self.fmt.start is None:
            whole, self._whole = self._whole, None
            if not whole or not whole.strip():
                return whole or "", []
            calls = self._parse(whole)
            if calls or self.forced:
                return "", calls
            self.unparsed.pop()
            return whole, []  # JSON that is no call: it is the reply
        if self._call is not None:
            text, self._call = self._call, None
            if not self.fmt.end:  # a format whose calls run to the end of the reply (Mistral's)
                return "", self._parse(text)
            self.unparsed.append(text)
            return "", []
        out, self._pending = self._pending, ""
        if self.forced and out.strip():  # the start markup, cut short
            self.unparsed.append(out)
            return "", []
        return out, []
