#!/usr/bin/env python
"""Text benchmark: the abstractllm MLX provider against raw mlx-lm, measured alternately in one run.

    python bench/text.py                          # `small` preset, about a minute on 2 CPU cores
    python bench/text.py --preset qwen3-0.6b --max-tokens 32 --turn-rounds 1   # real Qwen3-0.6B shape
    python bench/text.py --preset qwen3-0.6b --quantize 4 --rounds 2 --prompts 1 --max-tokens 8 --skip-turns

Models are built offline with random weights by ``abstractllm.testing`` into a cache folder (not the
repo). Greedy decoding, the same chat prompts for both sides; raw mlx-lm is ``mlx_lm.load`` +
``stream_generate`` on ids from the tokenizer's chat template, with the weights cast as the provider's
``dtype`` says. Both are timed from the caller's side, from the chat message to the first text (TTFT)
and from there to the last token (decode tokens/s); rounds alternate which side goes first; medians,
and each ratio is the median of the back-to-back pairs' ratios (robust to a shared machine's load).
The second part times the TTFT of a second chat turn over a ~2,000-token history: cold (empty prompt
cache) against warm (the first turn cached), with the speedup. Tokens are checked equal everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import offline_env  # noqa: E402  (bench/common.py, same folder)

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a short poem about a robot that learns to paint the sea.",
    "List three tips for running language models on a laptop.",
]
QUESTIONS = ["Summarize the conversation so far in one paragraph.", "And what should we do next?"]
# The first turn's reply as the chat client sends it back. A real model's reply re-tokenizes as it was
# generated, so its tokens are cached too; random weights write bytes that do not round-trip, so the
# benchmark sends this clean reply instead: the warm turn recomputes it (conservative).
REPLY = "We talked about local models, memory, sampling and streaming. The key point is to check memory first."


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help="abstractllm.testing preset (small, qwen3-0.6b, ...)")
    p.add_argument("--quantize", type=int, choices=(4, 8), help="benchmark a model saved with N-bit weights")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="load dtype of float weights (provider's `dtype`; raw mlx-lm gets the same cast)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement (median)")
    p.add_argument("--prompts", type=int, default=len(PROMPTS), choices=range(1, len(PROMPTS) + 1),
                   metavar=f"1..{len(PROMPTS)}", help="how many of the prompts each round runs")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens generated per decode measurement")
    p.add_argument("--history-tokens", type=int, default=2000, help="chat history length of the turn test")
    p.add_argument("--turn-rounds", type=int, default=2, help="rounds of the cold/warm second-turn test")
    p.add_argument("--skip-turns", action="store_true", help="skip the second-turn (prompt cache) test")
    p.add_argument("--no-fast-blas", action="store_true", help="do not preload an OpenBLAS (ABSTRACTLLM_FAST_BLAS=0)")
    p.add_argument("--cache-dir", help="where built models are cached (default: abstractllm.testing's)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return p.parse_args(argv)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Timeline:
    """(time, cumulative tokens, has text) events of one generation, timed from the caller's side."""

    def __init__(self, t0: float) -> None:
        self.t0, self.events, self.tokens, self.text = t0, [], [], []

    def add(self, tokens, text: str) -> None:
        self.tokens.extend(tokens)
        self.text.append(text)
        self.events.append((time.perf_counter(), len(self.tokens), bool(text)))

    @property
    def ttft(self) -> float:
        t = next((t for t, _, has_text in self.events if has_text), self.events[0][0])
        return t - self.t0

    @property
    def total_tps(self) -> float:
        """Generated tokens over the whole call (prefill included): the measure for a reply that arrives
        in one piece, like a tool call."""
        t_last, n_last, _ = self.events[-1]
        return n_last / (t_last - self.t0) if t_last > self.t0 else float("nan")

    @property
    def decode_tps(self) -> float:
        first = next((e for e in self.events if e[2]), self.events[0])
        t_last, n_last, _ = self.events[-1]
        return (n_last - first[1]) / (t_last - first[0]) if t_last > first[0] else float("nan")


def run_raw(model, tok, conversation, max_tokens) -> Timeline:
    """Raw mlx-lm: template the conversation to ids, then ``stream_generate`` greedily."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    line = Timeline(time.perf_counter())
    ids = tok.apply_chat_template(conversation, add_generation_prompt=True)
    for r in stream_generate(model, tok, mx.array(ids), max_tokens=max_tokens, sampler=make_sampler(0.0)):
        line.add([r.token], r.text)
    return line


def run_provider(llm, conversation, max_tokens) -> tuple[Timeline, object]:
    """The provider, streaming: ``llm.generate(messages=..., stream=True)``."""
    line = Timeline(time.perf_counter())
    last = None
    for chunk in llm.generate(messages=conversation, max_tokens=max_tokens, stream=True):
        line.add(chunk.token_ids, chunk.content)
        last = chunk
    return line, last


def sgemm_gflops() -> float:
    """float32 1024x1024 matmul speed: ~5 GFLOP/s is mlx-cpu's reference BLAS, >100 a real BLAS."""
    import mlx.core as mx

    a = mx.random.normal((1024, 1024))
    mx.eval(a, a @ a)
    t = time.perf_counter()
    for _ in range(3):
        mx.eval(a @ a)
    return 3 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9


def weights_dtype(model) -> str:
    """What the loaded weights are: e.g. ``float32`` or ``4-bit (bfloat16 scales)``."""
    name = lambda v: str(v.dtype).replace("mlx.core.", "")  # noqa: E731
    for _, module in model.named_modules():
        if getattr(module, "bits", None) and hasattr(module, "scales"):
            return f"{module.bits}-bit ({name(module.scales)} scales)"
    for _, module in model.named_modules():
        weight = module.get("weight") if hasattr(module, "get") else None
        if weight is not None and weight.ndim == 2:
            return name(weight)
    return "?"


def history(tok, target_tokens: int) -> list[dict]:
    """A chat history of user/assistant turns whose templated length is about ``target_tokens``."""
    from abstractllm.testing.corpus import CORPUS

    lines = [ln for ln in CORPUS.splitlines() if ln.strip()]
    convo: list[dict] = [{"role": "system", "content": "You are a helpful assistant."}]
    i = 0
    while len(tok.apply_chat_template(convo, add_generation_prompt=False)) < target_tokens:
        chunk = " ".join(lines[(i + k) % len(lines)] for k in range(3))
        convo.append({"role": "user" if len(convo) % 2 else "assistant", "content": chunk})
        i += 3
    if convo[-1]["role"] == "user":
        convo.append({"role": "assistant", "content": "Noted."})
    return convo


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_fast_blas:
        os.environ["ABSTRACTLLM_FAST_BLAS"] = "0"
    offline_env(args.cache_dir)
    # The provider's backend preloads OpenBLAS before the first `import mlx.core`: do it here, first,
    # so raw mlx-lm in this process runs on the same BLAS.
    from abstractllm.providers.mlx.backend import enable_fast_blas, fast_blas_status, on_gpu

    enable_fast_blas()
    import mlx.core as mx

    blas = fast_blas_status()  # which library, checked with one matmul now that mlx.core is in
    from mlx_lm import load

    from abstractllm import __version__, create_llm
    from abstractllm.providers.mlx.text import cast_for_device
    from abstractllm.testing import demo_model

    import mlx_lm

    t = time.perf_counter()
    build = {"quantize": args.quantize} if args.quantize else {}
    path = demo_model("text", args.preset, **build)
    print(f"model: {path} ({time.perf_counter() - t:.1f} s to build or find)", flush=True)

    gpu = on_gpu()
    model, tok = load(str(path))
    cast_for_device(model, args.dtype, gpu)  # what the provider does on load, quantized models too
    mx.eval(model.parameters())
    raw_dtype = weights_dtype(model)
    llm = create_llm("mlx", model=str(path), temperature=0.0, dtype=args.dtype).load()
    prov_dtype = llm.worker.call(lambda: weights_dtype(llm._adapter.model))
    gflops = sgemm_gflops()
    env = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "preset": args.preset,
        "quantize": args.quantize, "dtype_arg": args.dtype, "dtype_raw": raw_dtype, "dtype_provider": prov_dtype,
        "device": str(mx.default_device()), "gpu": gpu, "fast_blas": str(blas),
        "sgemm_gflops": round(gflops, 1), "cpus": os.cpu_count(), "machine": platform.machine(),
        "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__, "abstractllm": __version__,
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(f"dtype: raw {raw_dtype}, provider {prov_dtype} (--dtype {args.dtype}); {blas}; "
          f"sgemm {gflops:.1f} GFLOP/s; {env['device']}; mlx {env['mlx']}, mlx-lm {env['mlx_lm']}", flush=True)

    # ---------------------------------------------------------------- decode + TTFT, alternating
    res = {"raw": {"ttft": [], "tps": []}, "provider": {"ttft": [], "tps": []}}
    same_tokens, n_tokens, pairs = True, [], {"tps": [], "ttft": []}
    warm = [{"role": "user", "content": "Hello."}]
    run_raw(model, tok, warm, 4), run_provider(llm, warm, 4)  # warm-up both (kernels, allocator)
    for r in range(args.rounds):
        for i, prompt in enumerate(PROMPTS[: args.prompts]):
            convo = [{"role": "user", "content": prompt}]
            order = ("raw", "provider") if (r + i) % 2 == 0 else ("provider", "raw")
            lines = {}
            for side in order:
                # Both sides start alike: the provider's prompt cache empty (compare prefill with prefill)
                # and MLX's buffer cache (shared by the process) freed.
                llm.clear_cache()
                if side == "raw":
                    lines[side] = run_raw(model, tok, convo, args.max_tokens)
                else:
                    lines[side], _ = run_provider(llm, convo, args.max_tokens)
                res[side]["ttft"].append(lines[side].ttft)
                res[side]["tps"].append(lines[side].decode_tps)
            pairs["tps"].append(lines["provider"].decode_tps / lines["raw"].decode_tps)
            pairs["ttft"].append(lines["provider"].ttft / lines["raw"].ttft)
            # the token ids; the texts differ by design where a reply starts with a space: mlx-lm's streaming
            # detokenizer drops it, the provider keeps the tokenizer's decode (providers/mlx/special.py)
            same = lines["raw"].tokens == lines["provider"].tokens
            same_tokens &= same
            n_tokens.append(len(lines["raw"].tokens))
            print(f"  round {r + 1} prompt {i + 1}: raw {lines['raw'].decode_tps:6.2f} tok/s ttft "
                  f"{lines['raw'].ttft * 1e3:7.1f} ms | provider {lines['provider'].decode_tps:6.2f} tok/s ttft "
                  f"{lines['provider'].ttft * 1e3:7.1f} ms | {len(lines['raw'].tokens)} tokens, "
                  f"{'same' if same else 'DIFFERENT'}", flush=True)
    med = {s: {k: median(v) for k, v in d.items()} for s, d in res.items()}
    # Ratios: the median of the back-to-back pairs' ratios (each pair ran under the same machine load,
    # which drifts a lot on a shared machine); the ratio of the two medians is printed beside it.
    decode_ratio, ttft_ratio = median(pairs["tps"]), median(pairs["ttft"])
    decode_ratio_of_medians = med["provider"]["tps"] / med["raw"]["tps"]
    ttft_ratio_of_medians = med["provider"]["ttft"] / med["raw"]["ttft"]

    # ---------------------------------------------------------------- second chat turn: cold vs warm
    turns = None
    if not args.skip_turns:
        hist = history(tok, args.history_tokens)
        turn1 = hist + [{"role": "user", "content": QUESTIONS[0]}]
        turn2 = turn1 + [{"role": "assistant", "content": REPLY}, {"role": "user", "content": QUESTIONS[1]}]
        n1 = len(tok.apply_chat_template(turn1, add_generation_prompt=True))
        n2 = len(tok.apply_chat_template(turn2, add_generation_prompt=True))
        print(f"second turn: {n2} prompt tokens, {n1} of them the first turn's prompt", flush=True)
        t = {"cold": [], "warm": [], "raw": [], "cached": [], "same": True}
        for r in range(args.turn_rounds):
            outs = {}
            for mode in (("warm", "cold", "raw") if r % 2 == 0 else ("raw", "cold", "warm")):
                llm.clear_cache()
                if mode == "raw":
                    line = run_raw(model, tok, turn2, 8)
                else:
                    if mode == "warm":
                        llm.generate(messages=turn1, max_tokens=4)  # the first turn, cached as it runs
                    line, last = run_provider(llm, turn2, 8)
                    if mode == "warm":
                        t["cached"].append(last.usage.cached_tokens)
                t[mode].append(line.ttft)
                outs[mode] = line.tokens
            t["same"] &= outs["warm"] == outs["cold"] == outs["raw"]
            print(f"  round {r + 1}: cold {t['cold'][-1]:.3f} s, warm {t['warm'][-1]:.3f} s "
                  f"({t['cached'][-1]} cached tokens), raw mlx-lm cold {t['raw'][-1]:.3f} s", flush=True)
        turns = {"prompt_tokens": n2, "cold_s": median(t["cold"]), "warm_s": median(t["warm"]),
                 "raw_cold_s": median(t["raw"]), "cached_tokens": t["cached"][-1], "same_tokens": t["same"]}
        turns["speedup"] = turns["cold_s"] / turns["warm_s"]
    llm.close()

    # ---------------------------------------------------------------- report
    ok = lambda b: "ok" if b else "MISSED"  # noqa: E731
    print()
    print(f"abstractllm {__version__} vs raw mlx-lm {env['mlx_lm']} | preset {args.preset}"
          f"{f' {args.quantize}-bit' if args.quantize else ''} | dtype {prov_dtype} | {blas} | "
          f"{env['date']} | {args.rounds} rounds x {args.prompts} prompts, {median(n_tokens):.0f} tokens, medians")
    print("| metric | raw mlx-lm | provider | ratio (paired; of medians) | target |")
    print("|---|---|---|---|---|")
    print(f"| decode tokens/s | {med['raw']['tps']:.2f} | {med['provider']['tps']:.2f} | {decode_ratio:.3f}; {decode_ratio_of_medians:.3f} | "
          f">= 0.98 {ok(decode_ratio >= 0.98)} |")
    print(f"| TTFT (ms) | {med['raw']['ttft'] * 1e3:.1f} | {med['provider']['ttft'] * 1e3:.1f} | {ttft_ratio:.3f}; {ttft_ratio_of_medians:.3f} | "
          f"<= 1.05 {ok(ttft_ratio <= 1.05)} |")
    if turns:
        print(f"| 2nd turn TTFT, {turns['prompt_tokens']} tokens (s) | cold {turns['raw_cold_s']:.3f} | "
              f"cold {turns['cold_s']:.3f} / warm {turns['warm_s']:.3f} ({turns['cached_tokens']} cached) | "
              f"{turns['speedup']:.1f}x | >= 10x {ok(turns['speedup'] >= 10)} |")
    print(f"same tokens (provider vs raw, greedy): {'yes' if same_tokens else 'NO'}"
          + (f"; second turn warm = cold = raw: {'yes' if turns['same_tokens'] else 'NO'}" if turns else ""))
    if args.json_path:
        out = {"env": env, "medians": med, "decode_ratio": decode_ratio, "ttft_ratio": ttft_ratio,
               "decode_ratio_of_medians": decode_ratio_of_medians, "ttft_ratio_of_medians": ttft_ratio_of_medians,
               "pair_ratios": pairs,
               "raw_runs": res, "second_turn": turns, "same_tokens": same_tokens}
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0 if same_tokens and (turns is None or turns["same_tokens"]) else 1


if __name__ == "__main__":
    sys.exit(main())
