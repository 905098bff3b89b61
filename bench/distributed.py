#!/usr/bin/env python
"""Distributed benchmark: the same model on one process and sharded over two (mlx.launch, ring backend
over loopback): decode tokens/s, TTFT and every rank's memory, in one run.

    python bench/distributed.py                          # `small` preset, tensor parallelism
    python bench/distributed.py --preset qwen3-0.6b --max-tokens 16 --rounds 2
    python bench/distributed.py --preset llama-small --json out.json

The model is built offline with random weights by ``abstractllm.testing`` (``$ABSTRACTLLM_DEMO_CACHE``, else
the system temp dir). One process: ``create_llm("mlx", model=...)``; two ranks: this script again under
``mlx.launch --backend ring -n 2`` with ``distributed=--mode``, every rank making the same calls (SPMD).
Each side loads, warms up once, then generates greedily ``--rounds`` times for each prompt; decode
tokens/s and TTFT are the medians of the final chunks' ``tokens_per_second`` and ``ttft_s``. Memory per
rank: the bytes the load added to MLX's active memory, the resident weights (``weights_bytes``) and
MLX's peak. The token ids must be the same on one process and on every rank (exit code 1 if not).

On one machine both ranks share its cores and talk over TCP loopback: this measures the overhead of
the lock-step (a collective per step, an all-reduce per layer) and the halved memory, not the speed-up of
two machines; docs/distributed.md says what to expect there and why. For several Macs, run the worker
part yourself: ``mlx.launch --hostfile hosts.json -- python bench/distributed.py --worker OUT --model M``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PROMPTS = ["Explain in a few sentences why the sky is blue.", "Write a short poem about the sea."]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="text preset of abstractllm.testing (default small)")
    p.add_argument("--model", help="a model folder or repo id instead of a preset")
    p.add_argument("--mode", default="auto", choices=("tensor", "pipeline", "auto"), help="distributed= of the ranks")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    p.add_argument("--rounds", type=int, default=3, help="generations per prompt and side (medians)")
    p.add_argument("--ranks", type=int, default=2, help="ranks for the sharded side (one machine: -n)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    p.add_argument("--skip-raw", action="store_true", help="skip raw mlx-lm sharded (sharded_load + stream_generate)")
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)  # one side: write OUT/rank<r>.json
    p.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)  # that side is raw mlx-lm
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- one side
def run_side(args: argparse.Namespace, out_dir: Path) -> None:
    """Load, warm up, measure; write this process's results (both sides: alone, or one rank)."""
    from abstractllm.providers.mlx.backend import enable_fast_blas

    enable_fast_blas()
    import mlx.core as mx

    from abstractllm import create_llm

    distributed = args.mode if os.environ.get("MLX_RANK") is not None else None
    llm = create_llm("mlx", model=args.model, temperature=0.0, max_tokens=args.max_tokens,
                     distributed=distributed, prompt_cache_bytes=0)
    rank = getattr(llm, "rank", 0)
    before = mx.get_active_memory()
    t0 = time.perf_counter()
    llm.load()
    load_s = time.perf_counter() - t0
    loaded = mx.get_active_memory() - before
    llm.generate(PROMPTS[0], max_tokens=4)  # warm-up
    decode, ttft, tokens = [], [], {}
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            reply = llm.generate(prompt)
            tokens.setdefault(prompt, reply.token_ids)
            if reply.tokens_per_second:
                decode.append(reply.tokens_per_second)
            if reply.ttft_s is not None:
                ttft.append(reply.ttft_s)
    info = llm.get_model_info()
    result = {"rank": rank, "world_size": getattr(llm, "world_size", 1), "mode": info.get("distributed"),
              "load_s": load_s, "loaded_bytes": loaded, "weights_bytes": info.get("weights_bytes") or loaded,
              "peak_bytes": int(mx.get_peak_memory()), "decode_tps": statistics.median(decode),
              "ttft_s": statistics.median(ttft), "tokens": tokens}
    llm.close()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")


def run_raw_side(args: argparse.Namespace, out_dir: Path) -> None:
    """Raw mlx-lm on the same ranks: ``sharded_load`` + ``stream_generate`` (the reference for what the
    lock-step costs: mlx-lm's own generation has no control messages between steps)."""
    from abstractllm.providers.mlx.backend import enable_fast_blas

    enable_fast_blas()
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.utils import sharded_load

    group = mx.distributed.init()
    pipeline = args.mode == "pipeline"
    model, tokenizer = sharded_load(args.model, pipeline_group=group if pipeline else None,
                                    tensor_group=None if pipeline else group)
    decode, tokens = [], {}
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
            out = list(stream_generate(model, tokenizer, ids, max_tokens=args.max_tokens))
            decode.append(out[-1].generation_tps)
            tokens.setdefault(prompt, [r.token for r in out])
    result = {"rank": group.rank(), "world_size": group.size(), "decode_tps": statistics.median(decode),
              "tokens": tokens}
    (out_dir / f"rank{group.rank()}.json").write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- orchestration
def _free_port_pair() -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
            return base
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _side(argv: list[str], out_dir: Path) -> list[dict]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    results = sorted((json.loads(p.read_text()) for p in out_dir.glob("rank*.json")), key=lambda r: r["rank"])
    if not results:
        sys.exit(f"the run failed:\n{proc.stdout}\n{proc.stderr}")
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        (run_raw_side if args.raw else run_side)(args, Path(args.worker))
        return 0
    if args.model is None:
        from abstractllm.testing import demo_model

        args.model = str(demo_model("text", args.preset))
    launcher = Path(sys.executable).with_name("mlx.launch")
    launcher = str(launcher) if launcher.exists() else shutil.which("mlx.launch")
    if launcher is None:
        sys.exit("mlx.launch is not installed (it comes with mlx)")
    common = [__file__, "--model", args.model, "--mode", args.mode, "--max-tokens", str(args.max_tokens),
              "--rounds", str(args.rounds)]
    def launch(*extra: str) -> list[str]:
        return [launcher, "--backend", "ring", "-n", str(args.ranks), "--starting-port", str(_free_port_pair()),
                "--", sys.executable, *common, *extra]

    raw: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        one, two, three = Path(tmp, "one"), Path(tmp, "two"), Path(tmp, "raw")
        for folder in (one, two, three):
            folder.mkdir()
        (single,) = _side([sys.executable, *common, "--worker", str(one)], one)
        ranks = _side(launch("--worker", str(two)), two)
        if not args.skip_raw:
            raw = _side(launch("--worker", str(three), "--raw"), three)
    same = all(r["tokens"] == single["tokens"] for r in ranks)
    report(args, single, ranks, raw, same)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"single": single, "ranks": ranks, "raw_sharded": raw,
                                                    "same_tokens": same}, indent=2))
    return 0 if same and len(ranks) == args.ranks else 1


def report(args: argparse.Namespace, single: dict, ranks: list[dict], raw: list[dict], same: bool) -> None:
    mb = 1e6
    print(f"# bench/distributed.py  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  {platform.machine()}, "
          f"{os.cpu_count()} cores; model {Path(args.model).name}, {args.max_tokens} tokens x {args.rounds} rounds "
          f"x {len(PROMPTS)} prompts; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| side | mode | decode tok/s | TTFT ms | load s | weights MB | loaded MB | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [("1 process", single)] + [(f"rank {r['rank']} of {r['world_size']}", r) for r in ranks]
    for name, r in rows:
        print(f"| {name} | {r['mode'] or '-'} | {r['decode_tps']:.1f} | {r['ttft_s'] * 1000:.0f} | {r['load_s']:.2f} | "
              f"{r['weights_bytes'] / mb:.1f} | {r['loaded_bytes'] / mb:.1f} | {r['peak_bytes'] / mb:.1f} |")
    for r in raw:
        print(f"| raw mlx-lm, rank {r['rank']} of {r['world_size']} | {ranks[0]['mode']} | {r['decode_tps']:.1f} "
              "| | | | | |")
    print()
    if raw:
        print(f"provider / raw mlx-lm on the same ranks (decode): {ranks[0]['decode_tps'] / raw[0]['decode_tps']:.2f}")
    print(f"decode ratio ({len(ranks)} ranks / 1 process): {ranks[0]['decode_tps'] / single['decode_tps']:.2f}; "
          f"weights per rank / one process: {ranks[0]['weights_bytes'] / single['weights_bytes']:.2f}; "
          f"same tokens on every side: {same}")


if __name__ == "__main__":
    sys.exit(main())
