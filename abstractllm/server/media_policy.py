"""Where a request's images and videos may come from.

Data URIs pass through to the provider. ``http(s)://`` URLs are fetched here, by the server, and handed
to the provider as data URIs: unless the server was started with ``--allow-private-urls``, a URL whose
host (or a redirect's host) resolves to a loopback, private, link-local or otherwise non-global address
is refused before anything is sent to it (the address is checked when connecting, so DNS cannot change
it in between). Fetch failures are answered with a generic message: the details (connection refused,
HTTP status...) would tell a client about the server's network; they go to the server's log.

Anything else names a local file (a bare path or a ``file://`` URL): refused unless the server was
started with ``--allow-local-files DIR`` and the path, with ``..`` and symbolic links resolved, lies
inside ``DIR``. Relative paths are taken relative to ``DIR``. Accepted local paths are rewritten to their
resolved absolute form before the provider sees them, so nothing can re-interpret them afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import ipaddress
import logging
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

from ..messages import IMAGE_PART_TYPES, VIDEO_PART_TYPES
from ..params import default_of
from .errors import APIError

__all__ = ["MEDIA_PART_TYPES", "apply_media_policy", "check_media_reference", "fetch_remote_media",
           "is_public_address"]

log = logging.getLogger("abstractllm.server")

#: content part types that carry an image or a video (as ``abstractllm.messages`` reads them)
MEDIA_PART_TYPES = IMAGE_PART_TYPES + VIDEO_PART_TYPES
_REMOTE = ("data:", "http://", "https://")
_HTTP = ("http://", "https://")


def is_public_address(ip: str) -> bool:
    """True for a globally routable IP address (``ipaddress``'s ``is_global``): not loopback, private,
    link-local (cloud metadata at 169.254.169.254), shared, reserved or unspecified."""
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


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


def _references(messages: list[Any]) -> Iterator[tuple[dict[str, Any], str, str, str]]:
    """``(holder, key, part type, reference)`` for every image/video reference: ``holder[key]`` is the
    string. Malformed structures are left for ``abstractllm.messages`` to refuse with its own clear error."""
    for msg in messages:
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
                    yield value, "url", kind, url
                elif url is not None:
                    raise APIError(400, f"A '{kind}' part's url must be a string.", param="messages")
            elif isinstance(value, str):
                yield part, kind, kind, value
            elif value is not None:
                raise APIError(400, f"A '{kind}' part must hold a URL string or {{'url': ...}}.", param="messages")


def apply_media_policy(messages: list[Any], allowed_dir: Path | None) -> list[Any]:
    """Check every image/video part of OpenAI-style ``messages``; return a copy with local paths resolved."""
    out = copy.deepcopy(messages)
    for holder, key, _, ref in _references(out):
        holder[key] = check_media_reference(ref, allowed_dir)
    return out


def _fetch(url: str, video: bool, allow_private: bool, timeout: float, max_bytes: int) -> str:
    from ..exceptions import ImageProcessingError
    from ..media.sources import URLRefusedError, fetch_url

    noun = "video" if video else "image"
    try:
        src = fetch_url(url, timeout=timeout, max_bytes=max_bytes, accept=("video/",) if video else ("image/",),
                        allow_address=None if allow_private else is_public_address)
    except URLRefusedError as exc:
        log.warning("refused to fetch an %s URL: %s", noun, exc)
        raise APIError(400, f"The {noun} URL was refused: it points to a private address.", param="messages",
                       code="url_refused") from None
    except ImageProcessingError as exc:
        log.info("could not fetch an %s URL: %s", noun, exc)
        raise APIError(400, f"The {noun} URL could not be fetched.", param="messages",
                       code="url_fetch_failed") from None
    ctype = src.content_type or ""
    if not ctype.startswith(("video/" if video else "image/")):
        ctype = "video/unknown" if video else "image/unknown"  # a generic binary type: the decoder sniffs
    return f"data:{ctype};base64," + base64.b64encode(src.data or b"").decode("ascii")


async def fetch_remote_media(messages: list[Any], *, allow_private: bool,
                             timeout: float = default_of("image_fetch_timeout"),
                             max_bytes: int = default_of("max_image_bytes")) -> list[Any]:
    """Fetch every ``http(s)://`` image/video of ``messages`` (in place; call it on the copy that
    ``apply_media_policy`` returned) and replace it with a ``data:`` URI. Videos may be 10x ``max_bytes``
    (as the vision provider allows). Raises a 400 ``APIError`` with a generic message on failure."""
    for holder, key, kind, ref in list(_references(messages)):
        if ref[:8].lower().startswith(_HTTP):
            video = kind in VIDEO_PART_TYPES
            holder[key] = await asyncio.to_thread(_fetch, ref, video, allow_private, timeout,
                                                  max_bytes * 10 if video else max_bytes)
    return messages
