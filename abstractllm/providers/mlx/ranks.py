"""What the lock-step engine (``lockstep.py``) needs besides the batch: the watchdog that ends a rank stuck
on the others, the pairing of a non-zero rank's own calls with rank 0's requests, the form in which a
request travels to the other ranks, and errors rebuilt from their name and message.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ... import exceptions
from ...exceptions import GenerationError
from ...types import GenerationRequest

__all__ = ["Watchdog", "Pairing", "Plan", "wire_request", "describe_error", "rebuild_error", "WATCHDOG_EXIT_CODE"]

#: exit status of a process the watchdog ends
WATCHDOG_EXIT_CODE = 3

Emit = Callable[[tuple[str, Any]], None]


class Watchdog:
    """A thread that ends the process when the worker has waited on the other ranks (a collective) for
    more than ``timeout_s``: MLX's collectives cannot be interrupted, and a rank that stopped answering
    without closing its connections (a stopped process, a pulled cable) would otherwise hang every other
    rank for good. A rank that dies closes its connections: the others get an error at once, without it.

    Pure Python (no MLX): it runs while the worker is blocked inside MLX, which releases the GIL."""

    def __init__(self, timeout_s: float, where: str, exit: Callable[[int], None] = os._exit) -> None:
        self.timeout_s = timeout_s
        self.where = where
        self._exit = exit
        self._since: float | None = None
        self._what = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="abstractllm-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def arm(self, what: str) -> None:
        """The worker starts waiting on the others for ``what``."""
        self._what = what
        self._since = time.monotonic()

    def disarm(self) -> None:
        self._since = None

    def _run(self) -> None:
        period = min(1.0, self.timeout_s / 4)
        while not self._stopped.wait(period):
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout_s:
                self._fire()
                return

    def _fire(self) -> None:
        message = (f"abstractllm: {self.where}: {self._what} took more than {self.timeout_s:g} s "
                   "(distributed_timeout): another rank is gone or stopped answering. Exiting, so that no rank "
                   "hangs; restart every rank.")
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        finally:
            self._exit(WATCHDOG_EXIT_CODE)


class Pairing:
    """On a rank other than 0: its own calls, numbered in the order they were made, paired with rank 0's
    requests of the same number (every rank makes the same calls). Rank 0's output for a call not made
    here yet is kept until it is; with ``discard`` (``follow()``: nobody calls here) it is dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._local: dict[int, Emit] = {}
        self._kept: dict[int, list[tuple[str, Any]]] = {}
        self.discard = False
        self._closed: BaseException | None = None

    def local(self, emit: Emit) -> None:
        """A call made on this rank: it gets rank 0's request of the same number."""
        with self._lock:
            if self._closed is not None:
                emit(("error", self._closed))
                return
            self._calls += 1
            kept = self._kept.pop(self._calls, None)
            if kept is None:
                self._local[self._calls] = emit
                return
            for msg in kept:
                emit(msg)
            if kept[-1][0] == "item":  # not finished yet
                self._local[self._calls] = emit

    def emit_for(self, seq: int) -> Emit:
        """Where rank 0's request ``seq`` sends its chunks on this rank."""

        def emit(msg: tuple[str, Any]) -> None:
            with self._lock:
                target = self._local.get(seq)
                if target is None:
                    if not self.discard and self._closed is None and seq > self._calls:
                        self._kept.setdefault(seq, []).append(msg)
                    return
                if msg[0] != "item":
                    del self._local[seq]
            target(msg)

        return emit

    def close(self, error: BaseException) -> None:
        """The group stopped: calls still waiting here get ``error``; later calls are refused."""
        with self._lock:
            waiting, self._local = self._local, {}
            self._kept.clear()
            self._closed = error
        for emit in waiting.values():
            emit(("error", error))


@dataclass
class Plan:
    """What rank 0 tells the others before a step: requests that ended before they were admitted (with
    ``"error"`` and the error, or ``"cancelled"``), requests cancelled while generating, requests to admit
    (with the prompt tokens rank 0 found in its prompt cache: the others must find as many), and whether
    to gather every rank's memory, clear the prompt cache, or stop."""

    ended: list[tuple[int, str, Any]] = field(default_factory=list)
    cancel: list[int] = field(default_factory=list)
    admit: list[tuple[int, GenerationRequest, int]] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    gather: bool = False
    stop: bool = False

    def __bool__(self) -> bool:
        return bool(self.ended or self.cancel or self.admit or self.ops or self.gather or self.stop)


def wire_request(request: GenerationRequest) -> GenerationRequest:
    """The request as the other ranks get it (pickled): the tools' schemas without their Python
    functions, the ``response_format`` schema without its pydantic class (each rank's caller parses its
    own reply)."""
    params = dict(request.params)
    fmt = params.get("response_format")
    if fmt is not None and getattr(fmt, "model", None) is not None:
        params["response_format"] = replace(fmt, model=None)
    tools = [replace(t, function=None) if getattr(t, "function", None) is not None else t
             for t in request.tools] if request.tools else request.tools
    return replace(request, params=params, tools=tools)


def describe_error(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


def rebuild_error(detail: tuple[str, str]) -> BaseException:
    """The error rank 0 raised, as the same class of ``abstractllm.exceptions`` (else ``GenerationError``)."""
    name, message = detail
    cls = getattr(exceptions, name, None)
    if isinstance(cls, type) and issubclass(cls, exceptions.AbstractLLMError):
        try:
            return cls(message, provider="mlx")
        except TypeError:
            pass
    return GenerationError(f"{name}: {message}", provider="mlx")
