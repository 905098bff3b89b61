"""Loading a model on the worker thread, in order: MLX's device, mlx-lm's / mlx-vlm's own answer on the
architecture, the adapter that serves it (``registry.choose_adapter``), the memory guard (before any
allocation), then the adapter loads it. Load failures inside mlx / mlx-lm / mlx-vlm are converted here, at
one boundary."""

from __future__ import annotations

import time
from typing import Any

from ...exceptions import AbstractLLMError, ModelLoadError, UnsupportedFeatureError, UnsupportedModelError
from .adapter import ModelAdapter
from .backend import import_backend, on_gpu, warm_cpu_compiler
from .memory import MemoryEstimate, check_load_memory, estimate_load_bytes
from .registry import choose_adapter, needs_of
from .source import ModelSpec
from .weights import float_itemsize_for, quantize_bits

__all__ = ["load_adapter", "check_architecture", "set_device", "clear_streams"]


def check_architecture(spec: ModelSpec) -> None:
    """Ask mlx-lm / mlx-vlm (their own model-class lookups) whether they have a model of this type."""
    try:
        if spec.kind == "vision":
            import_backend("mlx_vlm.utils").get_model_and_args(spec.config)
        else:
            import_backend("mlx_lm.utils")._get_classes(spec.config)
    except (ValueError, ImportError, KeyError, AttributeError) as exc:
        versions = _backend_versions()
        if spec.kind == "vision":
            raise UnsupportedModelError(f"Model type {spec.model_type!r} has a vision config but mlx-vlm does not support "
                                 f"it ({exc}; installed: {versions}). Upgrade mlx-vlm, or check the model's "
                                 "config.json.") from exc
        raise UnsupportedModelError(f"Unknown architecture {spec.model_type!r}: mlx-lm has no model of that type ({exc}; "
                             f"installed: {versions}). Upgrade mlx-lm, or check the model's config.json.") from exc


def _backend_versions() -> str:
    """``mlx-lm X, mlx-vlm Y`` as installed (``not installed`` where missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("mlx-lm", "mlx-vlm"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} not installed")
    return ", ".join(out)


def set_device(mx: Any, device: str) -> None:
    """Apply the ``device`` config on the worker: MLX's default device (one per process)."""
    if device == "auto":
        return
    target = mx.cpu if device == "cpu" else mx.gpu
    if device == "gpu" and not mx.is_available(mx.gpu):
        raise UnsupportedFeatureError(
            "device='gpu' was asked for, but this MLX build has no GPU backend (Apple Silicon has Metal; on "
            "Linux install mlx[cuda12] for NVIDIA GPUs). Use device='cpu' or 'auto'.", provider="mlx")
    if mx.default_device() != target:
        mx.set_default_device(target)


def clear_streams() -> None:
    """Runs on the worker thread as it stops: MLX aborts the process at exit otherwise (mlx >= 0.32)."""
    import sys

    mx = sys.modules.get("mlx.core")
    if mx is not None:  # only if this process ever used MLX
        mx.clear_streams()


def load_adapter(spec: ModelSpec, config: dict[str, Any]) -> tuple[ModelAdapter, MemoryEstimate, float]:
    """Load ``spec`` as ``config`` says; returns the adapter, the memory estimate and the load time (s)."""
    mx = import_backend("mlx.core")
    import_backend("mlx_lm")
    set_device(mx, config.get("device") or "auto")
    gpu = on_gpu()
    check_architecture(spec)
    entry = choose_adapter(needs_of(spec, config))
    bits = quantize_bits(config)
    if bits and spec.kind == "vision":
        raise UnsupportedFeatureError(
            f"quantize={bits} on load is supported for text models only; {spec.path.name!r} is a vision "
            "model: use a pre-quantized version of it (e.g. an mlx-community '-4bit' repo)."
        )
    # The float parts of a quantized model (scales, biases, norms) are cast too.
    itemsize = float_itemsize_for(config["dtype"], spec, gpu)
    estimate = estimate_load_bytes(spec, quantize_bits=bits, float_itemsize=itemsize)
    check_load_memory(spec, estimate, config.get("memory_limit"))
    t0 = time.perf_counter()
    adapter = entry.make(spec, config, gpu)
    try:
        adapter.load()
    except AbstractLLMError:
        raise
    except Exception as exc:  # the one boundary for load failures inside mlx / mlx-lm / mlx-vlm
        raise ModelLoadError(f"Could not load {str(spec.path)!r}: {type(exc).__name__}: {exc}") from exc
    if entry.then is not None:  # e.g. a vision checkpoint's text-only requests batched through mlx-lm
        adapter = entry.then(adapter)
    if not gpu:
        warm_cpu_compiler(mx)
    return adapter, estimate, time.perf_counter() - t0
