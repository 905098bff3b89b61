"""Server-sent events, through sse-starlette's ``EventSourceResponse`` (in the ``server`` extra).

Every streamed reply (chat completions, completions, the Responses API, Anthropic's Messages) is an
``SSEResponse`` of events made with ``sse_event``: a ``data:`` line (a JSON object, or a text such as
``[DONE]``), after an ``event:`` line where the API names its events (Anthropic's and the Responses API's do),
each line ending in ``\\n``. While no event is sent (a long prefill, a request waiting behind a full batch),
a keep-alive comment, ``: ping``, goes out every ``ServerConfig.sse_ping_s`` seconds; SSE clients skip
comments (the ``openai`` and ``anthropic`` SDKs do). sse-starlette watches for the client's disconnect and
then cancels the event generator; the provider streams behind the response are closed in every case, also
when the client left before the first byte (the generator then never started).

On shutdown, a stream in flight is left to finish within the server's graceful-shutdown time (uvicorn's
``timeout_graceful_shutdown``), as any other response: sse-starlette's own drain is not used.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, AsyncIterator, Iterable

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

__all__ = ["SSEResponse", "sse_event", "ping_comment", "close_all"]

_SEP = "\n"  # the line ending of every event (sse-starlette's default is \r\n)


def sse_event(data: Any, name: str | None = None) -> ServerSentEvent:
    """One event: ``data`` as JSON (a ``str`` as it is), named ``name`` (an ``event:`` line) if given."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return ServerSentEvent(data=text, event=name, sep=_SEP)


def ping_comment() -> ServerSentEvent:
    """The keep-alive comment: ``: ping``."""
    return ServerSentEvent(comment="ping", sep=_SEP)


async def close_all(streams: Iterable[Any], tasks: Iterable[asyncio.Future] = ()) -> None:
    """Cancel ``tasks`` (those reading the streams) and wait for them, then close ``streams`` (provider streams,
    or anything with ``aclose``); shielded from cancellation, errors ignored."""
    with anyio.CancelScope(shield=True):
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for stream in streams:
            try:
                await stream.aclose()
            except Exception:
                pass


class SSEResponse(EventSourceResponse):
    """``events`` as server-sent events, with a keep-alive comment every ``ping_s`` seconds while none is sent;
    ``streams`` (the provider streams the events come from) are closed when the response ends, however it ends."""

    def __init__(self, events: AsyncIterator[ServerSentEvent], streams: list[Any], ping_s: float) -> None:
        super().__init__(events, ping=ping_s, sep=_SEP, ping_message_factory=ping_comment,
                         headers={"Cache-Control": "no-cache"},
                         shutdown_grace_period=math.inf)  # a stream is never cut before uvicorn's own deadline
        self._streams = streams

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await close_all(self._streams)  # a no-op for streams already finished
