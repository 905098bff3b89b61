"""A ``Session`` (``abstractllm.session``) as JSON: ``session_to_dict``, ``save_session`` and
``load_session``, behind ``Session.to_dict`` / ``save`` / ``Session.load``.

A saved session is ``{"format": SESSION_FORMAT, "id", "created_at", "last_updated", "system_prompt",
"metadata", "messages", "provider_state"}``: media as paths, URLs or data URIs, never an API key. The
session's ids and timestamps (``_new_id``, ``_now``) are made here too.
"""

from __future__ import annotations

import base64
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .exceptions import FileProcessingError
from .params import normalize_keys
from .types import Message, ToolCall

__all__ = ["SESSION_FORMAT", "session_to_dict", "save_session", "load_session"]

#: the "format" field of a saved session
SESSION_FORMAT = "abstractllm.session/1"
#: config keys never written to a saved session
_SECRET_KEYS = frozenset({"api_key"})


def _new_id() -> str:
    import uuid  # here: importing abstractllm stays light

    return str(uuid.uuid4())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def session_to_dict(session: Any) -> dict[str, Any]:
    """``session`` as JSON-serializable data (images as paths, URLs or data URIs; no API key)."""
    data: dict[str, Any] = {
        "format": SESSION_FORMAT, "id": session.id, "created_at": session.created_at,
        "last_updated": session.last_updated, "system_prompt": session.system_prompt,
        "metadata": session.metadata, "messages": [_message_to_json(m) for m in session.messages],
    }
    provider = session.provider
    if provider is not None:
        config = {k: v for k, v in normalize_keys(getattr(provider, "config", {}) or {}).items()
                  if k not in _SECRET_KEYS and _jsonable(v)}
        data["provider_state"] = {"provider_name": getattr(provider, "name", None),
                                  "model_name": config.pop("model", None), "provider_config": config}
    return data


def save_session(session: Any, filepath: str | os.PathLike) -> None:
    """Write ``session`` to ``filepath`` as JSON (atomically: a temp file renamed into place)."""
    path = Path(filepath)
    text = json.dumps(session_to_dict(session), indent=2, ensure_ascii=False)
    tmp = path.with_name(f".{path.name}.{_new_id()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FileProcessingError(f"Cannot save the session to {str(path)!r}: {exc.strerror or exc}.") from exc


def load_session(cls: Any, filepath: str | os.PathLike, provider: Any = None,
                 provider_config: Mapping[Any, Any] | None = None) -> Any:
    """A ``cls`` (a ``Session`` class) read from a file written by ``save_session``; its provider as
    ``Session.load`` says."""
    data = _read(Path(filepath))
    session = cls(metadata=data.get("metadata") or {})
    session.system_prompt = data.get("system_prompt")
    session.id = data.get("id") or session.id
    session.created_at = data.get("created_at") or session.created_at
    session.last_updated = data.get("last_updated") or session.last_updated
    session.messages = [_message_from_json(m, i) for i, m in enumerate(data["messages"])]
    state = data.get("provider_state") or {}
    if provider is None and state.get("provider_name"):
        config = {**(state.get("provider_config") or {}), **normalize_keys(provider_config or {})}
        if state.get("model_name"):
            config["model"] = state["model_name"]
        provider, provider_config = state["provider_name"], config
    if provider is not None:
        session.set_provider(provider, provider_config)
    return session


def _read(path: Path) -> dict[str, Any]:
    """The JSON of a saved session at ``path`` (``FileProcessingError`` if it is not one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileProcessingError(f"No saved session at {str(path)!r}.") from None
    except (OSError, ValueError) as exc:
        raise FileProcessingError(f"{str(path)!r} is not a readable session file: {exc}.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise FileProcessingError(f"{str(path)!r} is not a saved session (no message list).")
    return data


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _media_to_json(item: Any) -> Any:
    """A media input in a JSON-safe form: paths and URLs as strings, bytes and images as data URIs."""
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, (str, dict)):
        return item
    if isinstance(item, (bytes, bytearray)):
        from .media.encode import sniff_mime

        mime = sniff_mime(bytes(item[:64])) or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(bytes(item)).decode('ascii')}"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with every provider that takes images
        Image = None  # type: ignore[assignment]
    if Image is not None and not isinstance(item, Image.Image) and hasattr(item, "__array_interface__"):
        item = Image.fromarray(item)
    if Image is not None and isinstance(item, Image.Image):
        buf = io.BytesIO()
        item.save(buf, format="PNG")
        return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
    raise FileProcessingError(f"Cannot save a {type(item).__name__} media input in a session file.")


def _message_to_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.text,
                           "metadata": {k: v for k, v in m.metadata.items() if _jsonable(v)}}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.images:
        out["images"] = [_media_to_json(i) for i in m.images]
    if m.videos:
        out["videos"] = [_media_to_json(v) for v in m.videos]
    if m.name:
        out["name"] = m.name
    if m.reasoning is not None:
        out["reasoning"] = m.reasoning
    return out


def _message_from_json(raw: Any, index: int) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in ("system", "user", "assistant", "tool") \
            or not isinstance(raw.get("content", ""), str):
        raise FileProcessingError(f"Saved session: message {index} is not a valid message: {raw!r:.120}.")
    try:
        calls = [ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
                 for c in raw.get("tool_calls") or []]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise FileProcessingError(f"Saved session: message {index} has malformed tool calls.") from None
    if not isinstance(raw.get("reasoning") or "", str):
        raise FileProcessingError(f"Saved session: message {index} has a reasoning that is not text.")
    meta = dict(raw.get("metadata") or {})
    if raw.get("timestamp") and "timestamp" not in meta:  # a 1.x session file
        meta["timestamp"] = raw["timestamp"]
    return Message(raw["role"], raw.get("content") or "", images=raw.get("images") or [],
                   videos=raw.get("videos") or [], name=raw.get("name"), metadata=meta, tool_calls=calls,
                   tool_call_id=raw.get("tool_call_id"), reasoning=raw.get("reasoning"))
