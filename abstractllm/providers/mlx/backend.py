"""Lazy imports of the MLX stack, with a missing or broken install turned into a clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...exceptions import UnsupportedProviderError

__all__ = ["import_backend", "is_metal"]

_INSTALL = 'pip install "abstractllm[mlx]"'


def import_backend(name: str) -> ModuleType:
    """Import ``mlx.core``, ``mlx_lm``, ``mlx_vlm``...; say which ``pip install`` fixes a failure."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = _INSTALL
        if "libmlx" in str(exc):
            hint += ' (on Linux the backend is the "mlx[cpu]" or "mlx[cuda12]" package)'
        raise UnsupportedProviderError(f"The MLX provider cannot import {name}: {exc}. Install it with: {hint}") from exc


def is_metal() -> bool:
    """True when MLX runs on an Apple GPU (Metal)."""
    mx = import_backend("mlx.core")
    try:
        return bool(mx.metal.is_available())
    except Exception:
        return False
