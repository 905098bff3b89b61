"""Attention over a 4-bit KV cache on the CPU: float32 SDPA, mlx-lm's quantized attention, and the same split
by KV heads across the cores (``abstractllm.providers.mlx.kv_attention``), per layer and per decode step.

    python bench/kv_attention.py                       # qwen3-0.6b shape: ~2 min
    python bench/kv_attention.py --keys 256 1024 4096  # other context lengths

Part 1 times one layer's decode attention (the preset's query / KV heads and head size, one query token per
sequence) for each ``--batches`` x ``--keys``: float32 ``mx.fast.scaled_dot_product_attention``, mlx-lm's
``quantized_scaled_dot_product_attention`` and ``kv_attention.attention`` with the split forced on (its
output checked bit for bit against mlx-lm's). Part 2 steps the whole model (random weights, built offline by
``abstractllm.testing``) one token at a time over caches holding ``--context`` random keys and values:
float32 ``BatchKVCache``, 4-bit ``BatchQuantizedKVCache`` unsplit and split (where ``kv_attention`` splits:
from ``MIN_ELEMENTS`` of work per call), alternating, medians.
Ratios are float32's time over the other's (tokens/s against float32: higher is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import offline_env  # noqa: E402  (bench/common.py, same folder)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="qwen3-0.6b", help="abstractllm.testing text preset")
    p.add_argument("--keys", type=int, nargs="+", default=[128, 512, 1024, 2048], help="part 1: key counts")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="part 1: sequences per call")
    p.add_argument("--context", type=int, default=2028, help="part 2: tokens in the cache")
    p.add_argument("--rounds", type=int, default=4, help="part 2: alternating rounds")
    p.add_argument("--steps", type=int, default=8, help="part 2: decode steps per round (2 warm-up)")
    p.add_argument("--bits", type=int, default=4, choices=(4, 8))
    return p.parse_args(argv)


def timed(mx, fn, n: int = 40) -> float:
    """Median milliseconds of ``fn`` evaluated, after 3 warm-up calls."""
    for _ in range(3):
        mx.eval(fn())
    times = []
    for _ in range(n):
        t = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def part_layer(mx, ka, args, heads: int, kv_heads: int, head_dim: int) -> list[str]:
    from mlx_lm.models.base import quantized_scaled_dot_product_attention as mlx_lm_quantized

    rows = ["| batch | keys | float32 SDPA ms | mlx-lm 4-bit ms | split 4-bit ms | split / mlx-lm | float32 / split "
            "| split by the provider | equal |", "|---|---|---|---|---|---|---|---|---|"]
    threshold = ka.MIN_ELEMENTS
    for b in args.batches:
        for n in args.keys:
            cache = ka.BatchQuantizedKVCache([0] * b, group_size=64, bits=args.bits)
            k, v = mx.random.normal((b, kv_heads, n, head_dim)), mx.random.normal((b, kv_heads, n, head_dim))
            qk, qv = cache.update_and_fetch(k, v)
            q = mx.random.normal((b, heads, 1, head_dim))
            mx.eval(k, v, qk, qv, q)
            scale = head_dim ** -0.5
            ka.MIN_ELEMENTS = threshold
            routed = ka._splittable(q, qk, None) > 1
            # mlx-lm scales its queries in place (``queries *= scale``): every call gets a fresh copy
            f = timed(mx, lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale))
            unsplit = timed(mx, lambda: mlx_lm_quantized(mx.array(q), qk, qv, scale=scale, mask=None,
                                                         group_size=64, bits=args.bits))
            ka.MIN_ELEMENTS = 0
            split = timed(mx, lambda: ka.attention(mx.array(q), qk, qv, cache, scale, None))
            equal = mx.array_equal(ka.attention(mx.array(q), qk, qv, cache, scale, None),
                                   mlx_lm_quantized(mx.array(q), qk, qv, scale=scale, mask=None, group_size=64,
                                                    bits=args.bits)).item()
            rows.append(f"| {b} | {n} | {f:.2f} | {unsplit:.2f} | {split:.2f} | {unsplit / split:.2f}x | "
                        f"{f / split:.2f}x | {'yes' if routed else 'no'} | {'yes' if equal else 'NO'} |")
            print(rows[-1], flush=True)
    ka.MIN_ELEMENTS = threshold
    return rows


def part_model(mx, ka, args, model, threshold: int) -> list[str]:
    from mlx_lm.models.cache import BatchKVCache

    a = model.args
    layers, kv_heads = a.num_hidden_layers, a.num_key_value_heads
    head_dim = getattr(a, "head_dim", None) or a.hidden_size // a.num_attention_heads

    def filled(quantized: bool) -> list:
        caches = []
        for _ in range(layers):
            c = ka.BatchQuantizedKVCache([0], group_size=64, bits=args.bits) if quantized else BatchKVCache([0])
            c.update_and_fetch(mx.random.normal((1, kv_heads, args.context, head_dim)) * 0.5,
                               mx.random.normal((1, kv_heads, args.context, head_dim)) * 0.5)
            caches.append(c)
        mx.eval([c.state for c in caches])
        return caches

    def step_ms(caches) -> float:
        y, times = mx.array([[5]]), []
        for _ in range(args.steps):
            t = time.perf_counter()
            y = mx.argmax(model(y, cache=caches)[:, -1:], axis=-1)
            mx.eval(y)
            times.append(time.perf_counter() - t)
        return statistics.median(times[2:]) * 1e3

    ka.install(model)
    full, quant = filled(False), filled(True)
    res: dict[str, list[float]] = {"float32": [], "unsplit": [], "split": []}
    for r in range(args.rounds):
        order = ["float32", "unsplit", "split"]
        for name in order if r % 2 == 0 else order[::-1]:
            ka.MIN_ELEMENTS = 10 ** 15 if name == "unsplit" else threshold
            res[name].append(step_ms(full if name == "float32" else quant))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in res.items()), flush=True)
    m = {k: statistics.median(v) for k, v in res.items()}
    return ["| cache | ms per decode step (median) | tok/s vs float32 |", "|---|---|---|",
            *(f"| {k} | {v:.0f} ({', '.join(f'{x:.0f}' for x in res[k])}) | {m['float32'] / v:.2f}x |"
              for k, v in m.items())]


def main(argv=None) -> int:
    args = parse_args(argv)
    offline_env()
    from abstractllm.providers.mlx.backend import enable_fast_blas, fast_blas_status

    enable_fast_blas()
    import mlx.core as mx
    from mlx_lm import load

    from abstractllm.providers.mlx import kv_attention as ka
    from abstractllm.testing import demo_model

    path = demo_model("text", args.preset, dtype="float32")
    model, _ = load(str(path))
    a = model.args
    head_dim = getattr(a, "head_dim", None) or a.hidden_size // a.num_attention_heads
    print(f"{args.preset}: {a.num_hidden_layers} layers, {a.num_attention_heads} query heads, "
          f"{a.num_key_value_heads} KV heads of {head_dim}; {fast_blas_status()}; {os.cpu_count()} CPUs, "
          f"{ka.parallel_parts(a.num_key_value_heads)} parts; load average {os.getloadavg()[0]:.1f}", flush=True)
    threshold = ka.MIN_ELEMENTS
    layer = part_layer(mx, ka, args, a.num_attention_heads, a.num_key_value_heads, head_dim)
    step = part_model(mx, ka, args, model, threshold)
    print(f"\none layer's decode attention, {args.bits}-bit KV, group 64:")
    print("\n".join(layer))
    print(f"\nthe whole model, one decode step over {args.context} cached tokens "
          f"(load average at the end {os.getloadavg()[0]:.1f}):")
    print("\n".join(step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
