"""The provider contract, built once on top of one streaming primitive.

A provider subclasses ``BaseProvider`` and implements ``get_capabilities()`` and ``_stream(request,
cancel)``: a generator of ``Response`` chunks (``content`` = new text; the last chunk carries
``finish_reason``, ``usage`` and the timings). By default it runs on the provider's own worker thread
(MLX needs that); a provider whose primitive can run on the caller's thread (an HTTP client) sets
``runs_on_worker = False`` and may add a native ``_astream`` (async generator) and non-streaming
``_complete`` / ``_acomplete``. Everything else is here, once:

- ``generate(stream=False)`` consumes the stream and aggregates it into one ``Response``;
- ``generate(stream=True)`` returns a ``ResponseStream`` of the chunks as they come;
- ``generate_async`` awaits the same from an event loop without blocking it (``stream=True``: an
  ``AsyncResponseStream``); cancelling the task or closing the iterator stops the generation.

Before any work, ``_prepare`` validates the per-call parameters (``abstractllm.params``, after the 1.x
spellings of ``abstractllm.compat``), normalizes the messages and checks the declared capabilities: a
capability the provider does not declare raises ``UnsupportedFeatureError`` before anything is sent.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, AsyncIterator, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from ..compat import call_files, call_model, merge_key_aliases, with_default_model
from ..enums import ModelCapability, ModelParameter
from ..exceptions import AbstractLLMError, InvalidParameterError, UnsupportedFeatureError
from ..interface import AbstractLLMInterface
from ..messages import normalize_messages
from ..tools import normalize_tool_choice, normalize_tools
from ..params import (CALL_ONLY, GENERATION_PARAMS, defaults,
                      normalize_keys, validate_params)
from ..types import Capabilities, GenerationRequest, Response, Usage
from .serving import ServingMixin
from .stats import RequestStats
from .worker import AsyncResponseStream, CancelToken, ChunkStream, ResponseStream, SerialWorker

__all__ = ["BaseProvider", "aggregate_chunks"]

C = ModelCapability


def aggregate_chunks(chunks: Iterable[Response]) -> Response:
    """Fold stream chunks into one ``Response``: texts and token ids joined, the last chunk's totals."""
    texts: list[str] = []
    thoughts: list[str] | None = None
    ids: list[int] = []
    logprobs: list[dict[str, Any]] | None = None
    last: Response | None = None
    calls: list[Any] | None = None
    for chunk in chunks:
        texts.append(chunk.content)
        if chunk.reasoning is not None:
            thoughts = (thoughts or []) + [chunk.reasoning]
        ids.extend(chunk.token_ids)
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.tool_calls:
            calls = (calls or []) + list(chunk.tool_calls)
        last = chunk
    if last is None:
        return Response(content="", finish_reason="stop", usage=Usage())
    return Response(
        content="".join(texts),
        reasoning=None if thoughts is None else "".join(thoughts),
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
        tool_calls=calls,
        image_paths=last.image_paths,
        logprobs=logprobs,
        parsed=last.parsed,
        raw_response=last.raw_response,
    )


def _image_paths(request: GenerationRequest) -> list[str] | None:
    paths = [os.fspath(i) for m in request.messages for i in m.images if isinstance(i, (str, os.PathLike))]
    return paths or None


class BaseProvider(ServingMixin, AbstractLLMInterface):
    """Base of every provider. Subclasses declare ``name``, ``accepted_config`` (the keys they implement),
    ``ignored_config`` (keys accepted as documented no-ops, so that one application config works on every
    provider) and implement ``get_capabilities`` and ``_stream``."""

    name: ClassVar[str] = "base"
    #: configuration keys this provider implements (generation params included)
    accepted_config: ClassVar[frozenset[str]] = frozenset({str(ModelParameter.MODEL)}) | GENERATION_PARAMS
    #: keys accepted and ignored (documented no-ops), e.g. api_key for a local provider
    ignored_config: ClassVar[frozenset[str]] = frozenset()
    #: False: ``_stream`` runs on the caller's thread (no worker thread), e.g. an HTTP client
    runs_on_worker: ClassVar[bool] = True

    def __init__(self, config: Mapping[Any, Any] | None = None, **kwargs: Any) -> None:
        """``Provider(model=..., temperature=...)`` or, as AbstractLLM 1.x providers took it,
        ``Provider({ModelParameter.MODEL: ..., ...})``."""
        self.config: dict[str, Any] = self._validated_config({**normalize_keys(config or {}), **normalize_keys(kwargs)})
        self._refresh_defaults()
        self._worker: SerialWorker | None = None
        self._closed = False
        self._worker_lock = threading.Lock()
        self._stats = RequestStats()  # what get_stats() reports (a batching provider keeps its own)

    # ----------------------------------------------------------------- to implement
    def get_capabilities(self) -> Capabilities:
        """What this provider can do with its configured model (override)."""
        return Capabilities({C.TEXT, C.STREAMING, C.ASYNC})

    def _stream(self, request: GenerationRequest, cancel: CancelToken) -> Iterator[Response]:
        """The one primitive: yield ``Response`` chunks; stop early when ``cancel.cancelled``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _stream(request, cancel)")

    _astream: Callable[[GenerationRequest, CancelToken], AsyncIterator[Response]] | None = None
    """Optional native async primitive (an async generator function), used by ``generate_async``."""

    def _worker_on_exit(self) -> Callable[[], None] | None:
        """A function the worker thread runs as it stops (MLX: ``mx.clear_streams``). It must not hold a
        reference to the provider, so that an unclosed provider can still be garbage-collected."""
        return None

    def _normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Provider-specific checks and defaults of a validated config (``__init__`` and ``update_config``)."""
        return config

    def _config_changed(self, keys: set[str]) -> None:
        """Called after ``update_config`` changed ``keys`` (e.g. reload the model on the next call)."""

    def get_model_info(self) -> dict[str, Any]:
        """What is known about the configured model."""
        return {"provider": self.name, "model": self.config.get("model")}

    # ----------------------------------------------------------------- configuration
    @property
    def _known_keys(self) -> frozenset[str]:
        return self.accepted_config | self.ignored_config

    def _validated_config(self, raw: dict[str, Any]) -> dict[str, Any]:
        raw = with_default_model(self.name, merge_key_aliases(dict(raw)))
        for name in CALL_ONLY:
            if raw.get(name) is not None:
                raise InvalidParameterError(
                    f"'{name}' is an argument of generate(), not a configuration key: "
                    f"llm.generate(prompt, {name}=...).", param=name)
            raw.pop(name, None)
        return self._normalize_config(validate_params(raw, self._known_keys, where=f"{self.name} config"))

    def _refresh_defaults(self) -> None:
        self._generation_defaults = defaults(sorted(GENERATION_PARAMS & self._known_keys))
        self._generation_defaults.update({k: v for k, v in self.config.items() if k in GENERATION_PARAMS})

    def get_config(self) -> dict[str, Any]:
        """The configuration in effect: the generation defaults, overridden by what was configured."""
        return {**self._generation_defaults, **self.config}

    def update_config(self, config: Mapping[Any, Any]) -> None:
        """Change configuration keys, validated like ``create_llm`` (a bad key or value changes nothing).
        Generation defaults apply to the next call; a changed load-time key (``model``, ``dtype``,
        ``quantize``, ...) makes the next call reload the model."""
        new = self._validated_config({**self.config, **normalize_keys(config)})
        changed = {k for k in set(new) | set(self.config) if new.get(k) != self.config.get(k)}
        self.config = new
        self._refresh_defaults()
        if changed:
            self._config_changed(changed)

    # ----------------------------------------------------------------- plumbing
    @property
    def worker(self) -> SerialWorker:
        """The thread all of this provider's backend work runs on (created on first use)."""
        with self._worker_lock:
            if self._closed:
                raise AbstractLLMError(f"This {self.name} provider is closed; create a new one with create_llm().",
                                       provider=self.name)
            if self._worker is None:
                self._worker = SerialWorker(f"abstractllm-{self.name}", on_exit=self._worker_on_exit())
                # A provider dropped without close() still stops its thread (and frees its model) when
                # collected; its streams still running are cancelled first.
                weakref.finalize(self, self._worker.close)
            return self._worker

    def _check_open(self) -> None:
        if self._closed:
            raise AbstractLLMError(f"This {self.name} provider is closed; create a new one with create_llm().",
                                   provider=self.name)

    def _prepare(
        self,
        prompt: str | None,
        system_prompt: str | None,
        files: Any,
        messages: Sequence[Any] | None,
        params: dict[str, Any],
        tools: Any = None,
        media: Any = None,
    ) -> GenerationRequest:
        self._check_open()
        params = call_model(merge_key_aliases(normalize_keys(params)), self.config.get("model"))
        sampling = params.pop("sampling_params", None)
        if sampling is not None:  # SamplingParams (or a dict of the same keys): explicit arguments win
            base = sampling.to_dict() if hasattr(sampling, "to_dict") else dict(sampling)
            params = {**merge_key_aliases(normalize_keys(base)), **params}
        files = call_files(files, media, params.pop("image", None), params.pop("images", None))
        accepted = GENERATION_PARAMS & self._known_keys
        call_params = validate_params(params, accepted, where="generation")
        merged = {**self._generation_defaults, **call_params}
        if merged.get("top_logprobs") and not merged.get("logprobs"):
            raise InvalidParameterError("top_logprobs needs logprobs=True.", param="top_logprobs")
        convo = normalize_messages(
            prompt, system_prompt=system_prompt, files=files, messages=messages,
            default_system_prompt=self.config.get("system_prompt"),
            max_text_file_bytes=int(merged.get("max_text_file_bytes") or 1_000_000),
        )
        definitions = normalize_tools(tools if tools is not None else self.config.get("tools"))
        merged["tool_choice"] = normalize_tool_choice(merged.get("tool_choice"), definitions)
        request = GenerationRequest(messages=convo, params=merged, tools=definitions or None)
        self._check_capabilities(request)
        return request

    def _require(self, capability: ModelCapability, what: str, caps: Capabilities | None = None) -> None:
        caps = self.get_capabilities() if caps is None else caps
        if capability not in caps:
            raise UnsupportedFeatureError(
                f"The {self.name} provider with model {self.config.get('model')!r} does not support {what} "
                f"(capability {capability.name} is not declared).", provider=self.name, feature=capability)

    def _check_capabilities(self, request: GenerationRequest) -> None:
        caps = self.get_capabilities()
        model = self.config.get("model")
        if request.has_images and C.VISION not in caps:
            raise UnsupportedFeatureError(
                f"Model {model!r} is a text-only model: it cannot take images (capability VISION is not "
                "declared). Use a vision model, or drop the images.", provider=self.name)
        if request.image_count > 1 and C.MULTI_IMAGE not in caps:
            self._require(C.MULTI_IMAGE, "more than one image per request", caps)
        if request.has_videos and C.VIDEO not in caps:
            raise UnsupportedFeatureError(
                f"Model {model!r} cannot take video input. Use a vision model whose family supports video "
                "(e.g. Qwen2-VL), or pass frames as images.", provider=self.name)
        if any(m.role == "system" for m in request.messages):
            self._require(C.SYSTEM_PROMPT, "system prompts", caps)
        if any(m.role == "assistant" for m in request.messages):
            self._require(C.CHAT_HISTORY, "chat history (assistant messages)", caps)
        if request.params.get("stop"):
            self._require(C.STOP_SEQUENCES, "stop sequences", caps)
        if request.params.get("seed") is not None:
            self._require(C.SEED, "seeded sampling", caps)
        if request.tools and request.params.get("tool_choice") != "none":
            self._require(C.FUNCTION_CALLING, "tools (function calling)", caps)
        if request.params.get("response_format") is not None:
            self._require(C.JSON_MODE, "structured output (response_format)", caps)
        if any(m.tool_calls or m.role == "tool" for m in request.messages):
            self._require(C.FUNCTION_CALLING, "tool calls and tool results in the history", caps)

    def _on_last(self, request: GenerationRequest) -> Callable[[Response, str], None]:
        """What is added to the last chunk (or the whole response), given the reply's whole text: the
        request's ``image_paths``, and with ``response_format`` the ``parsed`` reply."""
        paths = _image_paths(request)
        fmt = request.params.get("response_format")

        def finish(chunk: Response, text: str) -> None:
            if chunk.image_paths is None:
                chunk.image_paths = paths
            if fmt is not None and chunk.parsed is None and chunk.finish_reason not in ("length", "cancelled"):
                chunk.parsed = fmt.parse(text)

        return finish

    def _open_stream(self, request: GenerationRequest) -> ResponseStream:
        token = CancelToken()
        if self.runs_on_worker:
            chunks = ChunkStream.on_worker(self.worker, lambda cancel: self._stream(request, cancel), token)
            it: Iterator[Response] = iter(chunks)
        else:
            it = self._stream(request, token)
        return ResponseStream(it, token, provider=self.name, on_last=self._on_last(request))

    def _aopen_stream(self, request: GenerationRequest) -> AsyncResponseStream:
        token = CancelToken()
        if self._astream is not None:
            agen: AsyncIterator[Response] = self._astream(request, token)
        else:
            agen = ChunkStream.on_worker(self.worker, lambda cancel: self._stream(request, cancel), token).aiter()
        return AsyncResponseStream(agen, token, provider=self.name, on_last=self._on_last(request))

    def _complete(self, request: GenerationRequest) -> Response:
        """A whole reply (default: the stream, aggregated)."""
        return aggregate_chunks(self._open_stream(request))

    async def _acomplete(self, request: GenerationRequest) -> Response:
        """A whole reply, awaited (default: the async stream, aggregated)."""
        chunks: list[Response] = []
        stream = self._aopen_stream(request)
        try:
            async for chunk in stream:
                chunks.append(chunk)
        finally:
            await stream.aclose()
        return aggregate_chunks(chunks)

    def _tagged(self, exc: BaseException) -> None:
        if isinstance(exc, AbstractLLMError) and exc.provider is None:
            exc.provider = self.name

    # ----------------------------------------------------------------- public API
    def generate(
        self,
        prompt: str | None = None,
        system_prompt: str | None = None,
        files: Sequence[Any] | Any = None,
        stream: bool = False,
        tools: Sequence[Any] | None = None,
        *,
        messages: Sequence[Any] | None = None,
        media: Sequence[Any] | Any = None,
        **params: Any,
    ) -> Response | ResponseStream:
        """Generate a reply.

        Args (the first five also positionally, in AbstractLLM 1.x's order):
            prompt: the user's text (appended after ``messages``).
            system_prompt: a system instruction, placed first (default: the ``system_prompt`` config key).
            files: images, videos and text files (``.txt .md .csv .tsv .json``, inlined into the prompt)
                for the last user message: paths, URLs, bytes, PIL images, arrays. ``media=`` is an alias.
            stream: return a ``ResponseStream`` (an iterator of ``Response`` chunks, with ``cancel()``)
                instead of one ``Response``.
            tools: tools the model may call (needs the ``FUNCTION_CALLING`` capability).
            messages: OpenAI-style chat messages (``role``, ``content`` as text or parts).
            **params: per-call generation parameters (``max_tokens``, ``temperature``, ``stop``, ...)
                that override the provider's configuration.
        """
        try:
            if isinstance(prompt, (list, tuple)):
                return self._generate_many(list(prompt), system_prompt, files, stream, tools, messages, media, params)
            request = self._prepare(prompt, system_prompt, files, messages, params, tools, media)
            if (request.params.get("n") or 1) > 1:
                return self._complete_all(self._variants(request, stream))
            if stream:
                return self._open_stream(request)
            response = self._complete(request)
            self._on_last(request)(response, response.content)
            return response
        except BaseException as exc:
            self._tagged(exc)
            raise

    def _generate_many(self, prompts: list[Any], system_prompt: Any, files: Any, stream: bool, tools: Any,
                       messages: Any, media: Any, params: dict[str, Any]) -> list[Response]:
        """``generate([p1, p2, ...])``: every request is prepared (a bad one fails the call before any
        work), then all are opened at once, so a batching provider runs them as one batch."""
        if stream:
            raise InvalidParameterError("stream=True takes one prompt; give a list of prompts without stream.",
                                        param="stream")
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise InvalidParameterError("a list of prompts must hold at least one string, and only strings.",
                                        param="prompt")
        requests = [self._prepare(p, system_prompt, files, messages, dict(params), tools, media) for p in prompts]
        if any((r.params.get("n") or 1) > 1 for r in requests):
            raise InvalidParameterError("n above 1 takes one prompt.", param="n")
        return self._complete_all(requests)

    @staticmethod
    def _variants(request: GenerationRequest, stream: bool) -> list[GenerationRequest]:
        """``n`` copies of a request for ``n`` completions: a given seed gives seed, seed + 1, ..."""
        if stream:
            raise InvalidParameterError("stream=True takes n=1 (open several streams for several completions).",
                                        param="n")
        n, seed = request.params["n"], request.params.get("seed")
        return [GenerationRequest(messages=request.messages, tools=request.tools,
                                  params={**request.params, "n": 1, "seed": None if seed is None else seed + i})
                for i in range(n)]

    def _complete_all(self, requests: list[GenerationRequest]) -> list[Response]:
        """Open every request's stream at once (a batching provider runs them together), then collect."""
        streams = [self._open_stream(r) for r in requests]
        try:
            return [aggregate_chunks(s) for s in streams]
        finally:
            for s in streams:
                s.close()

    async def generate_async(
        self,
        prompt: str | None = None,
        system_prompt: str | None = None,
        files: Sequence[Any] | Any = None,
        stream: bool = False,
        tools: Sequence[Any] | None = None,
        *,
        messages: Sequence[Any] | None = None,
        media: Sequence[Any] | Any = None,
        **params: Any,
    ) -> Response | AsyncResponseStream:
        """Like ``generate``, awaited: the event loop is never blocked. With ``stream=True`` the awaited
        value is an ``AsyncResponseStream`` (``async for chunk in await llm.generate_async(..., stream=True)``)."""
        import asyncio

        try:
            # Off the loop: the first call resolves and inspects the model (imports the backend, may download).
            request = await asyncio.to_thread(self._prepare, prompt, system_prompt, files, messages, params, tools,
                                              media)
            if (request.params.get("n") or 1) > 1:
                variants = self._variants(request, stream)
                return list(await asyncio.gather(*(self._acomplete_one(r) for r in variants)))
            if stream:
                return self._aopen_stream(request)
            response = await self._acomplete(request)
            self._on_last(request)(response, response.content)
            return response
        except BaseException as exc:
            self._tagged(exc)
            raise

    async def _acomplete_one(self, request: GenerationRequest) -> Response:
        response = await self._acomplete(request)
        self._on_last(request)(response, response.content)
        return response

    agenerate = generate_async  # the AbstractCore / 1.x alias

    def close(self) -> None:
        """Cancel running generations, free the model and stop the worker thread. Idempotent; the
        provider cannot be used afterwards (calls raise ``AbstractLLMError``)."""
        with self._worker_lock:
            if self._closed:
                return
            self._closed = True  # from now on new calls fail with a typed error
            worker = self._worker
        if worker is None:
            self._release()
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
        import asyncio

        await asyncio.to_thread(self.close)  # close waits for the worker: never on the event loop

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.config.get('model')!r}>"
