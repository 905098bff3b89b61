"""The base class builds sync, streaming, async and async-streaming generation once, over the one
``_stream`` primitive a provider implements. A provider written here is used for this layering test only;
the MLX provider is tested on real MLX execution elsewhere."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from abstractllm import InvalidParameterError, ModelCapability, Response, UnsupportedFeatureError, Usage
from abstractllm.providers.base import BaseProvider


class CountingProvider(BaseProvider):
    """Streams the words of the last user message, one chunk per word, slowly enough to cancel."""

    name = "counting"

    def __init__(self, **config):
        super().__init__(**config)
        self.calls = 0
        self.threads: set[str] = set()
        self.produced = 0
        self.stopped = threading.Event()
        self.delay = 0.0  # seconds per word, to leave time for cancellation

    def get_capabilities(self):
        return frozenset({ModelCapability.TEXT, ModelCapability.STREAMING, ModelCapability.SYSTEM_PROMPT})

    def _stream(self, request, cancel):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        words = request.messages[-1].text.split()
        n = 0
        try:
            for word in words[: request.params["max_tokens"]]:
                if cancel.cancelled:
                    break
                self.produced += 1
                n += 1
                yield Response(content=word + " ", token_ids=[n])
                time.sleep(self.delay)
            yield Response(finish_reason="length" if n < len(words) else "stop",
                           usage=Usage(len(words), n, len(words) + n, 0), ttft_s=0.0)
        finally:
            self.stopped.set()


@pytest.fixture()
def provider():
    p = CountingProvider(model="m", max_tokens=50)
    yield p
    p.close()


def test_generate_aggregates_the_stream(provider):
    r = provider.generate("one two three")
    assert r.content == "one two three "
    assert r.finish_reason == "stop" and r.usage.completion_tokens == 3 and r.token_ids == [1, 2, 3]
    chunks = list(provider.generate("one two three", stream=True))
    assert "".join(c.content for c in chunks) == r.content
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 3
    assert provider.calls == 2


def test_all_work_runs_on_one_worker_thread(provider):
    provider.generate("a b")
    list(provider.generate("a b", stream=True))
    asyncio.run(provider.generate_async("a b"))
    assert provider.threads == {"abstractllm-counting"}


def test_per_call_params_override_config(provider):
    assert provider.generate("a b c d", max_tokens=2).content == "a b "
    assert provider.generate("a b c d").content == "a b c d "


def test_async_and_async_stream_equal_sync(provider):
    async def main():
        full = await provider.generate_async("x y z")
        stream = await provider.generate_async("x y z", stream=True)
        parts = [c.content async for c in stream]
        return full, parts

    full, parts = asyncio.run(main())
    assert full.content == "x y z " == "".join(parts)


def test_breaking_out_of_a_sync_stream_cancels(provider):
    provider.delay = 0.005
    words = " ".join(f"w{i}" for i in range(200))
    for i, _ in enumerate(provider.generate(words, max_tokens=200, stream=True)):
        if i == 2:
            break
    assert provider.stopped.wait(30)
    assert provider.produced < 10
    assert provider.generate("still works").content == "still works "


def test_cancelling_an_async_task_stops_the_producer(provider):
    provider.delay = 0.01
    words = " ".join(f"w{i}" for i in range(500))

    async def main():
        task = asyncio.create_task(provider.generate_async(words, max_tokens=500))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert provider.stopped.wait(30)
    assert provider.produced < 60
    provider.delay = 0.0
    assert provider.generate("ok then").content == "ok then "


def test_closing_an_async_stream_stops_the_producer(provider):
    provider.delay = 0.01
    words = " ".join(f"w{i}" for i in range(500))

    async def main():
        stream = await provider.generate_async(words, max_tokens=500, stream=True)
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(main())
    assert provider.stopped.wait(30)
    assert provider.produced < 10


def test_errors_in_the_primitive_reach_the_caller_and_provider_survives():
    class Failing(CountingProvider):
        def _stream(self, request, cancel):
            if "boom" in request.messages[-1].text:
                raise RuntimeError("backend exploded")
            yield from super()._stream(request, cancel)

    p = Failing(model="m", max_tokens=5)
    with pytest.raises(RuntimeError, match="exploded"):
        p.generate("boom")
    with pytest.raises(RuntimeError, match="exploded"):
        asyncio.run(p.generate_async("boom"))
    assert p.generate("fine").content == "fine "
    p.close()


def test_capabilities_are_checked_before_any_work(provider):
    with pytest.raises(UnsupportedFeatureError):
        provider.generate("describe", files=["/nonexistent/picture.png"])
    with pytest.raises(UnsupportedFeatureError):
        provider.generate(messages=[{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}])
    assert provider.calls == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"prompt": 5},
        {"messages": "hello"},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
        {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
        {"messages": [{"role": "assistant", "content": "only an assistant"}]},
        {"system_prompt": 3, "prompt": "x"},
        {"prompt": "x", "max_tokens": -1},
        {"prompt": "x", "quantize": 4},  # load-time config is not a per-call parameter
        {"prompt": "x", "max_tokns": 5},
    ],
)
def test_bad_requests_are_invalid_parameter_errors(provider, kwargs):
    with pytest.raises(InvalidParameterError):
        provider.generate(**kwargs)
    assert provider.calls == 0


def test_system_prompt_and_messages_are_normalized(provider):
    from abstractllm.messages import normalize_messages

    msgs = normalize_messages(
        "last", system_prompt="sys", files=["a.png"],
        messages=[{"role": "system", "content": "first"}, {"role": "user", "content": [
            {"type": "text", "text": "t1"}, {"type": "image_url", "image_url": {"url": "u1"}}]},
            {"role": "assistant", "content": "a1"}],
    )
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0].text == "sys\n\nfirst"
    assert msgs[1].images == ["u1"] and msgs[3].images == ["a.png"] and msgs[3].text == "last"


def test_closed_provider_refuses_work(provider):
    from abstractllm import AbstractLLMError

    provider.generate("a")
    provider.close()
    with pytest.raises(AbstractLLMError, match="closed"):
        provider.generate("a")


def test_context_managers():
    with CountingProvider(model="m") as p:
        assert p.generate("a").content == "a "
    assert p._closed

    async def main():
        async with CountingProvider(model="m") as q:
            return (await q.generate_async("b")).content, q

    content, q = asyncio.run(main())
    assert content == "b " and q._closed


def test_an_unclosed_provider_is_collected_and_its_thread_stops():
    import gc
    import weakref

    p = CountingProvider(model="m")
    assert p.generate("a b").content == "a b "
    thread = p.worker.thread
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive()
