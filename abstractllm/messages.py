"""Normalize the ways a user states a conversation (``prompt``, ``system_prompt``, ``files``,
OpenAI-style ``messages``) into one list of ``Message``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .exceptions import InvalidParameterError
from .media.kinds import is_video_input
from .types import Message

__all__ = ["normalize_messages", "ROLES", "IMAGE_PART_TYPES", "VIDEO_PART_TYPES"]

ROLES = ("system", "user", "assistant")
#: OpenAI-style content part types that carry an image / a video (the one definition; the server and
#: ``media.sources`` import these)
IMAGE_PART_TYPES = ("image_url", "input_image", "image")
VIDEO_PART_TYPES = ("video_url", "input_video", "video")


def _part_media(part: dict[str, Any], index: int) -> Any:
    kind = part["type"]
    value = part.get(kind)
    if isinstance(value, dict):  # {"image_url": {"url": ...}}
        value = value.get("url")
    if value is None:
        raise InvalidParameterError(f"messages[{index}]: a '{kind}' part has no '{kind}' value.", param="messages")
    return value


def _message(raw: Any, index: int) -> Message:
    if isinstance(raw, Message):
        if raw.role not in ROLES:
            raise InvalidParameterError(
                f"messages[{index}] has role {raw.role!r}; expected one of {', '.join(ROLES)}.", param="messages"
            )
        # a copy: files attached later must never change the caller's object
        return Message(role=raw.role, text=raw.text, images=list(raw.images), videos=list(raw.videos))
    if not isinstance(raw, dict):
        raise InvalidParameterError(
            f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}}, got {type(raw).__name__}.",
            param="messages",
        )
    role = raw.get("role")
    if role not in ROLES:
        raise InvalidParameterError(
            f"messages[{index}] has role {role!r}; expected one of {', '.join(ROLES)}.", param="messages"
        )
    content = raw.get("content")
    msg = Message(role=role)
    if content is None:
        if role != "assistant":
            raise InvalidParameterError(f"messages[{index}] ({role}) has no content.", param="messages")
        return msg
    if isinstance(content, str):
        msg.text = content
        return msg
    if not isinstance(content, (list, tuple)):
        raise InvalidParameterError(
            f"messages[{index}].content must be a string or a list of parts, got {type(content).__name__}.",
            param="messages",
        )
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or "type" not in part:
            raise InvalidParameterError(
                f"messages[{index}]: each content part must be a dict with a 'type', got {part!r:.80}.",
                param="messages",
            )
        kind = part["type"]
        if kind in ("text", "input_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidParameterError(f"messages[{index}]: a text part needs a string 'text'.", param="messages")
            texts.append(text)
        elif kind in IMAGE_PART_TYPES:
            msg.images.append(_part_media(part, index))
        elif kind in VIDEO_PART_TYPES:
            msg.videos.append(_part_media(part, index))
        else:
            raise InvalidParameterError(
                f"messages[{index}]: unknown content part type {kind!r}; expected text, image_url or video.",
                param="messages",
            )
    msg.text = "\n".join(texts)
    return msg


def normalize_messages(
    prompt: str | None = None,
    *,
    system_prompt: str | None = None,
    files: Sequence[Any] | None = None,
    messages: Sequence[Any] | None = None,
) -> list[Message]:
    """Build the conversation: ``system_prompt`` first (merged with a leading system message), then
    ``messages``, then ``prompt`` as a final user message; ``files`` attach to the last user message."""
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidParameterError(f"prompt must be a string, got {type(prompt).__name__}.", param="prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidParameterError("system_prompt must be a string.", param="system_prompt")
    if messages is not None and (isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence)):
        raise InvalidParameterError("messages must be a list of chat messages.", param="messages")
    if files is not None:
        if isinstance(files, (str, Path, bytes)) or not isinstance(files, Sequence):
            files = [files]
    out = [_message(m, i) for i, m in enumerate(messages or [])]
    if prompt is not None:
        out.append(Message(role="user", text=prompt))
    if files:
        if not out or out[-1].role != "user":
            out.append(Message(role="user", text=""))
        for item in files:
            (out[-1].videos if is_video_input(item) else out[-1].images).append(item)
    if not any(m.role == "user" for m in out):
        raise InvalidParameterError(
            "Nothing to answer: give a prompt, files, or messages with at least one user message.", param="prompt"
        )
    if not any(m.text.strip() or m.images or m.videos for m in out):
        raise InvalidParameterError(
            "Nothing to answer: the prompt and messages are empty (no text, images or videos).", param="prompt"
        )
    if system_prompt:
        if out[0].role == "system":
            out[0] = Message(role="system", text=f"{system_prompt}\n\n{out[0].text}".strip())
        else:
            out.insert(0, Message(role="system", text=system_prompt))
    return out
