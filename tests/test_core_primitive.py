"""One generation primitive per provider: a provider that implements only ``_chunks`` (chunks read by a sync
or an async reader, as MLX's engine channel and the remote providers' exchange are) gets ``generate``,
streaming, ``generate_async``, async streaming and ``n`` choices from the base class; ``_on_last`` is applied
once per reply; ``aggregate_chunks`` is the fold of ``abstractllm.types``. The provider written here serves
these layering tests only; the real providers run on MLX and through the servers elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from abstractllm import ModelCapability, Response, Usage
from abstractllm.providers.base import BaseProvider

C = ModelCapability


class _Words:
    """The words of a prompt as chunks (or, ``whole``, as one chunk), for a sync or an async reader."""

    def __init__(self, words: list[str], cancel, whole: bool) -> None:
        self.words, self.cancel, self.whole = words, cancel, whole

    def _chunks(self):
        if self.whole:
            yield Response(content=" ".join(self.words), finish_reason="stop", usage=Usage(1, len(self.words)))
            return
        for word in self.words:
            if self.cancel.cancelled:
                break
            yield Response(content=word + " ", token_ids=[len(word)])
        yield Response(finish_reason="cancelled" if self.cancel.cancelled else "stop", usage=Usage(1, len(self.words)))

    def __iter__(self):
        return self._chunks()

    async def __aiter__(self):
        for chunk in self._chunks():
            await asyncio.sleep(0)
            yield chunk


class ChunksProvider(BaseProvider):
    """Implements the primitive alone; records how it was opened and each ``_on_last`` application."""

    name = "chunks-only"

    def __init__(self, **config):
        super().__init__(**config)
        self.opened: list[tuple[bool, bool]] = []  # (async reader, whole) per opening
        self.finished: list[str] = []  # the text _on_last was given, once per reply

    def get_capabilities(self):
        return frozenset({C.TEXT, C.STREAMING, C.ASYNC, C.SEED})

    def _chunks(self, request, cancel, *, loop=None, whole=False):
        self.opened.append((loop is not None, whole))
        return _Words(request.messages[-1].text.split(), cancel, whole)

    def _on_last(self, request):
        finish = super()._on_last(request)

        def counted(chunk: Response, text: str) -> None:
            self.finished.append(text)
            finish(chunk, text)

        return counted


@pytest.fixture()
def llm():
    p = ChunksProvider(model="m")
    yield p
    p.close()


def test_every_path_reads_the_one_primitive(llm):
    assert llm.generate("a b c").content == "a b c"
    assert llm.opened == [(False, True)] and llm.finished == ["a b c"]
    chunks = list(llm.generate("a b", stream=True))
    assert [c.content for c in chunks] == ["a ", "b ", ""] and chunks[-1].finish_reason == "stop"
    assert llm.opened[-1] == (False, False) and llm.finished[-1] == "a b "

    async def main():
        whole = await llm.generate_async("x y")
        stream = await llm.generate_async("p q", stream=True)
        parts = [c.content async for c in stream]
        return whole, parts

    whole, parts = asyncio.run(main())
    assert whole.content == "x y" and parts == ["p ", "q ", ""]
    assert llm.opened[-2:] == [(True, True), (True, False)]
    assert llm.finished[-2:] == ["x y", "p q "]
    assert llm._worker is None  # a provider of _chunks alone needs no worker thread


def test_on_last_is_applied_once_per_reply(llm):
    cases = [
        lambda: llm.generate("one two"),
        lambda: list(llm.generate("one two", stream=True)),
        lambda: asyncio.run(llm.generate_async("one two")),
        lambda: llm.generate("one two", n=2, seed=1),
        lambda: asyncio.run(llm.generate_async("one two", n=2, seed=1)),
        lambda: llm.generate(["one", "two"]),
    ]
    for run, replies in zip(cases, [1, 1, 1, 2, 2, 2]):
        llm.finished.clear()
        run()
        assert len(llm.finished) == replies


def test_n_choices_open_every_request_and_fold_each(llm):
    replies = llm.generate("u v", n=3, seed=5)
    assert [r.content for r in replies] == ["u v "] * 3 and all(r.finish_reason == "stop" for r in replies)
    assert llm.opened == [(False, False)] * 3
    replies = asyncio.run(llm.generate_async("u v", n=2, seed=5))
    assert [r.content for r in replies] == ["u v"] * 2 and llm.opened[3:] == [(True, True)] * 2


def test_cancelling_reaches_the_primitive(llm):
    stream = llm.generate("a b c d e f", stream=True)
    first = next(stream)
    stream.cancel()
    rest = list(stream)
    assert first.content == "a " and rest[-1].finish_reason == "cancelled" and len(rest) == 1


def test_the_builtin_providers_implement_only_the_primitive():
    from abstractllm.providers.anthropic import AnthropicProvider
    from abstractllm.providers.mlx.provider import MLXProvider
    from abstractllm.providers.openai import LMStudioProvider, OllamaProvider, OpenAIProvider

    shells = {"_stream", "_astream", "_open_stream", "_aopen_stream", "_complete", "_acomplete", "generate",
              "generate_async"}
    for cls in (MLXProvider, OpenAIProvider, OllamaProvider, LMStudioProvider, AnthropicProvider):
        own = {name for k in cls.__mro__[: cls.__mro__.index(BaseProvider)] for name in vars(k)}
        assert "_chunks" in own and not own & shells, cls


def test_aggregate_chunks_is_the_types_fold():
    from abstractllm.providers.base import aggregate_chunks as from_base
    from abstractllm.types import aggregate_chunks

    assert from_base is aggregate_chunks
    chunks = [Response(content="a", reasoning="r1", token_ids=[1]), Response(content="b", token_ids=[2]),
              Response(content="", reasoning="r2", finish_reason="length", usage=Usage(3, 2), metadata={"k": 1})]
    whole = aggregate_chunks(chunks)
    assert (whole.content, whole.reasoning, whole.token_ids, whole.finish_reason) == ("ab", "r1r2", [1, 2], "length")
    assert whole.usage == Usage(3, 2) and whole.metadata == {"k": 1} and whole.metadata is not chunks[-1].metadata
    assert [c.content for c in chunks] == ["a", "b", ""] and chunks[0].token_ids == [1]  # unchanged
    empty = aggregate_chunks([])
    assert empty.content == "" and empty.finish_reason == "stop"
