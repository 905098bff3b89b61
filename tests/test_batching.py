"""The batching engine on real MLX execution: a request gives the same tokens alone or batched with others
(greedy and seeded, prompt-cache hits inside a batch), priorities and aging decide admission, the queue is
bounded, a long prompt is prefilled in chunks between the others' decode steps, and the serving APIs
(SamplingParams, generate([...]), generate_batch, get_stats, get_model_info, min_tokens, stop_token_ids,
logprobs, the vision conveniences) work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from abstractllm import (
    InvalidParameterError,
    QueueFullError,
    RequestPriority,
    SamplingParams,
    create_llm,
)
from text_oracle import chat, raw_generate, raw_load, raw_prompt_ids

PROMPTS = [
    "What is the capital of France?", "Write a short poem about the sea.", "def generate(prompt: str) -> str:",
    "Привет, как дела?", "List three colours.", "Explain batching in one sentence.", "Count to ten.", "Hi",
]


@pytest.fixture(scope="module")
def batched(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=24, max_batch_size=8) as llm:
        yield llm


def test_batched_equals_alone_greedy_and_seeded(batched):
    alone = [batched.generate(p).token_ids for p in PROMPTS]
    seeded_alone = [batched.generate(p, temperature=1.0, top_k=20, seed=i).token_ids for i, p in enumerate(PROMPTS)]
    batched.clear_stats()
    together = batched.generate(PROMPTS)  # one batch of 8
    assert [r.token_ids for r in together] == alone
    assert batched.get_stats()["average_batch_size"] > 4

    results: dict[int, list[int]] = {}

    def seeded(i: int) -> None:  # different parameters per request, all at once
        results[i] = batched.generate(PROMPTS[i], temperature=1.0, top_k=20, seed=i).token_ids

    streams = [batched.generate(p, stream=True) for p in PROMPTS]  # greedy ones in the same batch
    threads = [threading.Thread(target=seeded, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    greedy = [[t for c in s for t in c.token_ids] for s in streams]
    for t in threads:
        t.join(60)
    assert greedy == alone
    assert [results[i] for i in range(len(PROMPTS))] == seeded_alone


def test_seeded_batch_equals_raw_mlx_lm_after_mx_random_seed(tiny_model, batched):
    """A request's own random key advances as MLX's global one after ``mx.random.seed(seed)``."""
    ids = raw_prompt_ids(tiny_model, chat(PROMPTS[1]))
    raw = raw_generate(tiny_model, ids, max_tokens=24, temperature=0.9, top_p=0.9, seed=11)
    together = batched.generate([PROMPTS[1], PROMPTS[2], PROMPTS[1]], temperature=0.9, top_p=0.9, seed=11)
    assert together[0].token_ids == raw.tokens == together[2].token_ids


def test_prompt_cache_hits_inside_a_batch(batched):
    history = [{"role": "user", "content": PROMPTS[0]}]
    first = batched.generate(messages=history)
    follow = history + [{"role": "assistant", "content": first.content}, {"role": "user", "content": "And Spain?"}]
    cold = create_llm("mlx", model=batched.config["model"], temperature=0.0, max_tokens=24, prompt_cache_bytes=0)
    try:
        expected = cold.generate(messages=follow).token_ids
    finally:
        cold.close()
    streams = [batched.generate(messages=follow, stream=True), batched.generate(PROMPTS[5], stream=True)]
    chunks = [list(s) for s in streams]
    assert chunks[0][-1].usage.cached_tokens > 0
    assert [t for c in chunks[0] for t in c.token_ids] == expected


def _first_chunk_times(streams: dict[str, object]) -> dict[str, float]:
    """Read every stream in its own thread; the time each one's first chunk arrived."""
    seen: dict[str, float] = {}

    def read(name: str, stream) -> None:
        for _ in stream:
            seen.setdefault(name, time.perf_counter())

    threads = [threading.Thread(target=read, args=(n, s)) for n, s in streams.items()]
    for t in threads:
        t.start()
    return seen, threads


def test_priorities_decide_admission(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=6, max_batch_size=1) as llm:
        blocker = llm.generate("Hold the batch.", max_tokens=100_000, stream=True)
        next(blocker)  # running: the next ones wait
        waiting = {name: llm.generate(PROMPTS[0], stream=True, priority=prio) for name, prio in
                   [("low", RequestPriority.LOW), ("normal", "normal"), ("high", RequestPriority.HIGH),
                    ("normal2", RequestPriority.NORMAL)]}
        assert llm.get_stats()["queue_length"] == 4
        seen, threads = _first_chunk_times(waiting)
        blocker.cancel()
        list(blocker)
        for t in threads:
            t.join(60)
        order = sorted(seen, key=seen.get)
        assert order == ["high", "normal", "normal2", "low"]  # higher first; equal ones in arrival order


def test_a_waiting_request_ages_and_is_not_starved(tiny_model, monkeypatch):
    from abstractllm.providers.mlx import engine

    monkeypatch.setattr(engine, "PRIORITY_AGING_S", 0.2)
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=6, max_batch_size=1) as llm:
        blocker = llm.generate("Hold the batch.", max_tokens=100_000, stream=True)
        next(blocker)
        low = llm.generate(PROMPTS[0], stream=True, priority="low")
        time.sleep(0.5)  # two aging periods: LOW now counts as HIGH, and it arrived first
        high = llm.generate(PROMPTS[1], stream=True, priority="high")
        seen, threads = _first_chunk_times({"low": low, "high": high})
        blocker.cancel()
        list(blocker)
        for t in threads:
            t.join(60)
        assert seen["low"] < seen["high"]


def test_a_full_queue_refuses_at_once_and_the_provider_goes_on(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=4, max_batch_size=1,
                    max_queue_size=1) as llm:
        blocker = llm.generate("Hold the batch.", max_tokens=100_000, stream=True)
        next(blocker)
        queued = llm.generate(PROMPTS[0], stream=True)
        with pytest.raises(QueueFullError) as info:
            llm.generate(PROMPTS[1])
        assert info.value.queue_size == 1 and info.value.retry_after_s >= 1 and info.value.provider == "mlx"

        async def refused():
            with pytest.raises(QueueFullError):
                await llm.generate_async(PROMPTS[1])

        asyncio.run(refused())
        blocker.close()
        assert list(queued)[-1].usage.completion_tokens == 4
        assert llm.generate(PROMPTS[1]).usage.completion_tokens == 4


def test_a_queue_of_zero_takes_what_the_batch_can_hold(tiny_model):
    """max_queue_size=0: no request waits; those a free batch slot takes are served, the next is refused."""
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=4, max_batch_size=2,
                    max_queue_size=0) as llm:
        assert llm.generate(PROMPTS[0]).usage.completion_tokens == 4
        first = llm.generate("Hold the batch.", max_tokens=4096, stream=True)
        second = llm.generate("Hold it too.", max_tokens=4096, stream=True)
        next(first), next(second)
        with pytest.raises(QueueFullError) as info:
            llm.generate(PROMPTS[1])
        assert info.value.queue_size == 0
        first.close()
        second.close()
        assert llm.generate(PROMPTS[1]).usage.completion_tokens == 4


def test_a_long_prompt_is_prefilled_between_the_others_decode_steps(tiny_model):
    """While a 2,000-token prompt is admitted, a request already decoding keeps receiving tokens (its
    prefill runs in chunks of ``prefill_chunk_size`` between their decode steps); with one big chunk the
    decoding request waits for the whole prefill. ``get_stats()["max_inter_token_latency"]`` says so too."""
    long_prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * 200)

    def tokens_during_prefill(chunk: int) -> tuple[int, float]:
        with create_llm("mlx", model=str(tiny_model), temperature=0.0, prefill_chunk_size=chunk,
                        prefill_step_size=8192, prompt_cache_bytes=0) as llm:
            running = llm.generate("Tell me everything.", max_tokens=100_000, stream=True)
            next(running)
            arrived: list[float] = []
            reader = threading.Thread(target=lambda: [arrived.append(time.perf_counter()) for _ in running])
            reader.start()
            llm.clear_stats()
            start = time.perf_counter()
            late = llm.generate(long_prompt, max_tokens=1, stream=True)
            first = next(late)
            first_at = time.perf_counter()
            assert first.token_ids or first.finish_reason
            list(late)
            worst_gap = llm.get_stats()["max_inter_token_latency"]
            running.cancel()
            reader.join(60)
            return sum(start <= t <= first_at for t in arrived), worst_gap

    chunked, chunked_gap = tokens_during_prefill(32)  # ~70 chunks of 32 tokens: a decode step between each
    whole, whole_gap = tokens_during_prefill(8192)  # one chunk: the running request waits for all of it
    assert chunked >= 10 and whole * 3 <= chunked, (chunked, whole)
    assert 0 < chunked_gap * 3 <= whole_gap, (chunked_gap, whole_gap)


def test_sampling_params(batched):
    assert SamplingParams.greedy(max_tokens=5).to_dict() == {"temperature": 0.0, "max_tokens": 5}
    assert SamplingParams.creative().temperature == 1.0 and SamplingParams.balanced(top_p=0.5).top_p == 0.5
    with pytest.raises(InvalidParameterError):
        SamplingParams(temperature=-1)
    a = batched.generate(PROMPTS[1], sampling_params=SamplingParams(temperature=1.0, seed=3, max_tokens=7))
    b = batched.generate(PROMPTS[1], temperature=1.0, seed=3, max_tokens=7)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 7
    c = batched.generate(PROMPTS[1], sampling_params=SamplingParams.greedy(max_tokens=7), max_tokens=3)
    assert len(c.token_ids) == 3  # an explicit argument wins
    assert batched.generate(PROMPTS[1], sampling_params={"max_tokens": 2}).usage.completion_tokens == 2


def test_generate_batch_keeps_the_order(batched):
    expected = [batched.generate(p).content for p in PROMPTS[:5]]

    async def main():
        return await batched.generate_batch(PROMPTS[:4] + [{"prompt": PROMPTS[4]}], batch_size=2)

    assert [r.content for r in asyncio.run(main())] == expected
    with pytest.raises(InvalidParameterError):
        asyncio.run(batched.generate_batch(PROMPTS, batch_size=0))
    with pytest.raises(InvalidParameterError):
        batched.generate(PROMPTS[:2], stream=True)


def test_stats_and_model_info(tiny_model):
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=5) as llm:
        assert llm.get_stats()["requests_served"] == 0
        llm.generate(PROMPTS[:3])
        stream = llm.generate(PROMPTS[3], max_tokens=100, stream=True)
        next(stream)
        stream.close()
        llm.generate(PROMPTS[0])  # a prompt-cache hit
        s = llm.get_stats()
        assert s["requests_served"] == 4 and s["requests_cancelled"] == 1 and s["requests_failed"] == 0
        assert s["total_tokens_generated"] >= 20 and s["tokens_per_second"] > 0 and s["average_ttft"] > 0
        assert s["average_response_time"] > 0 and 0 < s["cache_hit_rate"] <= 1
        assert s["queue_length"] == 0 and s["active_requests"] == 0 and s["average_batch_size"] >= 1
        assert s["memory_usage"]["allocated"] > 0 and s["memory_usage"]["peak"] >= s["memory_usage"]["allocated"]
        with pytest.raises(InvalidParameterError):
            llm.generate(PROMPTS[0], temperature=-2)
        llm.clear_stats()
        assert llm.get_stats()["requests_served"] == 0
        info = llm.get_model_info()
        for key in ("model_name", "device", "dtype", "quantization", "architecture", "max_seq_length",
                    "vocab_size", "num_parameters", "capabilities"):
            assert key in info, key
        assert info["architecture"] == "Qwen3ForCausalLM" and info["dtype"] == "float32"
        assert info["num_parameters"] > 0 and info["max_seq_length"] == 40960 and info["vocab_size"] > 0
        assert "parallel_inference" in info["capabilities"]
        llm.shutdown()
        assert llm._closed


def test_min_tokens_stop_token_ids_and_logprobs(tiny_model, batched):
    model, tok = raw_load(tiny_model)
    eos = list(tok.eos_token_ids)[0]
    ended = batched.generate(PROMPTS[0], logit_bias={eos: 100})  # end of sequence at once
    assert ended.usage.completion_tokens == 1 and ended.finish_reason == "stop"
    held = batched.generate(PROMPTS[0], logit_bias={eos: 100}, min_tokens=5)
    assert held.usage.completion_tokens == 6 and held.finish_reason == "stop" and held.token_ids[-1] == eos

    full = batched.generate(PROMPTS[1])
    stop_at = full.token_ids[5]
    cut = batched.generate(PROMPTS[1], stop_token_ids=[stop_at])
    first = full.token_ids.index(stop_at)
    assert cut.finish_reason == "stop" and cut.token_ids == full.token_ids[: first + 1]

    r = batched.generate(PROMPTS[1], logprobs=True, top_logprobs=3, max_tokens=8)
    ids = raw_prompt_ids(tiny_model, chat(PROMPTS[1]))
    import mlx.core as mx
    from mlx_lm import stream_generate

    raw = [float(x.logprobs[x.token].item()) for x in stream_generate(model, tok, mx.array(ids), max_tokens=8)]
    assert len(r.logprobs) == r.usage.completion_tokens == 8
    for entry, raw_lp, token in zip(r.logprobs, raw, r.token_ids):
        assert entry["token"] == token and abs(entry["logprob"] - raw_lp) < 1e-4
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and abs(tops[0] - entry["logprob"]) < 1e-5
    with pytest.raises(InvalidParameterError, match="needs logprobs"):
        batched.generate(PROMPTS[1], top_logprobs=2)
    with pytest.raises(InvalidParameterError):
        batched.generate(PROMPTS[1], stop_token_ids=[10**9])


def test_min_tokens_on_a_vision_model(vision_model):
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=12).load() as vlm:
        eos = vlm.worker.call(lambda: vlm._adapter.eos_ids)[0]
        assert vlm.generate("Hi", logit_bias={eos: 100}).usage.completion_tokens == 1
        held = vlm.generate("Hi", logit_bias={eos: 100}, min_tokens=5)
        assert held.usage.completion_tokens == 6 and held.token_ids[-1] == eos and held.finish_reason == "stop"


def test_vision_conveniences(vision_model, tmp_path):
    from abstractllm.testing.media import png_bytes, write_video

    pytest.importorskip("av")
    img = tmp_path / "red.png"
    img.write_bytes(png_bytes(32, 32))
    clip = write_video(tmp_path / "clip.mp4")
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=5) as vlm:
        assert vlm.describe_image(str(img)) == vlm.generate("Describe this image in detail.", files=[str(img)]).content
        assert vlm.answer_about_image(str(img), "What colour?") == vlm.generate("What colour?", files=[str(img)]).content
        assert vlm.describe_video(str(clip), fps=4.0, max_frames=4) == vlm.generate(
            "Describe what happens in this video.", files=[str(clip)], video_fps=4.0, video_max_frames=4).content
        # vision requests are served one at a time by the same engine: the same answers when concurrent
        alone = [vlm.generate(p, files=[str(img)]).token_ids for p in PROMPTS[:3]]
        assert [r.token_ids for r in vlm.generate(PROMPTS[:3], files=[str(img)])] == alone


def test_logprobs_on_a_vision_model(vision_model):
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=5) as vlm:
        r = vlm.generate("Hello", logprobs=True, top_logprobs=2)
    assert len(r.logprobs) == r.usage.completion_tokens == 5
    assert all(e["logprob"] <= 0 and len(e["top_logprobs"]) == 2 for e in r.logprobs)
    assert [e["token"] for e in r.logprobs] == r.token_ids
