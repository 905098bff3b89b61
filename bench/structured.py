#!/usr/bin/env python
"""Structured-output benchmark: decoding constrained to a JSON schema (and to a forced tool call) against
the same provider unconstrained and against raw mlx-lm, measured alternately in one run.

    python bench/structured.py                       # `small` preset, about a minute on 2 CPU cores
    python bench/structured.py --preset qwen3-0.6b --max-tokens 32 --rounds 2

Models are built offline with random weights by ``abstractllm.testing`` (never into the repo). Greedy
decoding, the same prompt everywhere, streamed and timed from the caller's side: TTFT (for the
constrained runs it includes compiling the grammar) and decode tokens/s from the first text to the last
token. The schema asks for an array of exactly ``--items`` short strings, so a random model writes a long
reply under the constraint (the measure needs many tokens) and every reply is checked to parse and
validate. Rounds alternate the order of the sides; medians, and each ratio is the median of the
back-to-back pairs' ratios. Target (issue 10): schema / plain decode >= 0.85 on the ``small`` preset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import offline_env  # noqa: E402  (bench/common.py, same folder)
from text import Timeline, median, run_raw, sgemm_gflops  # noqa: E402  (bench/text.py, same folder)

PROMPT = [{"role": "user", "content": "List the things a lighthouse keeper checks every evening."}]


def schema(items: int) -> dict:
    return {"type": "object", "properties": {
        "checks": {"type": "array", "minItems": items, "maxItems": items,
                   "items": {"type": "string", "minLength": 3, "maxLength": 24}}},
        "required": ["checks"], "additionalProperties": False}


def tool(items: int) -> dict:
    return {"type": "function", "function": {"name": "record_checks", "description": "Record the checks.",
                                             "parameters": schema(items)}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="abstractllm.testing preset (small, qwen3-0.6b, ...)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (median)")
    p.add_argument("--max-tokens", type=int, default=96, help="tokens per generation")
    p.add_argument("--items", type=int, default=24, help="strings the schema asks for (a long reply)")
    p.add_argument("--cache-dir", help="where built models are cached (default: abstractllm.testing's)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return p.parse_args(argv)


def run_provider(llm, max_tokens: int, **params) -> tuple[Timeline, object]:
    line, last = Timeline(time.perf_counter()), None
    for chunk in llm.generate(messages=PROMPT, max_tokens=max_tokens, stream=True, **params):
        line.add(chunk.token_ids, chunk.content or ("call" if chunk.tool_calls else ""))
        last = chunk
    return line, last


def main(argv=None) -> int:
    args = parse_args(argv)
    offline_env(args.cache_dir)
    from abstractllm.providers.mlx.backend import enable_fast_blas, fast_blas_status

    enable_fast_blas()  # before mlx.core, so raw mlx-lm here runs on the same BLAS as the provider
    import jsonschema
    import mlx.core as mx
    import mlx_lm
    from mlx_lm import load

    from abstractllm import __version__, create_llm
    from abstractllm.testing import demo_model

    path = demo_model("text", args.preset)
    model, tok = load(str(path))
    llm = create_llm("mlx", model=str(path), temperature=0.0).load()
    env = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "preset": args.preset,
           "device": str(mx.default_device()), "fast_blas": str(fast_blas_status()),
           "sgemm_gflops": round(sgemm_gflops(), 1), "cpus": os.cpu_count(), "machine": platform.machine(),
           "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "abstractllm": __version__,
           "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    print(f"model: {path}; {env['device']}; {env['fast_blas']}; mlx {env['mlx']}, mlx-lm {env['mlx_lm']}", flush=True)

    sides = {
        "raw mlx-lm": lambda: (run_raw(model, tok, PROMPT, args.max_tokens), None),
        "provider": lambda: run_provider(llm, args.max_tokens),
        "provider + schema": lambda: run_provider(llm, args.max_tokens, response_format=schema(args.items)),
        "provider + tool call": lambda: run_provider(llm, args.max_tokens, tools=[tool(args.items)],
                                                     tool_choice="required"),
    }
    for side in sides.values():  # warm-up: weights paged in, grammars' tokenizer built
        llm.clear_cache()
        side()
    results: dict[str, list] = {name: [] for name in sides}
    ok = True
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            llm.clear_cache()
            line, last = sides[name]()
            results[name].append(line)
            if name == "provider + schema" and last is not None and last.finish_reason == "stop":
                jsonschema.validate(json.loads("".join(line.text)), schema(args.items))
            if name != "raw mlx-lm" and len(line.tokens) < args.max_tokens // 2:
                print(f"warning: {name} stopped after {len(line.tokens)} tokens", flush=True)
                ok = False
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    def pair_ratio(a: str, b: str, attr: str) -> float:
        return median([getattr(x, attr) / getattr(y, attr) for x, y in zip(results[a], results[b])])

    rows = []
    print(f"\n{args.preset}, greedy, {args.max_tokens} tokens, {args.rounds} rounds; {env['device']}, float32")
    print(f"{'side':<22} {'decode tok/s':>12} {'TTFT ms':>9} {'decode vs provider':>19} {'decode vs raw':>14} "
          f"{'whole-call tok/s':>17} {'whole vs provider':>18}")
    for name in sides:
        tps = median([x.decode_tps for x in results[name]])
        ttft = median([x.ttft for x in results[name]]) * 1000
        vs_p = pair_ratio(name, "provider", "decode_tps")
        vs_raw = pair_ratio(name, "raw mlx-lm", "decode_tps")
        total = median([x.total_tps for x in results[name]])
        total_vs_p = pair_ratio(name, "provider", "total_tps")
        rows.append({"side": name, "decode_tps": round(tps, 2), "ttft_ms": round(ttft, 1),
                     "decode_vs_provider": round(vs_p, 3), "decode_vs_raw": round(vs_raw, 3),
                     "total_tps": round(total, 2), "total_vs_provider": round(total_vs_p, 3)})
        print(f"{name:<22} {tps:>12.1f} {ttft:>9.1f} {vs_p:>19.3f} {vs_raw:>14.3f} {total:>17.1f} {total_vs_p:>18.3f}")
    print("(a tool call arrives whole in one chunk, when it is complete: its decode column is empty and its TTFT is"
          " the whole call; compare it by whole-call tok/s)")
    schema_ratio = rows[2]["decode_vs_provider"]
    print(f"\nschema / plain decode: {schema_ratio:.3f} (target >= 0.85: {'met' if schema_ratio >= 0.85 else 'NOT met'})")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"env": env, "args": vars(args), "rows": rows}, f, indent=2)
    llm.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
