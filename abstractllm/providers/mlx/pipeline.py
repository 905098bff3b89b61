"""The one generation pipeline shared by the text (mlx-lm) and vision (mlx-vlm) adapters.

An adapter turns a request into a stream of ``Step`` (one per generated token, as the backend's own
streaming detokenizer produced it). ``run_pipeline`` turns steps into ``Response`` chunks: it matches
stop strings on the decoded text (holding back a possible partial match so no stop text ever leaks),
honours cancellation, and fills the last chunk with ``finish_reason``, exact ``usage`` and timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from ...types import Response, Usage
from ..worker import CancelToken

__all__ = ["Step", "StopMatcher", "run_pipeline"]


@dataclass
class Step:
    """One generated token as the backend reported it."""

    text: str
    token: int
    finish_reason: str | None  # the backend's: "stop" (EOS) / "length" on the last step
    prompt_tokens: int
    generation_tokens: int
    prompt_tps: float
    generation_tps: float
    peak_memory_bytes: int
    cached_tokens: int = 0


class StopMatcher:
    """Finds the first stop string in streamed text; ``feed`` returns the text that is safe to emit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.matched: str | None = None

    def _holdback(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        self._pending += text
        hits = [(i, s) for s in self.stops if (i := self._pending.find(s)) >= 0]
        if hits:
            index, self.matched = min(hits)
            out, self._pending = self._pending[:index], ""
            return out
        keep = self._holdback(self._pending)
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


def run_pipeline(
    steps: Iterable[Step],
    *,
    model: str,
    stop: Sequence[str],
    cancel: CancelToken,
    start_time: float | None = None,
) -> Iterator[Response]:
    """Turn backend steps into ``Response`` chunks; the last one carries finish_reason, usage, timings."""
    t0 = start_time if start_time is not None else time.perf_counter()
    matcher = StopMatcher(stop)
    first_token_at: float | None = None
    last: Step | None = None
    pending_ids: list[int] = []
    finish: str | None = None
    n_tokens = 0
    iterator = iter(steps)
    try:
        for step in iterator:
            last = step
            n_tokens += 1
            if first_token_at is None:
                first_token_at = time.perf_counter()
            pending_ids.append(step.token)
            text = matcher.feed(step.text)
            if matcher.matched is not None:
                finish = "stop"
            elif step.finish_reason is not None:
                finish = step.finish_reason
                text += matcher.flush()
            if finish is not None:
                if text:
                    yield Response(content=text, model=model, token_ids=pending_ids)
                    pending_ids = []
                break
            if text:
                yield Response(content=text, model=model, token_ids=pending_ids)
                pending_ids = []
            if cancel.cancelled:
                finish = "cancelled"
                break
        else:  # the steps ended without a finish reason: cancelled (e.g. during prefill) or exhausted
            finish = finish or ("cancelled" if cancel.cancelled else "stop")
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # lets the adapter save its prompt cache
    end = time.perf_counter()
    usage = Usage()
    if last is not None:
        usage = Usage(
            prompt_tokens=last.prompt_tokens + last.cached_tokens,
            completion_tokens=n_tokens,
            total_tokens=last.prompt_tokens + last.cached_tokens + n_tokens,
            cached_tokens=last.cached_tokens,
        )
    decode_s = end - first_token_at if first_token_at is not None else None
    yield Response(
        content=matcher.flush() if finish not in ("stop", "cancelled") else "",
        model=model,
        finish_reason=finish,
        usage=usage,
        ttft_s=(first_token_at - t0) if first_token_at is not None else None,
        total_s=end - t0,
        tokens_per_second=(last.generation_tps if last is not None and last.generation_tps else
                           (n_tokens / decode_s if decode_s else None)),
        prompt_tokens_per_second=last.prompt_tps if last is not None else None,
        peak_memory_bytes=last.peak_memory_bytes if last is not None else None,
        token_ids=pending_ids,
    )
