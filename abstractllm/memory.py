"""What memory the machine can give now: the one answer the load guard, the per-request check and the
media check all use. Imports nothing heavy (psutil lazily; mlx only if the process already uses it)."""

from __future__ import annotations

import sys

from .params import format_bytes

__all__ = ["available_memory"]


def _metal_working_set() -> int | None:
    mx = sys.modules.get("mlx.core")  # never import mlx from here
    if mx is None:
        return None
    try:
        if not mx.metal.is_available():
            return None
        info = mx.device_info() if hasattr(mx, "device_info") else mx.metal.device_info()
        return int(info.get("max_recommended_working_set_size", 0)) or None
    except Exception:
        return None


def available_memory(memory_limit: int | None = None, in_use: int = 0) -> tuple[int, str]:
    """Bytes available now and where the number comes from: psutil's available memory, capped on Apple
    GPUs by MLX's recommended working-set size minus ``in_use``, and by ``memory_limit`` minus ``in_use``
    (``in_use``: bytes the process's MLX arrays already hold, e.g. a loaded model)."""
    import psutil

    avail, source = int(psutil.virtual_memory().available), "available system memory"
    working_set = _metal_working_set()
    if working_set is not None and working_set - in_use < avail:
        avail, source = max(0, working_set - in_use), "MLX's recommended working-set size (Metal)"
    if memory_limit is not None and memory_limit - in_use < avail:
        avail = max(0, memory_limit - in_use)
        source = (f"memory_limit ({format_bytes(memory_limit)}) minus {format_bytes(in_use)} in use" if in_use
                  else "the memory_limit setting")
    return avail, source
