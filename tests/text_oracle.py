"""The reference for the text-provider tests: raw mlx-lm, called the way its own docs and CLI call it.

Everything here runs mlx-lm directly (``mlx_lm.load`` + ``stream_generate`` on ids templated by the
tokenizer's own ``apply_chat_template``), with no abstractllm code in the path, so that comparing the
provider against it is a real parity check. Raw models are loaded once per (path) and kept, on the
main thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RawResult", "raw_load", "raw_prompt_ids", "raw_generate", "chat"]

_LOADED: dict[str, Any] = {}


@dataclass
class RawResult:
    text: str
    tokens: list[int]
    finish_reason: str | None
    prompt_tokens: int
    segments: list[str] = field(default_factory=list)


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
    for r in stream_generate(model, tok, mx.array(prompt_ids), max_tokens=max_tokens, sampler=sampler,
                             logits_processors=processors or None, **stream_kwargs):
        segments.append(r.text)
        tokens.append(int(r.token))
        last = r
    return RawResult("".join(segments), tokens, last.finish_reason if last else None,
                     int(last.prompt_tokens) if last else 0, segments)
