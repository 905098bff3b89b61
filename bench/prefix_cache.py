#!/usr/bin/env python
"""Prefix-cache benchmark (issue 24): a long system prompt reused by new conversations, after a server restart
(disk tier) and by concurrent requests; a 4-bit KV cache against float32; a hybrid (Gated DeltaNet) family.

    python bench/prefix_cache.py                                     # qwen3-0.6b, 2,000-token system prompt: ~17 min
    python bench/prefix_cache.py --preset small --system-tokens 800  # a quick look: under a minute

Models are built offline with random weights by ``abstractllm.testing`` (float32 on disk; the provider's
``dtype="auto"`` keeps float32 on a CPU). Greedy everywhere. TTFT is timed from the caller's side to the first
streamed chunk that carries a token (over HTTP: the first event after the role, with ``max_tokens: 1``).

1. **New conversation**: the system prompt + question B, cold (empty prompt cache) and after another
   conversation (question A) over the same system prompt: TTFT ratio, ``cached_tokens``, tokens equal to cold.
2. **Restart**: ``abstractllm serve --prompt-cache-dir DIR`` answers question A cold, is stopped (SIGTERM), a new
   server process on the same folder answers question B: its TTFT against the cold one (the lower of the first
   server's and row 1's).
3. **Concurrent**: N streamed requests (threads on one provider, prompt cache empty) with the system prompt and
   N different questions: ``get_stats()["prefill_tokens_computed"]`` against prefix + N suffixes (the prompts'
   common token prefix counted once), and the time until all N have their first token against a cold TTFT.
4. **kv_bits=4**: the prompt cache's bytes per token after one request (question A, cold) against float32's;
   greedy agreement with float32 over ``--decode-tokens`` steps on that prompt (and ``--speed-tokens`` on the
   speed rounds'); decode tokens/s at the system prompt's context (warm prefix, float32 and 4-bit alternating,
   ``--rounds``, even by default so each side goes first as often; median of the pairs' ratios). The 4-bit
   cold prefill is timed too (not a target).
5. **Hybrid**: the zoo's ``qwen3_5`` family (Gated DeltaNet + attention layers; ``--hybrid`` picks its size):
   row 1 again, served from the message-boundary snapshot.

A bench reports: the exit code is 0 whatever the results; each target is printed with PASS / FAIL.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import offline_env  # noqa: E402  (bench/common.py, same folder)

QUESTIONS = ["What is a list?", "Name a colour.", "Why do we write tests?", "What does a linter do?",
             "Explain a merge conflict.", "What is a pure function?", "Why pin dependencies?",
             "What is a race condition?", "When is recursion useful?", "What does CI stand for?",
             "How do I revert a commit?", "What is an API?"]
TARGETS = {"warm": 10.0, "restart": 10.0, "prefill": 1.2, "all_first": 2.0, "kv_bytes": 0.3, "kv_decode": 0.9}
#: ``--hybrid`` sizes of the zoo's qwen3_5 family (text_config overrides; ``zoo``: its tiny test config). ``0.8b``
#: approximates Qwen3.5-0.8B's layout (hidden 1024, 24 layers, every 4th full attention with head size 256, 16
#: Gated DeltaNet heads of 128) with Qwen3's 151,936-token vocabulary.
HYBRID_SHAPES = {
    "zoo": {},
    "small": {"hidden_size": 384, "num_hidden_layers": 8, "intermediate_size": 1024, "num_attention_heads": 6,
              "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 4096, "full_attention_interval": 4,
              "linear_num_value_heads": 6, "linear_num_key_heads": 6, "linear_key_head_dim": 64,
              "linear_value_head_dim": 64},
    "0.8b": {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 3584, "num_attention_heads": 8,
             "num_key_value_heads": 2, "head_dim": 256, "vocab_size": 151936, "full_attention_interval": 4,
             "linear_num_value_heads": 16, "linear_num_key_heads": 16, "linear_key_head_dim": 128,
             "linear_value_head_dim": 128, "tie_word_embeddings": True},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen3-0.6b", help="abstractllm.testing text preset (qwen3-0.6b, small, ...)")
    p.add_argument("--system-tokens", type=int, default=2000, help="length of the shared system prompt")
    p.add_argument("--concurrent", type=int, default=8, choices=range(2, len(QUESTIONS) - 3), metavar="N",
                   help=f"concurrent requests of row 3 (2..{len(QUESTIONS) - 4})")
    p.add_argument("--decode-tokens", type=int, default=64, help="greedy steps of the kv_bits comparison")
    p.add_argument("--speed-tokens", type=int, default=32, help="tokens per alternating decode-speed run")
    p.add_argument("--rounds", type=int, default=4,
                   help="alternating float32 / 4-bit decode-speed rounds (even: each side goes first as often)")
    p.add_argument("--hybrid", default="auto", choices=("auto", "none", *HYBRID_SHAPES),
                   help="size of the hybrid row (auto: 0.8b with qwen3-0.6b, else zoo)")
    p.add_argument("--skip-server", action="store_true", help="skip row 2 (the server restart)")
    p.add_argument("--cache-dir", help="where built models are cached (default: abstractllm.testing's)")
    p.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- prompts
def tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def template_ids(tok, messages: list[dict]) -> list[int]:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def system_prompt(tok, n_tokens: int) -> str:
    """An agent-style system prompt of numbered rules whose templated length is about ``n_tokens``."""
    from abstractllm.testing.corpus import CORPUS

    lines = [ln.strip() for ln in CORPUS.splitlines() if ln.strip()]
    rules: list[str] = ["You are a coding agent. Follow every rule below."]
    while len(template_ids(tok, [{"role": "system", "content": "\n".join(rules)}])) < n_tokens:
        rules.append(f"Rule {len(rules)}: {lines[len(rules) % len(lines)]}")
    return "\n".join(rules)


def chat(system: str, question: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def common_prefix(seqs: list[list[int]]) -> int:
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    return n


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Stream:
    """One streamed generation, timed from the caller's side (absolute ``perf_counter`` times)."""

    t0: float
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    usage: object = None

    @property
    def ttft(self) -> float:
        return self.times[0] - self.t0

    @property
    def decode_tps(self) -> float:
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else float("nan")


def stream(llm, messages: list[dict], max_tokens: int) -> Stream:
    s = Stream(time.perf_counter())
    for chunk in llm.generate(messages=messages, max_tokens=max_tokens, stream=True):
        if chunk.token_ids:
            s.times.extend([time.perf_counter()] * len(chunk.token_ids))
            s.tokens.extend(chunk.token_ids)
        if chunk.usage is not None:
            s.usage = chunk.usage
    return s


def open_llm(path, **config):
    from abstractllm import create_llm

    llm = create_llm("mlx", model=str(path), temperature=0.0, **config).load()
    stream(llm, [{"role": "user", "content": "Hello."}], 2)  # kernels, allocator
    return llm


def agreement(a: list[int], b: list[int]) -> dict:
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), None)
    return {"equal": sum(x == y for x, y in zip(a, b)), "steps": n, "first_divergence": first}


# ---------------------------------------------------------------------------------------------- rows
def row_new_conversation(llm, system: str, decode_tokens: int) -> tuple[dict, Stream]:
    """Row 1: question B cold, question A cold (with a long reply, the float32 side of row 4), then B warm."""
    llm.clear_cache()
    cold_b = stream(llm, chat(system, QUESTIONS[1]), 4)
    llm.clear_cache()
    cold_a = stream(llm, chat(system, QUESTIONS[0]), decode_tokens)
    info = llm.get_model_info()["prompt_cache"]
    warm = [stream(llm, chat(system, q), 4) for q in QUESTIONS[1:4]]
    cold = statistics.median([cold_a.ttft, cold_b.ttft])
    out = {"cold_s": cold, "cold_samples_s": [cold_b.ttft, cold_a.ttft],
           "warm_s": statistics.median(w.ttft for w in warm), "warm_samples_s": [w.ttft for w in warm],
           "prompt_tokens": warm[0].usage.prompt_tokens, "cached_tokens": warm[0].usage.cached_tokens,
           "same_as_cold": warm[0].tokens == cold_b.tokens, "kv_cache": info,
           "kv_tokens": cold_a.usage.prompt_tokens + cold_a.usage.completion_tokens}
    out["speedup"] = out["cold_s"] / out["warm_s"]
    print(f"row 1: cold {cold_b.ttft:.2f} / {cold_a.ttft:.2f} s, warm {out['warm_s']:.3f} s "
          f"({out['cached_tokens']} of {out['prompt_tokens']} cached), same tokens as cold: {out['same_as_cold']}",
          flush=True)
    return out, cold_a


def row_concurrent(llm, tok, system: str, n: int, cold_s: float) -> dict:
    """Row 3: ``n`` streamed requests at once over the same system prompt, the prompt cache empty."""
    msgs = [chat(system, q) for q in QUESTIONS[4:4 + n]]
    ids = [template_ids(tok, m) for m in msgs]
    prefix = common_prefix(ids)
    ideal = prefix + sum(len(i) - prefix for i in ids)
    llm.clear_cache()
    llm.clear_stats()
    results: list[Stream | None] = [None] * n
    start = threading.Barrier(n + 1)

    def run(i: int) -> None:
        start.wait()
        results[i] = stream(llm, msgs[i], 4)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    stats = llm.get_stats()
    out = {"n": n, "prefix": prefix, "ideal": ideal, "computed": stats["prefill_tokens_computed"],
           "reused": stats["prefill_tokens_reused"], "all_first_s": max(r.times[0] for r in results) - t0,
           "first_s": sorted(r.times[0] - t0 for r in results), "cold_s": cold_s,
           "prompt_tokens_match": [r.usage.prompt_tokens for r in results] == [len(i) for i in ids],
           "cached_tokens": [r.usage.cached_tokens for r in results]}
    out["prefill_ratio"] = out["computed"] / ideal
    out["first_ratio"] = out["all_first_s"] / cold_s
    print(f"row 3: {n} requests, prefill computed {out['computed']} vs ideal {ideal} (prefix {prefix}); all first "
          f"tokens after {out['all_first_s']:.2f} s (cold {cold_s:.2f} s); cached {out['cached_tokens']}; prompt "
          f"lengths as templated here: {out['prompt_tokens_match']}", flush=True)
    return out


def row_kv_bits(path, llm, system: str, cold_a: Stream, float_info: dict, float_tokens: int, args) -> dict:
    """Row 4: a 4-bit KV cache against float32: bytes per token, decode speed (warm, alternating), agreement."""
    llm4 = open_llm(path, kv_bits=4)
    try:
        llm4.clear_cache()
        cold4 = stream(llm4, chat(system, QUESTIONS[0]), args.decode_tokens)
        info4 = llm4.get_model_info()["prompt_cache"]
        n4 = cold4.usage.prompt_tokens + cold4.usage.completion_tokens
        agree = [agreement(cold_a.tokens, cold4.tokens)]
        pairs, tps = [], {"float32": [], "kv4": []}
        for r in range(args.rounds):
            msgs = chat(system, f"Round {r}: {QUESTIONS[-1 - r % 4]}")
            sides = [("float32", llm), ("kv4", llm4)][:: 1 if r % 2 == 0 else -1]
            runs = {name: stream(side, msgs, args.speed_tokens) for name, side in sides}
            for name, s in runs.items():
                tps[name].append(s.decode_tps)
            pairs.append(runs["kv4"].decode_tps / runs["float32"].decode_tps)
            agree.append(agreement(runs["float32"].tokens, runs["kv4"].tokens))
            print(f"  round {r + 1}: decode float32 {tps['float32'][-1]:.2f} tok/s, 4-bit {tps['kv4'][-1]:.2f} "
                  f"tok/s at {runs['kv4'].usage.prompt_tokens} tokens of context", flush=True)
    finally:
        llm4.close()
    bpt = float_info["bytes"] / float_tokens, info4["bytes"] / n4
    out = {"bytes_per_token_float32": bpt[0], "bytes_per_token_kv4": bpt[1], "bytes_ratio": bpt[1] / bpt[0],
           "entries": [float_info["entries"], info4["entries"]], "cold_ttft_kv4_s": cold4.ttft,
           "decode_tps": {k: statistics.median(v) for k, v in tps.items()}, "decode_samples": tps,
           "decode_ratio": statistics.median(pairs), "pair_ratios": pairs, "agreement": agree}
    print(f"row 4: {bpt[0]:.0f} vs {bpt[1]:.0f} bytes/token; 4-bit cold TTFT {cold4.ttft:.2f} s; agreement "
          f"{[(a['equal'], a['steps'], a['first_divergence']) for a in agree]}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- row 2: the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ttft(url: str, messages: list[dict]) -> tuple[float, dict]:
    """TTFT of one streamed chat completion (``max_tokens: 1``) and its usage."""
    import httpx

    body = {"messages": messages, "max_tokens": 1, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0, first, usage = time.perf_counter(), None, {}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=3600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            event = json.loads(line[5:])
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                if first is None and (delta.get("content") or choice.get("finish_reason")):
                    first = time.perf_counter() - t0
    return first, usage


def serve(path, folder: str) -> tuple[subprocess.Popen, str]:
    """``abstractllm serve`` on ``folder``'s disk tier, answering (a short warm-up request sent) or raising."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "abstractllm", "serve", "--model", str(path), "--port", str(port),
           "--prompt-cache-dir", folder, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"abstractllm serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                http_ttft(url, [{"role": "user", "content": "Hello."}])
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("abstractllm serve did not answer")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: a clean close, pending disk writes finished
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()


def row_restart(path, system: str, cold_inproc: float) -> dict:
    """Row 2: question A on a first server (cold, written to the disk tier), question B on a second one."""
    folder = tempfile.mkdtemp(prefix="abstractllm-bench-prompt-cache-")
    try:
        proc, url = serve(path, folder)
        try:
            cold, cold_usage = http_ttft(url, chat(system, QUESTIONS[0]))
        finally:
            stop(proc)
        files = {f.name: f.stat().st_size for f in Path(folder).iterdir() if f.is_file()}
        proc, url = serve(path, folder)
        try:
            warm, usage = http_ttft(url, chat(system, QUESTIONS[1]))
        finally:
            stop(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ref = min(cold, cold_inproc)
    out = {"cold_http_s": cold, "cold_inproc_s": cold_inproc, "restart_s": warm, "speedup": ref / warm,
           "speedup_vs_http_cold": cold / warm, "files": len(files), "disk_bytes": sum(files.values()),
           "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
           "prompt_tokens": usage.get("prompt_tokens"),
           "cold_cached_tokens": (cold_usage.get("prompt_tokens_details") or {}).get("cached_tokens")}
    print(f"row 2: server cold {cold:.2f} s, after a restart {warm:.3f} s ({out['cached_tokens']} of "
          f"{out['prompt_tokens']} cached; {len(files)} files, {out['disk_bytes'] / 1e6:.0f} MB on disk)", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- row 5: hybrid
def hybrid_model(shape: str) -> Path:
    """The zoo's qwen3_5 family at ``shape`` (``HYBRID_SHAPES``), built once into the demo cache."""
    from abstractllm.testing import BUILDER_VERSION, demo_cache_dir
    from abstractllm.testing.zoo import FAMILIES, family_model
    from abstractllm.testing.zoo.text import build_text_family

    if not HYBRID_SHAPES[shape]:
        return family_model("qwen3_5")
    path = demo_cache_dir() / f"bench-qwen3_5-{shape}-v{BUILDER_VERSION}"
    if not (path / "config.json").is_file():
        family = FAMILIES["qwen3_5"]
        config = copy.deepcopy(family.config)
        config["text_config"].update(HYBRID_SHAPES[shape])
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=demo_cache_dir()))
        build_text_family(replace(family, config=config), tmp)
        tmp.rename(path)
    return path


def row_hybrid(shape: str, system_tokens: int) -> dict:
    """Row 5: row 1 on the hybrid family (a recurrent state cannot be trimmed: the system-prompt snapshot)."""
    t = time.perf_counter()
    path = hybrid_model(shape)
    print(f"hybrid model ({shape}): {path} ({time.perf_counter() - t:.1f} s to build or find)", flush=True)
    tok = tokenizer(path)
    system = system_prompt(tok, system_tokens)
    llm = open_llm(path)
    try:
        llm.clear_cache()
        cold_b = stream(llm, chat(system, QUESTIONS[1]), 4)
        llm.clear_cache()
        cold_a = stream(llm, chat(system, QUESTIONS[0]), 4)
        warm = stream(llm, chat(system, QUESTIONS[1]), 4)
    finally:
        llm.close()
    cold = statistics.median([cold_a.ttft, cold_b.ttft])
    out = {"shape": shape, "cold_s": cold, "warm_s": warm.ttft, "speedup": cold / warm.ttft,
           "prompt_tokens": warm.usage.prompt_tokens, "cached_tokens": warm.usage.cached_tokens,
           "same_as_cold": warm.tokens == cold_b.tokens}
    print(f"row 5: cold {cold_b.ttft:.2f} / {cold_a.ttft:.2f} s, warm {warm.ttft:.3f} s "
          f"({warm.usage.cached_tokens} of {warm.usage.prompt_tokens} cached), same as cold: {out['same_as_cold']}",
          flush=True)
    return out


# ---------------------------------------------------------------------------------------------- report
def verdict(value: float, target: float, at_least: bool) -> str:
    ok = value >= target if at_least else value <= target
    return f"{'>=' if at_least else '<='} {target:g}x | {'PASS' if ok else 'FAIL'}"


def table(res: dict) -> list[str]:
    r1, r3, r4 = res["new_conversation"], res["concurrent"], res["kv_bits"]
    rows = [("1. new conversation over the cached system prompt",
             f"TTFT cold {r1['cold_s']:.2f} s / warm {r1['warm_s']:.3f} s ({r1['cached_tokens']} of "
             f"{r1['prompt_tokens']} tokens cached; same tokens as cold: {'yes' if r1['same_as_cold'] else 'NO'})",
             f"{r1['speedup']:.1f}x", verdict(r1["speedup"], TARGETS["warm"], True))]
    r2 = res.get("restart")
    if r2:
        rows.append(("2. after a restart (`abstractllm serve --prompt-cache-dir`, HTTP)",
                     f"TTFT cold {r2['cold_http_s']:.2f} s (server; in-process {r2['cold_inproc_s']:.2f} s) / "
                     f"restarted {r2['restart_s']:.3f} s ({r2['cached_tokens']} of {r2['prompt_tokens']} cached, "
                     f"{r2['files']} files, {r2['disk_bytes'] / 1e6:.0f} MB)",
                     f"{r2['speedup']:.1f}x", verdict(r2["speedup"], TARGETS["restart"], True)))
    rows += [(f"3. {r3['n']} concurrent requests, shared prefix: prefill",
              f"{r3['computed']} tokens computed / {r3['ideal']} (prefix {r3['prefix']} + {r3['n']} suffixes)",
              f"{r3['prefill_ratio']:.2f}x", verdict(r3["prefill_ratio"], TARGETS["prefill"], False)),
             (f"3. {r3['n']} concurrent: all first tokens",
              f"{r3['all_first_s']:.2f} s / one cold TTFT {r3['cold_s']:.2f} s",
              f"{r3['first_ratio']:.2f}x", verdict(r3["first_ratio"], TARGETS["all_first"], False)),
             ("4. kv_bits=4: KV bytes per token",
              f"{r4['bytes_per_token_kv4']:.0f} / float32 {r4['bytes_per_token_float32']:.0f} B",
              f"{r4['bytes_ratio']:.3f}x", verdict(r4["bytes_ratio"], TARGETS["kv_bytes"], False)),
             (f"4. kv_bits=4: decode tok/s at {r1['prompt_tokens']} tokens of context",
              f"{r4['decode_tps']['kv4']:.2f} / float32 {r4['decode_tps']['float32']:.2f} (pairs "
              f"{', '.join(f'{p:.2f}' for p in r4['pair_ratios'])})",
              f"{r4['decode_ratio']:.2f}x", verdict(r4["decode_ratio"], TARGETS["kv_decode"], True))]
    a = r4["agreement"]
    rows.append(("4. kv_bits=4: greedy tokens equal to float32's",
                 "; ".join(f"{x['equal']}/{x['steps']} (first divergence: "
                           f"{'none' if x['first_divergence'] is None else 'step ' + str(x['first_divergence'])})"
                           for x in a) + f"; 4-bit cold TTFT {r4['cold_ttft_kv4_s']:.2f} s",
                 f"{sum(x['equal'] for x in a) / max(1, sum(x['steps'] for x in a)):.2f}", "report | -"))
    r5 = res.get("hybrid")
    if r5:
        rows.append((f"5. hybrid qwen3_5 (`--hybrid {r5['shape']}`): new conversation",
                     f"TTFT cold {r5['cold_s']:.2f} s / warm {r5['warm_s']:.3f} s ({r5['cached_tokens']} of "
                     f"{r5['prompt_tokens']} cached; same tokens as cold: {'yes' if r5['same_as_cold'] else 'NO'})",
                     f"{r5['speedup']:.1f}x", "report | -"))
    out = ["| row | measured | value | target | result |", "|---|---|---|---|---|"]
    return out + [f"| {name} | {what} | {value} | {target} |" for name, what, value, target in rows]


def environment(args, path, gflops_note: str) -> dict:
    import mlx.core as mx
    import mlx_lm

    from abstractllm import __version__

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "preset": args.preset,
            "model": str(path), "system_tokens": args.system_tokens, "machine": platform.machine(),
            "cpus": os.cpu_count(), "device": str(mx.default_device()), "blas": gflops_note, "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__, "abstractllm": __version__, "command": " ".join(sys.argv),
            "load_avg_start": os.getloadavg()[0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    offline_env(args.cache_dir)
    from abstractllm.providers.mlx.backend import enable_fast_blas, fast_blas_status

    enable_fast_blas()
    import mlx.core  # noqa: F401  (fast_blas_status checks the library with one matmul once mlx is in)

    from abstractllm.testing import demo_model

    t = time.perf_counter()
    path = demo_model("text", args.preset, dtype="float32")
    print(f"model: {path} ({time.perf_counter() - t:.1f} s to build or find)", flush=True)
    env = environment(args, path, str(fast_blas_status()))
    print(f"{env['blas']}; {env['device']}; load average {env['load_avg_start']:.1f}", flush=True)
    tok = tokenizer(path)
    system = system_prompt(tok, args.system_tokens)
    res: dict = {"env": env}
    llm = open_llm(path)
    try:
        res["new_conversation"], cold_a = row_new_conversation(llm, system, args.decode_tokens)
        r1 = res["new_conversation"]
        res["concurrent"] = row_concurrent(llm, tok, system, args.concurrent, r1["cold_s"])
        res["kv_bits"] = row_kv_bits(path, llm, system, cold_a, r1["kv_cache"], r1["kv_tokens"], args)
    finally:
        llm.close()
    if not args.skip_server:
        res["restart"] = row_restart(path, system, res["new_conversation"]["cold_s"])
    shape = {"auto": "0.8b" if args.preset == "qwen3-0.6b" else "zoo"}.get(args.hybrid, args.hybrid)
    if shape != "none":
        res["hybrid"] = row_hybrid(shape, args.system_tokens)
    env["load_avg_end"] = os.getloadavg()[0]
    print(f"\nprefix cache | {args.preset} float32 | ~{args.system_tokens}-token system prompt | {env['blas']} | "
          f"{env['date']} | {env['cpus']} CPUs, load average {env['load_avg_start']:.1f} -> {env['load_avg_end']:.1f}")
    print("\n".join(table(res)))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
