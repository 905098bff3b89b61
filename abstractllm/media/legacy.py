"""AbstractLLM 1.x's media classes, as thin wrappers over what ``generate(files=...)`` takes.

``ImageInput``, ``TextInput`` and ``TabularInput`` name one input (a path, a URL, bytes, or for text the text
itself) with its ``media_type`` and ``mime_type``; ``MediaFactory.from_source`` picks the class from the
source. Pass them in ``files=`` (or 1.x's ``media=``): each one is replaced by its source there
(``abstractllm.compat.call_files``), and the usual file handling applies (images attached, ``.txt .md .csv
.tsv .json`` inlined). 1.x's per-provider formatting methods (``to_provider_format``) are not carried: every
provider here formats its own inputs (docs/migration.md).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any

__all__ = ["MediaInput", "ImageInput", "TextInput", "TabularInput", "MediaFactory"]


class MediaInput:
    """One media input: ``source`` (a path, URL, bytes or text), ``media_type`` and ``mime_type``."""

    media_type = "file"
    default_mime = "application/octet-stream"

    def __init__(self, source: Any, mime_type: str | None = None, encoding: str = "utf-8", **options: Any) -> None:
        self.source = os.fspath(source) if isinstance(source, os.PathLike) else source
        self.encoding = encoding
        self.options = options
        self.mime_type = mime_type or self._guess_mime()

    def _guess_mime(self) -> str:
        if isinstance(self.source, str) and not self.source.startswith("data:"):
            guess, _ = mimetypes.guess_type(self.source.split("?")[0])
            if guess:
                return guess
        return self.default_mime

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str) and Path(self.source).is_file()

    def as_file_input(self) -> Any:
        """What ``generate(files=...)`` gets for this input."""
        return self.source

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r:.80}, mime_type={self.mime_type!r})"


class ImageInput(MediaInput):
    media_type = "image"
    default_mime = "image/jpeg"

    def __init__(self, source: Any, detail: str = "auto", mime_type: str | None = None, **options: Any) -> None:
        super().__init__(source, mime_type, **options)
        self.detail = detail


class TextInput(MediaInput):
    """A text file, or the text itself (then it is added to the prompt as it is)."""

    media_type = "text"
    default_mime = "text/plain"

    def _guess_mime(self) -> str:
        if isinstance(self.source, str) and Path(self.source).suffix.lower() in (".md", ".markdown"):
            return "text/markdown"
        return "text/plain"

    def as_file_input(self) -> Any:
        if isinstance(self.source, str) and not Path(self.source).is_file():
            import tempfile

            fd, path = tempfile.mkstemp(suffix=".txt", prefix="abstractllm-text-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.source)
            return path
        return self.source


class TabularInput(MediaInput):
    media_type = "tabular"
    default_mime = "text/csv"

    def __init__(self, source: Any, delimiter: str | None = None, mime_type: str | None = None,
                 **options: Any) -> None:
        super().__init__(source, mime_type, **options)
        if delimiter is None:
            delimiter = "\t" if (self.mime_type == "text/tab-separated-values"
                                 or str(self.source).lower().endswith(".tsv")) else ","
        self.delimiter = delimiter
        if mime_type is None:
            self.mime_type = "text/tab-separated-values" if delimiter == "\t" else "text/csv"


class MediaFactory:
    """1.x's factory: ``MediaFactory.from_source(source, media_type=None)``."""

    _KINDS = {"image": ImageInput, "text": TextInput, "tabular": TabularInput}
    _SUFFIXES = {".csv": "tabular", ".tsv": "tabular", ".txt": "text", ".md": "text", ".markdown": "text",
                 ".json": "text"}

    @classmethod
    def from_source(cls, source: Any, media_type: str | None = None, **options: Any) -> MediaInput:
        if isinstance(source, MediaInput):
            return source
        if isinstance(source, dict):
            options = {**source, **options}
            source = options.pop("source", None) or options.pop("path", None) or options.pop("url", None)
            media_type = media_type or options.pop("type", None) or options.pop("media_type", None)
        if media_type is None:
            text = os.fspath(source) if isinstance(source, os.PathLike) else source
            suffix = Path(text.split("?")[0]).suffix.lower() if isinstance(text, str) else ""
            media_type = cls._SUFFIXES.get(suffix, "image")
        if media_type not in cls._KINDS:
            from ..exceptions import UnsupportedFeatureError

            raise UnsupportedFeatureError(f"Unknown media type {media_type!r}: image, text or tabular.",
                                          feature=media_type)
        return cls._KINDS[media_type](source, **options)

    @classmethod
    def from_sources(cls, sources: Any) -> list[MediaInput]:
        items = sources if isinstance(sources, (list, tuple)) else [sources]
        return [cls.from_source(s) for s in items]
