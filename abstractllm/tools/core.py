"""The definitions behind ``abstractllm.tools`` (its docstring shows them in use): ``ToolDefinition`` from a
Python callable (its JSON schema from the signature, type hints and docstring), an OpenAI function dict or a
``ToolDefinition``; ``register`` / ``tool``; ``normalize_tools`` and ``normalize_tool_choice``; ``check_schema``
(the structural checks shared with ``response_format``); the 1.x names. Nothing heavy is imported here.
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..exceptions import InvalidParameterError
from ..types import ToolCallResponse

__all__ = ["ToolDefinition", "function_to_tool_definition", "register", "registered_tools", "normalize_tools",
           "normalize_tool_choice", "check_schema", "ToolChoice", "tool", "ToolContext", "ToolResult", "ToolCallResponse",
           "ToolCallRequest"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_REGISTRY: dict[str, "ToolDefinition"] = {}


@dataclass(init=False)
class ToolDefinition:
    """One tool: its ``name``, a ``description`` for the model, the JSON schema of its ``parameters``, and
    the Python ``function`` that runs it (when it came from one).

    The AbstractLLM 1.x spellings are accepted: ``ToolDefinition(name, description, input_schema=...)``
    (``input_schema`` is ``parameters``), ``output_schema=``, ``to_dict()``, ``from_function(fn)``.
    ``metadata`` keeps what ``@tool(...)`` was given (tags, when_to_use, timeout, ...)."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any] | None = field(repr=False, compare=False)
    output_schema: dict[str, Any] | None = field(repr=False, compare=False)
    metadata: dict[str, Any] = field(repr=False, compare=False)

    def __init__(self, name: str, description: str = "", parameters: dict[str, Any] | None = None,
                 function: Callable[..., Any] | None = None, *, input_schema: dict[str, Any] | None = None,
                 output_schema: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> None:
        if parameters is not None and input_schema is not None and parameters != input_schema:
            raise InvalidParameterError("ToolDefinition: give the schema as parameters or as input_schema (its "
                                        "1.x name), not both.", param="parameters")
        schema = parameters if parameters is not None else input_schema
        self.name = name
        self.description = description or ""
        self.parameters = schema if schema is not None else {"type": "object", "properties": {}}
        self.function = function
        self.output_schema = output_schema
        self.metadata = dict(metadata or {})

    @property
    def input_schema(self) -> dict[str, Any]:
        """The 1.x name of ``parameters``."""
        return self.parameters

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI tools-list form: ``{"type": "function", "function": {...}}``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def to_dict(self) -> dict[str, Any]:
        """The 1.x dict form: ``name``, ``description``, ``parameters`` (also as ``input_schema``, its older
        name) and ``output_schema`` when there is one."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "parameters": self.parameters,
                               "input_schema": self.parameters}
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema
        return out

    @classmethod
    def from_function(cls, func: Callable[..., Any]) -> "ToolDefinition":
        """``function_to_tool_definition(func)`` (the 1.x spelling)."""
        return function_to_tool_definition(func)

    def __call__(self, **arguments: Any) -> Any:
        if self.function is None:
            raise InvalidParameterError(f"Tool {self.name!r} has no Python function to run.", param="tools")
        return self.function(**arguments)


# ---------------------------------------------------------------------------------------------- functions
def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a Google / NumPy / Sphinx style docstring."""
    doc = inspect.cleandoc(doc or "")
    lines = doc.splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section = None
    current = None
    for line in lines:
        stripped = line.strip()
        if re.fullmatch(r"(Args|Arguments|Parameters|Params)\s*:?", stripped):
            section = "args"
            continue
        if re.fullmatch(r"-{3,}", stripped):
            continue
        if re.fullmatch(r"(Returns?|Raises?|Yields?|Examples?|Notes?)\s*:?", stripped):
            section = "other"
            continue
        sphinx = re.match(r":param\s+(?:\w+\s+)?(\w+)\s*:\s*(.*)", stripped)
        if sphinx:
            args[sphinx.group(1)] = sphinx.group(2)
            continue
        if section == "args":
            m = re.match(r"(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", stripped)
            if m and not line.startswith(" " * 8):
                current = m.group(1)
                args[current] = m.group(2)
            elif current and stripped:
                args[current] = (args[current] + " " + stripped).strip()
        elif section is None and not stripped.startswith(":"):
            description.append(line)
    return "\n".join(description).strip(), args


def _schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a Python type annotation (str, int, list[X], Optional[X], Literal, Enum, ...)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is type(None):
        return {"type": "null"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [m.value for m in annotation]}
    if hasattr(annotation, "model_json_schema"):  # a pydantic model
        return annotation.model_json_schema()
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [_schema_of(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return schema
    if origin in (list, tuple, set, frozenset, Sequence) or annotation in (list, tuple, set):
        item = _schema_of(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    return {}


def function_to_tool_definition(fn: Callable[..., Any], *, name: str | None = None,
                                description: str | None = None) -> ToolDefinition:
    """A ``ToolDefinition`` from a Python function: its name, its docstring's description, and a JSON
    schema of its parameters from the type hints (defaults make a parameter optional; each parameter's
    description comes from the docstring's ``Args:`` section)."""
    if not callable(fn):
        raise InvalidParameterError(f"A tool must be a callable, a dict or a ToolDefinition, got {fn!r:.60}.",
                                    param="tools")
    doc, arg_docs = _doc_parts(inspect.getdoc(fn) or "")
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        signature, hints = inspect.signature(fn), {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname in ("self", "cls"):
            continue
        annotation = hints.get(pname, param.annotation)
        if isinstance(annotation, str):  # the hints of the whole function did not resolve: this one may
            try:
                annotation = eval(annotation, dict(getattr(fn, "__globals__", {})))  # noqa: S307 - the code's own
            except Exception:
                pass
        if _is_context(annotation):
            continue  # a ToolContext is given by the tool loop, not by the model
        schema = dict(_schema_of(annotation))
        if arg_docs.get(pname):
            schema["description"] = arg_docs[pname]
        default = param.default
        if _is_field_info(default):  # a pydantic Field(...) as the default (1.x @tool style)
            default = _apply_field(default, schema)
        if default is inspect.Parameter.empty:
            required.append(pname)
        elif default is None or isinstance(default, (str, int, float, bool)):
            schema["default"] = default
        properties[pname] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    return ToolDefinition(name=name or fn.__name__, description=description if description is not None else doc,
                          parameters=parameters, function=fn)


def _is_context(annotation: Any) -> bool:
    """Whether a parameter's annotation is ``ToolContext`` (or ``Optional[ToolContext]``)."""
    if annotation is ToolContext or annotation == "ToolContext":
        return True
    return any(a is ToolContext for a in typing.get_args(annotation))


def _is_field_info(value: Any) -> bool:
    return type(value).__name__ == "FieldInfo" and type(value).__module__.startswith("pydantic")


#: pydantic constraint attribute -> JSON schema keyword
_FIELD_CONSTRAINTS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum",
                      "min_length": "minLength", "max_length": "maxLength", "pattern": "pattern",
                      "multiple_of": "multipleOf"}


def _apply_field(info: Any, schema: dict[str, Any]) -> Any:
    """Put a pydantic ``FieldInfo``'s description and constraints into ``schema``; return its default
    (``inspect.Parameter.empty`` when the field is required)."""
    if getattr(info, "description", None):
        schema["description"] = info.description
    for item in getattr(info, "metadata", None) or []:
        for attr, keyword in _FIELD_CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                schema[keyword] = value
    if info.is_required():
        return inspect.Parameter.empty
    return info.get_default(call_default_factory=True)


#: the options of AbstractLLM 1.x's ``@tool(...)``; see ``register`` for what each does here
TOOL_OPTIONS = frozenset({
    "parse_docstring", "docstring_format", "validate_args", "retry_on_error", "max_retries", "timeout",
    "requires_confirmation", "requires_context", "stream_response", "tags", "version", "deprecated",
    "deprecation_message", "response_model", "examples", "when_to_use",
})


def register(fn: Callable[..., Any] | None = None, *, name: str | None = None,
             description: str | None = None, **options: Any) -> Any:
    """Decorator (``@register``, ``@tool``, ``@tool(...)``): marks a function as a tool and keeps its
    definition (``fn.tool_definition``, ``registered_tools()``). The function itself is returned unchanged.

    1.x's ``@tool`` options are accepted (``TOOL_OPTIONS``) and kept in ``tool_definition.metadata``.
    What the tool loop (``abstractllm.tool_runner``) does with them: ``requires_context=True`` gives the
    function a ``ToolContext`` as its ``context`` argument (that parameter is left out of the schema);
    ``when_to_use`` is appended to the description the model sees. The others are recorded only:
    an exception or a bad argument is always reported to the model as the call's result, so it may retry
    (what ``retry_on_error`` / ``max_retries`` asked for); ``timeout`` is not enforced (a Python call
    cannot be stopped safely from outside)."""
    unknown = set(options) - TOOL_OPTIONS
    if unknown:
        from ..exceptions import did_you_mean

        first = sorted(unknown)[0]
        raise InvalidParameterError(f"Unknown tool option {first!r}.{did_you_mean(first, TOOL_OPTIONS)}",
                                    param=first)

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        definition = function_to_tool_definition(f, name=name, description=description)
        definition.metadata.update(options)
        if options.get("when_to_use"):
            definition.description = f"{definition.description}\nWhen to use: {options['when_to_use']}".strip()
        f.tool_definition = definition  # type: ignore[attr-defined]
        _REGISTRY[definition.name] = definition
        return f

    return wrap(fn) if fn is not None else wrap


tool = register  # the AbstractLLM 1.x name (its enhanced ``@tool``)


def registered_tools() -> list[ToolDefinition]:
    """Every tool ``register`` has seen, in order."""
    return list(_REGISTRY.values())


# ---------------------------------------------------------------------------------------------- checks
def check_schema(schema: Any, where: str, depth: int = 0) -> None:
    """The structural rules of JSON Schema a tool's parameters must follow (typed errors, not crashes)."""
    if depth > 32:
        raise InvalidParameterError(f"{where}: the schema is nested too deeply.", param="tools")
    if not isinstance(schema, dict):
        raise InvalidParameterError(f"{where}: a JSON schema must be an object, got {type(schema).__name__}.",
                                    param="tools")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            raise InvalidParameterError(f"{where}: unknown JSON schema type {k!r}.", param="tools")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise InvalidParameterError(f"{where}: 'properties' must be an object.", param="tools")
        for key, sub in props.items():
            check_schema(sub, f"{where}.properties.{key}", depth + 1)
    required = schema.get("required")
    if required is not None and (not isinstance(required, list) or not all(isinstance(r, str) for r in required)):
        raise InvalidParameterError(f"{where}: 'required' must be a list of property names.", param="tools")
    # (a required name absent from "properties" is valid JSON Schema that official APIs take: a call's grammar,
    # whose objects are closed, lists it with any value, providers/mlx/schemas.py)
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            check_schema(sub, f"{where}.{key}", depth + 1)
        elif sub is not None and not isinstance(sub, bool):
            raise InvalidParameterError(f"{where}: '{key}' must be a schema.", param="tools")
    for key in ("anyOf", "oneOf", "allOf"):
        subs = schema.get(key)
        if subs is not None:
            if not isinstance(subs, list) or not subs:
                raise InvalidParameterError(f"{where}: '{key}' must be a non-empty list of schemas.", param="tools")
            for i, sub in enumerate(subs):
                check_schema(sub, f"{where}.{key}[{i}]", depth + 1)
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise InvalidParameterError(f"{where}: 'enum' must be a non-empty list.", param="tools")


def _from_dict(raw: dict[str, Any], index: int) -> ToolDefinition:
    spec = raw.get("function") if raw.get("type") == "function" or "function" in raw else raw
    if not isinstance(spec, dict):
        raise InvalidParameterError(f"tools[{index}]: 'function' must be an object.", param="tools")
    name = spec.get("name")
    parameters = spec.get("parameters", spec.get("input_schema", {"type": "object", "properties": {}}))
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise InvalidParameterError(f"tools[{index}]: 'description' must be a string.", param="tools")
    definition = ToolDefinition(name=name, description=description, parameters=parameters)
    return definition


def normalize_tools(tools: Any) -> list[ToolDefinition]:
    """Tools as ``ToolDefinition``s, checked: names (letters, digits, ``_``, ``-``; unique) and parameter
    schemas. ``InvalidParameterError`` names the offending tool."""
    if tools is None:
        return []
    if isinstance(tools, (dict, ToolDefinition)) or callable(tools) or not isinstance(tools, Sequence):
        tools = [tools]
    out: list[ToolDefinition] = []
    for i, tool in enumerate(tools):
        if isinstance(tool, ToolDefinition):
            definition = tool
        elif isinstance(tool, dict):
            definition = _from_dict(tool, i)
        elif hasattr(tool, "tool_definition") and isinstance(tool.tool_definition, ToolDefinition):
            definition = tool.tool_definition
        elif callable(tool):
            definition = function_to_tool_definition(tool)
        else:
            raise InvalidParameterError(
                f"tools[{i}] must be a function, an OpenAI function dict or a ToolDefinition, got {tool!r:.60}.",
                param="tools")
        if not isinstance(definition.name, str) or not _NAME.match(definition.name):
            raise InvalidParameterError(
                f"tools[{i}]: the name {definition.name!r} must be 1-64 letters, digits, '_' or '-'.", param="tools")
        params = definition.parameters
        check_schema(params, f"tools[{i}] ({definition.name}).parameters")
        if params.get("type", "object") != "object":
            raise InvalidParameterError(f"tools[{i}] ({definition.name}): parameters must be an object schema.",
                                        param="tools")
        out.append(definition)
    names = [d.name for d in out]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidParameterError(f"Two tools are named {duplicate!r}: tool names must be unique.", param="tools")
    return out


class ToolChoice(str, enum.Enum):
    """The ``tool_choice`` modes (1.x's enum; plain strings work the same): ``"auto"`` | ``"none"`` |
    ``"required"``, or a tool's name. 1.x's ``SPECIFIC`` is spelled here by giving the tool's name."""

    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    SPECIFIC = "specific"

    def __str__(self) -> str:
        return self.value


def normalize_tool_choice(choice: Any, tools: list[ToolDefinition]) -> str:
    """``tool_choice`` as ``"auto"``, ``"none"``, ``"required"`` or a tool's name (checked against
    ``tools``)."""
    if choice is None:
        return "auto" if tools else "none"
    if isinstance(choice, ToolChoice):
        if choice is ToolChoice.SPECIFIC:
            raise InvalidParameterError("tool_choice=ToolChoice.SPECIFIC: give the tool's name instead.",
                                        param="tool_choice")
        choice = choice.value
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type") == "function" else choice
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise InvalidParameterError(
                "tool_choice must be 'auto', 'none', 'required', a tool name, or "
                "{'type': 'function', 'function': {'name': ...}}.", param="tool_choice")
        choice = name
    if not isinstance(choice, str):
        raise InvalidParameterError(f"tool_choice must be a string or a dict, got {choice!r:.60}.",
                                    param="tool_choice")
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise InvalidParameterError(f"tool_choice={choice!r} needs tools.", param="tool_choice")
    if choice == "required":
        return choice
    if choice not in {t.name for t in tools}:
        from ..exceptions import did_you_mean

        raise InvalidParameterError(
            f"tool_choice names an unknown tool {choice!r}.{did_you_mean(choice, [t.name for t in tools])} "
            f"Tools: {', '.join(t.name for t in tools)}.", param="tool_choice")
    return choice


# ---------------------------------------------------------------------------------------------- 1.x types
@dataclass
class ToolContext:
    """What a tool declared with ``@tool(requires_context=True)`` receives as its ``context`` argument:
    the ``session_id`` of the session running it (``None`` outside a session), the ``provider``, the
    ``call_id`` and ``tool_name`` of the call, and free ``metadata``. ``memory`` is always ``None``: this
    package has no hierarchical memory (docs/migration.md)."""

    session_id: str | None = None
    user_id: str | None = None
    memory: Any = None
    provider: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    tool_name: str | None = None


class ToolResult:
    """The result of one tool call, as 1.x named it: ``tool_call_id``, ``output`` and ``error`` (``None`` on
    success); ``success``. The older spellings ``call_id`` and ``result`` are accepted and readable."""

    __slots__ = ("tool_call_id", "output", "error", "name", "arguments")

    def __init__(self, tool_call_id: str | None = None, output: Any = None, error: str | None = None, *,
                 call_id: str | None = None, result: Any = None, name: str | None = None,
                 arguments: dict[str, Any] | None = None) -> None:
        self.tool_call_id = tool_call_id if tool_call_id is not None else call_id
        self.output = output if output is not None else result
        self.error = error
        self.name = name
        self.arguments = arguments

    @property
    def success(self) -> bool:
        return self.error is None

    call_id = property(lambda self: self.tool_call_id)
    result = property(lambda self: self.output)

    def to_dict(self) -> dict[str, Any]:
        """1.x's dict form (what a history message's ``tool_results`` holds)."""
        return {"call_id": self.tool_call_id, "name": self.name, "arguments": self.arguments,
                "output": self.output, "error": self.error}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolResult) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ToolResult(tool_call_id={self.tool_call_id!r}, output={self.output!r}, error={self.error!r})"


ToolCallRequest = ToolCallResponse  # the 1.x legacy alias
