"""The steps of ``schemas.relax`` (``abstractllm.providers.mlx``) that change a schema llguidance refuses.

Exact rewrites lose nothing and are not noted (``_property_names``). Targeted fixes (``_targeted``) act where
llguidance's error points: a keyword it does not implement, a format or regex it refuses, ``oneOf``,
``min/maxProperties``, a ``$ref`` that does not resolve, a required property a closed object cannot have.
Widening (``_widen``) fixes an error that names no place: the deepest sub-schema whose widening removes it.
Every lossy step appends a note (``"#/path: what"``) to ``notes``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Iterator

from .schema_graph import (_ANNOTATIONS, _STRUCTURAL, Path, _error, _nodes, _pointer, _put, _regex_ok, _resolves,
                           _search)


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
