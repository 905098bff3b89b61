"""The field policy of the request bodies, the same on every API (chat completions, completions, Responses,
Messages).

- Every field the official API documents is accepted. What the server cannot honour (``prompt_cache_key``,
  ``safety_identifier``, ``context_management``, hosted tools, ...) is **ignored**: logged once per field name
  (``abstractllm.server`` logger, INFO) and listed in the response header ``x-abstractllm-ignored``
  (comma-separated names; a nested field as its dotted path without list indices, e.g.
  ``messages.content.citations``; a tool the server cannot run as ``tools.<type>``).
- Unknown fields are accepted and ignored the same way, unless the server runs with ``--strict-fields``
  (``ServerConfig.strict_fields``): then an unknown field is a 400 naming it, as before.
- A wrong type or value of a field the server uses stays a 400 naming the field (its path as sent: union
  branches of the schema never appear in it).

The request models say what they ignore with a class attribute ``_ignored``: ``{field name: neutral value}``
(a tuple: several neutral values); a field present with another value than ``None`` or a neutral one (what the
server does anyway, such as ``parallel_tool_calls: true``) is listed. Models whose unknown keys are expected from real clients
(objects a client echoes back from an earlier reply) set ``_lenient = True``: their unknown keys are listed
but never refused.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import APIError
from .observe import IGNORED_HEADER

__all__ = ["IGNORED_HEADER", "Body", "note_ignored", "apply_policy", "parse_model", "validation_error",
           "clean_loc"]

log = logging.getLogger("abstractllm.server")
_UNSAFE = re.compile(r"[^\x21-\x7e]|,")  # a name goes in a header: visible ASCII, no commas
_MAX_LOGGED = 1024
_logged: set[str] = set()
_lock = threading.Lock()


class Body(BaseModel):
    """The base of the request models: unknown keys are kept aside (``__pydantic_extra__``) for the policy."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    _ignored: ClassVar[dict[str, Any]] = {}
    _lenient: ClassVar[bool] = False
    _opaque: ClassVar[bool] = False  # ignored as a whole (a hosted tool, an item type with no use): keys not listed


def note_ignored(name: str, why: str = "") -> None:
    """Record that the current request's ``name`` is ignored: listed in its ``x-abstractllm-ignored`` header,
    and logged the first time this process meets that name."""
    from .observe import current_record

    name = _UNSAFE.sub("?", name)[:128]
    record = current_record()
    if record is not None and name not in record.ignored:
        record.ignored.append(name)
    with _lock:
        if name in _logged or len(_logged) >= _MAX_LOGGED:  # bounded: names come from clients
            return
        _logged.add(name)
    log.info("ignoring the request field %r%s (the server cannot honour it; logged once per field name)", name,
             f": {why}" if why else "")


def _walk(obj: Any, path: tuple[str, ...]) -> Iterator[tuple[Body, tuple[str, ...]]]:
    if isinstance(obj, Body):
        yield obj, path
        for name, info in type(obj).model_fields.items():
            yield from _walk(getattr(obj, name), path + (info.alias or name,))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk(item, path)


def apply_policy(body: Body, strict: bool) -> None:
    """Note the body's ignored fields (documented ones the server cannot honour, unknown ones); with
    ``strict``, an unknown field (outside lenient models) is a 400 naming it."""
    for model, path in _walk(body, ()):
        if model._opaque:
            continue
        for key in model.__pydantic_extra__ or {}:
            dotted = ".".join(path + (key,))
            if strict and not model._lenient:
                raise APIError(400, f"Unrecognized request argument supplied: {dotted}", param=dotted,
                               code="invalid_value")
            note_ignored(dotted, "unknown field")
        for name, neutral in model._ignored.items():
            value = getattr(model, name, None)
            if value is not None and not (value in neutral if isinstance(neutral, tuple) else value == neutral):
                info = type(model).model_fields.get(name)
                note_ignored(".".join(path + ((info.alias if info and info.alias else name),)))


def parse_model(model: type[Body], data: dict[str, Any], strict: bool = False) -> Any:
    """``data`` validated as ``model`` (a 400 naming the first offending field), its ignored fields noted."""
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data) from None
    apply_policy(body, strict)
    return body


def clean_loc(loc: tuple[Any, ...], data: Any, missing: bool = False) -> list[Any]:
    """A pydantic error location as the path into ``data``: the labels pydantic adds for union branches
    (``str``, ``list[...]``, a tag) are left out; the last key of a ``missing`` field is kept."""
    out: list[Any] = []
    cur = data
    for i, seg in enumerate(loc):
        if isinstance(cur, dict) and isinstance(seg, str) and seg in cur:
            out.append(seg)
            cur = cur[seg]
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            out.append(seg)
            cur = cur[seg]
        elif missing and i == len(loc) - 1 and isinstance(cur, dict) and isinstance(seg, str):
            out.append(seg)  # a missing field's name
            cur = None
    return out


def validation_error(exc: ValidationError, data: Any = None) -> APIError:
    """A pydantic validation error as a 400 naming the offending field. Of several errors (the branches of a
    union each give theirs), the one that goes deepest into what was sent is reported: for a list of blocks,
    the block's own error, not "should be a string"."""
    errors = exc.errors()
    best, best_loc = errors[0], None
    for err in errors:
        raw = tuple(err.get("loc", ()))
        loc = clean_loc(raw, data, err.get("type") == "missing") if data is not None else list(raw)
        if best_loc is None or len(loc) > len(best_loc):
            best, best_loc = err, loc
    loc = [str(p) for p in best_loc or []]
    param = loc[0] if loc else None
    where = ".".join(loc) or "body"
    if best.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {where}", param=loc[-1] if loc else None,
                        code="invalid_value")
    return APIError(400, f"Invalid '{where}': {best.get('msg')}.", param=param, code="invalid_value")
