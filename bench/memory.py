"""Memory of the preset models: what the guard estimates vs what MLX actually uses.

    python bench/memory.py [--presets tiny small llama-small] [--prompt-tokens 512] [--max-tokens 64]

For each preset (built offline into a cache dir), prints: weights on disk, the guard's load estimate, MLX
active memory after load, the KV cache bytes per token, and the peak MLX memory of one generation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def kv_bytes_per_token(config: dict, itemsize: int) -> int:
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * itemsize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "llama-small"])
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    import gc

    from abstractllm import create_llm
    from abstractllm.providers.mlx.memory import format_bytes
    from abstractllm.testing import demo_model

    rows = []
    for preset in args.presets:
        path = demo_model("text", preset)
        config = json.loads((Path(path) / "config.json").read_text())
        llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=args.max_tokens, prompt_cache_bytes=0)
        llm.load()
        info = llm.get_model_info()
        after_load = llm.memory_status()["mlx_active"]
        prompt = " ".join(["word"] * args.prompt_tokens)
        r = llm.generate(prompt)
        rows.append((preset, info["weight_bytes"], info["estimated_memory_bytes"], after_load,
                     kv_bytes_per_token(config, 4), r.peak_memory_bytes, r.usage.prompt_tokens))
        llm.close()
        gc.collect()
    header = ("preset", "weights on disk", "guard estimate", "MLX after load", "KV bytes/token",
              "peak in generation", "prompt tokens")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for preset, disk, est, loaded, kv, peak, ptoks in rows:
        print(f"| {preset} | {format_bytes(disk)} | {format_bytes(est)} | {format_bytes(loaded)} | "
              f"{format_bytes(kv)} | {format_bytes(peak)} | {ptoks} |")


if __name__ == "__main__":
    main()
