"""The provider contract, built once on top of one streaming primitive.

A provider subclasses ``BaseProvider`` and implements ``_stream(request, cancel)``: a generator of
``Response`` chunks (``content`` = new text; the last chunk carries ``finish_reason``, ``usage`` and the
timings). It runs on the provider's own worker thread. Everything else is here, once:

- ``generate(stream=False)`` consumes the stream and aggregates it into one ``Response``;
- ``generate(stream=True)`` returns the chunks as they come;
- ``generate_async`` awaits the same stream from an event loop without blocking it (``stream=True``:
  an async iterator); cancelling the task or closing the iterator stops the generation.

Before any work, ``_prepare`` validates the per-call parameters, normalizes the messages and checks the
declared capabilities (images need ``VISION``, videos need ``VIDEO``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Callable, ClassVar, Iterable, Iterator, Sequence

from ..enums import ModelCapability, ModelParameter
from ..exceptions import AbstractLLMError, UnsupportedFeatureError
from ..messages import normalize_messages
from ..params import GENERATION_PARAMS, defaults, validate_params
from ..types import GenerationRequest, Response, Usage
from .worker import CancelToken, ChunkStream, ResponseStream, SerialWorker

__all__ = ["BaseProvider", "aggregate_chunks"]


def aggregate_chunks(chunks: Iterable[Response]) -> Response:
    """Fold stream chunks into one ``Response``: texts and token ids joined, the last chunk's totals."""
    texts: list[str] = []
    ids: list[int] = []
    last: Response | None = None
    for chunk in chunks:
        texts.append(chunk.content)
        ids.extend(chunk.token_ids)
        last = chunk
    if last is None:
        return Response(content="", finish_reason="stop", usage=Usage())
    return Response(
        content="".join(texts),
        model=last.model,
        finish_reason=last.finish_reason,
        usage=last.usage,
        ttft_s=last.ttft_s,
        total_s=last.total_s,
        tokens_per_second=last.tokens_per_second,
        prompt_tokens_per_second=last.prompt_tokens_per_second,
        peak_memory_bytes=last.peak_memory_bytes,
        token_ids=ids,
        metadata=dict(last.metadata),
    )


class BaseProvider(ABC):
    """Base of every provider. Subclasses declare ``name``, ``accepted_config`` and implement
    ``get_capabilities`` and ``_stream``."""

    name: ClassVar[str] = "base"
    #: configuration keys ``create_llm`` accepts for this provider (generation params included)
    accepted_config: ClassVar[frozenset[str]] = frozenset({str(ModelParameter.MODEL)}) | GENERATION_PARAMS

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = validate_params(config, self.accepted_config, where=f"{self.name} config")
        accepted_generation = sorted(GENERATION_PARAMS & self.accepted_config)
        self._generation_defaults = defaults(accepted_generation)
        self._generation_defaults.update({k: v for k, v in self.config.items() if k in GENERATION_PARAMS})
        self._worker: SerialWorker | None = None
        self._closed = False
        self._worker_lock = threading.Lock()

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def get_capabilities(self) -> frozenset[ModelCapability]:
        """What this provider can do with its configured model."""

    @abstractmethod
    def _stream(self, request: GenerationRequest, cancel: CancelToken) -> Iterator[Response]:
        """The one primitive: yield ``Response`` chunks; stop early when ``cancel.cancelled``."""

    def _worker_on_exit(self) -> Callable[[], None] | None:
        """A function the worker thread runs as it stops (MLX: ``mx.clear_streams``). It must not hold a
        reference to the provider, so that an unclosed provider can still be garbage-collected."""
        return None

    def get_model_info(self) -> dict[str, Any]:
        """What is known about the configured model."""
        return {"provider": self.name, "model": self.config.get("model")}

    # ----------------------------------------------------------------- plumbing
    @property
    def worker(self) -> SerialWorker:
        """The thread all of this provider's backend work runs on (created on first use)."""
        with self._worker_lock:
            if self._closed:
                raise AbstractLLMError(f"This {self.name} provider is closed; create a new one with create_llm().")
            if self._worker is None:
                self._worker = SerialWorker(f"abstractllm-{self.name}", on_exit=self._worker_on_exit())
                # A provider dropped without close() still stops its thread (and frees its model) when
                # collected; its streams still running are cancelled first.
                weakref.finalize(self, self._worker.close)
            return self._worker

    def _prepare(
        self,
        prompt: str | None,
        system_prompt: str | None,
        files: Sequence[Any] | None,
        messages: Sequence[Any] | None,
        params: dict[str, Any],
    ) -> GenerationRequest:
        accepted = GENERATION_PARAMS & self.accepted_config
        call_params = validate_params(params, accepted, where="generation")
        merged = {**self._generation_defaults, **call_params}
        convo = normalize_messages(prompt, system_prompt=system_prompt, files=files, messages=messages)
        request = GenerationRequest(messages=convo, params=merged)
        self._check_capabilities(request)
        return request

    def _check_capabilities(self, request: GenerationRequest) -> None:
        caps = self.get_capabilities()
        model = self.config.get("model")
        if request.has_images and ModelCapability.VISION not in caps:
            raise UnsupportedFeatureError(
                f"Model {model!r} is a text-only model: it cannot take images. Use a vision model "
                "(its config.json has a vision_config), or drop the images."
            )
        if request.has_videos and ModelCapability.VIDEO not in caps:
            raise UnsupportedFeatureError(
                f"Model {model!r} cannot take video input. Use a vision model whose family supports video "
                "(e.g. Qwen2-VL), or pass frames as images."
            )
        if any(m.role == "system" for m in request.messages) and ModelCapability.SYSTEM_PROMPT not in caps:
            raise UnsupportedFeatureError(f"The {self.name} provider does not support system prompts.")

    def _open_stream(self, request: GenerationRequest) -> ChunkStream:
        return ChunkStream(self.worker, lambda cancel: self._stream(request, cancel))

    # ----------------------------------------------------------------- public API
    def generate(
        self,
        prompt: str | None = None,
        *,
        system_prompt: str | None = None,
        files: Sequence[Any] | None = None,
        messages: Sequence[Any] | None = None,
        stream: bool = False,
        **params: Any,
    ) -> Response | Iterator[Response]:
        """Generate a reply.

        Args:
            prompt: the user's text (appended after ``messages``).
            system_prompt: a system instruction, placed first.
            files: images or videos for the last user message (paths, URLs, bytes, PIL images, arrays).
            messages: OpenAI-style chat messages (``role``, ``content`` as text or parts).
            stream: return a ``ResponseStream`` (an iterator of ``Response`` chunks, with ``cancel()``)
                instead of one ``Response``.
            **params: per-call generation parameters (``max_tokens``, ``temperature``, ``stop``, ...)
                that override the provider's configuration.
        """
        request = self._prepare(prompt, system_prompt, files, messages, params)
        chunks = self._open_stream(request)
        if stream:
            return ResponseStream(chunks)
        return aggregate_chunks(chunks)

    async def generate_async(
        self,
        prompt: str | None = None,
        *,
        system_prompt: str | None = None,
        files: Sequence[Any] | None = None,
        messages: Sequence[Any] | None = None,
        stream: bool = False,
        **params: Any,
    ) -> Response | AsyncIterator[Response]:
        """Like ``generate``, awaited: the event loop is never blocked. With ``stream=True`` the awaited
        value is an async iterator of chunks (``async for chunk in await llm.generate_async(..., stream=True)``)."""
        # Off the loop: the first call resolves and inspects the model (imports the backend, may download).
        request = await asyncio.to_thread(self._prepare, prompt, system_prompt, files, messages, params)
        chunks = self._open_stream(request)
        if stream:
            return chunks.aiter()
        texts: list[Response] = []
        agen = chunks.aiter()
        try:
            async for chunk in agen:
                texts.append(chunk)
        finally:
            await agen.aclose()
        return aggregate_chunks(texts)

    def close(self) -> None:
        """Cancel running generations, free the model and stop the worker thread. Idempotent; the
        provider cannot be used afterwards (calls raise ``AbstractLLMError``)."""
        with self._worker_lock:
            if self._closed:
                return
            self._closed = True  # from now on new calls fail with a typed error
            worker = self._worker
        if worker is None:
            return
        worker.cancel_all()  # generations still running or queued stop at their next token
        try:
            self._release()
        finally:
            worker.close()

    def _release(self) -> None:
        """Free backend resources (runs before the worker stops). Override in providers that load models."""

    def __enter__(self) -> "BaseProvider":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "BaseProvider":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.close)  # close waits for the worker: never on the event loop

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.config.get('model')!r}>"
