"""``abstractllm models`` reads the Hugging Face cache through ``huggingface_hub.scan_cache_dir``: a fake hub
cache (the layout huggingface_hub writes: blobs, snapshots of symlinks, refs) holding a model built by
``abstractllm.testing``, listed in process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from abstractllm.cli.models import find_models


def _add_revision(repo: Path, commit: str, model: Path, *, bits: int | None = None, mtime: float = 1e9) -> None:
    """One snapshot of ``model`` in ``repo``: each file a blob (modified at ``mtime``), linked from
    ``snapshots/<commit>``."""
    blobs, snap = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True)
    for f in model.iterdir():
        blob = blobs / f"{commit}-{f.name}"
        data = f.read_bytes()
        if f.name == "config.json" and bits is not None:
            data = json.dumps({**json.loads(data), "quantization": {"group_size": 64, "bits": bits}}).encode()
        blob.write_bytes(data)
        os.utime(blob, (mtime, mtime))
        os.symlink(blob, snap / f.name)


def _hub(root: Path, tiny_model: Path) -> Path:
    hub = root / "hub"
    repo = hub / "models--test-org--tiny"
    _add_revision(repo, "aaa111", tiny_model, bits=4)  # what refs/main names
    _add_revision(repo, "bbb222", tiny_model, bits=8, mtime=2e9)  # newer, but main wins
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa111")
    _add_revision(hub / "models--test-org--no-ref", "ccc333", tiny_model, bits=8, mtime=2e9)  # no refs: newest
    _add_revision(hub / "models--test-org--no-ref", "eee555", tiny_model, bits=4)
    _add_revision(hub / "datasets--test-org--data", "ddd444", tiny_model)  # not a model repo
    (hub / "models--org--corrupted" / "snapshots" / "x").mkdir(parents=True)
    (hub / "models--org--corrupted" / "refs").mkdir()
    (hub / "models--org--corrupted" / "refs" / "main").write_text("missing")  # a ref to no snapshot
    (hub / ".locks").mkdir()
    return hub


def test_hub_cache_is_scanned_by_huggingface_hub(tiny_model, tmp_path, monkeypatch):
    hub = _hub(tmp_path / "hf", tiny_model)
    link = tmp_path / "hub-link"
    link.symlink_to(hub)  # the paths listed are under the cache as named, not resolved
    monkeypatch.setenv("HF_HUB_CACHE", str(link))
    entries = list(find_models([]))
    assert [e.name for e in entries] == ["test-org/no-ref", "test-org/tiny"]
    no_ref, tiny = entries
    assert tiny.quantization == "4-bit" and tiny.source == "hf-cache" and tiny.kind == "text"
    assert tiny.path == str(link / "models--test-org--tiny" / "snapshots" / "aaa111")
    assert no_ref.quantization == "8-bit" and no_ref.path.endswith("ccc333")
    assert tiny.size_bytes == sum(f.stat().st_size for f in tiny_model.glob("*.safetensors"))


def test_missing_or_empty_cache_lists_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "absent"))
    assert list(find_models([])) == []
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert list(find_models([])) == []
