#!/usr/bin/env python
"""Concurrency benchmark: the provider's batching engine against one-at-a-time and raw mlx-lm batching,
measured in one run, side by side.

    python bench/concurrency.py                         # qwen3-0.6b (float32, OpenBLAS) and small rows
    python bench/concurrency.py --presets small --max-tokens 32      # a quick look
    python bench/concurrency.py --presets qwen3-0.6b --skip-vision --json out.json

For each preset (models built offline with random weights by ``abstractllm.testing``), greedy decoding of
the same chat prompts:

- one-at-a-time: the prompts through the provider one after another (aggregate tokens/s);
- 1, 4 and 8 concurrent requests through the provider (``generate([...])``: one batch);
- raw ``mlx_lm.batch_generate`` on the same 8 prompts (ids templated the same way);
- a single request against raw ``mlx_lm.stream_generate`` (decode tokens/s: no regression when alone);
- chunked prefill: requests decoding while a 2,000-token prompt is admitted: the worst gap between their
  tokens (the engine's ``max_inter_token_latency``: token to token, whether or not the token's text could
  be shown yet; also the worst gap between text chunks a reader received, which is longer when a random
  model writes bytes that are not yet whole UTF-8 characters), and that prompt's TTFT against its own
  prefill alone;
- vision (offline Qwen2-VL-shaped model): 4 concurrent image requests against one-at-a-time, and what
  mlx-vlm's own batching gives on the same model (raw `batch_generate` of 4 against 4 `stream_generate`).

Outputs are checked equal (batched vs alone vs raw). Ratios are of aggregate generated tokens per second
of wall time, from the caller's side. The machine is shared: run it on an idle machine for the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a short poem about a robot that learns to paint the sea.",
    "List three tips for running language models on a laptop.",
    "What makes a good cup of tea?",
    "Describe a city at night in four sentences.",
    "Why do cats purr?",
    "Give me a recipe for pancakes.",
    "Summarize the plot of a heist movie you invent.",
]
GOALS = {"x8_vs_serial": 3.7, "x8_vs_raw_batch": 0.95, "solo_vs_raw": 0.98, "vision_x4": 2.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="qwen3-0.6b,small", help="comma-separated text presets (first = goals)")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    p.add_argument("--long-prompt-tokens", type=int, default=2000, help="the prompt admitted mid-batch")
    p.add_argument("--prefill-chunk", type=int, default=None, help="prefill_chunk_size (default: the provider's)")
    p.add_argument("--solo-rounds", type=int, default=3, help="alternating rounds of the single-request check")
    p.add_argument("--skip-vision", action="store_true", help="skip the vision row")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return p.parse_args(argv)


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def aggregate_tps(responses, seconds: float) -> float:
    return sum(r.usage.completion_tokens for r in responses) / seconds


def bench_text(preset: str, args) -> dict:
    import mlx.core as mx
    from mlx_lm import batch_generate, load, stream_generate

    from abstractllm import create_llm
    from abstractllm.testing import demo_model

    path = demo_model("text", preset)
    n = args.max_tokens
    config = {"temperature": 0.0, "max_tokens": n, "max_batch_size": 8, "prompt_cache_bytes": 0}
    if args.prefill_chunk:
        config["prefill_chunk_size"] = args.prefill_chunk
    llm = create_llm("mlx", model=str(path), **config).load()
    model, tok = load(str(path))
    model.set_dtype(mx.float32, lambda x: mx.issubdtype(x, mx.floating))  # as the provider's dtype='auto' on CPU
    ids = [list(tok.apply_chat_template(chat(p), add_generation_prompt=True)) for p in PROMPTS]
    row: dict = {"preset": preset}
    llm.generate("warm up", max_tokens=2)

    # one at a time
    t = time.perf_counter()
    serial = [llm.generate(p) for p in PROMPTS]
    row["serial_tps"] = aggregate_tps(serial, time.perf_counter() - t)

    # 1, 4, 8 concurrent (one batch each)
    for k in (1, 4, 8):
        t = time.perf_counter()
        out = llm.generate(PROMPTS[:k]) if k > 1 else [llm.generate(PROMPTS[0])]
        row[f"x{k}_tps"] = aggregate_tps(out, time.perf_counter() - t)
        if k == 8:
            row["batched_equals_alone"] = [r.token_ids for r in out] == [r.token_ids for r in serial]

    # raw mlx-lm batch_generate on the same 8 prompts
    t = time.perf_counter()
    raw = batch_generate(model, tok, ids, max_tokens=n, return_token_ids=True)
    raw_s = time.perf_counter() - t
    row["raw_batch_tps"] = sum(len(x) for x in raw.token_ids) / raw_s
    row["raw_batch_equal"] = [list(x) for x in raw.token_ids] == [r.token_ids for r in serial]

    # a single request against raw stream_generate (decode only, from the first token)
    def decode_tps(times: list[float]) -> float:
        return (len(times) - 1) / (times[-1] - times[0])

    def raw_solo() -> float:
        return decode_tps([time.perf_counter() for _ in stream_generate(model, tok, mx.array(ids[1]), max_tokens=n)])

    def our_solo() -> float:
        times: list[float] = []
        for chunk in llm.generate(PROMPTS[1], stream=True):
            times.extend([time.perf_counter()] * len(chunk.token_ids))
        return decode_tps(times)

    pairs = []  # alternating order; the ratio is the median of the pairs' (robust to load drift)
    for i in range(args.solo_rounds):
        first, second = (raw_solo, our_solo) if i % 2 == 0 else (our_solo, raw_solo)
        a, b = first(), second()
        pairs.append((a, b) if first is raw_solo else (b, a))
    row["raw_solo_decode_tps"] = statistics.median(r for r, _ in pairs)
    row["solo_decode_tps"] = statistics.median(o for _, o in pairs)
    row["solo_ratio"] = statistics.median(o / r for r, o in pairs)

    # chunked prefill: 4 requests decoding, then a long prompt arrives
    long_prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * (args.long_prompt_tokens // 11))
    t = time.perf_counter()
    alone = llm.generate(long_prompt, max_tokens=1)
    row["long_prefill_alone_s"] = time.perf_counter() - t
    arrivals: dict[int, list[float]] = {i: [] for i in range(4)}
    streams = [llm.generate(PROMPTS[i], max_tokens=4096, stream=True) for i in range(4)]  # cancelled below
    for s in streams:
        next(s)

    def read(i: int, s) -> None:
        for _ in s:
            arrivals[i].append(time.perf_counter())

    readers = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(streams)]
    for r in readers:
        r.start()
    time.sleep(1.0)
    t_admit = time.perf_counter()
    llm.clear_stats()
    late = llm.generate(long_prompt, max_tokens=1)
    t_done = time.perf_counter()
    engine_gap = llm.get_stats()["max_inter_token_latency"]
    time.sleep(0.5)
    for s in streams:
        s.cancel()
    for r in readers:
        r.join(120)
    gaps = [b - a for times in arrivals.values() for a, b in zip(times, times[1:]) if b > t_admit and a < t_done]
    step_s = statistics.median(b - a for times in arrivals.values() for a, b in zip(times, times[1:]) if b < t_admit)
    row.update(worst_gap_s=engine_gap, worst_chunk_gap_s=max(gaps) if gaps else float("nan"), decode_step_s=step_s,
               long_ttft_in_batch_s=late.ttft_s, long_prompt_tokens=alone.usage.prompt_tokens)
    llm.close()
    return row


def bench_vision(args) -> dict:
    from abstractllm import create_llm
    from abstractllm.testing import demo_model
    from abstractllm.testing.media import png_bytes

    path = demo_model("vision", "tiny")
    img = png_bytes(64, 64)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=args.max_tokens, prompt_cache_bytes=0) as vlm:
        vlm.generate("warm up", files=[img], max_tokens=2)
        t = time.perf_counter()
        serial = [vlm.generate(p, files=[img]) for p in PROMPTS[:4]]
        serial_s = time.perf_counter() - t
        t = time.perf_counter()
        together = vlm.generate(PROMPTS[:4], files=[img])
        together_s = time.perf_counter() - t
    row = {"serial_tps": aggregate_tps(serial, serial_s), "x4_tps": aggregate_tps(together, together_s),
           "equal": [r.token_ids for r in serial] == [r.token_ids for r in together]}
    row.update(raw_vision_batching(path, img, PROMPTS[:4], args.max_tokens))
    return row


def raw_vision_batching(path, image_bytes: bytes, prompts: list[str], max_tokens: int) -> dict:
    """What mlx-vlm's own batching gives on the same model: 4 ``stream_generate`` calls one after another
    against one ``batch_generate`` of the 4 (greedy; aggregate generated tokens/s over wall time)."""
    import tempfile

    import mlx.core as mx
    from mlx_vlm import load, stream_generate
    from mlx_vlm.generate import batch_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = load(str(path))
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(len(prompts)):
            paths.append(os.path.join(folder, f"{i}.png"))
            with open(paths[-1], "wb") as f:
                f.write(image_bytes)
        templated = [apply_chat_template(processor, model.config, p, num_images=1) for p in prompts]
        batch_generate(model, processor, images=paths[:1], prompts=prompts[:1], max_tokens=2)  # warm up
        t, tokens = time.perf_counter(), 0
        for p, image in zip(templated, paths):
            last = None
            for last in stream_generate(model, processor, p, image=[image], max_tokens=max_tokens, temperature=0.0):
                pass
            tokens += last.generation_tokens
        serial_tps = tokens / (time.perf_counter() - t)
        t = time.perf_counter()
        out = batch_generate(model, processor, images=paths, prompts=prompts, max_tokens=max_tokens)
        batch_tps = out.stats.generation_tokens / (time.perf_counter() - t)
    del model
    mx.clear_cache()
    return {"raw_serial_tps": serial_tps, "raw_batch_tps": batch_tps}


def main(argv=None) -> int:
    args = parse_args(argv)
    from abstractllm.providers.mlx.backend import enable_fast_blas

    blas = enable_fast_blas()  # before mlx.core: raw mlx-lm gets the same BLAS
    rows = [bench_text(p.strip(), args) for p in args.presets.split(",") if p.strip()]
    vision = None if args.skip_vision else bench_vision(args)
    print(f"\nabstractllm concurrency | {platform.machine()} | {blas} | float32 | {args.max_tokens} tokens per "
          f"request | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("| preset | 1 at a time tok/s | x1 | x4 | x8 | raw batch_generate x8 | x8 / serial | x8 / raw | "
          "solo / raw stream_generate | worst token gap during 2k prefill (decode step) | worst text-chunk gap | "
          "2k TTFT in batch / alone |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['serial_tps']:.2f} | {r['x1_tps']:.2f} | {r['x4_tps']:.2f} | {r['x8_tps']:.2f} | "
              f"{r['raw_batch_tps']:.2f} | {r['x8_tps'] / r['serial_tps']:.2f} | {r['x8_tps'] / r['raw_batch_tps']:.2f} | "
              f"{r['solo_ratio']:.2f} | {r['worst_gap_s']:.2f} s "
              f"({r['decode_step_s']:.2f} s) | {r['worst_chunk_gap_s']:.2f} s | {r['long_ttft_in_batch_s']:.1f} / {r['long_prefill_alone_s']:.1f} s |")
    for r in rows:
        print(f"{r['preset']}: batched == alone: {r['batched_equals_alone']}; == raw batch_generate: "
              f"{r['raw_batch_equal']}; 2k prompt = {r['long_prompt_tokens']} tokens")
    if vision:
        print(f"vision (tiny, 64x64 image): 1 at a time {vision['serial_tps']:.2f} tok/s, 4 concurrent "
              f"{vision['x4_tps']:.2f} tok/s ({vision['x4_tps'] / vision['serial_tps']:.2f}x); equal: {vision['equal']}; "
              f"raw mlx-vlm: 4 stream_generate one after another {vision['raw_serial_tps']:.2f} tok/s, one "
              f"batch_generate of 4 {vision['raw_batch_tps']:.2f} tok/s "
              f"({vision['raw_batch_tps'] / vision['raw_serial_tps']:.2f}x)")
    first = rows[0]
    checks = {"x8_vs_serial": first["x8_tps"] / first["serial_tps"],
              "x8_vs_raw_batch": first["x8_tps"] / first["raw_batch_tps"],
              "solo_vs_raw": first["solo_ratio"]}
    if vision:
        checks["vision_x4"] = vision["x4_tps"] / vision["serial_tps"]
    print("goals (" + first["preset"] + "): " + ", ".join(
        f"{k} {v:.2f} >= {GOALS[k]} {'ok' if v >= GOALS[k] else 'MISSED'}" for k, v in checks.items()))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"rows": rows, "vision": vision, "blas": str(blas), "checks": checks}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
