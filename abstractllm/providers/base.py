"""The provider contract, built once on top of one generation primitive.

A provider subclasses ``BaseProvider`` and implements ``get_capabilities()`` and one primitive, the
``Response`` chunks of a request (``content`` = new text; the last chunk carries ``finish_reason``,
``usage`` and the timings), in one of two forms:

- ``_stream(request, cancel)``, a generator; it runs on the provider's own worker thread, or on the
  caller's thread with ``runs_on_worker = False`` (async callers then read it through the worker);
- or, where the backend is not a generator, ``_chunks(request, cancel, loop=None, whole=False)`` itself
  (the default runs ``_stream``): an iterable of the chunks for a synchronous reader (``loop=None``), an
  async iterable for a reader on ``loop``. MLX returns its engine's channel; the remote providers one
  exchange with the SDK's sync or async client (``providers/remote.py``). ``whole=True`` says the caller
  folds the chunks into one reply: a provider may then produce it as one chunk (a non-streamed request).

Everything else is here, once, over that primitive, as thin sync and async shells over a shared core:

- ``generate(stream=True)`` returns a ``ResponseStream`` of the chunks as they come;
- ``generate(stream=False)`` folds them into one ``Response`` (``types.aggregate_chunks``);
- ``generate_async`` awaits the same from an event loop without blocking it (``stream=True``: an
  ``AsyncResponseStream``); cancelling the task or closing the iterator stops the generation;
- ``n`` above 1 and lists of prompts open every request's stream at once (a batching provider runs them
  together).

``_on_last`` (the request's ``image_paths``, and the ``parsed`` reply with ``response_format``) is applied
once per reply: to the last chunk of a stream, or to the whole reply a non-streaming call returns.

Before any work, ``_prepare`` validates the per-call parameters (``abstractllm.params``, after the 1.x
spellings of ``abstractllm.compat``), normalizes the messages and checks the declared capabilities: a
capability the provider does not declare raises ``UnsupportedFeatureError`` before anything is sent.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, AsyncIterable, AsyncIterator, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from ..compat import call_files, call_model, merge_key_aliases, with_default_model
from ..enums import ModelCapability, ModelParameter
from ..exceptions import AbstractLLMError, InvalidParameterError, UnsupportedFeatureError
from ..interface import AbstractLLMInterface
from ..messages import normalize_messages
from ..tools import normalize_tool_choice, normalize_tools
from ..params import (CALL_ONLY, GENERATION_PARAMS, default_of, defaults,
                      normalize_keys, validate_params)
from ..types import Capabilities, GenerationRequest, Response, aggregate_chunks
from .serving import ServingMixin
from .stats import RequestStats
from .worker import AsyncResponseStream, CancelToken, ChunkStream, ResponseStream, SerialWorker

#: ``aggregate_chunks`` lives in ``abstractllm.types``; it is importable from here too (the server's import)
__all__ = ["BaseProvider", "aggregate_chunks"]

C = ModelCapability


def _image_paths(request: GenerationRequest) -> list[str] | None:
    paths = [os.fspath(i) for m in request.messages for i in m.images if isinstance(i, (str, os.PathLike))]
    return paths or None


class BaseProvider(ServingMixin, AbstractLLMInterface):
    """Base of every provider. Subclasses declare ``name``, ``accepted_config`` (the keys they implement),
    ``ignored_config`` (AbstractLLM 1.x keys it has no use for, accepted with one warning; both derive from
    ``abstractllm.params.provider_keys``) and implement ``get_capabilities`` and the primitive (``_stream``,
    or ``_chunks``)."""

    name: ClassVar[str] = "base"
    #: configuration keys this provider implements (generation params included)
    accepted_config: ClassVar[frozenset[str]] = frozenset({str(ModelParameter.MODEL)}) | GENERATION_PARAMS
    #: AbstractLLM 1.x keys accepted with one IgnoredParameterWarning and no effect, e.g. api_key for a local
    #: provider (any other key is refused with InvalidParameterError)
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
        """The primitive as a generator: yield ``Response`` chunks; stop early when ``cancel.cancelled``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _stream(request, cancel)")

    _astream: Callable[[GenerationRequest, CancelToken], AsyncIterator[Response]] | None = None
    """Optional, for a provider of ``_stream``: its native async form (an async generator function), read by
    async callers instead of the worker bridge."""

    def _chunks(self, request: GenerationRequest, cancel: CancelToken, *, loop: Any = None,
                whole: bool = False) -> Iterable[Response] | AsyncIterable[Response]:
        """The one primitive every path reads: the chunks of ``request``, iterable by a synchronous reader
        (``loop=None``) or async-iterable by a reader on ``loop``; stop early when ``cancel.cancelled``.
        ``whole``: the caller folds them into one reply (a provider may give it as one chunk). Default:
        ``_stream`` on the worker thread (or on the caller's, with ``runs_on_worker = False``)."""
        if loop is not None and self._astream is not None:
            return self._astream(request, cancel)
        if loop is None and not self.runs_on_worker:
            return self._stream(request, cancel)
        return ChunkStream.on_worker(self.worker, lambda token: self._stream(request, token), cancel)

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

    def runtime_info(self) -> dict[str, Any]:
        """Where and how the model runs, as a server's ``/health``, ``/stats``, ``/metrics`` and logs report it.
        Cheap: it never loads the model nor waits for a generation. Keys:

        - ``provider``, ``model``: the provider's name and its configured model;
        - ``loaded``: whether it can generate without loading first (a remote provider always can);
        - ``device``: ``"cpu"`` or ``"gpu"`` once a local model is loaded, else ``None``;
        - ``blas``: the status of the BLAS library local float32 matmuls use (``None``: none in use, or not known);
        - ``memory``: bytes by name (``process_rss``, and a local backend's allocator counters; ``None``: unknown);
        - ``device_memory``: the memory the model runs in, in bytes: ``total``, ``available``, ``unified`` (the
          machine's RAM is the device's), ``allocated`` (live arrays), ``reserved`` (with the allocator's cache),
          ``peak`` (``None`` where not known).

        Here (a remote provider): this process's RSS and the machine's memory; a local provider adds the rest."""
        rss = total = available = None
        try:
            import psutil

            rss = int(psutil.Process().memory_info().rss)
            vm = psutil.virtual_memory()
            total, available = int(vm.total), int(vm.available)
        except Exception:  # psutil is optional (an extra of the providers that use it)
            pass
        return {"provider": self.name, "model": self.config.get("model"), "loaded": True, "device": None,
                "blas": None, "memory": {"process_rss": rss},
                "device_memory": {"total": total, "available": available, "unified": True, "allocated": None,
                                  "reserved": None, "peak": None}}

    def configured_max_tokens(self) -> int | None:
        """The ``max_tokens`` this provider was configured with (``create_llm(max_tokens=...)``, ``update_config``);
        ``None`` when a generation that asks for none gets the parameter's default."""
        value = self.config.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

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
        return self._normalize_config(validate_params(raw, self.accepted_config, ignored=self.ignored_config,
                                                      where=f"{self.name} config", owner=self.name))

    def _refresh_defaults(self) -> None:
        self._generation_defaults = defaults(sorted(GENERATION_PARAMS & self.accepted_config))
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
        call_params = validate_params(params, GENERATION_PARAMS & self.accepted_config, where="generation",
                                      ignored=GENERATION_PARAMS & self.ignored_config, owner=self.name)
        merged = {**self._generation_defaults, **call_params}
        if merged.get("top_logprobs") and not merged.get("logprobs"):
            raise InvalidParameterError("top_logprobs needs logprobs=True.", param="top_logprobs")
        convo = normalize_messages(
            prompt, system_prompt=system_prompt, files=files, messages=messages,
            default_system_prompt=self.config.get("system_prompt"),
            max_text_file_bytes=int(merged.get("max_text_file_bytes") or default_of("max_text_file_bytes")),
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

    def _open_stream(self, request: GenerationRequest, loop: Any = None, *,
                     whole: bool = False) -> ResponseStream | AsyncResponseStream:
        """The primitive's chunks for a reader: a ``ResponseStream``, or with ``loop`` (the running event
        loop) an ``AsyncResponseStream``. A stream read as chunks gets ``_on_last`` on its last chunk; a
        ``whole`` one is folded, and its reply finished once (``_finished``)."""
        token = CancelToken()
        chunks = self._chunks(request, token, loop=loop, whole=whole)
        shell = ResponseStream if loop is None else AsyncResponseStream
        return shell(chunks, token, provider=self.name, on_last=None if whole else self._on_last(request))

    def _complete(self, request: GenerationRequest) -> Response:
        """The whole reply, not yet finished (``_finished``): the primitive's chunks, folded."""
        stream = self._open_stream(request, whole=True)
        try:
            return aggregate_chunks(stream)
        finally:
            stream.close()

    async def _acomplete(self, request: GenerationRequest) -> Response:
        """``_complete``, awaited from the running event loop."""
        import asyncio

        stream = self._open_stream(request, asyncio.get_running_loop(), whole=True)
        try:
            return aggregate_chunks([chunk async for chunk in stream])
        finally:
            await stream.aclose()

    def _finished(self, request: GenerationRequest, response: Response) -> Response:
        """A whole reply with what ``_on_last`` adds (once per reply)."""
        self._on_last(request)(response, response.content)
        return response

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
            return self._finished(request, self._complete(request))
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
        """Open every request's stream at once (a batching provider runs them together), then fold each (its
        last chunk finished as a stream's is)."""
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
                replies = await asyncio.gather(*(self._acomplete(r) for r in variants))
                return [self._finished(r, reply) for r, reply in zip(variants, replies)]
            if stream:
                return self._open_stream(request, asyncio.get_running_loop())
            return self._finished(request, await self._acomplete(request))
        except BaseException as exc:
            self._tagged(exc)
            raise

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
