"""``abstractllm models``: the loadable models in the Hugging Face cache and in given folders.

The hub cache is read by ``huggingface_hub.scan_cache_dir``. A folder counts when
``abstractllm.providers.mlx.source.inspect_model`` accepts it (a ``config.json`` with an architecture mlx-lm
or mlx-vlm supports, and safetensors weights); nothing is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .common import CLIError

__all__ = ["cmd_models", "hf_hub_cache", "find_models", "ModelEntry"]


@dataclass
class ModelEntry:
    """One listed model."""

    name: str
    path: str
    kind: str  # text | vision
    size_bytes: int
    quantization: str  # "4-bit", "8-bit", "none"
    model_type: str
    source: str  # hf-cache | folder


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, from the same variables huggingface_hub reads."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _cached_snapshots(cache: Path) -> Iterator[tuple[str, Path]]:
    """``(org/name, snapshot folder)`` of each model repo in the hub cache, as ``huggingface_hub.scan_cache_dir``
    reads it (repos it finds corrupted are skipped): the revision ``main`` points to, else the newest one.
    Paths are given under ``cache`` as named (not resolved), in the order of the repos' folder names."""
    from huggingface_hub import scan_cache_dir  # here: the CLI starts without importing huggingface_hub

    info = scan_cache_dir(cache)
    for repo in sorted(info.repos, key=lambda r: r.repo_path.name):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        rev = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        yield repo.repo_id, cache / rev.snapshot_path.relative_to(info.cache_dir)


def _entry(path: Path, name: str, source: str) -> ModelEntry | None:
    from ..exceptions import AbstractLLMError
    from ..providers.mlx.source import inspect_model

    try:
        spec = inspect_model(path)
    except AbstractLLMError:
        return None
    q = spec.quantization
    quant = f"{q.get('bits')}-bit" if q and q.get("bits") else ("quantized" if q else "none")
    size = sum(f.stat().st_size for f in spec.weight_files)
    return ModelEntry(name, str(path), spec.kind, size, quant, spec.model_type, source)


def find_models(folders: list[Path], use_cache: bool = True) -> Iterator[ModelEntry]:
    """Models in the hub cache (``org/name``) and in each folder (itself and its sub-folders)."""
    if use_cache:
        cache = hf_hub_cache()
        if cache.is_dir():
            for name, snap in _cached_snapshots(cache):
                entry = _entry(snap, name, "hf-cache")
                if entry:
                    yield entry
    for folder in folders:
        candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        for cand in candidates:
            if (cand / "config.json").is_file():
                entry = _entry(cand, cand.name, "folder")
                if entry:
                    yield entry


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def cmd_models(args: argparse.Namespace) -> int:
    folders = []
    for f in args.folders:
        p = Path(f).expanduser()
        if not p.is_dir():
            raise CLIError(f"not a folder: {f}")
        folders.append(p.resolve())
    entries = list(find_models(folders, use_cache=not args.no_cache))
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    if not entries:
        where = f"{hf_hub_cache()}" if not args.no_cache else ""
        where += (", " if where and folders else "") + ", ".join(str(f) for f in folders)
        print(f"No MLX models found in {where or 'nothing (no folders given)'}.")
        return 0
    rows: list[Any] = [("NAME", "KIND", "SIZE", "QUANT", "TYPE", "PATH")]
    rows += [(e.name, e.kind, _size(e.size_bytes), e.quantization, e.model_type, e.path) for e in entries]
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    return 0
