"""Weights on load: the dtype they are cast to for the device, quantization on load, and their float
itemsize (what the KV cache is made of)."""

from __future__ import annotations

from typing import Any

from .source import ModelSpec

__all__ = ["quantize_bits", "float_itemsize_for", "cast_for_device", "float_itemsize"]


def quantize_bits(config: dict[str, Any]) -> int | None:
    """Bits to quantize to on load: ``quantize``, or 1.x's ``load_in_4bit`` / ``load_in_8bit``."""
    if config.get("quantize"):
        return config["quantize"]
    if config.get("load_in_4bit"):
        return 4
    if config.get("load_in_8bit"):
        return 8
    return None


def float_itemsize_for(dtype: str, spec: ModelSpec, on_gpu: bool) -> int | None:
    """Bytes per float weight after load (None: kept as stored). ``auto`` casts half-precision weights
    to float32 on CPU, where bfloat16/float16 matmuls are several times slower; keeps them on GPUs
    (Apple Metal, CUDA)."""
    if dtype == "auto":
        return None if on_gpu else 4
    return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]


def cast_for_device(model: Any, dtype: str, on_gpu: bool) -> str | None:
    """Cast the float weights of ``model`` as ``dtype`` says (of a quantized model: its scales, biases
    and unquantized layers; the packed integer weights stay); return the dtype name applied (or None)."""
    import mlx.core as mx

    target = None
    if dtype == "auto":
        target = None if on_gpu else mx.float32
    else:
        target = getattr(mx, dtype)
    if target is None:
        return None
    model.set_dtype(target, lambda x: mx.issubdtype(x, mx.floating))
    return str(target).replace("mlx.core.", "")


def float_itemsize(model: Any) -> int:
    from mlx.utils import tree_flatten

    import mlx.core as mx

    for _, value in tree_flatten(model.parameters()):
        if mx.issubdtype(value.dtype, mx.floating):
            return value.dtype.size
    return 4
