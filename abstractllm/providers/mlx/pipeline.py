"""The per-request half of the generation pipeline, shared by the text (mlx-lm) and vision (mlx-vlm)
backends of the batching engine.

A backend produces one ``Step`` per generated token for each request it serves (the text as the backend's
own streaming detokenizer produced it). A ``RequestPipeline`` turns one request's steps into ``Response``
chunks: it matches stop strings on the decoded text (holding back a possible partial match so no stop text
ever leaks), keeps the token ids and log-probabilities, and makes the last chunk with ``finish_reason``,
exact ``usage`` and the timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...types import Response, Usage

__all__ = ["Step", "StopMatcher", "RequestPipeline"]


@dataclass
class Step:
    """One generated token as the backend reported it."""

    text: str
    token: int
    finish_reason: str | None  # the backend's: "stop" (end of sequence) / "length" on the last step
    prompt_tokens: int  # prompt tokens computed (not served from the cache)
    cached_tokens: int = 0  # prompt tokens served from the prompt cache
    logprob: float | None = None  # of the chosen token
    token_text: str | None = None  # the chosen token alone, decoded (with logprobs)
    top_logprobs: list[tuple[int, str, float]] = field(default_factory=list)  # (id, text, logprob), best first


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


class RequestPipeline:
    """One request's steps in, its ``Response`` chunks out (see the module docstring).

    ``feed(step)`` returns the chunk to emit (or None) and sets ``finish`` when the request is over (end of
    sequence, ``max_tokens``, a stop string or stop token id); ``final(reason)`` makes the last chunk.
    ``stop_token_ids`` end the request like a stop string, the token itself not in the text.
    """

    def __init__(self, *, model: str, stop: Sequence[str] = (), stop_token_ids: Sequence[int] = (),
                 want_logprobs: bool = False, start_time: float | None = None) -> None:
        self.model = model
        self.matcher = StopMatcher(stop)
        self.stop_token_ids = set(stop_token_ids)
        self.want_logprobs = want_logprobs
        self.t0 = start_time if start_time is not None else time.perf_counter()
        self.first_at: float | None = None
        self.n_tokens = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.finish: str | None = None
        self.tools: Any = None  # a toolcalls.ToolCallExtractor when the request has tools
        self.hidden: dict[int, str] = {}  # control tokens whose text never reaches content (special.py)
        self.reasoning: Any = None  # a reasoning.ThinkSplitter / HarmonySplitter when the model thinks
        self.reasoning_tokens = 0
        self._harmony_calls = 0  # tool calls the reasoning splitter took out (harmony's commentary channel)
        self._thought: list[str] = []  # reasoning not yet in a chunk
        self._pending_ids: list[int] = []
        self._pending_logprobs: list[dict[str, Any]] = []
        self._pending_calls: list[Any] = []
        self._sent_first = False

    def _logprob_entry(self, step: Step) -> dict[str, Any]:
        return {"token": step.token, "text": step.token_text, "logprob": step.logprob,
                "top_logprobs": [{"token": t, "text": text, "logprob": lp} for t, text, lp in step.top_logprobs]}

    def _through_reasoning(self, text: str, last: bool) -> str:
        """The answer's text once the reasoning is taken out (it waits in ``_thought``; harmony's tool calls
        in ``_pending_calls``); counts the step as a reasoning token while the reasoning is open."""
        splitter = self.reasoning
        if splitter is None:
            return text
        was = splitter.in_reasoning
        thought, shown, calls = splitter.feed(text)
        self.reasoning_tokens += was or splitter.in_reasoning
        if last:
            more_thought, more_shown, more_calls = splitter.finish()
            thought, shown, calls = thought + more_thought, shown + more_shown, calls + more_calls
        if thought:
            self._thought.append(thought)
        self._pending_calls.extend(calls)
        self._harmony_calls += len(calls)
        return shown

    def _through_tools(self, text: str, last: bool) -> str:
        """The text shown once tool calls are taken out (they wait in ``_pending_calls``)."""
        if self.tools is None:
            return text
        shown, calls = self.tools.feed(text)
        if last:
            rest, more = self.tools.finish()
            shown, calls = shown + rest, calls + more
        self._pending_calls.extend(calls)
        return shown

    def _chunk(self, text: str) -> Response | None:
        if not text and not self._pending_calls and not self._thought:
            return None
        thought, self._thought = ("".join(self._thought) if self._thought else None), []
        chunk = Response(content=text, reasoning=thought, model=self.model, token_ids=self._pending_ids)
        if not self._sent_first:  # the prompt's size, known after prefill (servers announce it early)
            self._sent_first = True
            chunk.metadata.update(prompt_tokens=self.prompt_tokens + self.cached_tokens,
                                  cached_tokens=self.cached_tokens)
        if self._pending_calls:
            chunk.tool_calls, self._pending_calls = self._pending_calls, []
        if self.want_logprobs:
            chunk.logprobs = self._pending_logprobs
            self._pending_logprobs = []
        self._pending_ids = []
        return chunk

    def feed(self, step: Step) -> Response | None:
        if self.finish is not None:
            return None
        self.n_tokens += 1
        if self.first_at is None:
            self.first_at = time.perf_counter()
            self.prompt_tokens, self.cached_tokens = step.prompt_tokens, step.cached_tokens
        self._pending_ids.append(step.token)
        if self.want_logprobs:
            self._pending_logprobs.append(self._logprob_entry(step))
        if step.token in self.stop_token_ids:
            self.finish = "stop"
            return self._chunk(self._through_tools(self._through_reasoning("", True) + self.matcher.flush(), True))
        raw = step.text.replace(self.hidden[step.token], "", 1) if step.token in self.hidden else step.text
        last = step.finish_reason is not None
        text = self.matcher.feed(self._through_tools(self._through_reasoning(raw, last), last))
        if self.matcher.matched is not None:
            self.finish = "stop"
        elif step.finish_reason is not None:
            self.finish = step.finish_reason
            text += self.matcher.flush()
        return self._chunk(text)

    def final(self, reason: str | None = None, *, peak_memory_bytes: int | None = None) -> Response:
        """The last chunk: ``finish_reason`` (``reason`` overrides, e.g. ``"cancelled"``), usage, timings.
        A reply that called tools and ended by itself finishes with ``"tool_calls"``."""
        finish = reason or self.finish or "stop"
        called = (self.tools is not None and self.tools.calls) or self._harmony_calls
        if called and finish == "stop" and self.matcher.matched is None:
            finish = "tool_calls"
        end = time.perf_counter()
        prompt = self.prompt_tokens + self.cached_tokens
        usage = Usage(prompt_tokens=prompt, completion_tokens=self.n_tokens, total_tokens=prompt + self.n_tokens,
                      cached_tokens=self.cached_tokens, reasoning_tokens=self.reasoning_tokens)
        ttft = (self.first_at - self.t0) if self.first_at is not None else None
        decode_s = end - self.first_at if self.first_at is not None else None
        chunk = Response(
            content="" if finish in ("stop", "cancelled") else self.matcher.flush(),
            model=self.model, finish_reason=finish, usage=usage, ttft_s=ttft, total_s=end - self.t0,
            tokens_per_second=(self.n_tokens - 1) / decode_s if decode_s and self.n_tokens > 1 else None,
            prompt_tokens_per_second=self.prompt_tokens / ttft if ttft and self.prompt_tokens else None,
            peak_memory_bytes=peak_memory_bytes, token_ids=self._pending_ids,
        )
        if self.want_logprobs:
            chunk.logprobs = self._pending_logprobs
        if self._pending_calls:
            chunk.tool_calls, self._pending_calls = self._pending_calls, []
        if self.tools is not None and self.tools.unparsed:
            chunk.metadata["unparsed_tool_calls"] = list(self.tools.unparsed)
        if self.matcher.matched is not None and finish == "stop":
            chunk.metadata["stop_sequence"] = self.matcher.matched
        self._pending_ids, self._pending_logprobs = [], []
        return chunk
