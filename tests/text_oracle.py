"""The reference for the text-provider tests: raw mlx-lm, called the way its own docs and CLI call it.

Everything here runs mlx-lm directly (``mlx_lm.load`` + ``stream_generate`` on ids templated by the
tokenizer's own ``apply_chat_template``), with no abstractllm code in the path, so that comparing the
provider against it is a real parity check. Raw models are loaded once per (path) and kept, on the
main thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RawResult", "raw_load", "raw_prompt_ids", "raw_generate", "chat"]

_LOADED: dict[str, Any] = {}


@dataclass
class RawResult:
    """Raw mlx-lm's greedy reply: ``text`` is its content (the tokenizer's decode of the reply's ids, without
    control tokens), ``segments`` the text of each step."""

    text: str
    tokens: list[int]
    segments: list[str]
    finish_reason: str | None
    prompt_tokens: int


def raw_load(path: str | Path):
    """``mlx_lm.load(path)`` once per path (float32 models: no cast needed to match the provider on CPU)."""
    key = str(path)
    if key not in _LOADED:
        from mlx_lm import load

        _LOADED[key] = load(key)
    return _LOADED[key]


def chat(prompt: str | None = None, system: str | None = None, messages: list[dict] | None = None) -> list[dict]:
    """The OpenAI-style conversation the provider builds from (prompt, system_prompt, messages)."""
    out = list(messages or [])
    if prompt is not None:
        out.append({"role": "user", "content": prompt})
    if system:
        out.insert(0, {"role": "system", "content": system})
    return out


def raw_prompt_ids(path: str | Path, conversation: list[dict]) -> list[int]:
    """The templated prompt ids, as mlx-lm's CLI computes them."""
    _, tok = raw_load(path)
    return list(tok.apply_chat_template(conversation, add_generation_prompt=True))


def raw_generate(
    path: str | Path,
    prompt_ids: list[int],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 0.0,
    top_k: int = 0,
    min_p: float = 0.0,
    repetition_penalty: float | None = None,
    repetition_context_size: int = 20,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
    logit_bias: dict[int, float] | None = None,
    seed: int | None = None,
    **stream_kwargs: Any,
) -> RawResult:
    """Raw ``mlx_lm.stream_generate`` with mlx-lm's own sampler and logits processors."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    model, tok = raw_load(path)
    if seed is not None:
        mx.random.seed(seed)
    sampler = make_sampler(temp=temperature, top_p=top_p, min_p=min_p, top_k=top_k)
    processors = make_logits_processors(
        logit_bias=logit_bias, repetition_penalty=repetition_penalty, repetition_context_size=repetition_context_size,
        presence_penalty=presence_penalty, presence_context_size=repetition_context_size,
        frequency_penalty=frequency_penalty, frequency_context_size=repetition_context_size)
    segments, tokens, last = [], [], None
    special = {i: t.content for i, t in tok._tokenizer.added_tokens_decoder.items() if t.special}
    for r in stream_generate(model, tok, mx.array(prompt_ids), max_tokens=max_tokens, sampler=sampler,
                             logits_processors=processors or None, **stream_kwargs):
        # a reply's content: control tokens dropped (decode(skip_special_tokens=True) does too)
        segments.append(r.text.replace(special[r.token], "", 1) if r.token in special else r.text)
        tokens.append(int(r.token))
        last = r
    return RawResult(*_as_decoded(tok, segments, tokens), last.finish_reason if last else None,
                     int(last.prompt_tokens) if last else 0)


def _as_decoded(tok: Any, segments: list[str], tokens: list[int]) -> tuple[str, list[int], list[str]]:
    """mlx-lm's stream segments with the first token's leading space that its BPE streaming detokenizer
    drops put back; checked against the tokenizer's own ``decode`` (the reply's true text)."""
    reply = [t for t in tokens if t not in tok.eos_token_ids]
    truth = tok._tokenizer.decode(reply, skip_special_tokens=True)
    text = "".join(segments)
    if truth.startswith(" ") and not text.startswith(" "):
        first = next(i for i, s in enumerate(segments) if s)
        segments = [*segments[:first], " " + segments[first], *segments[first + 1:]]
        text = " " + text
    assert text == truth or "\ufffd" in truth + text, (text, truth)
    return text, tokens, segments
