"""Where a request's images and videos may come from.

Data URIs and ``http(s)://`` URLs pass through to the provider. Anything else names a local file (a bare
path or a ``file://`` URL): refused unless the server was started with ``--allow-local-files DIR`` and the
path, with ``..`` and symbolic links resolved, lies inside ``DIR``. Relative paths are taken relative to
``DIR``. Accepted local paths are rewritten to their resolved absolute form before the provider sees
them, so nothing can re-interpret them afterwards.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import APIError

__all__ = ["MEDIA_PART_TYPES", "apply_media_policy", "check_media_reference"]

#: content part types that carry an image or a video (as ``abstractllm.messages`` reads them)
MEDIA_PART_TYPES = ("image_url", "input_image", "image", "video_url", "input_video", "video")
_REMOTE = ("data:", "http://", "https://")


def _refuse(message: str) -> APIError:
    return APIError(400, message, param="messages", code="local_file_refused")


def check_media_reference(ref: str, allowed_dir: Path | None) -> str:
    """Return the reference to hand to the provider, or raise a 400 ``APIError``."""
    low = ref[:16].lower()
    if low.startswith(_REMOTE):
        return ref
    if low.startswith("file:"):
        parts = urlsplit(ref)
        if parts.netloc not in ("", "localhost"):
            raise _refuse(f"file:// URLs must name a local file, got host {parts.netloc!r}.")
        raw = unquote(parts.path)
    elif "://" in ref[:32] or low.startswith(("javascript:", "ftp:")):
        raise _refuse(f"Unsupported media URL scheme in {ref[:40]!r}: use a data: URI or an http(s):// URL.")
    else:
        raw = ref
    if allowed_dir is None:
        raise _refuse(
            "Local file paths are refused by this server: send the image as a data: URI or an http(s):// "
            "URL, or start the server with --allow-local-files DIR."
        )
    if "\x00" in raw or not raw:
        raise _refuse("Invalid local file path.")
    root = allowed_dir.resolve()
    candidate = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
    target = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if target != root and root not in target.parents:
        raise _refuse(f"Local file {raw!r} is outside the allowed folder {str(root)!r}.")
    return str(target)


def apply_media_policy(messages: list[Any], allowed_dir: Path | None) -> list[Any]:
    """Check every image/video part of OpenAI-style ``messages``; return a copy with local paths resolved.

    Malformed structures are left for ``abstractllm.messages`` to refuse with its own clear error.
    """
    out = copy.deepcopy(messages)
    for msg in out:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in MEDIA_PART_TYPES:
                continue
            kind = part["type"]
            value = part.get(kind)
            if isinstance(value, dict):
                url = value.get("url")
                if isinstance(url, str):
                    value["url"] = check_media_reference(url, allowed_dir)
                elif url is not None:
                    raise APIError(400, f"A '{kind}' part's url must be a string.", param="messages")
            elif isinstance(value, str):
                part[kind] = check_media_reference(value, allowed_dir)
            elif value is not None:
                raise APIError(400, f"A '{kind}' part must hold a URL string or {{'url': ...}}.", param="messages")
    return out
