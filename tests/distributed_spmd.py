"""Run by tests/test_distributed.py under ``mlx.launch -n 2`` (not a test module): every rank makes the same
calls on a sharded model (SPMD) and writes what it got to ``OUT/rank<r>.json``.

    python tests/distributed_spmd.py OUT VISION_MODEL MODE:MODEL [MODE:MODEL...]

Per model, sharded as ``MODE`` says, under ``MEMORY_LIMIT`` (room for a shard, not for the whole model):
the memory MLX holds after the load, ``get_model_info()``'s distributed keys, greedy replies to
``PROMPTS`` one at a time and batched; for the first model also a sampled reply without a seed (every
rank must draw the same tokens) and a streamed reply cancelled after two chunks; then ``close()``. Then
the errors every rank must raise alike: pipeline parallelism asked of an architecture without it, a
vision model, a memory limit that only rank 1 cannot meet (rank 0 must not wait for it), and a second
provider while one is open.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea."]
MAX_TOKENS = 6
#: the small presets need about 110 MB in one process (weights + the guard's 64 MB margin), 90-96 MB per rank
MEMORY_LIMIT = "100MB"


def _load_error(model: str, mode: str, **config) -> dict | None:
    from abstractllm import create_llm

    llm = create_llm("mlx", model=model, distributed=mode, **config)
    try:
        llm.load()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return {"type": type(exc).__name__, "message": str(exc)}
    finally:
        llm.close()
    return None


def run_model(model: str, mode: str, full: bool) -> dict:
    import mlx.core as mx

    from abstractllm import create_llm

    out: dict = {}
    llm = create_llm("mlx", model=model, distributed=mode, temperature=0.0, max_tokens=MAX_TOKENS,
                     distributed_timeout=120, memory_limit=MEMORY_LIMIT)
    out["rank"], out["world_size"] = llm.rank, llm.world_size
    before = mx.get_active_memory()
    t0 = time.perf_counter()
    llm.load()
    out["load_s"] = time.perf_counter() - t0
    out["active_after_load"] = mx.get_active_memory() - before
    info = llm.get_model_info()
    out["info"] = {k: info[k] for k in ("world_size", "rank", "weights_bytes", "distributed")}
    out["alone"] = [llm.generate(p).token_ids for p in PROMPTS]
    out["batched"] = [r.token_ids for r in llm.generate(PROMPTS)]
    if not full:
        llm.close()
        out["closed"] = True
        return out
    out["sampled"] = llm.generate(PROMPTS[0], temperature=1.0).token_ids
    stream = llm.generate(PROMPTS[1], stream=True, max_tokens=64)
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 2 and llm.rank == 0:
            stream.cancel()  # rank 0's cancellation reaches the other ranks
    out["cancelled"] = {"finish_reason": chunks[-1].finish_reason, "tokens": chunks[-1].usage.completion_tokens}
    time.sleep(1.2)  # a heartbeat: every rank's memory gathered
    out["status"] = llm.distributed_status()
    llm.close()
    out["closed"] = True
    return out


def main() -> None:
    out_dir, vision, specs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    results: dict = {"models": {}}
    for i, spec in enumerate(specs):
        mode, model = spec.split(":", 1)
        results["models"][model] = run_model(model, mode, full=i == 0)
    rank = results["models"][model]["rank"]
    results["pipeline_error"] = _load_error(specs[0].split(":", 1)[1], "pipeline")
    results["vision_error"] = _load_error(vision, "auto")
    results["memory_error"] = _load_error(model, "auto", memory_limit="10MB" if rank == 1 else None)
    from abstractllm import create_llm

    first = create_llm("mlx", model=model, distributed="auto")
    try:  # a second one would interleave its messages with the first's
        results["second_error"] = _load_error(model, "auto")
    except Exception as exc:  # noqa: BLE001 - raised by create_llm itself
        results["second_error"] = {"type": type(exc).__name__, "message": str(exc)}
    first.close()
    (out_dir / f"rank{rank}.json").write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main()
