"""Tell a video input from an image input by its content (magic bytes), not only by its name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["is_video_input", "is_audio_input", "VIDEO_EXTENSIONS", "AUDIO_EXTENSIONS", "IMAGE_PART_TYPES",
           "VIDEO_PART_TYPES"]

#: OpenAI-style content part types that carry an image / a video (the one definition; ``abstractllm.messages``
#: re-exports them, the server and ``media.sources`` use them)
IMAGE_PART_TYPES = ("image_url", "input_image", "image")
VIDEO_PART_TYPES = ("video_url", "input_video", "video")

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpeg", ".mpg", ".ogv"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"})
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")


def _sniff_video(head: bytes) -> bool:
    if len(head) >= 12 and head[4:8] == b"ftyp":  # ISO BMFF: mp4, mov, m4v (also heic/avif: check brand)
        brand = head[8:12]
        return brand not in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", *_AUDIO_BRANDS)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: webm, mkv
        return True
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return True
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):  # MPEG-PS
        return True
    return head.startswith(b"OggS") and b"theora" in head[:64]


def is_video_input(item: Any) -> bool:
    """True when ``item`` is a video: ``{"type": "video"...}`` / ``video_url`` parts, a ``data:video/...``
    URI, an http(s) URL whose path has a video extension, bytes or a path whose content is a video
    container (a path's extension decides only when the file cannot be read)."""
    if isinstance(item, dict):
        return item.get("type") in VIDEO_PART_TYPES
    if isinstance(item, str) and item[:11].lower() == "data:video/":
        return True
    if isinstance(item, str) and item[:8].lower().startswith(("http://", "https://")):
        from urllib.parse import urlparse

        return Path(urlparse(item).path).suffix.lower() in VIDEO_EXTENSIONS
    if isinstance(item, (str, os.PathLike)) and not str(item).startswith(("data:", "http://", "https://")):
        path = Path(item)
        try:
            if len(str(item)) < 4096 and path.is_file():
                with open(path, "rb") as fh:
                    return _sniff_video(fh.read(64))
        except OSError:
            pass
        return path.suffix.lower() in VIDEO_EXTENSIONS
    if isinstance(item, (bytes, bytearray)):
        return _sniff_video(bytes(item[:64]))
    return False


def _sniff_audio(head: bytes) -> bool:
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return True
    if head.startswith((b"ID3", b"fLaC")) or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return True
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return True
    return head.startswith(b"OggS") and (b"vorbis" in head[:64] or b"OpusHead" in head[:64])


def is_audio_input(item: Any) -> bool:
    """True when ``item`` is audio: a ``data:audio/...`` URI, ``input_audio`` / ``audio`` parts, bytes or a
    local file whose content is audio (by its extension when it cannot be read)."""
    if isinstance(item, dict):
        return item.get("type") in ("input_audio", "audio", "audio_url")
    if isinstance(item, str) and item[:11].lower() == "data:audio/":
        return True
    if isinstance(item, (str, os.PathLike)) and not str(item).startswith(("data:", "http://", "https://")):
        path = Path(item)
        try:
            if len(str(item)) < 4096 and path.is_file():
                with open(path, "rb") as fh:
                    return _sniff_audio(fh.read(64))
        except OSError:
            pass
        return path.suffix.lower() in AUDIO_EXTENSIONS
    if isinstance(item, (bytes, bytearray)):
        return _sniff_audio(bytes(item[:64]))
    return False
