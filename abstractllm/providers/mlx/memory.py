"""The memory guard: estimate what loading needs and refuse before any allocation; and the per-request
checks made before a request joins the batch (its KV cache must fit; ``max_input_tokens`` and
``context_window`` bound its prompt).

The estimate is the bytes the weights will take once loaded (after a dtype cast or quantization on load)
plus a working margin for activations and the KV cache. It is compared with what the machine can give:
psutil's available memory, on Apple Silicon also MLX's recommended working-set size, and the user's
``memory_limit`` when set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...exceptions import ContextWindowExceededError, MemoryLimitError
from ...memory import available_memory
from ...params import format_bytes
from .source import ModelSpec

__all__ = ["MemoryEstimate", "estimate_load_bytes", "available_bytes", "check_load_memory", "format_bytes",
           "kv_bytes_per_token", "check_request_memory", "check_context_window"]

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


def kv_bytes_per_token(config: dict[str, Any], itemsize: int, kv_bits: int | None = None,
                       kv_group_size: int | None = None) -> int:
    """Bytes the KV cache grows by per token: 2 x layers x kv_heads x head_dim x itemsize (0: unknown).

    With ``kv_bits`` (a quantized KV cache, ``kv_quant``): each head_dim vector takes head_dim x kv_bits / 8
    bytes plus a scale and a bias (``itemsize`` each) per ``kv_group_size`` values. Every layer is counted as
    quantized (sliding-window layers stay full precision but stop growing at their window)."""
    cfg = config.get("text_config") or config
    try:
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg.get("num_attention_heads") or 0)
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0
    if kv_bits:
        if not kv_group_size:
            raise ValueError("kv_bytes_per_token: kv_bits needs kv_group_size")
        per_vector = head_dim * kv_bits // 8 + 2 * itemsize * (-(-head_dim // kv_group_size))
        return 2 * layers * kv_heads * per_vector
    return 2 * layers * kv_heads * head_dim * itemsize


def check_request_memory(prompt_tokens: int, max_tokens: int, max_kv_size: int | None, per_token: int,
                         memory_limit: int | None) -> None:
    """Refuse (``MemoryLimitError``) a request whose KV cache, at ``prompt + max_tokens`` tokens, cannot fit
    in the available memory (or in ``memory_limit`` minus what MLX already holds)."""
    if not per_token:
        return
    import mlx.core as mx

    tokens = prompt_tokens + max_tokens
    if max_kv_size:
        tokens = min(tokens, max_kv_size)
    need = tokens * per_token
    avail, source = available_memory(memory_limit, in_use=mx.get_active_memory())
    if need > avail:
        raise MemoryLimitError(
            f"This request's KV cache needs up to {format_bytes(need)} ({prompt_tokens} prompt + {max_tokens} "
            f"new tokens x {format_bytes(per_token)} per token), but only {format_bytes(avail)} is available "
            f"({source}). Lower max_tokens, shorten the prompt, or bound the cache with max_kv_size.",
            required_bytes=need, available_bytes=avail,
        )


def check_context_window(prompt_tokens: int, params: dict[str, Any]) -> None:
    """``max_input_tokens``: the prompt's limit; ``context_window``: the limit of prompt + ``max_tokens``.
    Past either, ``ContextWindowExceededError`` (nothing is generated)."""
    limit = params.get("max_input_tokens")
    if limit and prompt_tokens > limit:
        raise ContextWindowExceededError(
            f"The prompt has {prompt_tokens} tokens, above max_input_tokens={limit}. Shorten it or raise the limit.",
            context_window=limit, content_length=prompt_tokens)
    window = params.get("context_window")
    if window and prompt_tokens + params["max_tokens"] > window:
        raise ContextWindowExceededError(
            f"{prompt_tokens} prompt tokens + max_tokens={params['max_tokens']} exceed context_window={window}. "
            "Shorten the prompt or lower max_tokens.", context_window=window,
            content_length=prompt_tokens + params["max_tokens"])
