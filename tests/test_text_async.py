"""Async use of the MLX text provider: generate_async and async streaming equal the sync results, the
event loop never blocks during a generation, cancelling (task cancel, closing the async iterator,
breaking a sync stream) stops the generation within a few tokens and leaves the provider usable, and
concurrent calls (threads, asyncio.gather) are safe and each equals its sequential result."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "def generate(prompt: str) -> str:",
    "Привет, как дела?",
]
LONG = 20_000  # tokens: minutes of work on the tiny model if it were not stopped


def _seq(llm, **kw):
    return [llm.generate(p, max_tokens=16, **kw) for p in PROMPTS]


def test_generate_async_and_async_stream_equal_sync(tiny_llm):
    sync = _seq(tiny_llm)

    async def main():
        out = []
        for p in PROMPTS:
            r = await tiny_llm.generate_async(p, max_tokens=16)
            chunks = [c async for c in await tiny_llm.generate_async(p, max_tokens=16, stream=True)]
            out.append((r, chunks))
        return out

    for s, (r, chunks) in zip(sync, asyncio.run(main())):
        assert r.content == s.content and r.token_ids == s.token_ids and r.finish_reason == s.finish_reason
        assert "".join(c.content for c in chunks) == s.content
        assert [t for c in chunks for t in c.token_ids] == s.token_ids
        assert chunks[-1].usage.completion_tokens == s.usage.completion_tokens == 16


def _rate(llm) -> float:
    r = llm.generate(PROMPTS[0], max_tokens=200)
    return r.usage.completion_tokens / r.total_s


def test_event_loop_never_blocks_during_generation(tiny_llm):
    n = max(200, int(_rate(tiny_llm) * 0.6))  # about half a second of decoding per call

    async def main():
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker():
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - t - 0.005)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        r = await tiny_llm.generate_async(PROMPTS[1], max_tokens=n)
        chunks = 0
        async for _ in await tiny_llm.generate_async(PROMPTS[2], max_tokens=n, stream=True):
            chunks += 1
        elapsed = time.perf_counter() - t0
        done.set()
        await tick
        return r, chunks, elapsed, lags

    r, chunks, elapsed, lags = asyncio.run(main())
    assert r.usage.completion_tokens == n and chunks > 10
    assert len(lags) >= elapsed / 0.05  # the ticker kept running all along
    print(f"event loop lag max {max(lags) * 1000:.1f} ms over {len(lags)} ticks, {n} tokens x2")
    assert max(lags) < 0.05, f"event loop lag {max(lags) * 1000:.1f} ms"


def _prompt_completes_quickly(llm, limit: float = 2.0) -> float:
    t = time.perf_counter()
    r = llm.generate(PROMPTS[3], max_tokens=4)
    took = time.perf_counter() - t
    assert r.usage.completion_tokens == 4
    assert took < limit, f"the next call waited {took:.2f} s: the cancelled generation kept running"
    return took


def test_closing_async_iterator_stops_generation(tiny_llm):
    rate = _rate(tiny_llm)
    assert LONG / rate > 10  # the uncancelled generation would take far longer than the checks below
    reference = tiny_llm.generate(PROMPTS[0], max_tokens=8)

    async def main():
        stream = await tiny_llm.generate_async(PROMPTS[0], max_tokens=LONG, stream=True)
        got = []
        async for chunk in stream:
            got.append(chunk)
            if len(got) == 3:
                break
        await stream.aclose()
        return got

    got = asyncio.run(main())
    assert len(got) == 3
    took = _prompt_completes_quickly(tiny_llm)
    assert took * rate < 500  # at most a few hundred token-times, not 20,000
    assert tiny_llm.generate(PROMPTS[0], max_tokens=8).token_ids == reference.token_ids


def test_cancelling_the_awaiting_task_stops_generation(tiny_llm):
    reference = tiny_llm.generate(PROMPTS[1], max_tokens=8)

    async def main():
        task = asyncio.create_task(tiny_llm.generate_async(PROMPTS[1], max_tokens=LONG))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the provider serves the next call promptly, from inside the same loop
        t = time.perf_counter()
        r = await tiny_llm.generate_async(PROMPTS[1], max_tokens=8)
        return r, time.perf_counter() - t

    r, took = asyncio.run(main())
    assert took < 2.0
    assert r.token_ids == reference.token_ids
    _prompt_completes_quickly(tiny_llm)


def test_breaking_a_sync_stream_stops_generation(tiny_llm):
    stream = tiny_llm.generate(PROMPTS[2], max_tokens=LONG, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    _prompt_completes_quickly(tiny_llm)


def test_concurrent_threads_each_equal_sequential(tiny_llm):
    expected = [r.token_ids for r in _seq(tiny_llm)]
    seeded = [r.token_ids for r in _seq(tiny_llm, temperature=1.0, seed=5)]
    results: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def work(i: int, rep: int) -> None:
        try:
            if rep % 2:
                chunks = list(tiny_llm.generate(PROMPTS[i], max_tokens=16, stream=True))
                results[(i, rep)] = [t for c in chunks for t in c.token_ids]
            else:
                results[(i, rep)] = tiny_llm.generate(PROMPTS[i], max_tokens=16, temperature=1.0, seed=5).token_ids
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, rep)) for rep in range(3) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for (i, rep), ids in results.items():
        assert ids == (expected[i] if rep % 2 else seeded[i]), (i, rep)
    assert len(results) == 12


def test_asyncio_gather_each_equal_sequential(tiny_llm):
    expected = [r.token_ids for r in _seq(tiny_llm)]

    async def streamed(p):
        return [t async for c in await tiny_llm.generate_async(p, max_tokens=16, stream=True) for t in c.token_ids]

    async def main():
        plain = [tiny_llm.generate_async(p, max_tokens=16) for p in PROMPTS]
        streams = [streamed(p) for p in PROMPTS]
        return await asyncio.gather(*plain, *streams)

    out = asyncio.run(main())
    assert [r.token_ids for r in out[:4]] == expected
    assert out[4:] == expected


def test_async_context_manager_closes(tiny_model):
    from abstractllm import AbstractLLMError, create_llm

    async def main():
        async with create_llm("mlx", model=str(tiny_model), temperature=0.0) as llm:
            r = await llm.generate_async(PROMPTS[0], max_tokens=4)
        return llm, r

    llm, r = asyncio.run(main())
    assert r.usage.completion_tokens == 4
    with pytest.raises(AbstractLLMError):
        llm.generate(PROMPTS[0], max_tokens=2)


def test_abandoned_sync_stream_stops_generation(tiny_llm):
    import gc

    stream = tiny_llm.generate(PROMPTS[0], max_tokens=LONG, stream=True)
    next(stream)
    next(stream)
    del stream  # dropped without close(): the generator's finally cancels the work
    gc.collect()
    _prompt_completes_quickly(tiny_llm)


def test_wait_for_timeout_cancels(tiny_llm):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(tiny_llm.generate_async(PROMPTS[2], max_tokens=LONG), timeout=0.2)
        t = time.perf_counter()
        await tiny_llm.generate_async(PROMPTS[2], max_tokens=4)
        return time.perf_counter() - t

    assert asyncio.run(main()) < 2.0


def test_two_providers_in_parallel_keep_their_own_seeds(tiny_model, llama_model):
    """Each provider has its own worker thread (MLX random state is per thread): seeded sampling on two
    models at once equals each one alone."""
    from abstractllm import create_llm

    a = create_llm("mlx", model=str(tiny_model), temperature=1.0, max_tokens=150)
    b = create_llm("mlx", model=str(llama_model), temperature=1.0, max_tokens=150)
    try:
        alone = (a.generate(PROMPTS[1], seed=1).token_ids, b.generate(PROMPTS[1], seed=2).token_ids)

        async def both():
            return await asyncio.gather(a.generate_async(PROMPTS[1], seed=1), b.generate_async(PROMPTS[1], seed=2))

        for _ in range(2):
            ra, rb = asyncio.run(both())
            assert (ra.token_ids, rb.token_ids) == alone
        assert a.worker.thread is not b.worker.thread
    finally:
        a.close()
        b.close()
