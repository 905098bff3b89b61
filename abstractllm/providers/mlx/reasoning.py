"""Reasoning (thinking) in a local model's reply: which format the model thinks in, read from its files, and
taking the reasoning out of the stream.

Formats, detected from the tokenizer's vocabulary and the chat template (never from the model's name):

- ``think``: ``<think>...</think>`` before the answer (Qwen3, QwQ, SmolLM3, DeepSeek-R1 distills). Where the
  generation prompt already opens the block (``starts_inside``), the reply starts inside the reasoning.
  ``enable_thinking`` in the template is the switch (``thinking=False``).
- ``harmony``: gpt-oss's channels: ``analysis`` is reasoning, ``final`` is content, ``commentary`` addressed
  ``to=functions.NAME`` is a tool call. ``reasoning_effort`` in the template takes the level.

A splitter turns the reply's text, fed in pieces, into reasoning and content deltas (and, for harmony, tool
calls): markers never reach either, a marker cut between two pieces is held back until it is whole, blank
lines around the reasoning are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from ...params import THINKING_LEVELS
from ...types import ToolCall
from .toolcalls import new_call_id

__all__ = ["ReasoningFormat", "detect_reasoning", "ThinkSplitter", "HarmonySplitter", "ThinkingBudget",
           "THINKING_LEVELS"]

_HARMONY = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|constrain|>")


@dataclass(frozen=True)
class ReasoningFormat:
    """How a model thinks (see the module docstring)."""

    kind: str  # "think" | "harmony"
    open: str | None  # the marker that opens the reasoning ("<think>")
    close: str  # the marker that ends it ("</think>"; harmony: "<|end|>")
    starts_inside: bool = False  # the generation prompt opens the reasoning
    switch: str | None = None  # the template variable that turns thinking off ("enable_thinking")
    effort: str | None = None  # the template variable that takes a level ("reasoning_effort")

    @property
    def markers(self) -> tuple[str, ...]:
        """Markup the splitter reads (kept in the text for it, even where the tokens are special)."""
        return _HARMONY if self.kind == "harmony" else tuple(m for m in (self.open, self.close) if m)

    @property
    def budget_close(self) -> str:
        """What ends the reasoning early (``thinking_budget``): the close marker and what opens the answer."""
        if self.kind == "harmony":
            return "<|end|><|start|>assistant<|channel|>final<|message|>"
        return self.close

    def splitter(self) -> "ThinkSplitter | HarmonySplitter":
        return HarmonySplitter() if self.kind == "harmony" else ThinkSplitter(self)


def detect_reasoning(template: Any, vocab: dict[str, int], render_prompt: Callable[[], str]) -> ReasoningFormat | None:
    """The reasoning format of a model with chat ``template`` and ``vocab``; ``render_prompt()`` renders a
    one-message conversation's generation prompt (to see whether it opens the reasoning)."""
    if not isinstance(template, str):
        return None
    if all(m in vocab for m in ("<|channel|>", "<|message|>", "<|start|>", "<|end|>")) and "<|channel|>" in template:
        return ReasoningFormat("harmony", "<|channel|>analysis<|message|>", "<|end|>",
                               effort="reasoning_effort" if "reasoning_effort" in template else None)
    if "<think>" in vocab and "</think>" in vocab and "think>" in template:
        try:
            inside = render_prompt().rstrip().endswith("<think>")
        except Exception:  # a template that cannot render the probe: assume the model opens the block
            inside = False
        return ReasoningFormat("think", "<think>", "</think>", starts_inside=inside,
                               switch="enable_thinking" if "enable_thinking" in template else None)
    return None


def _held(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class ThinkSplitter:
    """``<think>`` reasoning out of a reply (``feed(text) -> (reasoning, content, calls)``)."""

    def __init__(self, fmt: ReasoningFormat, inside: bool | None = None) -> None:
        self.fmt = fmt
        self.state = "inside" if (fmt.starts_inside if inside is None else inside) else "start"
        self._pending = ""  # text not yet decided (a partial marker, blank lines)
        self._lead = True  # at the start of the reasoning or of the answer: blank lines dropped

    @property
    def in_reasoning(self) -> bool:
        return self.state == "inside"

    def feed(self, text: str) -> tuple[str, str, list[ToolCall]]:
        rest = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        while rest:
            if self.state == "start":  # before the first visible text: the reasoning may open
                head = rest.lstrip()
                if not head or (len(head) < len(self.fmt.open) and self.fmt.open.startswith(head)):
                    self._pending = rest
                    break
                if head.startswith(self.fmt.open):
                    self.state, self._lead, rest = "inside", True, head[len(self.fmt.open):]
                else:
                    self.state, self._lead = "after", False
                continue
            if self.state == "inside":
                if self._lead:
                    rest = rest.lstrip("\n")
                    if not rest:
                        break
                    self._lead = False
                cut = rest.find(self.fmt.close)
                if cut >= 0:
                    reasoning.append(rest[:cut].rstrip("\n"))
                    self.state, self._lead, rest = "answer", True, rest[cut + len(self.fmt.close):]
                    continue
                keep = _held(rest, self.fmt.close)  # a partial marker, and the blank lines before it
                keep += len(rest) - keep - len(rest[:len(rest) - keep].rstrip("\n"))
                reasoning.append(rest[:len(rest) - keep])
                self._pending = rest[len(rest) - keep:]
                break
            if self.state == "answer" and self._lead:  # blank lines after the closing marker
                rest = rest.lstrip("\n")
                if not rest:
                    break
                self._lead = False
            content.append(rest)
            break
        return "".join(reasoning), "".join(content), []

    def finish(self) -> tuple[str, str, list[ToolCall]]:
        rest, self._pending = self._pending, ""
        if self.state == "inside":  # cut inside the reasoning (max_tokens)
            return rest.rstrip("\n"), "", []
        if self.state == "answer":
            return "", rest.lstrip("\n"), []
        return "", rest, []


_RECIPIENT = re.compile(r"to=functions\.([\w.\-]+)")


class HarmonySplitter:
    """gpt-oss's harmony messages out of a reply: ``analysis`` to reasoning, ``final`` (and commentary with no
    recipient) to content, ``commentary to=functions.NAME`` to tool calls (its JSON arguments)."""

    def __init__(self) -> None:
        self._pending = ""
        self._header: str | None = ""  # inside a header (channel, recipient) until <|message|>; None: in a body
        self._channel = ""
        self._recipient: str | None = None
        self._body = ""  # a tool call's arguments so far
        self.unparsed: list[str] = []

    @property
    def in_reasoning(self) -> bool:
        if self._header is not None:  # a header: an analysis one counts with its reasoning
            return "analysis" in self._header
        return self._channel == "analysis"

    def feed(self, text: str) -> tuple[str, str, list[ToolCall]]:
        rest = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        calls: list[ToolCall] = []
        while rest:
            if self._header is not None:
                header = self._header + rest
                # a header: its channel, or the recipient after the role the prompt already wrote
                if not any(header.startswith(m) or m.startswith(header) for m in ("<|channel|>", "<|start|>", " to=")):
                    self._open("")  # text where a header should be: the answer, unmarked
                    rest = header
                    continue
                cut = header.find("<|message|>")
                if cut < 0:
                    self._header = header
                    break
                self._open(header[:cut])
                rest = header[cut + len("<|message|>"):]
                continue
            cuts = [(i, m) for m in ("<|end|>", "<|start|>", "<|channel|>") if (i := rest.find(m)) >= 0]
            if cuts:
                i, marker = min(cuts)
                self._emit(rest[:i], reasoning, content)
                calls += self._close()
                self._header = "<|channel|>" if marker == "<|channel|>" else ""  # the next message's header
                rest = rest[i + len(marker):]
                continue
            keep = max(_held(rest, m) for m in ("<|end|>", "<|start|>", "<|channel|>"))
            self._emit(rest[:len(rest) - keep], reasoning, content)
            self._pending = rest[len(rest) - keep:]
            break
        return "".join(reasoning), "".join(content), calls

    def _open(self, header: str) -> None:
        """A message's header is whole: its channel and recipient."""
        channel = re.search(r"<\|channel\|>\s*(\w+)", header)
        self._channel = channel.group(1) if channel else "final"
        recipient = _RECIPIENT.search(header)
        self._recipient = recipient.group(1) if recipient else None
        self._header, self._body = None, ""

    def _emit(self, text: str, reasoning: list[str], content: list[str]) -> None:
        if not text or self._header is not None:
            return
        if self._recipient is not None:
            self._body += text
        elif self._channel == "analysis":
            reasoning.append(text)
        else:
            content.append(text)

    def _close(self) -> list[ToolCall]:
        """The end of a message: a tool call's arguments are whole."""
        name, body = self._recipient, self._body
        self._recipient, self._body = None, ""
        if name is None:
            return []
        try:
            arguments = json.loads(body) if body.strip() else {}
            if not isinstance(arguments, dict):
                raise ValueError("not an object")
        except ValueError:
            self.unparsed.append(body)
            return []
        return [ToolCall(id=new_call_id(), name=name, arguments=arguments)]

    def finish(self) -> tuple[str, str, list[ToolCall]]:
        rest, self._pending = self._pending, ""
        reasoning: list[str] = []
        content: list[str] = []
        if self._header is None:
            self._emit(rest, reasoning, content)
        return "".join(reasoning), "".join(content), self._close()


class ThinkingBudget:
    """An mlx-lm logits processor that ends the reasoning after ``budget`` tokens: from then on it forces the
    tokens of ``close_ids`` (the format's closing marker, and for harmony the opening of the answer), one per
    step, then lets the model answer. It runs after a grammar's processor: where the grammar does not allow
    the close yet (inside a UTF-8 character), it waits a step."""

    def __init__(self, budget: int, open_ids: list[int], close_ids: list[int], inside: bool) -> None:
        self.budget = budget
        self.open_ids = open_ids
        self.close_ids = close_ids
        self.inside = inside
        self.count = 0
        self.forcing = 0  # how many closing tokens were forced (0: not forcing)
        self.done = False
        self._generated: list[int] = []
        self._started = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self._started:
            self._observe(int(tokens[-1].item()))
        self._started = True
        if self.done or not self.inside or (self.count < self.budget and not self.forcing):
            return logits
        target = self.close_ids[self.forcing]
        if not bool(mx.isfinite(logits[..., target]).all()):  # a grammar does not allow it here
            if self.forcing:  # the reasoning is closed: the grammar decides what follows
                self.done = True
            return logits  # (else: not yet, inside a UTF-8 character: the next step)
        self.forcing += 1
        mask = mx.full(logits.shape, -float("inf"), dtype=logits.dtype)
        mask[..., target] = 0
        return logits + mask

    def _observe(self, token: int) -> None:
        self._generated.append(token)
        if self.done:
            return
        if self.forcing:
            if self.forcing >= len(self.close_ids):
                self.done = True
            return
        if not self.inside:
            if self._generated[-len(self.open_ids):] == self.open_ids:
                self.inside = True
            return
        self.count += 1
        if self._generated[-len(self.close_ids):] == self.close_ids:  # the model closed it by itself
            self.done = True


def template_kwargs(fmt: ReasoningFormat | None, params: dict[str, Any], constrained: bool, model: str) -> dict[str, Any]:
    """The chat-template variables of a request: its ``chat_template_kwargs``, then what ``thinking`` asks.

    ``thinking=False`` turns the template's switch off (``UnsupportedFeatureError`` for a format that has none);
    ``True`` or a level turns it on, a level going to the template's ``reasoning_effort`` where it reads one;
    ``thinking`` on a model with no reasoning format is ``UnsupportedFeatureError`` naming the model. A
    constrained request (a forced tool call, a ``response_format``) on a switchable model thinks only when
    ``thinking`` asks for it: the grammar then starts at the answer.
    """
    from ...exceptions import UnsupportedFeatureError

    out = dict(params.get("chat_template_kwargs") or {})
    thinking = params.get("thinking")
    if thinking is None and constrained and fmt is not None and fmt.switch:
        thinking = False
    if thinking is None:
        return out
    if fmt is None:
        if thinking is False:
            return out  # nothing to switch off
        raise UnsupportedFeatureError(f"thinking={thinking!r}: the model {model!r} has no reasoning format (its chat "
                                      "template and tokenizer have no thinking markup).", feature="thinking")
    if thinking is False:
        if not fmt.switch:
            raise UnsupportedFeatureError(f"thinking=False: the {fmt.kind} reasoning of {model!r} cannot be switched "
                                          "off (its chat template has no switch); use thinking_budget=0 to end it at "
                                          "once.", feature="thinking")
        out[fmt.switch] = False
        return out
    if fmt.switch:
        out[fmt.switch] = True
    if thinking in THINKING_LEVELS and fmt.effort:
        out[fmt.effort] = thinking
    return out


def request_reasoning(fmt: ReasoningFormat | None, params: dict[str, Any], prompt_tail: str,
                      encode: Callable[[str], list[int]]) -> tuple[Any, list[Any]]:
    """A request's reasoning splitter (``None``: the model does not think) and its ``thinking_budget``
    processor (as a list), given the text at the end of its rendered prompt."""
    if fmt is None:
        return None, []
    inside = opens_reasoning(fmt, prompt_tail)
    splitter = ThinkSplitter(fmt, inside) if fmt.kind == "think" else HarmonySplitter()
    budget = params.get("thinking_budget")
    if budget is None or params.get("thinking") is False:
        return splitter, []
    open_ids = encode(fmt.open) if fmt.open else []
    return splitter, [ThinkingBudget(int(budget), open_ids, encode(fmt.budget_close), inside)]


def opens_reasoning(fmt: ReasoningFormat | None, prompt_tail: str) -> bool:
    """Whether the rendered prompt (its last characters) leaves the reply inside the reasoning."""
    return fmt is not None and fmt.kind == "think" and prompt_tail.rstrip().endswith(fmt.open or "\0")


def grammar_thinking(fmt: ReasoningFormat | None, kwargs: dict[str, Any], inside: bool,
                     marker: Callable[[str], str]) -> tuple[str, str]:
    """What a constrained request's grammar lets come first: the reasoning where the prompt opened it, an
    optional reasoning block (harmony: an ``analysis`` message) where the model may think, nothing where
    thinking is off."""
    from .constrain import NO_THINKING, harmony_thinking, thinking_rules

    if fmt is not None and fmt.kind == "harmony":
        return harmony_thinking(marker)
    if fmt is None:
        return NO_THINKING
    if not inside and fmt.switch and kwargs.get(fmt.switch) is False:
        return NO_THINKING
    return thinking_rules(fmt.open, fmt.close, inside, marker)
