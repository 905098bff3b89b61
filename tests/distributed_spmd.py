"""Run by tests/test_distributed.py under ``mlx.launch -n 2`` (not a test module): every rank makes the same
calls on a sharded model (SPMD) and writes what it got to ``OUT/rank<r>.json``.

    python tests/distributed_spmd.py OUT VISION_MODEL MODEL [MODEL...]

Per model: the memory MLX holds after the load, ``get_model_info()``'s distributed keys, greedy replies to
``PROMPTS`` one at a time and batched, a sampled reply without a seed (every rank must draw the same
tokens), a streamed reply cancelled after two chunks, then ``close()``. Then the errors every rank must
raise alike: pipeline parallelism asked of an architecture without it, and a vision model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea.", "Count to ten."]
MAX_TOKENS = 6


def _load_error(model: str, mode: str) -> dict | None:
    from abstractllm import create_llm

    llm = create_llm("mlx", model=model, distributed=mode)
    try:
        llm.load()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return {"type": type(exc).__name__, "message": str(exc)}
    finally:
        llm.close()
    return None


def run_model(model: str) -> dict:
    import mlx.core as mx

    from abstractllm import create_llm

    out: dict = {}
    llm = create_llm("mlx", model=model, distributed="auto", temperature=0.0, max_tokens=MAX_TOKENS,
                     distributed_timeout=120)
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
    out_dir, vision, models = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    results: dict = {"models": {}}
    for model in models:
        results["models"][model] = run_model(model)
    results["pipeline_error"] = _load_error(models[-1], "pipeline")
    results["vision_error"] = _load_error(vision, "auto")
    rank = results["models"][models[0]]["rank"]
    (out_dir / f"rank{rank}.json").write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main()
