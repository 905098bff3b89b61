"""Structured output: ``response_format=`` as a JSON schema, a pydantic model class, or JSON mode.

    class City(BaseModel):
        name: str
        population: int

    r = llm.generate("A big city?", response_format=City)
    r.parsed          # City(name=..., population=...)

Accepted forms: a pydantic model class; a JSON-schema dict; ``{"type": "json_object"}`` (any JSON
object); OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``; and
``{"type": "text"}`` (no constraint). Providers that decode locally constrain every token to the schema
(the reply always parses); a pydantic model's schema is closed (no extra keys), so even a small model
cannot pad forever. Nothing heavy is imported here.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidParameterError

__all__ = ["OutputFormat", "normalize_response_format"]


@dataclass(frozen=True)
class OutputFormat:
    """A normalized ``response_format``: the JSON ``schema`` (``None``: any JSON object), the pydantic
    ``model`` to build (if one was given), and a ``name``."""

    schema: dict[str, Any] | None
    model: Any = None
    name: str = "response"
    strict: bool = True

    def parse(self, text: str) -> Any:
        """The reply as a dict (or the pydantic model instance). ``InvalidRequestError``-free: returns
        ``None`` for text that is not complete JSON (a reply cut by ``max_tokens``)."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            return None
        if self.model is not None:
            try:
                return self.model.model_validate(data)
            except Exception:
                return None
        return data

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``response_format`` form."""
        if self.schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict}}


def _closed(schema: Any) -> Any:
    """Every object schema without ``additionalProperties`` gets ``false`` (recursively, in a copy)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def normalize_response_format(value: Any) -> OutputFormat | None:
    """``response_format`` as an ``OutputFormat`` (``None`` for no constraint); ``InvalidParameterError``
    for anything else."""
    if value is None or isinstance(value, OutputFormat):
        return value
    if isinstance(value, type) and hasattr(value, "model_json_schema"):  # a pydantic model class
        return OutputFormat(_closed(value.model_json_schema()), value, value.__name__)
    if not isinstance(value, dict):
        raise InvalidParameterError(
            "response_format must be a pydantic model class, a JSON schema dict, {'type': 'json_object'} or "
            f"{{'type': 'json_schema', 'json_schema': {{...}}}}, got {value!r:.80}.", param="response_format")
    kind = value.get("type")
    if kind == "text" and len(value) == 1:
        return None
    if kind == "json_object" and len(value) == 1:
        return OutputFormat(None, None, "json_object")
    if kind == "json_schema" and "json_schema" in value:
        spec = value["json_schema"]
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidParameterError("response_format.json_schema must hold a 'schema' object.",
                                        param="response_format")
        schema = spec.get("schema") or {"type": "object"}
        strict = bool(spec.get("strict", False))
        return OutputFormat(_closed(schema) if strict else copy.deepcopy(schema), None,
                            str(spec.get("name") or "response"), strict)
    if "type" in value or "properties" in value or "anyOf" in value or "$ref" in value or "enum" in value:
        from .tools import check_schema  # the same structural checks as tool schemas

        try:
            check_schema(value, "response_format")
        except InvalidParameterError as exc:
            raise InvalidParameterError(str(exc), param="response_format") from None
        return OutputFormat(copy.deepcopy(value), None, str(value.get("title") or "response"))
    raise InvalidParameterError(f"response_format: not a JSON schema nor a known form: {value!r:.80}.",
                                param="response_format")
