"""float32 matmul (sgemm) speed through MLX on each BLAS the backend can load, one fresh process each.

    python bench/blas.py [--modes 0 system pip] [--sizes 256 512 1024 2048] [--vector-sizes 384 1024]
                         [--rounds 5] [--json out.json]

A mode is an ``ABSTRACTLLM_FAST_BLAS`` value: ``0`` is mlx-cpu's bundled reference BLAS, ``system`` the
system OpenBLAS (Debian ``libopenblas0-pthread``), ``pip`` the OpenBLAS vendored by the opencv-python wheel
(what ``pip install "abstractllm[mlx]"`` alone gives), or a library path. Each size is timed ``--rounds``
times (each round at least ~0.3 s of matmuls) and the best GFLOP/s is kept: on a shared machine the best
round is the one least disturbed by other work. ``--vector-sizes`` times the decode shape, one token through
an n x n ``nn.Linear`` (``x @ w.T``, x of 1 x n), in microseconds per call. Each process also checks the
product against numpy (float64) and one LAPACK-backed ``mx.linalg.inv`` (the preloaded library serves LAPACK
calls too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _best(fn, rounds: int, per_round: float = 0.3) -> float:
    """The shortest mean seconds per call of ``fn`` over ``rounds`` rounds of at least ``per_round`` s."""
    fn()  # warm-up (OpenBLAS starts its threads, MLX allocates)
    best = float("inf")
    for _ in range(rounds):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn()
            reps += 1
            dt = time.perf_counter() - t0
            if dt > per_round:
                break
        best = min(best, dt / reps)
    return best


def worker(sizes: list[int], vector_sizes: list[int], rounds: int) -> dict:
    """In a fresh process: preload as the provider does, then time MLX matmuls."""
    from abstractllm.providers.mlx.backend import fast_blas_status, import_backend

    mx = import_backend("mlx.core")
    status = fast_blas_status()
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 200)).astype("float32"), rng.standard_normal((200, 100)).astype("float32")
    ref = a.astype("float64") @ b.astype("float64")
    matmul_err = float(np.abs(np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu)) - ref).max())
    m = rng.standard_normal((64, 64)).astype("float32") + 8 * np.eye(64, dtype="float32")
    inv = np.array(mx.linalg.inv(mx.array(m), stream=mx.cpu))
    inv_err = float(np.abs(inv @ m - np.eye(64)).max())
    gflops, vector_us = {}, {}
    for n in sizes:
        x = mx.random.normal((n, n), stream=mx.cpu)
        gflops[str(n)] = round(2 * n**3 / _best(lambda: mx.eval(x @ x), rounds) / 1e9, 1)
    for n in vector_sizes:
        v, w = mx.random.normal((1, n), stream=mx.cpu), mx.random.normal((n, n), stream=mx.cpu)
        vector_us[str(n)] = round(_best(lambda: mx.eval(v @ w.T), rounds, 0.1) * 1e6, 1)
    return {"status": str(status), "active": status.active, "source": status.source, "library": status.library,
            "matmul_err": matmul_err, "inv_err": inv_err, "gflops": gflops, "vector_us": vector_us}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=["0", "system", "pip"], help="ABSTRACTLLM_FAST_BLAS values")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024, 2048])
    p.add_argument("--vector-sizes", nargs="+", type=int, default=[384, 1024])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.sizes, args.vector_sizes, args.rounds)))
        return 0
    results = {}
    for mode in args.modes:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--rounds", str(args.rounds), "--sizes",
               *map(str, args.sizes), "--vector-sizes", *map(str, args.vector_sizes)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ABSTRACTLLM_FAST_BLAS": mode})
        if proc.returncode != 0:
            print(f"{mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"ABSTRACTLLM_FAST_BLAS={mode}: {results[mode]['status']}", flush=True)
    print()
    sizes = " | ".join([f"n={n} GFLOP/s" for n in args.sizes] + [f"1x{n} @ ({n}x{n}).T us" for n in args.vector_sizes])
    print(f"| `ABSTRACTLLM_FAST_BLAS` | library | {sizes} | max error | inv error |")
    print("|---|---|" + "---|" * (len(args.sizes) + len(args.vector_sizes) + 2))
    for mode, r in results.items():
        cells = " | ".join([str(r["gflops"][str(n)]) for n in args.sizes]
                           + [str(r["vector_us"][str(n)]) for n in args.vector_sizes])
        lib = os.path.basename(r["library"]) if r["active"] else "mlx-cpu's bundled reference BLAS"
        print(f"| `{mode}` | {lib} | {cells} | {r['matmul_err']:.1e} | {r['inv_err']:.1e} |")
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(f"\nn x n float32 matmul GFLOP/s and (1 x n) @ (n x n).T microseconds, best round; {os.cpu_count()} CPUs, "
          f"load average {load}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "cpus": os.cpu_count(), "load_avg": load}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
