"""After generation, a reply checked against the original schema whose grammar ``schemas.relax`` relaxed
(``abstractllm.providers.mlx``): ``check`` (``jsonschema``, never fetching a reference) and ``ReplyCheck``,
which does it for one request and writes the result on its last chunk.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

__all__ = ["check", "ReplyCheck"]

log = logging.getLogger("abstractllm.providers.mlx.schemas")


# ---------------------------------------------------------------------------------------------- checking
def _refuse(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # never fetched: a schema from a request must not reach the network


def check(schema: Any, instance: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The ways ``instance`` breaks ``schema`` (``jsonschema``, the schema's own draft, formats checked where
    ``jsonschema`` can): ``[{"path", "keyword", "message"}]``, empty when it is valid. A schema ``jsonschema``
    cannot apply (a regex Python does not parse, a reference to another document) gives one entry that says
    so (``keyword`` ``None``). ``jsonschema`` missing: one entry that says the reply was not checked."""
    try:
        from jsonschema import validators
        from referencing import Registry
    except ImportError:
        return [{"path": "", "keyword": None,
                 "message": "not checked: install jsonschema to check replies to relaxed schemas"}]
    if schema is True or schema == {}:
        return []
    try:
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        validator = cls(schema, registry=Registry(retrieve=_refuse), format_checker=cls.FORMAT_CHECKER)
        errors = []
        for error in validator.iter_errors(instance):
            errors.append({"path": "/" + "/".join(str(p) for p in error.absolute_path), "keyword": error.validator,
                           "message": error.message[:500]})
            if len(errors) >= limit:
                break
        return errors
    except RecursionError:
        return [{"path": "", "keyword": None, "message": "not checked: the schema's references loop"}]
    except Exception as exc:  # noqa: BLE001 - jsonschema could not apply the schema
        return [{"path": "", "keyword": None, "message": f"not checked: {type(exc).__name__}: {str(exc)[:300]}"}]


class ReplyCheck:
    """One request's check after generation: the original schemas of the tools and of the ``response_format``
    whose grammar was relaxed. ``wrap(emit)`` watches the chunks the request emits and, on the last one,
    writes ``metadata["schema_relaxed"]`` (``["tool NAME: #/path: what", ...]``) and, when the reply breaks
    an original schema, ``metadata["schema_errors"]``: one entry per error, ``{"target": "tool_call" |
    "response_format", "name", "index" (the call's, among the reply's calls), "path", "keyword", "message"}``."""

    def __init__(self) -> None:
        self.tools: dict[str, Any] = {}
        self.output: Any = None
        self.output_name = "response"
        self.notes: list[str] = []

    def add_tool(self, name: str, schema: Any, relaxed: Any) -> None:
        if relaxed.changed and name not in self.tools:
            self.tools[name] = schema
            self.notes += [f"tool {name}: {n}" for n in relaxed.notes]

    def add_output(self, name: str, schema: Any, relaxed: Any) -> None:
        if relaxed.changed:
            self.output, self.output_name = schema, name
            self.notes += [f"response_format {name}: {n}" for n in relaxed.notes]

    def __bool__(self) -> bool:
        return bool(self.notes)

    def errors(self, text: str, calls: list[Any], finish: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, call in enumerate(calls):
            schema = self.tools.get(getattr(call, "name", None))
            if schema is not None:
                for e in check(schema, getattr(call, "arguments", None)):
                    out.append({"target": "tool_call", "name": call.name, "index": i, **e})
        if self.output is not None and not calls and finish not in ("length", "cancelled"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if data is not None:
                out += [{"target": "response_format", "name": self.output_name, **e} for e in check(self.output, data)]
        return out

    def wrap(self, emit: Callable[[Any], None]) -> Callable[[Any], None]:
        texts: list[str] = []
        calls: list[Any] = []

        def checked(item: Any) -> None:
            chunk = item[1] if isinstance(item, tuple) and len(item) == 2 and item[0] == "item" else None
            if chunk is not None and hasattr(chunk, "metadata"):
                texts.append(chunk.content or "")
                calls.extend(chunk.tool_calls or [])
                if chunk.finish_reason is not None:
                    chunk.metadata["schema_relaxed"] = list(self.notes)
                    try:
                        errors = self.errors("".join(texts), calls, chunk.finish_reason)
                    except Exception as exc:  # noqa: BLE001 - a check that fails must not lose the reply
                        errors = [{"target": None, "path": "", "keyword": None, "message": f"not checked: {exc}"}]
                    if errors:
                        chunk.metadata["schema_errors"] = errors
                        log.warning("the reply breaks its schema where the grammar was relaxed: %s",
                                    "; ".join(f"{e.get('name')} {e['path']}: {e['message']}" for e in errors[:3]))
            emit(item)

        return checked
