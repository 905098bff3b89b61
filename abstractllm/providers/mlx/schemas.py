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
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

__all__ = ["Relaxed", "relax", "grammar_schema", "check", "ReplyCheck", "tool_schema_id"]

log = logging.getLogger(__name__)

#: the options the grammars compile JSON with (constrain.COMPACT_JSON)
_COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}

#: where sub-schemas sit in a schema: maps of schemas, single schemas, lists of schemas
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
_ONE = ("additionalProperties", "items", "additionalItems", "contains", "not", "if", "then", "else", "propertyNames",
        "unevaluatedProperties", "unevaluatedItems", "contentSchema")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
#: keywords that hold sub-schemas: widening a node keeps none of them, and dropping one is tried last
_STRUCTURAL = set(_MAPS) | set(_ONE) | set(_LISTS) | {"required", "type", "$ref", "$id", "$schema", "$anchor"}
#: keywords that say nothing about the instance (never worth dropping)
_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment"}

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


# ---------------------------------------------------------------------------------------------- walking
Path = tuple  # keys and indexes from the root


def _pointer(path: Path) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _children(node: dict) -> Iterator[tuple[Path, Any]]:
    """``(relative path, sub-schema)`` of each sub-schema directly under ``node``."""
    for key in _MAPS:
        sub = node.get(key)
        if isinstance(sub, dict):
            for name, value in sub.items():
                if isinstance(value, dict):  # ("dependencies" may map to a list of names: not a schema)
                    yield (key, name), value
    for key in _ONE:
        sub = node.get(key)
        if isinstance(sub, dict):
            yield (key,), sub
    for key in _LISTS:
        sub = node.get(key)
        if isinstance(sub, list):
            for i, value in enumerate(sub):
                if isinstance(value, dict):
                    yield (key, i), value


def _nodes(root: Any) -> list[tuple[Path, dict]]:
    """Every schema node with its path, deepest first (post-order), the root last."""
    out: list[tuple[Path, dict]] = []

    def walk(node: dict, path: Path, depth: int) -> None:
        if depth > 64:
            return
        for rel, child in _children(node):
            walk(child, path + rel, depth + 1)
        out.append((path, node))

    if isinstance(root, dict):
        walk(root, (), 0)
    return out


def _get(root: Any, path: Path) -> Any:
    for p in path:
        root = root[p]
    return root


def _put(root: Any, path: Path, value: Any) -> Any:
    """``root`` with the node at ``path`` replaced (in place below the root; the new root is returned)."""
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


# ---------------------------------------------------------------------------------------------- compiling
def _error(schema: Any) -> str | None:
    """llguidance's error for a schema (``None``: it compiles)."""
    from llguidance import LLMatcher

    if not isinstance(schema, dict):
        return "a schema must be an object"
    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=dict(_COMPACT))
        error = LLMatcher.validate_grammar(grammar, None)
    except Exception as exc:  # noqa: BLE001 - whatever it raises is a schema it cannot compile
        return str(exc) or type(exc).__name__
    return error if error and not error.startswith("WARNING") else None


@lru_cache(maxsize=1024)
def _regex_ok(pattern: str) -> bool:
    return _error({"type": "string", "pattern": pattern}) is None


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


# ---------------------------------------------------------------------------------------------- exact rewrites
def _property_names(node: dict, path: Path, notes: list[str]) -> None:
    """``propertyNames``, which llguidance does not implement, rewritten where that is exact: plain strings
    (``{"type": "string"}``: every key is one) dropped; on a record object (no ``properties`` nor
    ``patternProperties``), an ``enum`` / ``const`` of names becomes ``properties`` and a ``pattern`` becomes
    ``patternProperties``, each with the ``additionalProperties`` schema. Anything else is left for the
    compile loop (which drops it, noted)."""
    names = node.get("propertyNames")
    if names is True or names == {}:
        del node["propertyNames"]
        return
    if not isinstance(names, dict):
        return
    rest = {k: v for k, v in names.items() if k not in _ANNOTATIONS}
    if rest.get("type", "string") != "string":
        return
    rest.pop("type", None)
    extra = node.get("additionalProperties", True)
    if not rest:
        del node["propertyNames"]
        return
    if extra is False:  # no key beyond "properties" anyway: the names' rule changes nothing the grammar allows
        del node["propertyNames"]  # (a listed property the rule forbids: the check after generation sees it)
        if node.get("properties") and any(not _name_ok(names, k) for k in node["properties"]):
            notes.append(f"{_pointer(path)}: propertyNames dropped")
        return
    if node.get("properties") or node.get("patternProperties"):
        return
    value = extra if isinstance(extra, dict) else {}
    if set(rest) <= {"enum"} and isinstance(rest.get("enum"), list) and all(isinstance(n, str) for n in rest["enum"]):
        node["properties"] = {n: copy.deepcopy(value) for n in rest["enum"]}
    elif set(rest) == {"const"} and isinstance(rest["const"], str):
        node["properties"] = {rest["const"]: copy.deepcopy(value)}
    elif set(rest) == {"pattern"} and isinstance(rest["pattern"], str):
        node["patternProperties"] = {rest["pattern"]: copy.deepcopy(value)}
    else:
        return
    node["additionalProperties"] = False
    del node["propertyNames"]


def _name_ok(names: dict, key: str) -> bool:
    if "enum" in names and key not in names["enum"]:
        return False
    if "const" in names and key != names["const"]:
        return False
    if isinstance(names.get("pattern"), str) and not _search(names["pattern"], key):
        return False
    if isinstance(names.get("maxLength"), int) and len(key) > names["maxLength"]:
        return False
    return not (isinstance(names.get("minLength"), int) and len(key) < names["minLength"])


# ---------------------------------------------------------------------------------------------- targeted fixes
_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[([^\]]*)\]")
_FORMAT = re.compile(r"Unknown format: (\S+)")
_REQUIRED = re.compile(r"required property '([^']*)' is unsatisfiable")


def _drop_keys(root: dict, keys: set[str], notes: list[str]) -> bool:
    done = False
    for path, node in _nodes(root):
        for key in sorted(keys & set(node)):
            del node[key]
            notes.append(f"{_pointer(path)}: {key} dropped")
            done = True
    return done


def _fix_formats(root: dict, name: str, notes: list[str]) -> bool:
    done = False
    for path, node in _nodes(root):
        if node.get("format") == name:
            del node["format"]
            notes.append(f"{_pointer(path)}: format {name!r} dropped")
            done = True
    return done


def _fix_regexes(root: dict, notes: list[str]) -> bool:
    """``pattern``s and ``patternProperties`` regexes llguidance cannot parse: dropped (a dropped
    ``patternProperties`` entry's values fall under ``additionalProperties``, widened to take them)."""
    done = False
    for path, node in _nodes(root):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and not _regex_ok(pattern):
            del node["pattern"]
            notes.append(f"{_pointer(path)}: pattern {pattern!r} dropped")
            done = True
        props = node.get("patternProperties")
        if isinstance(props, dict):
            bad = [p for p in props if not _regex_ok(p)]
            if bad:
                _drop_pattern_properties(node, bad, path, notes)
                done = True
    return done


def _drop_pattern_properties(node: dict, regexes: list[str], path: Path, notes: list[str]) -> None:
    props = node["patternProperties"]
    dropped = [props.pop(p) for p in regexes]
    if not props:
        del node["patternProperties"]
    extra = node.get("additionalProperties", True)
    if extra is not False and extra is not True and extra != {}:  # keys of the dropped regexes may now come
        node["additionalProperties"] = {"anyOf": [extra, *dropped]}  # as additional ones: take their values too
    notes.append(f"{_pointer(path)}: patternProperties {regexes} dropped")


def _fix_disjoint(root: dict, notes: list[str]) -> bool:
    done = False
    for path, node in _nodes(root):
        props = node.get("patternProperties")
        if isinstance(props, dict) and len(props) > 1 and _error(
                {"type": "object", "patternProperties": {p: {} for p in props}}) is not None:
            _drop_pattern_properties(node, list(props), path, notes)
            done = True
    return done


def _fix_one_of(root: dict, notes: list[str]) -> bool:
    done = False
    for path, node in _nodes(root):
        if isinstance(node.get("oneOf"), list):
            branches = node.pop("oneOf")
            if "anyOf" in node:  # both: all of them must hold
                node.setdefault("allOf", []).append({"anyOf": branches})
            else:
                node["anyOf"] = branches
            notes.append(f"{_pointer(path)}: oneOf as anyOf")
            done = True
    return done


def _fix_counts(root: dict, notes: list[str]) -> bool:
    """``minProperties`` / ``maxProperties`` (llguidance: only when every listed property is required)."""
    done = False
    for path, node in _nodes(root):
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            continue
        required = set(node.get("required") or [])
        if set(props) <= required:
            continue
        for key in ("minProperties", "maxProperties"):
            if key in node:
                del node[key]
                notes.append(f"{_pointer(path)}: {key} dropped")
                done = True
    return done


def _resolves(root: dict, ref: str) -> bool:
    if not ref.startswith("#"):
        return False
    fragment = ref[1:]
    if not fragment:
        return True
    if not fragment.startswith("/"):  # a plain-name fragment: an $anchor
        return any(node.get("$anchor") == fragment for _, node in _nodes(root))
    node: Any = root
    for part in fragment[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return False
    return isinstance(node, (dict, bool))


def _fix_refs(root: dict, notes: list[str]) -> bool:
    """A ``$ref`` that does not resolve inside the schema (another document, a missing pointer): dropped."""
    done = False
    for path, node in _nodes(root):
        ref = node.get("$ref")
        if isinstance(ref, str) and not _resolves(root, ref):
            del node["$ref"]
            notes.append(f"{_pointer(path)}: $ref {ref!r} dropped")
            done = True
        elif "$ref" in node and not isinstance(ref, str):
            del node["$ref"]
            notes.append(f"{_pointer(path)}: $ref dropped")
            done = True
    return done


def _fix_required(root: dict, name: str, notes: list[str]) -> bool:
    """A closed object (``additionalProperties: false``, as the grammar of a tool call makes every object)
    that requires a property it does not list: the property is listed, with any value."""
    done = False
    for path, node in _nodes(root):
        if name in (node.get("required") or []) and node.get("additionalProperties") is False:
            props = node.setdefault("properties", {})
            if not isinstance(props, dict) or name in props:
                continue
            if any(_search(p, name) for p in node.get("patternProperties") or {}):
                continue
            props[name] = {}
            notes.append(f"{_pointer(path)}: required property {name!r} listed (any value)")
            done = True
    return done


def _targeted(root: dict, error: str, notes: list[str]) -> bool:
    """Fix the error where llguidance's message points; False when it points nowhere known."""
    match = _UNIMPLEMENTED.search(error)
    if match:
        keys = set(json.loads(f"[{match.group(1)}]"))
        return _drop_keys(root, keys, notes)
    match = _FORMAT.search(error)
    if match:
        return _fix_formats(root, match.group(1), notes)
    if "regex" in error.lower() or "lookaround" in error.lower():
        if _fix_regexes(root, notes):
            return True
    if "not disjoint" in error:
        return _fix_disjoint(root, notes)
    if "oneOf" in error:
        return _fix_one_of(root, notes)
    if "min/maxProperties" in error:
        return _fix_counts(root, notes)
    if "Pointer" in error or "Resource" in error or "$ref" in error or "retriev" in error.lower():
        return _fix_refs(root, notes)
    match = _REQUIRED.search(error)
    if match:
        return _fix_required(root, match.group(1), notes)
    return False


# ---------------------------------------------------------------------------------------------- widening
def _candidates(node: dict) -> Iterator[tuple[dict, str]]:
    """Wider versions of a node, narrowest first: one keyword less, its type alone, anything."""
    for key in node:
        if key not in _STRUCTURAL and key not in _ANNOTATIONS and not key.startswith("x-"):
            yield {k: v for k, v in node.items() if k != key}, f"{key} dropped"
    for key in ("allOf", "anyOf", "oneOf", "required"):
        if key in node:
            yield {k: v for k, v in node.items() if k != key}, f"{key} dropped"
    kind = node.get("type")
    if isinstance(kind, str) and kind in ("object", "array", "string", "number", "integer", "boolean", "null"):
        yield {"type": kind}, f"widened to {{'type': {kind!r}}}"
    yield {}, "widened to any value"


def _widen(root: dict, error: str, notes: list[str]) -> tuple[dict, bool]:
    """The deepest node whose widening removes (or changes) ``error``, widened as little as works."""
    for path, node in _nodes(root):
        trial = copy.deepcopy(root)
        after = _error(_put(trial, path, {}))
        if after == error:
            continue
        for wider, what in _candidates(node):
            trial = copy.deepcopy(root)
            trial = _put(trial, path, wider)
            after = _error(trial)
            if after != error:
                notes.append(f"{_pointer(path)}: {what} ({error.splitlines()[0][:160]})")
                return trial, True
    return root, False


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

    def add_tool(self, name: str, schema: Any, relaxed: Relaxed) -> None:
        if relaxed.changed and name not in self.tools:
            self.tools[name] = schema
            self.notes += [f"tool {name}: {n}" for n in relaxed.notes]

    def add_output(self, name: str, schema: Any, relaxed: Relaxed) -> None:
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
