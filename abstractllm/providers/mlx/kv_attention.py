"""Attention over a quantized KV cache on every CPU core (``kv_bits`` on the CPU backend).

mlx-lm reads a quantized cache through ``mx.quantized_matmul``, which runs on one thread on the CPU backend,
while a full-precision cache's attention goes through the multi-threaded BLAS: on a 2-core machine a 4-bit
cache then decodes slower than float32 at long contexts, although it reads 6x fewer bytes. Attention is
independent per KV head, so ``attention`` splits the heads into one contiguous range per core and computes
each range with mlx-lm's own ``quantized_scaled_dot_product_attention`` on its own CPU stream (each MLX stream
has its own thread), then concatenates them. Every head runs exactly the ops it runs unsplit, so the output is
bit-for-bit the same (``tests/test_kv_quant.py`` checks it against the unsplit path and mlx-lm's
single-stream cache).

``install(model)`` points the ``scaled_dot_product_attention`` name of the model's mlx-lm modules at
``attention``, which takes this path only for this package's quantized caches (``BatchQuantizedKVCache``,
``MergeableQuantizedKVCache``) on the CPU, without attention sinks, with enough work to pay for the streams'
hand-off; every other call goes to mlx-lm's function unchanged, so raw mlx-lm use of the same modules in the
process is unaffected. The helper streams are per thread (MLX streams are thread-local) and are released with
the thread's ``mx.clear_streams()``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import Any

import mlx.core as mx
from mlx_lm.models import base as _base

from .kv_quant import BatchQuantizedKVCache, MergeableQuantizedKVCache

__all__ = ["attention", "install", "parallel_parts", "MIN_ELEMENTS"]

#: mlx-lm's attention function, which ``attention`` falls back to
_ORIGINAL = _base.scaled_dot_product_attention
_QUANTIZED = (BatchQuantizedKVCache, MergeableQuantizedKVCache)
#: below this much work per call (batch x query heads x queries x keys x head size), one thread is faster than
#: the streams' hand-off (bench/kv_attention.py: one sequence on the 0.6B shape, 16 query heads of 128, pays
#: from ~512 keys of decode and clearly from 1,024 = 2^21)
MIN_ELEMENTS = 1 << 21
#: at most this many parts (streams) per attention call
MAX_PARTS = 8

_local = threading.local()


def parallel_parts(n_kv_heads: int) -> int:
    """How many parts the KV heads are split into on this thread's device: one per CPU core (at most
    ``MAX_PARTS`` and ``n_kv_heads``) on the CPU backend, 1 elsewhere (GPU kernels are parallel already)."""
    if mx.default_device().type != mx.DeviceType.cpu:
        return 1
    return max(1, min(_cores(), MAX_PARTS, n_kv_heads))


@functools.lru_cache(maxsize=1)
def _cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's share), else the count; read
    once (it is asked on every attention call)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _helper_streams(n: int) -> list:
    """``n`` CPU streams of this thread (created once per thread, as MLX streams are thread-local)."""
    streams = getattr(_local, "streams", None)
    if streams is None:
        streams = _local.streams = []
    while len(streams) < n:
        streams.append(mx.new_stream(mx.cpu))
    return streams[:n]


def _splittable(queries: mx.array, keys: tuple, mask: Any) -> int:
    """The number of parts to split this call into (1: do not split)."""
    n_kv = keys[0].shape[-3]
    batch, heads, length, head_size = queries.shape
    if heads % n_kv or batch * heads * length * keys[0].shape[-2] * head_size < MIN_ELEMENTS:
        return 1
    if isinstance(mask, mx.array) and mask.ndim >= 3 and mask.shape[-3] != 1:
        return 1  # a per-head mask (MLA models' position scores): not split
    return parallel_parts(n_kv)


def _split_attention(queries: mx.array, keys: tuple, values: tuple, scale: float, mask: Any,
                     group_size: int, bits: int, parts: int) -> mx.array:
    n_kv = keys[0].shape[-3]
    repeats = queries.shape[1] // n_kv
    bounds = [n_kv * i // parts for i in range(parts + 1)]
    streams = [None, *_helper_streams(parts - 1)]
    outs = []
    for (lo, hi), stream in zip(zip(bounds, bounds[1:]), streams):
        args = (queries[:, lo * repeats: hi * repeats], tuple(x[:, lo:hi] for x in keys),
                tuple(x[:, lo:hi] for x in values))
        kwargs = dict(scale=scale, mask=mask, group_size=group_size, bits=bits)
        if stream is None:  # the first part on the caller's stream
            outs.append(_base.quantized_scaled_dot_product_attention(*args, **kwargs))
        else:
            with mx.stream(stream):
                outs.append(_base.quantized_scaled_dot_product_attention(*args, **kwargs))
    return mx.concatenate(outs, axis=1)


def attention(queries, keys, values, cache, scale: float, mask, sinks=None):
    """mlx-lm's ``scaled_dot_product_attention`` (same signature and result), with the KV heads of this
    package's quantized caches split across the CPU cores."""
    if sinks is None and isinstance(cache, _QUANTIZED):
        parts = _splittable(queries, keys, mask)
        if parts > 1:
            return _split_attention(queries, keys, values, scale, mask, cache.group_size, cache.bits, parts)
    return _ORIGINAL(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)


def install(model: Any) -> int:
    """Route ``model``'s attention through ``attention``: every module of its layers whose
    ``scaled_dot_product_attention`` is mlx-lm's gets this one (idempotent). Returns how many modules
    changed. A model whose attention is its own (not mlx-lm's function) is left as it is."""
    changed = 0
    for name in {type(m).__module__ for m in model.modules()}:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "scaled_dot_product_attention", None) is _ORIGINAL:
            module.scaled_dot_product_attention = attention
            changed += 1
    return changed
