"""OpenAI Responses API request bodies (``POST /v1/responses``) as pydantic models, and their translation
into the provider's chat messages and parameters (the ``input`` items, and their translation, are in
``responses_input``).

Accepted: ``input`` as a string or a list of items: messages (``role`` ``user``, ``system``, ``developer`` or
``assistant``; ``content`` a string or parts: ``input_text`` and ``input_image`` with an ``image_url`` (data URI
or http(s) URL) from the user side, ``output_text`` / ``refusal`` from the assistant), ``function_call`` and
``function_call_output`` items, ``custom_tool_call`` and ``custom_tool_call_output`` items, and ``reasoning``
items sent back (their ``reasoning_text`` content, else their summary, is the reasoning of the assistant turn
that follows; ``encrypted_content`` is ignored); ``instructions``, ``max_output_tokens`` (without it the reply
may run to the end of the context, as OpenAI's does), ``temperature``, ``top_p``, ``stream``, ``text.format``
(``text``, ``json_object``, ``json_schema``), ``tools`` and ``tool_choice``, ``previous_response_id``, ``store``
(``false``: the client resends the whole history, as Codex does), ``reasoning.effort`` (as chat completions'
``reasoning_effort``: ``thinking`` where the model can take it); the extension fields ``top_k``, ``min_p``,
``repetition_penalty``, ``seed``, ``thinking``, ``thinking_budget``, ``chat_template_kwargs``.

Tools: ``function`` tools; ``custom`` tools (free-form input) are shown to the model as functions of one string
``input`` and their calls come back as ``custom_tool_call`` items; ``namespace`` tools (Codex groups tools in
them) are served as the functions they contain, their calls coming back with the ``namespace`` field set, as
Codex reads them. Hosted tools the server cannot run (``web_search``, ``file_search``, ``code_interpreter``,
``computer_use``, ``image_generation``, ``mcp``, ``local_shell``, ...) are ignored with a log line, never a 400.

Ignored (``fields.py``: logged once, listed in ``x-abstractllm-ignored``): ``include``, ``prompt_cache_key``,
``prompt_cache_retention``, ``safety_identifier``, ``client_metadata``, ``user``, ``service_tier``,
``conversation``, ``prompt``, ``background`` (the reply is made at once), ``max_tool_calls``, ``truncation:
auto``, ``text.verbosity``, ``reasoning.summary``, ``parallel_tool_calls: false``, hosted tools, input items
of types this server has no use for (``item_reference``, ``web_search_call``, ``compaction``, ...), and unknown
fields (a 400 with ``--strict-fields``). A 400 in OpenAI's error shape: wrong types, unknown part types,
``input_file`` parts and ``file_id`` images (no Files API), a part in the wrong role, a
``function_call_output`` whose ``call_id`` no earlier ``function_call`` made.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, PrivateAttr, Tag

from .errors import APIError
from .fields import Body, note_ignored, parse_model
from .reasoning import effort_thinking
from .responses_input import Item, check_item_types, continue_history
from .schemas import ParsedRequest, reasoning_params

__all__ = ["ResponsesRequest", "parse_responses", "Conversation", "ToolName"]


class _Body(Body):
    pass


class _FunctionTool(_Body):
    _ignored = {"defer_loading": None}
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: Any = None

    def to_chat(self, name: str | None = None) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name or self.name, "description": self.description or "",
                                                 "parameters": self.parameters or {"type": "object", "properties": {}}}}


class _CustomTool(_Body):
    """A free-form tool (its input is text, optionally of a grammar): shown to the model as a function of one
    string ``input``."""

    _ignored = {"format": ({"type": "text"},)}
    type: Literal["custom"]
    name: str
    description: str | None = None
    format: Any = None
    defer_loading: Any = None

    def to_chat(self, name: str | None = None) -> dict[str, Any]:
        params = {"type": "object", "properties": {"input": {"type": "string", "description": "The tool's input."}},
                  "required": ["input"]}
        return {"type": "function", "function": {"name": name or self.name, "description": self.description or "",
                                                 "parameters": params}}


_Inner = Annotated[Union[_FunctionTool, _CustomTool], Field(discriminator="type")]


class _NamespaceTool(_Body):
    """Codex's group of tools: the functions it holds are served, each under its own name."""

    type: Literal["namespace"]
    name: str
    description: str | None = None
    tools: list[_Inner] = Field(default_factory=list)


#: hosted tools, run by OpenAI's servers: ignored here (``tools.<type>``)
_HOSTED_TOOLS = ("web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26",
                 "file_search", "code_interpreter", "computer_use", "computer_use_preview", "computer",
                 "image_generation", "mcp", "local_shell", "shell", "apply_patch", "tool_search")


class _HostedTool(Body):
    _lenient = _opaque = True
    type: str


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("function", "custom", "namespace") else "hosted"


AnyTool = Annotated[Union[Annotated[_FunctionTool, Tag("function")], Annotated[_CustomTool, Tag("custom")],
                          Annotated[_NamespaceTool, Tag("namespace")], Annotated[_HostedTool, Tag("hosted")]],
                    Discriminator(_tool_kind)]


class _NamedFunction(_Body):
    type: Literal["function", "custom"]
    name: str


class _AllowedToolsChoice(_Body):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class _HostedChoice(Body):
    _lenient = _opaque = True
    type: str


def _choice_kind(value: Any) -> str:
    if isinstance(value, str):
        return "mode"
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return {"function": "named", "custom": "named", "allowed_tools": "allowed"}.get(kind, "hosted")


ToolChoice = Annotated[Union[Annotated[Literal["auto", "none", "required"], Tag("mode")],
                             Annotated[_NamedFunction, Tag("named")], Annotated[_AllowedToolsChoice, Tag("allowed")],
                             Annotated[_HostedChoice, Tag("hosted")]], Discriminator(_choice_kind)]


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
    _ignored = {"verbosity": "medium"}
    format: Optional[Annotated[Union[_FormatText, _FormatJSONObject, _FormatJSONSchema],
                               Field(discriminator="type")]] = None
    verbosity: Any = None


class _Reasoning(_Body):
    _ignored = {"summary": None, "generate_summary": None}
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed", "none"] | None = None
    generate_summary: Literal["auto", "concise", "detailed", "none"] | None = None


class Conversation:
    """The chat messages of a request (``messages``, ``instructions`` first) and what a stored reply
    continues (``history``: the same without ``instructions``)."""

    def __init__(self, messages: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.messages, self.history = messages, history


class ToolName:
    """A tool as the model sees it (``model_name``) and as the client knows it (``name``, ``namespace``,
    ``kind``: "function" or "custom")."""

    def __init__(self, model_name: str, name: str, namespace: str | None, kind: str) -> None:
        self.model_name, self.name, self.namespace, self.kind = model_name, name, namespace, kind


class ResponsesRequest(_Body):
    """``POST /v1/responses``."""

    _ignored = {"include": ([],), "prompt_cache_key": None, "prompt_cache_retention": None, "safety_identifier": None,
                "client_metadata": None, "user": None, "service_tier": ("auto", "default"), "conversation": None,
                "prompt": None, "background": False, "max_tool_calls": None, "truncation": "disabled",
                "top_logprobs": 0, "parallel_tool_calls": True, "context_management": None}
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
    tools: list[AnyTool] | None = None
    tool_choice: Optional[ToolChoice] = None
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
    background: bool | None = None
    prompt_cache_key: Any = None
    prompt_cache_retention: Any = None
    safety_identifier: Any = None
    client_metadata: Any = None  # Codex
    conversation: Any = None
    prompt: Any = None
    max_tool_calls: Any = None
    top_logprobs: Any = None
    context_management: Any = None
    _names: dict[str, ToolName] = PrivateAttr(default_factory=dict)

    def tool_names(self) -> dict[str, ToolName]:
        """The tools the model is shown, by the name it sees: a namespace's functions under their own names
        (qualified as ``namespace__name`` only where two would clash)."""
        if self._names or not self.tools:
            return self._names
        entries: list[tuple[str, str | None, Any]] = []
        for tool in self.tools:
            if isinstance(tool, _NamespaceTool):
                entries += [(t.name, tool.name, t) for t in tool.tools]
            elif isinstance(tool, (_FunctionTool, _CustomTool)):
                entries.append((tool.name, None, tool))
            else:
                note_ignored(f"tools.{tool.type}", "a hosted tool this server cannot run")
        counts: dict[str, int] = {}
        for name, _, _ in entries:
            counts[name] = counts.get(name, 0) + 1
        for name, namespace, tool in entries:
            model_name = f"{namespace}__{name}" if namespace and counts[name] > 1 else name
            self._names[model_name] = ToolName(model_name, name, namespace,
                                               "custom" if isinstance(tool, _CustomTool) else "function")
            self._names[model_name].tool = tool  # type: ignore[attr-defined]
        return self._names

    def model_name(self, name: str, namespace: str | None) -> str:
        """The name the model knows a client's tool by."""
        for entry in self.tool_names().values():
            if entry.name == name and entry.namespace == namespace:
                return entry.model_name
        return name

    def _choice(self) -> tuple[Any, list[dict[str, Any]] | None]:
        """``tool_choice`` for the provider, and the tools it restricts the model to (``allowed_tools``)."""
        choice = self.tool_choice
        if choice is None or isinstance(choice, str):
            return choice, None
        if isinstance(choice, _NamedFunction):
            return self.model_name(choice.name, None), None
        if isinstance(choice, _AllowedToolsChoice):
            names = {self.model_name(t.get("name", ""), t.get("namespace")) for t in choice.tools}
            return choice.mode, [n for n in names]
        note_ignored(f"tool_choice.{choice.type}", "a hosted tool this server cannot run")
        return None, None

    def params(self) -> dict[str, Any]:
        """The provider's parameters (values checked by the provider)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
        out: dict[str, Any] = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        if self.max_output_tokens is not None:
            out["max_tokens"] = self.max_output_tokens
        choice, allowed = self._choice()
        tools = [entry.tool.to_chat(model_name) for model_name, entry in self.tool_names().items()  # type: ignore
                 if allowed is None or model_name in allowed]
        if tools:
            out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
        fmt = self.text.format if self.text is not None else None
        if isinstance(fmt, _FormatJSONObject):
            out["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, _FormatJSONSchema):
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}}
        out.update(reasoning_params(self))
        return out

    def history_of(self, previous: list[dict[str, Any]] | None) -> Conversation:
        """The conversation: ``previous`` (a stored response's) continued by this request's ``input``."""
        history = continue_history(previous, self.input, self.model_name)
        system = [{"role": "system", "content": self.instructions}] if self.instructions else []
        return Conversation(system + history, history)

    def to_parsed(self, previous: list[dict[str, Any]] | None) -> tuple[ParsedRequest, Conversation]:
        convo = self.history_of(previous)
        parsed = ParsedRequest(messages=convo.messages, params=self.params(), stream=bool(self.stream),
                               model=self.model, max_tokens_param="max_output_tokens",
                               soft_thinking=effort_thinking(self.reasoning.effort if self.reasoning else None),
                               max_tokens_asked=self.max_output_tokens)
        return parsed, convo


def parse_responses(data: dict[str, Any], strict: bool = False) -> ResponsesRequest:
    """``POST /v1/responses`` (400 naming the first offending field; ``strict``: unknown fields, item types and
    tool types are a 400 too)."""
    body = parse_model(ResponsesRequest, data, strict)
    if strict:
        check_item_types(body.input)
        for i, tool in enumerate(body.tools or []):
            if isinstance(tool, _HostedTool) and tool.type not in _HOSTED_TOOLS:
                raise APIError(400, f"Invalid 'tools[{i}].type': unknown tool type {tool.type!r}.", param="tools",
                               code="invalid_value")
    return body
