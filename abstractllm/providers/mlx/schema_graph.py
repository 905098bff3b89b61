"""The walk over a JSON schema and the compile check behind ``schemas.relax`` (``abstractllm.providers.mlx``):
where sub-schemas sit (``_nodes``: every node with its path, deepest first), JSON pointers, and ``_error``,
llguidance's error for a schema (``None``: it compiles into a grammar).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

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
