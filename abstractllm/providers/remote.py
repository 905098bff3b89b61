"""``RemoteProvider``: what the providers that call a hosted API through its official SDK share (the
``openai`` and ``anthropic`` providers): the key and base URL from the config or the environment, one
sync client made on first use, one async client per event loop (closed on its own loop), clients remade
when a connection key changes, the generation primitive (``_Exchange``: streamed or whole, sync or async,
over the subclass's ``_create_kwargs`` / ``_call`` / ``_stream_state`` / ``_reply``), and SDK errors
converted into the exception tree at one place (``sdk_errors``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, AsyncIterator, Callable, ClassVar, Iterator

from ..enums import ModelCapability
from ..exceptions import AbstractLLMError, AuthenticationError, InvalidParameterError
from ..types import Capabilities, GenerationRequest, Response
from .base import BaseProvider
from .worker import CancelToken

__all__ = ["RemoteProvider"]


class RemoteProvider(BaseProvider):
    """A provider over a remote API's SDK. Subclasses name the SDK and its client classes, and
    ``convert_error`` (their one boundary for SDK errors)."""

    #: the SDK's module, the extra that installs it, and its sync / async client classes
    sdk_module: ClassVar[str]
    sdk_extra: ClassVar[str]
    client_class: ClassVar[str]
    async_client_class: ClassVar[str]
    #: environment variables read for the key and the URL; the default URL (``None``: the SDK's own) and
    #: the key sent to a server that needs none (``None``: a key is required unless a base URL is set)
    api_key_env: ClassVar[str]
    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    placeholder_key: ClassVar[str | None] = None
    #: config keys whose change makes new clients
    client_config: ClassVar[frozenset[str]] = frozenset({"model", "api_key", "base_url", "timeout", "max_retries",
                                                         "proxy"})
    #: converts an SDK exception into the tree: ``convert_error(exc, provider_name)``
    convert_error: ClassVar[Callable[[BaseException, str], AbstractLLMError]]

    def __init__(self, config: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._lock = threading.Lock()
        self._client: Any = None
        #: event loop -> (async client, the guard generator that closes it with its loop)
        self._aclients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
        self._caps: Capabilities | None = None
        self._client_kwargs()  # a missing key fails here, at create_llm

    # ------------------------------------------------------------------ configuration
    def _normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if not config.get("model"):
            raise InvalidParameterError(
                f"The {self.name} provider needs a model: create_llm({self.name!r}, model='...').", param="model")
        return config

    def _config_changed(self, keys: set[str]) -> None:
        if keys & self.client_config:
            self._client_kwargs()  # a missing key fails now
            self._caps = None
            self._release()  # new clients on the next call

    @property
    def base_url(self) -> str | None:
        """The API root in use (``None``: the SDK's default)."""
        return self.config.get("base_url") or os.environ.get(self.base_url_env) or self.default_base_url

    def _client_kwargs(self) -> dict[str, Any]:
        key = self.config.get("api_key") or os.environ.get(self.api_key_env)
        if not key:
            if self.placeholder_key is None and self.base_url is None:
                raise AuthenticationError(
                    f"No API key for the {self.name} provider: pass api_key=... or set {self.api_key_env}.",
                    provider=self.name)
            key = self.placeholder_key or "unused"  # a local compatible server: no key needed
        kw: dict[str, Any] = {"api_key": key}
        if self.base_url:
            kw["base_url"] = self.base_url
        for name in ("timeout", "max_retries"):
            if self.config.get(name) is not None:
                kw[name] = self.config[name]
        return kw

    def _sdk(self) -> Any:
        from ..registry import _missing_modules  # the same check create_llm made

        if _missing_modules((self.sdk_module,)):  # pragma: no cover - create_llm refuses first
            from ..exceptions import UnsupportedProviderError

            raise UnsupportedProviderError(f"The {self.name} provider needs the {self.sdk_module} SDK: "
                                           f'pip install "abstractllm[{self.sdk_extra}]"')
        import importlib

        return importlib.import_module(self.sdk_module)

    @property
    def client(self) -> Any:
        """The SDK's sync client (created on first use)."""
        with self._lock:
            if self._client is None:
                sdk = self._sdk()
                kw = self._client_kwargs()
                if self.config.get("proxy"):
                    kw["http_client"] = sdk.DefaultHttpxClient(proxy=self.config["proxy"])
                self._client = getattr(sdk, self.client_class)(**kw)
            return self._client

    async def _aclient(self) -> Any:
        """The SDK's async client for the running event loop (pooled connections belong to one loop). It is
        closed on that loop when the loop finalizes its async generators (what ``asyncio.run`` does before
        closing the loop), through a guard generator registered there: a client left to be collected later
        would try to close on another loop ("Event loop is closed")."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [lp for lp in self._aclients if lp.is_closed()]:
                del self._aclients[old]
            entry = self._aclients.get(loop)
            new = entry is None
            if new:
                sdk = self._sdk()
                proxy = {"proxy": self.config["proxy"]} if self.config.get("proxy") else {}
                client = getattr(sdk, self.async_client_class)(
                    **self._client_kwargs(), http_client=sdk.DefaultAsyncHttpxClient(**proxy))
                entry = self._aclients[loop] = (client, _close_with_loop(client))
        if new:
            await entry[1].__anext__()  # registers the guard with the loop's async-generator hooks
        return entry[0]

    # ------------------------------------------------------------------ capabilities
    #: what the protocol gives every model, and what is assumed when the server publishes nothing
    protocol_caps: ClassVar[frozenset[ModelCapability]]
    assumed_caps: ClassVar[frozenset[ModelCapability]]

    def _published_capabilities(self) -> tuple[set[ModelCapability] | None, int | None]:
        """Ask the server about the model (within ``_probe_timeout()``): the capabilities it publishes
        (``None``: it publishes none) and the context length (``None``: unknown). SDK errors propagate."""
        raise NotImplementedError

    def get_capabilities(self) -> Capabilities:
        """The protocol's capabilities, plus what the server publishes about the model
        (``_published_capabilities``); a server that publishes nothing is assumed to take what the
        provider's own API does (``assumed_caps``). Kept once the server has answered for good."""
        if self._caps is not None:
            return self._caps
        caps, context, published, definitive = set(self.protocol_caps), None, None, False
        try:
            published, context = self._published_capabilities()
            definitive = True
        except Exception as exc:  # unreachable, refused, or no such endpoint: the protocol's defaults
            # a server that says it has no such endpoint or model has answered for good; an unreachable
            # one, a refused key (401/403), a rate limit or a server error is asked again next time
            definitive = isinstance(exc, self._sdk().APIStatusError) and exc.status_code in (404, 405)
        caps |= self.assumed_caps if published is None else published
        result = Capabilities(caps, max_tokens=context)
        if definitive:
            self._caps = result
        return result

    def _probe_timeout(self) -> float:
        """How long the capability probe waits: ``REMOTE_CAPABILITIES_TIMEOUT_S``, or the provider's
        ``timeout`` when shorter (a caller who set 0.5 s does not wait 5 s for a silent server)."""
        from ..params import REMOTE_CAPABILITIES_TIMEOUT_S

        timeout = self.config.get("timeout")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            return min(REMOTE_CAPABILITIES_TIMEOUT_S, float(timeout))
        return REMOTE_CAPABILITIES_TIMEOUT_S

    # ------------------------------------------------------------------ requests
    def _create_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        """The SDK call's arguments for ``request`` (images read and encoded through the media pipeline)."""
        raise NotImplementedError

    async def _acreate_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        """``_create_kwargs`` from the event loop: images are read and encoded off the loop (a thread of
        the default executor); a text-only request is built on the loop."""
        if request.has_images:
            return await asyncio.to_thread(self._create_kwargs, request)
        return self._create_kwargs(request)

    def _call(self, client: Any, kw: dict[str, Any], stream: bool) -> Any:
        """The SDK's generation call with ``kw`` on ``client`` (sync or async: the async client's returns an
        awaitable), streamed or not."""
        raise NotImplementedError

    def _reply(self, raw: Any, t0: float) -> Response:
        """A non-streamed SDK reply as a ``Response`` (``t0``: when the request began)."""
        raise NotImplementedError

    def _stream_state(self) -> Any:
        """What turns the SDK's stream events into chunks: ``feed(event) -> Response | None``, then
        ``final(cancelled) -> Response`` (the last chunk)."""
        raise NotImplementedError

    def _stream_instead(self, exc: Exception) -> bool:
        """Whether the SDK refused to make ``exc``'s request unstreamed, so that it is streamed instead."""
        return False

    def _chunks(self, request: GenerationRequest, cancel: CancelToken, *, loop: Any = None,
                whole: bool = False) -> "_Exchange":
        """The primitive: one exchange with the API (``_Exchange``), read with the sync client or, on
        ``loop``, with that loop's async client; ``whole``: one non-streamed request."""
        return _Exchange(self, request, cancel, whole)

    # ------------------------------------------------------------------ errors
    @contextmanager
    def sdk_errors(self) -> Iterator[None]:
        """Around every SDK call: an SDK (or network) error leaves as its typed ``AbstractLLMError`` and
        counts as a failed request; errors of the tree pass as they are."""
        try:
            yield
        except AbstractLLMError:
            raise
        except Exception as exc:
            self._stats.failed += 1
            raise type(self).convert_error(exc, self.name) from exc

    # ------------------------------------------------------------------ lifecycle
    #: the API root the SDK uses when no base URL is set (what ``get_model_info`` reports then)
    sdk_base_url: ClassVar[str]

    def get_model_info(self) -> dict[str, Any]:
        caps = self.get_capabilities()
        return {"provider": self.name, "model": self.config["model"], "base_url": self.base_url or self.sdk_base_url,
                "capabilities": sorted(str(c) for c in caps if c is not ModelCapability.MAX_TOKENS),
                "context_length": caps.get(ModelCapability.MAX_TOKENS)}

    def _release(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._aclients = weakref.WeakKeyDictionary()  # their loops close their connections
        if client is not None:
            client.close()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            entry = self._aclients.pop(asyncio.get_running_loop(), None)
            if entry is not None:
                await entry[1].aclose()  # closes the client now
        finally:
            await super().__aexit__(*exc)


async def _close_with_loop(client: Any) -> AsyncIterator[None]:
    """Suspended until its loop finalizes it (``loop.shutdown_asyncgens``) or ``aclose()``: then closes
    ``client`` on that loop."""
    try:
        yield
        yield  # never reached: the loop (or aclose) finalizes the generator at the first yield
    finally:
        await client.close()


class _Exchange:
    """One request to the API, read by a synchronous reader (``__iter__``, over the sync client, on the
    caller's thread) or an async one (``__aiter__``, over the running loop's async client: no thread).
    The two are thin shells over one core: the provider's arguments (``_create_kwargs``), call
    (``_call``), events turned into chunks (``_stream_state``), whole reply (``_reply``), SDK errors
    (``sdk_errors``) and statistics. A ``whole`` exchange is one non-streamed request, streamed instead
    where the SDK refuses it (``_stream_instead``); a streamed one ends with the chunk that says how."""

    def __init__(self, provider: RemoteProvider, request: GenerationRequest, cancel: CancelToken,
                 whole: bool) -> None:
        self._p = provider
        self._request = request
        self._cancel = cancel
        self._whole = whole
        self._t0 = 0.0
        self._state: Any = None

    # ------------------------------------------------------------------ the core
    def _begin(self) -> None:
        self._t0 = time.perf_counter()
        self._state = self._p._stream_state()

    @contextmanager
    def _or_streamed(self) -> Iterator[None]:
        """Around the whole request: an SDK refusal that ``_stream_instead`` accepts makes it streamed."""
        try:
            yield
        except Exception as exc:
            if not self._p._stream_instead(exc):
                raise
            self._whole = False

    def _replied(self, raw: Any) -> Response:
        response = self._p._reply(raw, self._t0)
        self._p._stats.record(response)
        return response

    def _last(self) -> Response:
        last = self._state.final(self._cancel.cancelled)
        self._p._stats.record(last)
        return last

    # ------------------------------------------------------------------ the sync shell
    def __iter__(self) -> Iterator[Response]:
        p = self._p
        self._begin()
        with p.sdk_errors():
            kw = p._create_kwargs(self._request)
            client = p.client
        if self._whole:
            with p.sdk_errors(), self._or_streamed():
                raw = p._call(client, kw, stream=False)
            if self._whole:
                yield self._replied(raw)
                return
        with p.sdk_errors():
            events = p._call(client, kw, stream=True)
        try:
            with p.sdk_errors():
                for event in events:
                    chunk = self._state.feed(event)
                    if chunk is not None:
                        yield chunk
                    if self._cancel.cancelled:
                        break
        finally:
            events.close()
        yield self._last()

    # ------------------------------------------------------------------ the async shell
    async def __aiter__(self) -> AsyncIterator[Response]:
        p = self._p
        self._begin()
        with p.sdk_errors():
            kw = await p._acreate_kwargs(self._request)
            client = await p._aclient()
        if self._whole:
            with p.sdk_errors(), self._or_streamed():
                raw = await p._call(client, kw, stream=False)
            if self._whole:
                yield self._replied(raw)
                return
        with p.sdk_errors():
            events = await p._call(client, kw, stream=True)
        try:
            with p.sdk_errors():
                async for event in events:
                    chunk = self._state.feed(event)
                    if chunk is not None:
                        yield chunk
                    if self._cancel.cancelled:
                        break
        finally:
            await events.close()
        yield self._last()
