"""AbstractLLM 1.x's "enhanced tool system" names, over this package's tools.

``EnhancedToolDefinition`` is a ``ToolDefinition`` built from 1.x's per-parameter ``ParameterSchema`` map
(its ``examples``, ``category``, ``timeout``, ... kept in ``metadata``); it goes wherever a tool goes.
``ToolChoice`` is ``abstractllm.tools.ToolChoice``; ``EnhancedToolCall`` is ``ToolCall``;
``EnhancedToolResult`` is ``ToolResult``. ``ToolExecutionState`` is 1.x's ReAct scratchpad record, kept as
plain data (nothing here reads it: this package has no ReAct cycles; docs/migration.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

from ..types import ToolCall
from .core import ToolChoice, ToolDefinition, ToolResult, function_to_tool_definition

__all__ = ["ParameterSchema", "ToolExample", "EnhancedToolDefinition", "ToolChoice", "EnhancedToolCall",
           "EnhancedToolResult", "ToolExecutionState"]

EnhancedToolCall = ToolCall
EnhancedToolResult = ToolResult


@dataclass
class ParameterSchema:
    """One parameter's JSON schema, field by field (1.x)."""

    type: str
    description: Optional[str] = None
    enum: Optional[list[Any]] = None
    required: bool = True
    default: Optional[Any] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    pattern: Optional[str] = None
    items: Optional["ParameterSchema"] = None
    properties: Optional[dict[str, "ParameterSchema"]] = None

    def to_json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        for key in ("description", "enum", "pattern"):
            if getattr(self, key):
                schema[key] = getattr(self, key)
        for key in ("default", "minimum", "maximum"):
            if getattr(self, key) is not None:
                schema[key] = getattr(self, key)
        if self.items:
            schema["items"] = self.items.to_json_schema()
        if self.properties:
            schema["properties"] = {k: v.to_json_schema() for k, v in self.properties.items()}
        return schema


@dataclass
class ToolExample:
    """An example call, for prompts (1.x)."""

    input_description: str
    arguments: dict[str, Any]
    expected_output: Optional[str] = None

    def to_prompt(self) -> str:
        text = f"Example: {self.input_description}\nTool call: {json.dumps(self.arguments, indent=2)}"
        return text + (f"\nExpected output: {self.expected_output}" if self.expected_output else "")


_EXTRAS = ("examples", "category", "version", "timeout", "retry_config", "rate_limit", "requires_confirmation")


class EnhancedToolDefinition(ToolDefinition):
    """A ``ToolDefinition`` from 1.x's ``EnhancedToolDefinition(name, description, parameters={name:
    ParameterSchema}, examples=[...], category=..., timeout=..., ...)``."""

    def __init__(self, name: str, description: str = "", parameters: Any = None,
                 function: Optional[Callable[..., Any]] = None, **extras: Any) -> None:
        unknown = set(extras) - set(_EXTRAS) - {"input_schema", "output_schema", "metadata"}
        if unknown:
            raise TypeError(f"EnhancedToolDefinition got unexpected arguments: {', '.join(sorted(unknown))}")
        if isinstance(parameters, dict) and parameters and all(isinstance(v, ParameterSchema)
                                                               for v in parameters.values()):
            parameters = {"type": "object", "properties": {k: v.to_json_schema() for k, v in parameters.items()},
                          "required": [k for k, v in parameters.items() if v.required]}
        metadata = dict(extras.pop("metadata", None) or {})
        metadata.update({k: extras.pop(k) for k in _EXTRAS if k in extras})
        super().__init__(name, description, parameters, function, metadata=metadata, **extras)

    @property
    def examples(self) -> list[ToolExample]:
        return list(self.metadata.get("examples") or [])

    @property
    def category(self) -> Optional[str]:
        return self.metadata.get("category")

    def to_prompt_with_examples(self) -> str:
        text = f"Tool: {self.name}\nDescription: {self.description}\n"
        if self.examples:
            text += "\nExamples:\n" + "".join(f"\n{i}. {e.to_prompt()}\n" for i, e in enumerate(self.examples, 1))
        return text

    @classmethod
    def from_function(cls, func: Callable[..., Any], **extras: Any) -> "EnhancedToolDefinition":  # type: ignore[override]
        base = function_to_tool_definition(func)
        return cls(base.name, base.description, base.parameters, func, **extras)


@dataclass
class ToolExecutionState:
    """1.x's record of a ReAct tool loop (data only here)."""

    conversation_id: str
    executed_tools: list[str] = field(default_factory=list)
    tool_results: list[Any] = field(default_factory=list)
    facts_extracted: list[dict[str, Any]] = field(default_factory=list)
    scratchpad: str = ""
    iteration_count: int = 0
    max_iterations: int = 10

    def add_fact(self, subject: str, predicate: str, object: Any) -> None:  # noqa: A002 - the 1.x name
        self.facts_extracted.append({"subject": subject, "predicate": predicate, "object": object,
                                     "timestamp": datetime.now().isoformat(), "iteration": self.iteration_count})

    def update_scratchpad(self, thought: str, action: Optional[str] = None, observation: Optional[str] = None) -> None:
        for label, text in (("Thought", thought), ("Action", action), ("Observation", observation)):
            if text:
                self.scratchpad += f"\n{label} {self.iteration_count}: {text}"

    def get_context(self) -> str:
        text = f"Iteration: {self.iteration_count}/{self.max_iterations}\n"
        text += f"Tools executed: {', '.join(self.executed_tools)}\n"
        return text + (f"\nReasoning so far:\n{self.scratchpad}\n" if self.scratchpad else "")
