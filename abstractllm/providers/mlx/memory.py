"""The memory guard: estimate what loading needs and refuse before any allocation.

The estimate is the bytes the weights will take once loaded (after a dtype cast or quantization on load)
plus a working margin for activations and the KV cache. It is compared with what the machine can give:
psutil's available memory, on Apple Silicon also MLX's recommended working-set size, and the user's
``memory_limit`` when set.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...exceptions import MemoryLimitError
from ...memory import available_memory
from ...params import format_bytes
from .source import ModelSpec

__all__ = ["MemoryEstimate", "estimate_load_bytes", "available_bytes", "check_load_memory", "format_bytes"]

_MARGIN_FRACTION = 0.10
_MARGIN_MIN = 64 * 2**20


@dataclass
class MemoryEstimate:
    weights_bytes: int  # resident weights after load
    peak_extra_bytes: int  # transient (e.g. one float tensor while quantizing)
    margin_bytes: int  # activations + KV cache working room

    @property
    def total(self) -> int:
        return self.weights_bytes + self.peak_extra_bytes + self.margin_bytes


def estimate_load_bytes(spec: ModelSpec, *, quantize_bits: int | None, float_itemsize: int | None) -> MemoryEstimate:
    """Estimate the bytes loading ``spec`` needs.

    ``float_itemsize``: bytes per float weight after a dtype cast (4 for float32), None to keep as stored.
    ``quantize_bits``: quantization on load (ignored for an already quantized model).
    """
    non_float = spec.weight_bytes - spec.float_bytes
    floats = spec.float_bytes
    if float_itemsize is not None and spec.float_params:
        floats = spec.float_params * float_itemsize
    extra = 0
    if quantize_bits and not spec.is_quantized:
        # bits per weight + a float16 scale and bias per group of 64
        floats = int(spec.float_params * (quantize_bits / 8 + 4 / 64))
        extra = spec.largest_tensor_bytes * 2  # one float tensor in flight while quantizing
    weights = non_float + floats
    margin = max(int(weights * _MARGIN_FRACTION), _MARGIN_MIN)
    return MemoryEstimate(weights, extra, margin)


def available_bytes(memory_limit: int | None = None) -> tuple[int, str]:
    """What the machine can give now, and where that number comes from (see ``abstractllm.memory``)."""
    return available_memory(memory_limit)


def check_load_memory(spec: ModelSpec, estimate: MemoryEstimate, memory_limit: int | None) -> None:
    """Raise ``MemoryLimitError`` (with the numbers) if loading would not fit."""
    avail, source = available_bytes(memory_limit)
    if estimate.total > avail:
        raise MemoryLimitError(
            f"Loading {spec.path.name!r} needs about {format_bytes(estimate.total)} "
            f"(weights {format_bytes(estimate.weights_bytes)} + transient {format_bytes(estimate.peak_extra_bytes)} "
            f"+ working margin {format_bytes(estimate.margin_bytes)}), but only {format_bytes(avail)} is allowed "
            f"by {source}. Use a smaller or quantized model (quantize=4), keep half-precision weights "
            "(dtype='bfloat16'; on CPUs dtype='auto' casts them to float32), free memory, or raise memory_limit.",
            required_bytes=estimate.total,
            available_bytes=avail,
        )
