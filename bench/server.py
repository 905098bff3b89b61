#!/usr/bin/env python
"""Server benchmark: ``abstractllm serve`` against ``mlx_lm.server`` on the same model, under 1, 4 and 8
concurrent clients, measured in one run, side by side.

    python bench/server.py                                  # qwen3-0.6b shape, float32, OpenBLAS (~10 min)
    python bench/server.py --preset small --max-tokens 48   # a quick look

The model is built offline with random weights by ``abstractllm.testing``. Each server runs in its own
process on a loopback port, alone (the other is stopped), with greedy decoding and the prompt cache
unused (every request's prompt differs). The clients send ``POST /v1/chat/completions`` (not streamed)
with ``max_tokens`` and ``temperature: 0``, all at once from threads; aggregate tokens/s is the sum of the
replies' ``usage.completion_tokens`` over the wall time from the first request sent to the last reply.
Goal (issue 11): under 8 concurrent clients ours >= mlx_lm.server's aggregate tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx

PROMPTS = [f"Request {i}: tell me something about the number {i * 7 + 3}." for i in range(64)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen3-0.6b", help="abstractllm.testing preset")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per request")
    p.add_argument("--clients", default="1,4,8", help="concurrency levels")
    p.add_argument("--rounds", type=int, default=1, help="rounds per level (best of)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process; ``url`` once it answers."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.proc.stderr.read()[-2000:]}")
            try:
                r = httpx.post(self.url + "/v1/chat/completions", timeout=60, json={
                    "messages": [{"role": "user", "content": "warm up"}], "max_tokens": 2,
                    "temperature": 0})
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_level(url: str, clients: int, max_tokens: int, offset: int) -> tuple[float, int]:
    def one(i: int) -> int:
        r = httpx.post(url + "/v1/chat/completions", timeout=600, json={
            "messages": [{"role": "user", "content": PROMPTS[(offset + i) % len(PROMPTS)]}],
            "max_tokens": max_tokens, "temperature": 0})
        r.raise_for_status()
        return int(r.json()["usage"]["completion_tokens"])

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, range(clients)))
    return tokens / (time.perf_counter() - t), tokens


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from abstractllm.testing import demo_model

    # float32 on disk: mlx_lm.server serves the weights as stored (a bfloat16 copy runs ~4x slower on a CPU),
    # and the provider's dtype="auto" keeps float32 on CPUs: both sides run the same float32 model
    path = str(demo_model("text", args.preset, dtype="float32"))
    levels = [int(x) for x in args.clients.split(",")]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    # mlx_lm.server on the same BLAS as ours: the library our backend preloads, by LD_PRELOAD
    from abstractllm.providers.mlx.backend import enable_fast_blas

    blas = enable_fast_blas()
    mlx_env = {**env, "LD_PRELOAD": blas.library} if blas.active and blas.library else dict(env)
    print(f"model: {path}; {blas}", flush=True)
    sides = {
        "abstractllm serve": [sys.executable, "-m", "abstractllm", "serve", "--model", path, "--port", "{port}",
                              "--max-batch-size", str(max(levels)), "--log-level", "warning"],
        "mlx_lm.server": [sys.executable, "-m", "mlx_lm", "server", "--model", path, "--port", "{port}",
                          "--decode-concurrency", str(max(levels)), "--log-level", "WARNING"],
    }
    results: dict[str, dict[int, float]] = {}
    for name, cmd in sides.items():
        port = free_port()
        server = Server(name, [c.replace("{port}", str(port)) for c in cmd], port,
                        env if name.startswith("abstractllm") else mlx_env)
        try:
            run_level(server.url, 1, 4, 0)  # warm
            results[name] = {}
            for n in levels:
                best = max(run_level(server.url, n, args.max_tokens, 8 * r + n)[0] for r in range(args.rounds))
                results[name][n] = best
                print(f"{name}: {n} clients: {best:.2f} tok/s", flush=True)
        finally:
            server.stop()

    ours, theirs = results["abstractllm serve"], results["mlx_lm.server"]
    print(f"\nserver throughput | {args.preset} | float32 | {platform.machine()} | {args.max_tokens} tokens per "
          f"request | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("| clients | abstractllm serve tok/s | mlx_lm.server tok/s | ours / mlx_lm.server | ours vs our 1 client |")
    print("|---|---|---|---|---|")
    for n in levels:
        print(f"| {n} | {ours[n]:.2f} | {theirs[n]:.2f} | {ours[n] / theirs[n]:.2f} | {ours[n] / ours[levels[0]]:.2f}x |")
    top = max(levels)
    ok = ours[top] >= theirs[top]
    print(f"goal: {top} clients, ours >= mlx_lm.server: {ours[top] / theirs[top]:.2f} {'ok' if ok else 'MISSED'}")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"preset": args.preset, "max_tokens": args.max_tokens, "ours": ours, "mlx_lm": theirs}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
