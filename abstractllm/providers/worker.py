"""A dedicated worker thread per provider, and the bridge that carries a stream off it.

MLX streams are thread-local (mlx >= 0.31.2): all MLX work of one model must run on the thread that
loaded it, and that thread must call ``mx.clear_streams()`` before it ends or the process aborts at exit.
``SerialWorker`` is that thread: jobs run one at a time, in order; ``on_exit`` runs on the thread as it
stops (at ``close()`` or at interpreter exit). ``ChunkStream`` runs a generator function on the worker
and hands its items to one consumer, synchronous or asynchronous, with cooperative cancellation.
``ResponseStream`` / ``AsyncResponseStream`` are what a caller of ``generate(stream=True)`` reads: thin
sync and async shells over one core (``_StreamCore``), as ``ChunkStream``'s two readers share ``_unpacked``.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from concurrent.futures import Future

from ..exceptions import AbstractLLMError

__all__ = ["SerialWorker", "ChunkStream", "CancelToken", "ResponseStream", "AsyncResponseStream"]

_LIVE_WORKERS: "weakref.WeakSet[SerialWorker]" = weakref.WeakSet()
_STOP = object()


class CancelToken:
    """Set by the consumer to ask the producer to stop at its next token.

    A plain flag, not a lock-based ``threading.Event``: ``cancel()`` is safe from any thread and from a
    signal handler (a handler that ran ``Event.set()`` while the interrupted code was inside
    ``Event.set()`` of the same event would deadlock on its lock)."""

    __slots__ = ("_cancelled",)

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class SerialWorker:
    """One daemon thread that runs submitted callables one at a time, in order."""

    def __init__(self, name: str, on_exit: Callable[[], None] | None = None) -> None:
        self._name = name
        self._on_exit = on_exit
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._live: set[CancelToken] = set()  # tokens of the streams submitted and not finished

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_started(self) -> None:
        with self._lock:
            if self._closed:
                raise AbstractLLMError(f"This provider is closed ({self._name}); create a new one with create_llm().")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
                _LIVE_WORKERS.add(self)

    def _loop(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                future, fn, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # delivered to the caller
                    future.set_exception(exc)
                    del exc
                # drop references to the finished job, so an unused provider can be collected
                del job, future, fn, args, kwargs
        finally:
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    pass
            _LIVE_WORKERS.discard(self)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` to run on the worker thread; returns its Future."""
        from concurrent.futures import Future  # here: importing abstractllm stays light

        self._ensure_started()
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the worker thread and wait for its result (inline if already on it)."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def track(self, token: CancelToken) -> None:
        """Remember a stream's cancel token until ``untrack``: ``close`` cancels every tracked stream."""
        with self._lock:
            self._live.add(token)

    def untrack(self, token: CancelToken) -> None:
        with self._lock:
            self._live.discard(token)

    def cancel_all(self) -> None:
        """Ask every running or queued stream to stop at its next token."""
        with self._lock:
            tokens = list(self._live)
        for token in tokens:
            token.cancel()

    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel the streams in flight, finish the other queued jobs, run ``on_exit`` on the thread, and
        stop it. Idempotent; a thread that outlives ``timeout`` is joined again at interpreter exit."""
        with self._lock:
            first = not self._closed
            self._closed = True
            thread = self._thread
        self.cancel_all()
        if thread is None:
            return
        if first:
            self._jobs.put(_STOP)
        if thread is not threading.current_thread():
            thread.join(timeout)


@atexit.register
def _close_all_workers() -> None:
    # Daemon threads are still alive when atexit handlers run: stop each so it runs its on_exit
    # (mx.clear_streams) on its own thread before the interpreter tears down. Running generations are
    # cancelled first, so exit never waits for a long generation.
    workers = list(_LIVE_WORKERS)
    for worker in workers:
        worker.cancel_all()
    for worker in workers:
        worker.close(timeout=60.0)


_DONE = ("done", None)


# Called by the producer after each item: lets the just-woken consumer take the GIL at once
# (``os.sched_yield`` releases it around the system call). Otherwise the producer keeps the GIL while
# it prepares the next token (mlx-lm builds the next step's graph in Python, ~5 ms on a 28-layer
# model) and every chunk reaches the consumer up to one switch interval (5 ms) late.
_release_gil = getattr(os, "sched_yield", None) or (lambda: None)


Emit = Callable[[tuple[str, Any]], None]


class ChunkStream:
    """A one-consumer channel of chunks that a producer on another thread fills; iterate it sync (or
    ``aiter()`` from an event loop), once.

    ``start(emit)`` begins the production: the producer calls ``emit(("item", chunk))`` per chunk, then
    ``emit(("done", None))`` or ``emit(("error", exc))``; ``emit`` is safe from any thread. It runs when the
    iteration begins, or at once with ``eager=True`` (errors of admission, such as a full queue, then
    raise from the call that opened the stream). With ``loop`` the channel is an ``asyncio.Queue`` of that
    loop (the event loop is never blocked); without, a thread-safe queue. Closing the iterator early,
    breaking out of the loop, or cancelling the awaiting task sets the cancel token.
    ``ChunkStream.on_worker`` runs a generator function on a ``SerialWorker`` as the producer.
    """

    def __init__(self, start: Callable[[Emit], None], cancel_token: CancelToken | None = None, *,
                 loop: Any = None, eager: bool = False) -> None:
        self._start_fn = start
        self.cancel_token = cancel_token or CancelToken()
        self._loop = loop
        self._started = False
        self._queue: Any = None
        if eager:
            self._begin(loop)

    def _channel(self, loop: Any) -> Emit:
        """Make the queue (a thread-safe one, or an asyncio one of ``loop``) and its ``emit``."""
        self._loop = loop
        if loop is None:
            sq: "queue.SimpleQueue[tuple[str, Any]]" = queue.SimpleQueue()
            self._queue = sq
            return sq.put
        import asyncio

        aq: "asyncio.Queue[tuple[str, Any]]" = asyncio.Queue()
        token = self.cancel_token
        self._queue = aq

        def emit(msg: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(aq.put_nowait, msg)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                token.cancel()

        return emit

    @classmethod
    def on_worker(cls, worker: SerialWorker, produce: Callable[[CancelToken], Iterator[Any]],
                  cancel_token: CancelToken | None = None, *, loop: Any = None) -> "ChunkStream":
        """A stream whose producer is ``produce(cancel)``, a generator function run on ``worker``."""
        token = cancel_token or CancelToken()

        def start(emit: Emit) -> None:
            def run() -> None:
                try:
                    gen = produce(token)
                    try:
                        for item in gen:
                            emit(("item", item))
                            _release_gil()
                            if token.cancelled:
                                # A cooperative producer ends at its next item with the chunk that says how
                                # it ended (finish_reason "cancelled", usage): a reader still listening (one
                                # cancelled by close()) gets it. At most one more item is produced.
                                last = next(gen, _DONE)
                                if last is not _DONE:
                                    emit(("item", last))
                                break
                    finally:
                        close = getattr(gen, "close", None)
                        if close is not None:
                            close()
                    emit(_DONE)
                except BaseException as exc:
                    emit(("error", exc))
                finally:
                    worker.untrack(token)

            worker.track(token)
            try:
                worker.submit(run)
            except BaseException:
                worker.untrack(token)
                raise

        return cls(start, token, loop=loop)

    def _begin(self, loop: Any) -> None:
        if self._started:
            raise RuntimeError("a stream can be iterated only once")
        self._started = True
        self._start_fn(self._channel(loop))

    def _reader(self, loop: Any) -> Any:
        """The channel for a reader on ``loop`` (``None``: a synchronous one), started now if it was not."""
        if not self._started:
            self._begin(loop)
        elif loop is None and self._loop is not None:
            raise RuntimeError("this stream belongs to an event loop: iterate it with aiter()")
        elif loop is not None and self._loop is None:
            raise RuntimeError("this stream was started for a synchronous reader")
        return self._queue

    def __iter__(self) -> Iterator[Any]:
        get = self._reader(None).get
        try:
            while (item := _unpacked(get())) is not _END:
                yield item
        finally:
            self.cancel_token.cancel()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    async def aiter(self) -> AsyncIterator[Any]:
        """Iterate from the event loop without ever blocking it."""
        import asyncio

        get = self._reader(asyncio.get_running_loop()).get
        try:
            while (item := _unpacked(await get())) is not _END:
                yield item
        finally:
            self.cancel_token.cancel()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.aiter()


_END = object()


def _unpacked(message: tuple[str, Any]) -> Any:
    """What both readers of a ``ChunkStream`` do with a message: an item is returned, an error raised, the
    end returned as ``_END``."""
    kind, value = message
    if kind == "item":
        return value
    if kind == "error":
        raise value
    return _END


def _tag(exc: BaseException, provider: str | None) -> None:
    """Name the provider on an abstractllm error that does not say which one raised it."""
    if provider and isinstance(exc, AbstractLLMError) and exc.provider is None:
        exc.provider = provider


class _StreamCore:
    """What the two stream shells share: the cancel token, the reply's text so far, errors named after
    the provider, and ``on_last`` (what a provider adds to the last chunk, given the whole text) applied to
    the chunk that says how the reply ended. A shell only reads the next chunk, sync or async."""

    def __init__(self, cancel_token: CancelToken, provider: str | None,
                 on_last: Callable[[Any, str], None] | None) -> None:
        self._token = cancel_token
        self._provider = provider
        self._on_last = on_last
        self._text: list[str] = []  # the reply so far (for what the last chunk carries)
        # a stream dropped without being read to its end stops its generation
        weakref.finalize(self, cancel_token.cancel)

    def _seen(self, chunk: Any) -> Any:
        self._text.append(getattr(chunk, "content", "") or "")
        if self._on_last is not None and getattr(chunk, "finish_reason", None) is not None:
            self._on_last(chunk, "".join(self._text))
        return chunk

    def _failed(self, exc: BaseException) -> None:
        _tag(exc, self._provider)

    def cancel(self) -> None:
        self._token.cancel()

    @property
    def cancelled(self) -> bool:
        return self._token.cancelled


class ResponseStream(_StreamCore, Iterator[Any]):
    """What ``generate(stream=True)`` returns: an iterator of the chunks as they come.

    ``cancel()`` asks the generation to stop at its next token; the iteration then ends normally with a
    last chunk whose ``finish_reason`` is ``"cancelled"`` (it carries the usage so far). It is safe to
    call from another thread or from a signal handler (``abstractllm chat`` cancels a reply on Ctrl-C
    this way). ``close()`` stops the generation and ends the iteration at once, discarding the rest.
    """

    def __init__(self, chunks: Iterable[Any], cancel_token: CancelToken, *, provider: str | None = None,
                 on_last: Callable[[Any, str], None] | None = None) -> None:
        super().__init__(cancel_token, provider, on_last)
        self._iter = iter(chunks)

    def __iter__(self) -> "ResponseStream":
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._iter)
        except StopIteration:
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._seen(chunk)

    def close(self) -> None:
        self._token.cancel()
        close = getattr(self._iter, "close", None)
        if close is not None:
            close()


class AsyncResponseStream(_StreamCore, AsyncIterator[Any]):
    """What ``await generate_async(..., stream=True)`` returns: an async iterator of the chunks.

    ``cancel()`` (safe from any thread) ends it with a last ``"cancelled"`` chunk; ``aclose()`` stops it
    at once; cancelling the task that iterates it stops the generation too.
    """

    def __init__(self, chunks: AsyncIterable[Any], cancel_token: CancelToken, *, provider: str | None = None,
                 on_last: Callable[[Any, str], None] | None = None) -> None:
        super().__init__(cancel_token, provider, on_last)
        self._aiter = chunks.__aiter__()

    def __aiter__(self) -> "AsyncResponseStream":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._aiter.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self._seen(chunk)

    async def aclose(self) -> None:
        self._token.cancel()
        aclose = getattr(self._aiter, "aclose", None)
        if aclose is not None:
            await aclose()
