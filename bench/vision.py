#!/usr/bin/env python
"""Vision benchmark: the image pipeline on a 24-megapixel JPEG, and provider vs raw mlx-vlm generation.

    python bench/vision.py                 # about half a minute on 2 CPU cores
    python bench/vision.py --rounds 5 --json out.json

Part 1 makes a 6000x4000 JPEG (smooth gradients plus texture, quality 90) and times
``abstractllm.media.load_image`` on its bytes (header, memory check, draft-mode decode, EXIF, RGB,
downscale to ``max_image_pixels``), median of the rounds. Peak extra memory is measured in a fresh child
process: its peak RSS during the call minus its peak RSS before it, compared with the output bitmap.
Targets: <= 150 ms, peak extra <= 2x the output bitmap.

Part 2 builds the tiny offline vision model (``abstractllm.testing``) and times, in one run and in
alternating order, ``llm.generate(prompt, files=[image])`` against raw ``mlx_vlm`` (``load``,
``apply_chat_template``, ``stream_generate``) on the same model, prompt and image, greedy, checking that
the texts are equal; the ratio is provider / raw (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import os, sys, threading
import psutil
from abstractllm.media import load_image
import PIL.Image
data = open(sys.argv[1], "rb").read()
max_pixels = int(sys.argv[2])
load_image(PIL.Image.new("RGB", (16, 16)))  # warm the code path
proc = psutil.Process(os.getpid())
base = peak = proc.memory_info().rss
done = threading.Event()
def poll():
    global peak
    while not done.is_set():
        peak = max(peak, proc.memory_info().rss)
        done.wait(0.0005)
t = threading.Thread(target=poll)
t.start()
img = load_image(data, max_pixels=max_pixels)
done.set()
t.join()
peak = max(peak, proc.memory_info().rss)
print(peak - base, img.size[0], img.size[1])
"""


def make_jpeg(width: int = 6000, height: int = 4000) -> bytes:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.RandomState(0)
    r = 128 + 100 * np.sin(x / 300.0) * np.cos(y / 500.0)
    g = 128 + 100 * np.sin((x + y) / 700.0)
    b = 128 + 60 * np.cos(x / 90.0) + rng.normal(0, 12, size=(height, width))
    arr = np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bench_pipeline(rounds: int, max_pixels: int) -> dict:
    from abstractllm.media import load_image

    data = make_jpeg()
    times = []
    size = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        img = load_image(data, max_pixels=max_pixels)
        times.append(time.perf_counter() - t0)
        size = img.size
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "24mp.jpg")
        with open(path, "wb") as fh:
            fh.write(data)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, path, str(max_pixels)], capture_output=True, text=True, check=True
        )
    peak_extra, w, h = (int(v) for v in out.stdout.split())
    bitmap = w * h * 3
    return {
        "jpeg_bytes": len(data),
        "input": "6000x4000",
        "output": f"{size[0]}x{size[1]}",
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_extra_bytes": peak_extra,
        "output_bitmap_bytes": bitmap,
        "peak_ratio": peak_extra / bitmap,
    }


def bench_generation(rounds: int, max_tokens: int) -> dict:
    import numpy as np
    from PIL import Image

    from abstractllm import create_llm
    from abstractllm.testing import demo_model

    path = demo_model("vision", "tiny")
    image = Image.fromarray((np.random.RandomState(0).rand(112, 112, 3) * 255).astype("uint8"))
    prompt = "Describe this picture."
    llm = create_llm("mlx", model=str(path), temperature=0.0, max_tokens=max_tokens, prompt_cache_bytes=0)
    from mlx_vlm import load, stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = load(str(path))
    templated = apply_chat_template(processor, model.config, prompt, num_images=1)

    def ours() -> str:
        return llm.generate(prompt, files=[image]).content

    def raw() -> str:
        return "".join(
            r.text
            for r in stream_generate(model, processor, templated, image=[image], max_tokens=max_tokens, temperature=0.0)
        )

    ours(), raw()  # warm-up (load, compile)
    t_ours, t_raw, equal = [], [], True
    for i in range(rounds):
        order = [(ours, t_ours), (raw, t_raw)] if i % 2 == 0 else [(raw, t_raw), (ours, t_ours)]
        texts = []
        for fn, acc in order:
            t0 = time.perf_counter()
            texts.append(fn())
            acc.append(time.perf_counter() - t0)
        equal &= texts[0] == texts[1]
    llm.close()
    mo, mr = statistics.median(t_ours), statistics.median(t_raw)
    return {
        "max_tokens": max_tokens,
        "provider_ms": 1000 * mo,
        "raw_ms": 1000 * mr,
        "ratio": mo / mr,
        "texts_equal": equal,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=11, help="alternating rounds (median)")
    p.add_argument("--max-pixels", type=int, default=4_000_000, help="max_image_pixels of the pipeline")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)

    pipe = bench_pipeline(args.rounds, args.max_pixels)
    gen = bench_generation(args.rounds, args.max_tokens)
    rows = [
        ("24 MP JPEG -> RGB", f"{pipe['input']} -> {pipe['output']}", ""),
        (
            "  pipeline time (median)",
            f"{pipe['median_ms']:.1f} ms",
            "<= 150 ms " + ("OK" if pipe["median_ms"] <= 150 else "MISSED"),
        ),
        (
            "  peak extra memory",
            f"{pipe['peak_extra_bytes'] / 1e6:.1f} MB ({pipe['peak_ratio']:.2f}x the "
            f"{pipe['output_bitmap_bytes'] / 1e6:.1f} MB bitmap)",
            "<= 2x " + ("OK" if pipe["peak_ratio"] <= 2 else "MISSED"),
        ),
        (f"generate, tiny VLM, {gen['max_tokens']} tokens", "", ""),
        ("  provider (median)", f"{gen['provider_ms']:.1f} ms", ""),
        ("  raw mlx-vlm (median)", f"{gen['raw_ms']:.1f} ms", ""),
        ("  ratio provider / raw", f"{gen['ratio']:.2f}", "texts equal" if gen["texts_equal"] else "TEXTS DIFFER"),
    ]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'measure':<{w0}}  {'value':<{w1}}  target")
    print("-" * (w0 + w1 + 20))
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"pipeline": pipe, "generation": gen}, fh, indent=2)
    return 0 if gen["texts_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
