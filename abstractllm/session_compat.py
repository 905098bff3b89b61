"""The AbstractLLM 1.x spellings of ``Session`` (``abstractllm.session``): its tool methods, as a mixin over
the real ``generate`` and history, and the 1.x options the session accepts and ignores.

``add_tool``, ``generate_with_tools`` and ``generate_with_tools_streaming`` (deprecated: ``generate`` runs
Python tools already), ``execute_tool_call(s)`` and ``add_tool_result``; ``_with_functions`` joins 1.x's
``tool_functions`` (name -> function) into the tools of a call.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping, Sequence

from .exceptions import InvalidParameterError
from .session_io import _new_id, _now
from .tool_runner import ToolResultEvent, ToolRunner, result_dict
from .tools import ToolDefinition, function_to_tool_definition, normalize_tools
from .types import Message, Response, ToolCall

__all__ = ["SessionToolsMixin"]

#: 1.x Session options that have no meaning here (hierarchical memory, retries, ...): accepted, ignored
_IGNORED_1X_OPTIONS = frozenset({
    "enable_memory", "memory_config", "enable_retry", "retry_config", "persist_memory", "memory_facts_max",
    "memory_facts_min_confidence", "memory_facts_min_occurrences",
})
#: 1.x per-call Session.generate options with no meaning here (memory, ReAct cycles): accepted, ignored
_IGNORED_1X_CALL_OPTIONS = frozenset({"use_memory_context", "create_react_cycle", "adjust_system_prompt",
                                      "structured_config"})


class SessionToolsMixin:
    """1.x's tool API of ``Session``: each method is a 1.x spelling over the session's ``tools``,
    ``messages`` and ``generate`` (the class that mixes it in provides them)."""

    tools: list[ToolDefinition]
    messages: list[Message]
    id: str
    last_updated: str
    _provider: Any
    generate: Any

    def add_tool(self, tool: Any) -> ToolDefinition:
        """Add a tool for every later turn (a function, an OpenAI / 1.x dict, or a ``ToolDefinition``);
        returns its definition (``session.tools`` holds definitions)."""
        definition = normalize_tools([*self.tools, tool])[-1]
        self.tools.append(definition)
        return definition

    def generate_with_tools(self, tool_functions: Mapping[str, Any] | None = None,
                            tools: Sequence[Any] | None = None, prompt: str | None = None, provider: Any = None,
                            max_tool_calls: int | None = None, system_prompt: str | None = None,
                            files: Any = None, **params: Any) -> Response:
        """1.x: ``generate`` with its tools run (deprecated: ``generate`` runs them already)."""
        _deprecated("Session.generate_with_tools()", "Session.generate() (it runs Python tools by default)")
        params.pop("adjust_system_prompt", None)
        return self.generate(prompt, files, system_prompt=system_prompt, tools=tools, tool_functions=tool_functions,
                             max_tool_calls=max_tool_calls, provider=provider, **params)  # type: ignore[return-value]

    def generate_with_tools_streaming(self, tool_functions: Mapping[str, Any] | None = None,
                                      tools: Sequence[Any] | None = None, prompt: str | None = None,
                                      provider: Any = None, max_tool_calls: int | None = None,
                                      system_prompt: str | None = None, files: Any = None,
                                      **params: Any) -> Iterator[Any]:
        """1.x: the streamed turn as text pieces (``str``) and ``{"type": "tool_result", "tool_call": {...}}``
        dicts (deprecated: ``generate(..., stream=True)`` yields the same events between its chunks)."""
        _deprecated("Session.generate_with_tools_streaming()", "Session.generate(..., stream=True)")
        params.pop("adjust_system_prompt", None)
        stream = self.generate(prompt, files, True, system_prompt=system_prompt, tools=tools,
                               tool_functions=tool_functions, max_tool_calls=max_tool_calls, provider=provider,
                               **params)
        for chunk in stream:  # type: ignore[union-attr]
            if isinstance(chunk, ToolResultEvent):
                yield dict(chunk)
            elif chunk.content:
                yield chunk.content

    def execute_tool_call(self, tool_call: ToolCall, tool_functions: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """1.x: run one call with ``tool_functions`` (else the session's tools); its result as a dict
        ``{"call_id", "name", "arguments", "output", "error"}`` (an exception is reported in ``error``)."""
        if isinstance(tool_call, dict):  # 1.x's event dict: {"name", "arguments", "id" or "call_id"}
            tool_call = ToolCall(str(tool_call.get("id") or tool_call.get("call_id") or f"call_{_new_id()[:8]}"),
                                 str(tool_call.get("name")), dict(tool_call.get("arguments") or {}))
        tools = _with_functions(list(self.tools), tool_functions)
        definitions = normalize_tools(tools)
        if not definitions:
            return {"call_id": tool_call.id, "name": tool_call.name, "arguments": tool_call.arguments,
                    "output": None, "result": None, "error": f"there is no tool named {tool_call.name!r}"}
        runner = ToolRunner(definitions, True, context={"session_id": self.id, "provider": self._provider})
        return result_dict(runner.run([tool_call])[0])

    def execute_tool_calls(self, response: Response, tool_functions: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """1.x: ``execute_tool_call`` for every call of ``response``."""
        if not response.has_tool_calls():
            raise InvalidParameterError("The response has no tool calls.", param="response")
        return [self.execute_tool_call(c, tool_functions) for c in response.tool_calls or []]

    def add_tool_result(self, tool_call_id: str, result: Any, error: str | None = None,
                        tool_name: str | None = None, arguments: dict[str, Any] | None = None) -> Message:
        """1.x: record a tool's result, run by the application, for a call of the last assistant message: a
        ``"tool"`` message answering ``tool_call_id`` (what the model sees next) and an entry of that
        assistant message's ``tool_results``."""
        assistant = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
        if assistant is None:
            raise InvalidParameterError("No assistant message to attach a tool result to.", param="tool_call_id")
        if tool_name is None:
            tool_name = next((c.name for c in assistant.tool_calls if c.id == tool_call_id), None)
        entry = {"call_id": tool_call_id, "name": tool_name, "arguments": arguments, "output": result,
                 "result": result, "error": error}
        assistant.metadata.setdefault("tool_results", []).append(entry)
        if error is not None:
            content = json.dumps({"error": error}, ensure_ascii=False)
        else:
            content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
        message = Message("tool", content, name=tool_name, tool_call_id=tool_call_id,
                          metadata={"timestamp": _now(), "tool_name": tool_name, **({"error": error} if error else {})})
        self.messages.append(message)
        self.last_updated = message.metadata["timestamp"]
        return message


def _deprecated(old: str, new: str) -> None:
    import warnings

    warnings.warn(f"{old} is the AbstractLLM 1.x spelling: use {new} (docs/migration.md).", DeprecationWarning,
                  stacklevel=3)


def _with_functions(tools: Any, functions: Mapping[str, Any] | None) -> Any:
    """``tools`` with 1.x's ``tool_functions`` (name -> function) joined in: a named definition without a
    function gets it; a function whose name is not among the tools becomes one."""
    if not functions:
        return tools
    out = list(normalize_tools(tools)) if tools else []
    names = {d.name: i for i, d in enumerate(out)}
    for name, fn in functions.items():
        if name in names:
            d = out[names[name]]
            out[names[name]] = ToolDefinition(d.name, d.description, d.parameters, fn,
                                              output_schema=d.output_schema, metadata=d.metadata)
        else:
            out.append(function_to_tool_definition(fn, name=name))
    return out
