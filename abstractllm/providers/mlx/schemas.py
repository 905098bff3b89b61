"""JSON schemas the grammar engine cannot compile, relaxed for the grammar and checked after generation.

llguidance (1.9) compiles most of JSON Schema into a grammar, but not all of it. It refuses, among others:
``propertyNames``, ``dependentSchemas`` / ``dependentRequired`` / ``dependencies``, ``if`` / ``then`` /
``else``, ``not``, ``contains`` / ``minContains`` / ``maxContains``, ``uniqueItems``,
``unevaluatedProperties`` / ``unevaluatedItems``, ``$dynamicRef``; regexes with look-around, back-references,
``\\b`` or ``\\Z`` (in ``pattern`` and ``patternProperties``); ``patternProperties`` whose regexes are not
disjoint; ``oneOf`` whose branches it cannot prove disjoint; ``minProperties`` / ``maxProperties`` unless every
listed property is required; formats it does not know (``uri-reference``, ``iri``, ``regex``, ``int64``, ...);
``$ref`` to another document or to a pointer that does not exist; and schemas it finds unsatisfiable
(``minLength`` above ``maxLength``, an empty ``enum``, ``allOf`` of incompatible types, a required property a
closed object cannot have). An official API takes such schemas (it constrains a subset, or nothing), so a
request must not fail on them here either.

``relax(schema)`` returns what the grammar gets instead: the same schema with only what llguidance refuses
dropped or widened, node by node and recursively (``$defs`` included), everything else kept. Exact rewrites
lose nothing and are not reported (``propertyNames`` of plain strings dropped; ``propertyNames`` given as an
``enum`` or a ``pattern`` on a record object turned into ``properties`` / ``patternProperties``). Every lossy
step is listed in ``Relaxed.notes``. The keywords are found by compiling, not from a fixed list: each error
llguidance reports is fixed where it points (a keyword it does not implement is dropped wherever it appears,
a format or regex it refuses is dropped where it is, ``oneOf`` becomes ``anyOf``, a reference that does not
resolve is dropped), and an error that names no place (an unsatisfiable schema) is fixed by widening the
deepest sub-schema whose widening removes it (first one keyword less, then its ``type`` alone, then
anything). Whatever still fails leaves the whole schema unconstrained; nothing raises.

A relaxed grammar may let through a reply the original schema refuses, so such a reply is checked after
generation with ``jsonschema`` against the original schema (``check``); ``ReplyCheck`` does it for one request
and writes the result on the last chunk: ``metadata["schema_relaxed"]`` (what the grammar did not enforce)
and, when the reply breaks the original schema, ``metadata["schema_errors"]``. Results are cached per schema,
so an agent sending the same tools every turn pays once.

The walk and the compile check are in ``schema_graph``, the rewrites, fixes and widening in ``schema_fixes``,
the check after generation in ``schema_check`` (``check`` and ``ReplyCheck`` are re-exported here).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .schema_check import ReplyCheck, check
from .schema_fixes import _property_names, _targeted, _widen
from .schema_graph import _error, _nodes, _pointer, _regex_ok, _resolves

__all__ = ["Relaxed", "relax", "grammar_schema", "check", "ReplyCheck", "tool_schema_id"]

log = logging.getLogger(__name__)

_MAX_ROUNDS = 64
_CACHE_SIZE = 256


@dataclass(frozen=True)
class Relaxed:
    """What ``relax`` made of a schema: the ``schema`` the grammar compiles, and ``notes``, one per lossy step
    (empty: the grammar enforces the whole schema). ``invalid``: why the schema is not valid JSON Schema (its
    draft's meta-schema refuses it, or a ``#`` reference points nowhere), as an official API refuses it too;
    ``unsatisfiable``: llguidance's reason when no value can match it (both ``None`` for a good schema)."""

    schema: Any
    notes: tuple[str, ...] = ()
    invalid: str | None = None
    unsatisfiable: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.notes)


# ---------------------------------------------------------------------------------------------- relax
_cache: "OrderedDict[str, Relaxed]" = OrderedDict()
_cache_lock = threading.Lock()


def relax(schema: Any) -> Relaxed:
    """What the grammar compiles for ``schema`` (see the module docstring); cached."""
    try:
        key = json.dumps(schema, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        key = repr(schema)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    out = _relax(schema)
    with _cache_lock:
        _cache[key] = out
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return out


def _relax(schema: Any) -> Relaxed:
    if schema is True or schema == {}:
        return Relaxed({})
    if not isinstance(schema, dict):
        return Relaxed({}, ("#: not a JSON schema object, any value allowed",), invalid="a schema must be an object")
    if _error(schema) is None:
        return Relaxed(schema)
    invalid = _invalid(schema)
    unsatisfiable = None
    notes: list[str] = []
    root = copy.deepcopy(schema)
    for path, node in _nodes(root):
        if "propertyNames" in node:
            _property_names(node, path, notes)
    error = _error(root)
    for _ in range(_MAX_ROUNDS):
        if error is None:
            return Relaxed(root, tuple(notes), invalid, unsatisfiable)
        if not _targeted(root, error, notes):
            if unsatisfiable is None and error.startswith("Unsatisfiable"):
                unsatisfiable = error.splitlines()[0]
            root, widened = _widen(root, error, notes)
            if not widened:
                break
        error = _error(root)
    if error is None:
        return Relaxed(root, tuple(notes), invalid, unsatisfiable)
    kind = schema.get("type")
    whole: dict = {"type": kind} if isinstance(kind, str) and _error({"type": kind}) is None else {}
    log.warning("a JSON schema could not be compiled into a grammar, even relaxed (%s): it is not constrained",
                error.splitlines()[0][:200])
    return Relaxed(whole, (*notes, f"#: the schema is not enforced ({error.splitlines()[0][:160]})"), invalid,
                   unsatisfiable or error.splitlines()[0])


def _invalid(schema: dict) -> str | None:
    """Why ``schema`` is not valid JSON Schema (``None``: it is, or ``jsonschema`` is not installed): its
    draft's meta-schema refuses it (a regex Python does not parse but llguidance does, such as ``\\p{L}``,
    is valid ECMA-262), or a ``#`` reference points nowhere in it."""
    try:
        from jsonschema import validators
    except ImportError:
        return None
    try:
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
        for error in meta.iter_errors(schema):
            if error.validator == "format" and isinstance(error.instance, str) and _regex_ok(error.instance):
                continue
            where = _pointer(tuple(error.absolute_path))
            return f"{error.message[:200]} (at {where})"
    except Exception:  # noqa: BLE001 - a meta-schema jsonschema cannot apply: not our call to refuse
        return None
    for path, node in _nodes(schema):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and not _resolves(schema, ref):
            return f"$ref {ref!r} points nowhere in the schema (at {_pointer(path)})"
    return None


def grammar_schema(schema: Any, param: str, what: str, refuse_unsatisfiable: bool = False) -> Any:
    """The schema the grammar gets for ``schema`` (``relax``); ``InvalidParameterError`` (``param``; the
    message names ``what``) when it is not valid JSON Schema, or (``refuse_unsatisfiable``: a
    ``response_format``, which the whole reply must match) when no value matches it."""
    from ...exceptions import InvalidParameterError

    relaxed = relax(schema)
    reason = relaxed.invalid or (relaxed.unsatisfiable if refuse_unsatisfiable else None)
    if reason:
        raise InvalidParameterError(f"The {what} cannot be compiled into a grammar: {reason}", param=param)
    return relaxed.schema


def tool_schema_id(name: str) -> str:
    """The ``$id`` a tool's parameters get inside a call's grammar, so their ``$ref``s resolve against them
    (``#/$defs/...``) and not against the call object around them."""
    return f"urn:abstractllm:tool:{name}"
