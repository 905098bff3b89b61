"""Offline model builders: complete, loadable MLX model folders with random weights, for tests, docs,
benchmarks and your own application's tests. Nothing is downloaded.

    from abstractllm.testing import build_text_model
    path = build_text_model("/tmp/tiny-model", preset="tiny")   # ~1 MB, builds in about a second
    llm = create_llm("mlx", model=str(path))

The weights are random, so the text is meaningless, but every real code path runs (loading, templating,
sampling, streaming, caching). ``demo_model()`` builds once and caches the folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["build_text_model", "build_vision_model", "demo_model", "demo_cache_dir", "TEXT_PRESETS",
           "BUILDER_VERSION"]

#: Bump when the builders change what they write, so cached demo models are rebuilt.
BUILDER_VERSION = 4


def build_text_model(path: str | Path, preset: str = "tiny", **kwargs: Any) -> Path:
    """Write an MLX text model folder (see ``abstractllm.testing.text.build_text_model``)."""
    from .text import build_text_model as _build

    return _build(path, preset, **kwargs)


def build_vision_model(path: str | Path, preset: str = "tiny", **kwargs: Any) -> Path:
    """Write an MLX vision model folder (see ``abstractllm.testing.vision.build_vision_model``)."""
    from .vision import build_vision_model as _build

    return _build(path, preset, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TEXT_PRESETS":
        from .text import TEXT_PRESETS

        return TEXT_PRESETS
    raise AttributeError(name)


def demo_cache_dir() -> Path:
    """Where ``demo_model`` caches its folders: ``$ABSTRACTLLM_DEMO_CACHE``, else a folder in the
    system temp dir."""
    env = os.environ.get("ABSTRACTLLM_DEMO_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "abstractllm-demo-models"


def demo_model(kind: str = "text", preset: str = "tiny", **kwargs: Any) -> Path:
    """Build (once) and return a cached demo model folder of ``kind`` ``"text"`` or ``"vision"``."""
    if kind not in ("text", "vision"):
        raise ValueError(f"kind must be 'text' or 'vision', got {kind!r}")
    suffix = "-".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    name = f"{kind}-{preset}-v{BUILDER_VERSION}" + (f"-{suffix}" if suffix else "")
    build = build_text_model if kind == "text" else build_vision_model
    return _cached(name, lambda tmp: build(tmp, preset, **kwargs))


def _cached(name: str, build: Any) -> Path:
    """The folder ``name`` in ``demo_cache_dir()``, made by ``build(tmp_folder)`` the first time."""
    path = demo_cache_dir() / name
    if (path / "config.json").is_file():
        return path
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_mkdir(demo_cache_dir())))
    try:
        build(tmp)
        try:
            tmp.rename(path)  # atomic: a concurrent builder may have won the race
        except OSError:
            pass
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
