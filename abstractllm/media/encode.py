"""Media back to bytes: sniff a MIME type from magic bytes, and encode images as data URIs (what remote
providers and saved sessions carry)."""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["sniff_mime", "data_uri", "image_data_uri"]

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),
)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of data starting with ``head`` (images and common video containers), else None."""
    for magic, mime in _SIGNATURES:
        if head.startswith(magic):
            return mime
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "image/avif" if head[8:12] in (b"avif", b"avis") else "video/mp4"
    return None


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<data>``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_uri(image: Any, *, quality: int = 90) -> str:
    """A decoded RGB/RGBA ``PIL.Image`` as a data URI: JPEG for photos without transparency (small),
    PNG when the image has an alpha channel."""
    buf = io.BytesIO()
    if image.mode in ("RGBA", "LA", "P"):
        image.save(buf, format="PNG")
        return data_uri(buf.getvalue(), "image/png")
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")
