"""Constrained decoding with llguidance, as an mlx-lm logits processor.

A grammar says which texts are allowed: a JSON schema (``response_format``), or the model's own tool-call
format around a JSON object that names one of the tools and matches its parameters (``tool_choice``
``"required"`` or a tool's name), or either of the two (tools with ``tool_choice="auto"`` and a
``response_format``: the reply calls a tool or answers in JSON of the schema). ``GrammarProcessor`` keeps an llguidance ``LLMatcher`` in step with the
tokens the request generates and, before each sample, sets every token the grammar does not allow to
``-inf``. llguidance's own MLX mask kernel is Metal-only, so the mask is applied with portable mx ops and
runs on every backend (CPU, Metal, CUDA). JSON is compact (no free whitespace between tokens), so a
small or random-weight model cannot pad forever; after the grammar is complete only end-of-sequence is
allowed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import GenerationError, InvalidParameterError, UnsupportedFeatureError
from ...structured import OutputFormat
from ...tools import ToolDefinition
from .schemas import ReplyCheck, grammar_schema, relax, tool_schema_id
from .toolcalls import ToolCallExtractor, ToolFormat

if TYPE_CHECKING:
    from ...types import Message
    from .engine import EngineRequest

__all__ = ["GrammarCompiler", "GrammarProcessor", "json_grammar", "tool_call_grammar", "call_or_json_grammar", "COMPACT_JSON",
           "active_tools", "constrain_request", "chat_dict", "is_constrained"]

#: llguidance JSON options: no whitespace between tokens, compact separators
COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
#: how each constrainable tool-call format lays out one call: (text after the start markup, the JSON of the call
#: wrapped in a list, text before the end markup); the format's own start / end markup comes from ``ToolFormat``
_LAYOUTS: dict[str, tuple[str, bool, str]] = {
    "json_tools": ("\n", False, "\n"),  # <tool_call>\n{"name", "arguments"}\n</tool_call> (Qwen, Hermes)
    "llama3_json": ("", False, ""),  # the whole reply is {"name", "parameters"} (Llama 3.1)
    "mistral": ("", True, ""),  # [TOOL_CALLS][{"name", "arguments"}] (Mistral v0.3, Nemo)
    "harmony": ("", False, ""),  # <|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{args}
}


#: an integer without bounds is bounded by JSON's safe range (at most 16 digits), so a model cannot write
#: digits forever; strings have no such bound (give them a maxLength where a model might not end them)
_SAFE_INT = 2**53 - 1


def _bounded(schema: Any, close: bool) -> Any:
    """A copy where integers without bounds get JSON's safe range, and (``close``) every object schema
    without ``additionalProperties`` gets ``false``."""
    if isinstance(schema, dict):
        out = {k: _bounded(v, close) for k, v in schema.items()}
        kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
        if "integer" in kinds:
            out.setdefault("minimum", -_SAFE_INT)
            out.setdefault("maximum", _SAFE_INT)
        if close and out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_bounded(v, close) for v in schema]
    return schema


def _closed(schema: Any) -> Any:
    return _bounded(schema, True)


def _tool_schema(tool: ToolDefinition, embedded: bool = True) -> Any:
    """A tool's parameters as its call's grammar takes them: closed, relaxed where llguidance cannot compile
    them (schemas.py), and (``embedded`` in the call object) with an ``$id`` so their ``$ref``s resolve."""
    schema = grammar_schema(_closed(tool.parameters), "tools", f"parameters of the tool {tool.name!r}")
    if embedded and "$ref" in json.dumps(schema):
        schema = {**schema, "$id": tool_schema_id(tool.name)}
    return schema


def json_grammar(fmt: OutputFormat) -> str:
    """The llguidance grammar of a ``response_format``."""
    from llguidance import LLMatcher

    schema = _output_schema(fmt)
    return LLMatcher.grammar_from_json_schema(schema, defaults=dict(COMPACT_JSON))


def _output_schema(fmt: OutputFormat) -> Any:
    """A ``response_format``'s schema as its grammar takes it: bounded, relaxed where llguidance cannot compile
    it (schemas.py); a schema no value matches is refused."""
    return grammar_schema(_bounded(fmt.schema or {"type": "object"}, False), "response_format", "response_format",
                          refuse_unsatisfiable=True)


def _literal(text: str) -> str:
    """A text as a Lark string literal."""
    return json.dumps(text)


def _call_rule(tools: list[ToolDefinition], choice: str, fmt: ToolFormat,
               marker: Callable[[str], str] = _literal) -> str:
    """The Lark rule body of exactly one call, in the model's format, of ``choice`` (a tool's name) or of any
    of ``tools``; the arguments match the tool's parameters (closed). ``marker`` writes the format's start
    and end markup in the grammar (``GrammarCompiler.marker``: a token reference where the tokenizer has the
    markup as one added token)."""
    if fmt.name not in _LAYOUTS:
        raise UnsupportedFeatureError(
            f"tool_choice={choice!r} needs constrained decoding, which is not available for this model's "
            f"tool-call format ({fmt.name}); use tool_choice='auto'.", feature="tool_choice")
    allowed = [t for t in tools if choice in ("required", "auto") or t.name == choice]
    if fmt.name == "harmony":  # the tool's name is in the message header: one alternative per tool
        return " | ".join(
            f'{marker("<|channel|>")} {_literal("commentary to=functions." + t.name + " ")} {marker("<|constrain|>")} '
            f'{_literal("json")} {marker("<|message|>")} %json {json.dumps({**_tool_schema(t, False), "x-guidance": dict(COMPACT_JSON)})}'
            for t in allowed)
    key = fmt.json_key
    options = [{"type": "object", "properties": {"name": {"const": t.name}, key: _tool_schema(t)},
                "required": ["name", key], "additionalProperties": False} for t in allowed]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    after, listed, before = _LAYOUTS[fmt.name]
    if listed:
        schema = {"type": "array", "items": schema, "minItems": 1, "maxItems": 1}
    schema = {**schema, "x-guidance": dict(COMPACT_JSON)}  # compact inside the markup too
    parts = [marker(fmt.start) if fmt.start else "", _literal(after) if after else "", f"%json {json.dumps(schema)}",
             _literal(before) if before else "", marker(fmt.end) if fmt.end else ""]
    return " ".join(p for p in parts if p)


#: no reasoning before the constrained reply
NO_THINKING = ("", "")


def thinking_rules(open_marker: str | None, close: str, inside: bool,
                   marker: Callable[[str], str] = _literal) -> tuple[str, str]:
    """``(head, rules)`` that let a reasoning block come before the constrained reply: the reasoning text, its
    close marker and the blank lines after it, opened by ``open_marker`` (optional: the model may not think)
    or already open (``inside``: the generation prompt opened it). A close marker that is one token ends the
    free text by itself (text cannot match a token); else the text is lazy (ends at the first marker)."""
    closing = marker(close)
    if closing.startswith("<["):
        rules = f"\nthink_text: /(?s:.*)/ {closing} /\\n*/"
    else:
        rules = f"\nthink_text: think_body /\\n*/\nthink_body[lazy]: /(?s:.*)/ {closing}"
    if inside:
        return "think_text ", rules
    return "thinking? ", rules + f"\nthinking: {marker(open_marker or '')} think_text"


def tool_call_grammar(tools: list[ToolDefinition], choice: str, fmt: ToolFormat,
                      marker: Callable[[str], str] = _literal, thinking: tuple[str, str] = NO_THINKING) -> str:
    """The grammar of exactly one call, in the model's format, of ``choice`` (a tool's name) or of any of
    ``tools`` (``choice == "required"``); the arguments match the tool's parameters (closed). ``thinking``:
    ``thinking_rules`` when a reasoning block may come first."""
    head, rules = thinking
    return _lark(f"start: {head}call\ncall: {_call_rule(tools, choice, fmt, marker)}{rules}")


def harmony_thinking(marker: Callable[[str], str]) -> tuple[str, str]:
    """``(head, rules)`` of an optional harmony ``analysis`` message before the constrained one."""
    return "thinking? ", (f'\nthinking: {marker("<|channel|>")} {_literal("analysis")} {marker("<|message|>")} '
                          f'/(?s:.*)/ {marker("<|end|>")} {marker("<|start|>")} {_literal("assistant")}')


def call_or_json_grammar(tools: list[ToolDefinition], fmt: ToolFormat, output: OutputFormat,
                         marker: Callable[[str], str] = _literal, thinking: tuple[str, str] = NO_THINKING) -> str:
    """``tool_choice="auto"`` with a ``response_format``: the reply is one call of any of ``tools`` (in the
    model's format) or JSON of the output schema (compact)."""
    head, rules = thinking
    return _lark(f"start: {head}(call | answer)\ncall: {_call_rule(tools, 'auto', fmt, marker)}\n"
                 f"answer: {_json_rule(output, fmt, marker)}{rules}")


def _json_rule(output: OutputFormat, fmt: ToolFormat | None = None, marker: Callable[[str], str] = _literal) -> str:
    """JSON of the output schema (compact); in a harmony reply, as the ``final`` message."""
    schema = {**_output_schema(output), "x-guidance": dict(COMPACT_JSON)}
    header = ""
    if fmt is not None and fmt.name == "harmony":
        header = f'{marker("<|channel|>")} {_literal("final")} {marker("<|message|>")} '
    return f"{header}%json {json.dumps(schema)}"


def json_after_thinking_grammar(output: OutputFormat, thinking: tuple[str, str], fmt: ToolFormat | None = None,
                                marker: Callable[[str], str] = _literal) -> str:
    """A ``response_format`` with a reasoning block first (``thinking_rules``)."""
    head, rules = thinking
    return _lark(f"start: {head}answer\nanswer: {_json_rule(output, fmt, marker)}{rules}")


def _lark(text: str) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_lark(text)


class GrammarCompiler:
    """Grammars for one tokenizer: llguidance's tokenizer is built once (about a second for a large
    vocabulary) and shared by every request."""

    def __init__(self, hf_tokenizer: Any, n_vocab: int, eos_token_ids: list[int]) -> None:
        self._hf = hf_tokenizer
        self.n_vocab = n_vocab
        self.eos = list(eos_token_ids)
        self._tokenizer: Any = None
        self._added: dict[str, int] | None = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from llguidance.hf import from_tokenizer

            self._tokenizer = from_tokenizer(self._hf, n_vocab=self.n_vocab, eos_token=self.eos or None)
        return self._tokenizer

    def marker(self, text: str) -> str:
        """Markup such as ``<tool_call>`` as the grammar must write it: a token reference (``<[id]>``) when the
        tokenizer has it as one added token (real Qwen, Llama 3 and Mistral files do, ``special`` or not:
        llguidance treats every added token as special, so the literal text would let the token through the
        mask and then refuse it), else the literal text."""
        if self._added is None:
            added = getattr(self._hf, "get_added_vocab", None)
            self._added = dict(added()) if callable(added) else {}
        token = self._added.get(text)
        return f"<[{token}]>" if token is not None and token < self.n_vocab else _literal(text)

    def processor(self, grammar: str, what: str) -> "GrammarProcessor":
        """A processor for ``grammar``; ``InvalidParameterError`` (naming ``what``) when it cannot compile."""
        from llguidance import LLMatcher

        error = LLMatcher.validate_grammar(grammar, self.tokenizer)
        if error and not error.startswith("WARNING"):
            raise InvalidParameterError(f"The {what} cannot be compiled into a grammar: {error}", param=what)
        matcher = LLMatcher(self.tokenizer, grammar)
        if matcher.is_error():
            raise InvalidParameterError(f"The {what} cannot be compiled into a grammar: {matcher.get_error()}",
                                        param=what)
        return GrammarProcessor(matcher, self.n_vocab)


class GrammarProcessor:
    """An mlx-lm logits processor (``processor(tokens, logits) -> logits``) that allows only the tokens
    the grammar allows. mlx-lm calls it once per generated token with the token history; from the second
    call on, the last token of that history is the token the request just sampled."""

    def __init__(self, matcher: Any, n_vocab: int) -> None:
        self.matcher = matcher
        self.n_vocab = n_vocab
        self._started = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx
        import numpy as np

        matcher = self.matcher
        if self._started:
            token = int(tokens[-1].item())
            if not matcher.consume_token(token):
                raise GenerationError(f"constrained decoding: token {token} was refused ({matcher.get_error()})")
        self._started = True
        bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        width = logits.shape[-1]
        allowed = np.zeros(width, dtype=bool)
        n = min(width, bits.shape[0])
        allowed[:n] = bits[:n].astype(bool)
        if not allowed.any():
            raise GenerationError(f"constrained decoding: the grammar allows no token ({matcher.get_error()})")
        return mx.where(mx.array(allowed), logits, mx.array(-float("inf"), dtype=logits.dtype))


def active_tools(req: Any) -> list[ToolDefinition]:
    """The tools of a request (an engine request or a ``GenerationRequest``), unless ``tool_choice`` is
    ``"none"`` (then the model does not see them)."""
    request = getattr(req, "request", req)
    return [] if request.params.get("tool_choice") == "none" else list(request.tools or [])


def is_constrained(req: Any) -> bool:
    """Whether the request's output is constrained by a grammar (a forced tool call or a response_format)."""
    choice = req.params.get("tool_choice") or "auto"
    return bool(active_tools(req) and choice not in ("auto", "none")) or req.params.get("response_format") is not None


def constrain_request(req: "EngineRequest", grammars: GrammarCompiler, fmt: ToolFormat | None,
                      thinking: tuple[str, str] = NO_THINKING) -> list[Any]:
    """Set up what a request with tools or a ``response_format`` needs: the extractor of tool calls on its
    pipeline, and a grammar processor when its output is constrained (returned, to add to its processors).
    ``thinking``: ``thinking_rules`` when the model may reason before the constrained reply."""
    tools = active_tools(req)
    choice = req.params.get("tool_choice") or "auto"
    if tools:
        if fmt is None:
            raise UnsupportedFeatureError("This model's chat template has no tool-call format.", feature="tools")
        forced = choice not in ("auto", "none")
        if fmt.name != "harmony":  # harmony's calls come out of its channels (reasoning.HarmonySplitter)
            req.pipeline.tools = ToolCallExtractor(fmt, [t.to_openai() for t in tools], forced=forced)
        if forced:  # the reply is a call: a response_format does not apply to it
            processor = grammars.processor(tool_call_grammar(tools, choice, fmt, grammars.marker, thinking),
                                           "tool_choice")
            _check_after(req, [t for t in tools if choice == "required" or t.name == choice], None)
            return [processor]
        output = req.params.get("response_format")
        if output is not None:  # a call, or JSON of the schema
            processor = grammars.processor(call_or_json_grammar(tools, fmt, output, grammars.marker, thinking),
                                           "response_format")
            _check_after(req, tools, output)
            return [processor]
        return []
    output = req.params.get("response_format")
    if output is not None:
        harmony = fmt is not None and fmt.name == "harmony"
        grammar = (json_after_thinking_grammar(output, thinking, fmt, grammars.marker) if thinking[0] or harmony
                   else json_grammar(output))
        processor = grammars.processor(grammar, "response_format")
        _check_after(req, [], output)
        return [processor]
    return []


def _check_after(req: "EngineRequest", tools: list[ToolDefinition], output: OutputFormat | None) -> None:
    """Where the grammar had to relax a tool's or the ``response_format``'s schema (schemas.py), the reply is
    checked against the original schema after generation (``schemas.ReplyCheck``: the last chunk's
    ``metadata["schema_relaxed"]`` / ``["schema_errors"]``)."""
    reply = ReplyCheck()
    for t in tools:
        reply.add_tool(t.name, t.parameters, relax(_closed(t.parameters)))
    if output is not None and output.schema is not None:
        reply.add_output(output.name, output.schema, relax(_bounded(output.schema, False)))
    if reply and callable(getattr(req, "emit", None)):
        req.emit = reply.wrap(req.emit)


def chat_dict(m: "Message") -> dict[str, Any]:
    """A message as chat templates take it: tool calls with their arguments as a dict, tool results
    with their ``tool_call_id``."""
    out: dict[str, Any] = {"role": m.role, "content": m.text}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning:  # the names templates read it under (Qwen3, DeepSeek: reasoning_content; gpt-oss: thinking)
        out["reasoning_content"] = out["thinking"] = m.reasoning
    return out
