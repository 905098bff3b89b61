"""Operations endpoints: ``GET /metrics`` (Prometheus text, see ``metrics``) and ``GET /vram_status``.

``/vram_status`` answers in the shape VLM-server users know, in GiB (2**30 bytes)::

    {"allocated_gb", "reserved_gb", "free_gb", "total_gb", "usage_percentage", ...}

The numbers are the provider's (``runtime_info()["device_memory"]``): ``allocated_gb`` is what its allocator
holds in live arrays (MLX's active memory: weights, KV caches, activations); ``reserved_gb`` adds the buffers it
keeps cached for reuse. ``total_gb`` is the device's memory: on a GPU with its own memory, what the backend
reports of it; on Apple's unified memory and on CPUs, the machine's RAM. ``free_gb`` is what is still
available there (the system's available memory on unified memory and CPUs; total minus reserved on a discrete
GPU), and ``usage_percentage`` is ``(total - free) / total`` in percent. The counters are read without waiting
for a busy batch. Also given: ``peak_gb`` (the allocator's peak), ``process_rss_gb``, ``device`` and
``memory_limit_gb`` (the provider's budget).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .errors import APIError
from .state import ServerState
from .stats import provider_config, runtime_info

__all__ = ["router", "vram_status"]

router = APIRouter()
_GB = float(1 << 30)


def _gb(value: float | int | None) -> float | None:
    return None if value is None else round(float(value) / _GB, 4)


def vram_status(state: ServerState) -> dict[str, Any]:
    """The ``/vram_status`` body (see the module docstring), from the provider's ``runtime_info()``."""
    info = runtime_info(state.llm)
    memory = info.get("device_memory") or {}
    process = info.get("memory") or {}
    total, available, unified = memory.get("total"), memory.get("available"), memory.get("unified", True)
    reserved = memory.get("reserved") or 0
    free = available if unified else (None if total is None else max(total - reserved, 0))
    usage = round(100.0 * (total - free) / total, 2) if total and free is not None else None
    limit = provider_config(state).get("memory_limit")
    return {
        "allocated_gb": _gb(memory.get("allocated") or 0), "reserved_gb": _gb(reserved), "free_gb": _gb(free),
        "total_gb": _gb(total), "usage_percentage": usage, "peak_gb": _gb(memory.get("peak")),
        "process_rss_gb": _gb(process.get("process_rss")), "device": state.device, "unified_memory": unified,
        "memory_limit_gb": _gb(limit) if isinstance(limit, (int, float)) else None,
        "model_loaded": state.status == "ok",
    }


@router.get("/vram_status")
async def vram(request: Request) -> Any:
    return await asyncio.to_thread(vram_status, request.app.state.server)


@router.get("/metrics")
async def metrics(request: Request) -> Any:
    state: ServerState = request.app.state.server
    if state.metrics is None:
        raise APIError(501, "Metrics need prometheus-client: pip install \"abstractllm[server]\".",
                       code="unsupported_feature")
    body, content_type = await asyncio.to_thread(state.metrics.render)
    return Response(body, media_type=content_type)
