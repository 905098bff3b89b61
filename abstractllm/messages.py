"""Normalize the ways a user states a conversation (``prompt``, ``system_prompt``, ``files``,
OpenAI-style ``messages``) into one list of ``Message``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from .exceptions import FileProcessingError, InvalidParameterError, UnsupportedFeatureError
from .media.kinds import IMAGE_PART_TYPES, VIDEO_PART_TYPES, is_audio_input, is_video_input
from .params import default_of
from .types import Message, ToolCall

__all__ = ["normalize_messages", "ROLES", "IMAGE_PART_TYPES", "VIDEO_PART_TYPES", "TEXT_FILE_SUFFIXES",
           "inline_text_file"]

ROLES = ("system", "user", "assistant", "tool")
# IMAGE_PART_TYPES / VIDEO_PART_TYPES (the content part types that carry an image / a video) are defined
# in ``media.kinds`` and re-exported here.


def _part_media(part: dict[str, Any], index: int) -> Any:
    kind = part["type"]
    value = part.get(kind)
    if isinstance(value, dict):  # {"image_url": {"url": ...}}
        value = value.get("url")
    if value is None:
        raise InvalidParameterError(f"messages[{index}]: a '{kind}' part has no '{kind}' value.", param="messages")
    return value


#: files with these suffixes are read as UTF-8 text and inlined into the prompt (as AbstractLLM 1.x did)
TEXT_FILE_SUFFIXES = frozenset({".txt", ".md", ".csv", ".tsv", ".json"})


def _is_text_file(item: Any) -> bool:
    if not isinstance(item, (str, os.PathLike)):
        return False
    text = os.fspath(item)
    if not isinstance(text, str) or len(text) > 4096 or text.startswith(("data:", "http://", "https://")):
        return False
    return Path(text).suffix.lower() in TEXT_FILE_SUFFIXES


def inline_text_file(item: Any, max_bytes: int) -> str:
    """The text of a local text file as it is inlined into the prompt::

        ===== notes.md =====
        <the file's text>
    """
    path = Path(os.fspath(item)).expanduser()
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FileProcessingError(f"{str(path)!r} is not a file.", details={"file_path": str(path)})
        if size > max_bytes:
            raise FileProcessingError(
                f"{path.name}: {size} bytes is above the {max_bytes}-byte limit for text files "
                "(max_text_file_bytes); pass a smaller file or raise the limit.",
                details={"file_path": str(path), "size": size, "limit": max_bytes})
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FileProcessingError(f"No such file: {str(path)!r}.", details={"file_path": str(path)}) from None
    except UnicodeDecodeError as exc:
        raise FileProcessingError(f"{path.name} is not UTF-8 text: {exc}.", details={"file_path": str(path)}) from exc
    except OSError as exc:
        raise FileProcessingError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.",
                                  details={"file_path": str(path)}) from exc
    return f"===== {path.name} =====\n{text}"


def _check_role(role: Any, index: int) -> None:
    if role not in ROLES:
        raise InvalidParameterError(
            f"messages[{index}] has role {role!r}; expected one of {', '.join(ROLES)}.", param="messages"
        )


def _as_dict(raw: Any, index: int) -> dict[str, Any]:
    """A message given as a dict, or as another library's message object (with ``role`` and ``content``)."""
    if not isinstance(raw, dict) and hasattr(raw, "role") and hasattr(raw, "content"):
        role = raw.role  # another library's message object (AbstractLLM 1.x Session messages, ...)
        raw = {"role": str(getattr(role, "value", role)), "content": raw.content}
    if not isinstance(raw, dict):
        raise InvalidParameterError(
            f"messages[{index}] must be a dict like {{'role': 'user', 'content': '...'}}, got {type(raw).__name__}.",
            param="messages",
        )
    return raw


def _reasoning(raw: dict[str, Any], index: int) -> str | None:
    """An assistant message's thinking (a reasoning model's), as OpenAI-compatible servers name it."""
    reasoning = next((raw[k] for k in ("reasoning_content", "reasoning", "thinking") if raw.get(k)), None)
    if reasoning is not None and not isinstance(reasoning, str):
        raise InvalidParameterError(f"messages[{index}].reasoning_content must be a string.", param="messages")
    return reasoning


def _tool_result(msg: Message, raw: dict[str, Any], index: int) -> Any:
    """A tool message: the ``tool_call_id`` it answers set on ``msg``; returns its content (a structured result as
    JSON, as the model reads it)."""
    content = raw.get("content")
    call_id = raw.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidParameterError(f"messages[{index}] (tool) needs the 'tool_call_id' of the call it answers.",
                                    param="messages")
    msg.tool_call_id = call_id
    if isinstance(content, (dict, list)) and not (isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") in ("text", "input_text") for p in content)):
        content = json.dumps(content)  # a structured tool result, as the model reads it
    return content


def _read_parts(msg: Message, content: Any, index: int) -> None:
    """A message's content parts: text joined into ``msg.text``, images and videos appended to its media."""
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


def _message(raw: Any, index: int) -> Message:
    if isinstance(raw, Message):
        _check_role(raw.role, index)
        # a copy: files attached later must never change the caller's object
        return Message(raw.role, text=raw.text, images=raw.images, videos=raw.videos, name=raw.name,
                       metadata=raw.metadata, tool_calls=raw.tool_calls, tool_call_id=raw.tool_call_id,
                       reasoning=raw.reasoning)
    raw = _as_dict(raw, index)
    role = raw.get("role")
    _check_role(role, index)
    content = raw.get("content")
    msg = Message(role=role, tool_calls=_tool_calls(raw.get("tool_calls"), index) if role == "assistant" else None)
    if role == "assistant":
        msg.reasoning = _reasoning(raw, index)
    if role == "tool":
        content = _tool_result(msg, raw, index)
    elif raw.get("tool_call_id") is not None:
        raise InvalidParameterError(f"messages[{index}] ({role}): only tool messages carry a tool_call_id.",
                                    param="messages")
    if content is None:
        if role != "assistant":
            raise InvalidParameterError(f"messages[{index}] ({role}) has no content.", param="messages")
        return msg
    if isinstance(content, str):
        msg.text = content
        return msg
    _read_parts(msg, content, index)
    return msg


def _tool_calls(raw: Any, index: int) -> list[ToolCall]:
    """An assistant message's ``tool_calls`` (OpenAI form, or ``ToolCall`` objects)."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise InvalidParameterError(f"messages[{index}].tool_calls must be a list.", param="messages")
    out = []
    for j, call in enumerate(raw):
        if isinstance(call, ToolCall):
            out.append(call)
            continue
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidParameterError(
                f"messages[{index}].tool_calls[{j}] must be {{'id', 'type': 'function', 'function': {{'name', "
                "'arguments'}}}}.", param="messages")
        arguments = fn.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise InvalidParameterError(f"messages[{index}].tool_calls[{j}]: arguments are not JSON: {exc}.",
                                            param="messages") from None
        if not isinstance(arguments, dict):
            raise InvalidParameterError(f"messages[{index}].tool_calls[{j}]: arguments must be an object.",
                                        param="messages")
        out.append(ToolCall(id=str(call.get("id") or f"call_{index}_{j}"), name=fn["name"], arguments=arguments))
    return out


def _check_tool_results(messages: list[Message]) -> None:
    """Every tool message answers a call an earlier assistant message made."""
    made: set[str] = set()
    for i, m in enumerate(messages):
        made.update(c.id for c in m.tool_calls)
        if m.role == "tool" and m.tool_call_id not in made:
            raise InvalidParameterError(
                f"messages[{i}] (tool) answers tool_call_id {m.tool_call_id!r}, which no earlier assistant message "
                "called.", param="messages")


def normalize_messages(
    prompt: str | None = None,
    *,
    system_prompt: str | None = None,
    files: Sequence[Any] | None = None,
    messages: Sequence[Any] | None = None,
    default_system_prompt: str | None = None,
    max_text_file_bytes: int = default_of("max_text_file_bytes"),
) -> list[Message]:
    """Build the conversation: ``system_prompt`` first (merged with a leading system message), then
    ``messages``, then ``prompt`` as a final user message; ``files`` attach to the last user message.

    ``files``: images and videos attach as media; text files (``.txt .md .csv .tsv .json``, local paths)
    are read and appended to that message's text (``inline_text_file``); audio is refused
    (``UnsupportedFeatureError``). ``default_system_prompt`` (a provider's configured one) applies when
    neither ``system_prompt`` nor a system message is given."""
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
    _check_tool_results(out)
    if prompt is not None:
        out.append(Message(role="user", text=prompt))
    if files:
        _attach_files(out, files, max_text_file_bytes)
    if not any(m.role == "user" for m in out):
        raise InvalidParameterError(
            "Nothing to answer: give a prompt, files, or messages with at least one user message.", param="prompt"
        )
    # an empty prompt is a mistake; a conversation given as messages may carry an empty user turn (OpenAI's API
    # takes it, and AbstractLLM 1.x's tool loop sends one)
    if not messages and not any(m.text.strip() or m.images or m.videos for m in out):
        raise InvalidParameterError(
            "Nothing to answer: the prompt and messages are empty (no text, images or videos).", param="prompt"
        )
    if system_prompt is None and default_system_prompt and out[0].role != "system":
        system_prompt = default_system_prompt  # system_prompt="" means: no system prompt this time
    if system_prompt:
        if out[0].role == "system":
            out[0] = Message(role="system", text=f"{system_prompt}\n\n{out[0].text}".strip())
        else:
            out.insert(0, Message(role="system", text=system_prompt))
    return out


def _attach_files(out: list[Message], files: Sequence[Any], max_text_file_bytes: int) -> None:
    """``files`` attached to the last message, a user one (an empty one is added when the last is not): text files
    inlined into its text, images and videos as its media; audio refused."""
    if not out or out[-1].role != "user":
        out.append(Message(role="user", text=""))
    last = out[-1]
    for item in files:
        if _is_text_file(item):
            block = inline_text_file(item, max_text_file_bytes)
            last.text = f"{last.text}\n\n{block}" if last.text else block
        elif is_audio_input(item):
            raise UnsupportedFeatureError(
                f"{_label(item)} is audio: no abstractllm provider takes audio input yet. Transcribe it first "
                "(e.g. with mlx-whisper) and pass the text.")
        else:
            (last.videos if is_video_input(item) else last.images).append(item)


def _label(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        return repr(text if len(text) < 80 else text[:77] + "...")
    return f"a {type(item).__name__} input"
