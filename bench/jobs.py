"""Persistent jobs: one worker (store + batching engine) against a plain loop over ``generate``.

    python bench/jobs.py                      # 200 text jobs (`small` preset) and 50 image jobs (vision `tiny`)
    python bench/jobs.py --db postgresql://user@host/db      # the same over PostgreSQL

For each workload, on the same provider and prompts (greedy; the prompt cache cleared before each run):

- **loop**: ``for config: llm.generate(...)`` one at a time, what a hand-written script does;
- **batched, no store**: the same requests concurrently through ``generate_async`` (``--concurrency`` at
  once), the engine batching them: the ceiling for the worker;
- **worker**: the jobs queued in a store (SQLite file by default) and run by ``run_worker`` with the same
  concurrency: claims, leases, one transaction per result.

The store's cost is measured two ways: the time spent inside store calls per job (claim, complete,
lease renewal, recovery, progress counts: they run on threads while the model computes), as a share of
the worker's wall time per job; and the worker's throughput against the batched run without a store.
The goal (issue 12): the store costs < 5% of a job's time on the `small` preset. The worker's replies
are checked equal to the loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abstractllm import create_llm  # noqa: E402
from abstractllm.jobs import run_worker  # noqa: E402
from abstractllm.jobs.config import job_spec  # noqa: E402
from abstractllm.jobs.store import JobStore  # noqa: E402
from abstractllm.testing import demo_model  # noqa: E402
from abstractllm.testing.media import png_bytes  # noqa: E402

_TIMED = ("claim", "complete", "complete_many", "fail", "heartbeat", "recover", "counts", "pending", "release")


class TimedStore(JobStore):
    """A ``JobStore`` that adds up the time spent in each worker-side call."""

    def __init__(self, url: Any) -> None:
        super().__init__(url)
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        for name in _TIMED:
            setattr(self, name, self._timed(name, getattr(super(), name)))

    def _timed(self, name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0
                    self.calls[name] = self.calls.get(name, 0) + 1
        return call


def _loop(llm: Any, configs: list[dict[str, Any]]) -> tuple[float, list[str]]:
    llm.clear_cache()
    t0 = time.perf_counter()
    out = [llm.generate(**kw).content for kw in configs]
    return time.perf_counter() - t0, out


def _batched(llm: Any, configs: list[dict[str, Any]], concurrency: int) -> float:
    llm.clear_cache()

    async def main() -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one(kw: dict[str, Any]) -> None:
            async with limit:
                await llm.generate_async(**kw)

        await asyncio.gather(*(one(kw) for kw in configs))

    t0 = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0


def _worker(llm: Any, specs: list[Any], url: str, concurrency: int) -> dict[str, Any]:
    llm.clear_cache()
    store = TimedStore(url)
    try:
        t0 = time.perf_counter()
        ids = store.submit(specs)
        submit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = run_worker(store, llm=llm, concurrency=concurrency)
        wall = time.perf_counter() - t0
        replies = [j.response for j in store.list(after_id=ids[0] - 1, limit=len(ids))]
        assert report.completed == len(specs), report
        return {"wall": wall, "submit": submit_s, "store": sum(store.spent.values()), "spent": dict(store.spent),
                "calls": dict(store.calls), "replies": replies}
    finally:
        store.close()


def _workload(name: str, llm: Any, configs: list[dict[str, Any]], url: str, concurrency: int,
              rounds: int) -> dict[str, Any]:
    """The loop once; then ``rounds`` rounds of batched and worker, alternating which goes first (the
    machine's load drifts): medians, and the median of the rounds' worker/batched ratios."""
    specs = [job_spec(c) for c in configs]
    kwargs = [{"prompt": c["prompt"], **({"files": [{"type": "image", "image": c["image_path"]}]}
                                         if "image_path" in c else {}),
               **{k: v for k, v in c.items() if k not in ("prompt", "image_path")}} for c in configs]
    llm.generate(**kwargs[0])  # warm-up: load, first compile
    loop_s, expected = _loop(llm, kwargs)
    batched, workers = [], []
    for r in range(rounds):
        if r % 2:
            workers.append(_worker(llm, specs, f"{url}.{r}" if "://" not in url else url, concurrency))
            batched.append(_batched(llm, kwargs, concurrency))
        else:
            batched.append(_batched(llm, kwargs, concurrency))
            workers.append(_worker(llm, specs, f"{url}.{r}" if "://" not in url else url, concurrency))
    n = len(configs)
    w = sorted(workers, key=lambda x: x["wall"])[len(workers) // 2]
    return {"name": name, "n": n, "loop": n / loop_s, "batched": n / statistics.median(batched),
            "worker": n / w["wall"], "store_ms": 1000 * w["store"] / n, "submit_ms": 1000 * w["submit"] / n,
            "share": w["store"] / w["wall"],
            "vs_batched": statistics.median(b / x["wall"] - 1 for b, x in zip(batched, workers)),
            "same": all(x["replies"] == expected for x in workers), "spent": w["spent"], "calls": w["calls"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text-jobs", type=int, default=200)
    ap.add_argument("--image-jobs", type=int, default=50)
    ap.add_argument("--preset", default="small", help="text model preset (default small)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--db", help="store URL (default: a SQLite file in a temp folder; PostgreSQL: give an empty "
                    "database, the jobs of each round are added to it)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of batched vs worker (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        rows = _run(args, tmp)
    print(f"\nstore: {args.db or 'SQLite file (WAL)'}; concurrency {args.concurrency}; max_tokens {args.max_tokens}; "
          f"greedy; medians of {args.rounds} rounds (loop: one run)\n")
    return _report(rows)


def _run(args: argparse.Namespace, tmp: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    common = {"max_tokens": args.max_tokens, "temperature": 0.0}
    if args.text_jobs:
        configs = [{"prompt": f"Write a short note about topic number {i}.", **common} for i in range(args.text_jobs)]
        with create_llm("mlx", model=str(demo_model("text", args.preset)), max_batch_size=args.concurrency) as llm:
            rows.append(_workload(f"text ({args.preset})", llm, configs, args.db or os.path.join(tmp, "text.db"),
                                  args.concurrency, args.rounds))
    if args.image_jobs:
        folder = Path(tmp, "images")
        folder.mkdir()
        configs = []
        for i in range(args.image_jobs):
            path = folder / f"img{i:03d}.png"
            path.write_bytes(png_bytes(48 + 8 * (i % 4), 48, (7 * i % 256, 90, 180)))
            configs.append({"prompt": "Describe this image.", "image_path": str(path), **common})
        with create_llm("mlx", model=str(demo_model("vision", "tiny")), max_batch_size=args.concurrency) as llm:
            rows.append(_workload("image (vision tiny)", llm, configs, args.db or os.path.join(tmp, "image.db"),
                                  args.concurrency, args.rounds))
    return rows


def _report(rows: list[dict[str, Any]]) -> int:
    print("| workload | jobs | loop jobs/s | batched, no store jobs/s | worker jobs/s | worker / loop | "
          "store ms/job | store share of job time | worker vs batched | same replies |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['n']} | {r['loop']:.2f} | {r['batched']:.2f} | {r['worker']:.2f} | "
              f"{r['worker'] / r['loop']:.2f}x | {r['store_ms']:.2f} (+{r['submit_ms']:.2f} submit) | "
              f"{100 * r['share']:.1f}% | {100 * r['vs_batched']:+.1f}% | {'yes' if r['same'] else 'NO'} |")
    for r in rows:
        detail = ", ".join(f"{k} {1000 * v / r['n']:.2f} ms ({r['calls'][k]} calls)" for k, v in sorted(r["spent"].items()))
        print(f"\n{r['name']}: store time per job by call: {detail}")
    ok = all(r["same"] for r in rows)
    if not ok:
        print("\nFAIL: the worker's replies differ from the loop's")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
