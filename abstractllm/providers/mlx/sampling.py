"""Per-request sampling for the batching engine: mlx-lm's samplers and logits processors, with a random
key of the request's own.

``make_request_sampler`` builds mlx-lm's sampler chain (``apply_top_p``, ``apply_min_p``, ``apply_top_k``
of ``mlx_lm.sample_utils``) but draws with ``mx.random.categorical(..., key=...)`` from a key that belongs
to the request: a seeded request samples the same tokens alone or in a batch with others, and the
process-wide random state is never touched. The key advances exactly as MLX's global one does after
``mx.random.seed(seed)`` (split, keep the first half, draw with the second), so a seeded request also
equals raw ``mlx_lm.stream_generate`` after ``mx.random.seed(seed)``, token for token.

Greedy requests share one sampler object (``greedy``): mlx-lm's batch then takes one ``argmax`` for all
its greedy rows.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["make_request_sampler", "make_request_processors", "greedy", "fill_logprobs", "MinTokens"]


def greedy(logprobs: Any) -> Any:
    """mlx-lm's greedy sampler (one shared object: batched rows that all use it sample in one call)."""
    from mlx_lm.sample_utils import greedy_sampler

    return greedy_sampler(logprobs)


class _KeyedSampler:
    """mlx-lm's sampler chain drawing from the request's own random key."""

    def __init__(self, temp: float, top_p: float, min_p: float, top_k: int, key: Any) -> None:
        from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

        self.inv_temp = 1.0 / temp
        self.methods: list[Callable[[Any], Any]] = []
        if 0 < top_p < 1.0:
            self.methods.append(lambda x: apply_top_p(x, top_p))
        if min_p != 0.0:
            self.methods.append(lambda x: apply_min_p(x, min_p, 1))
        if top_k > 0:
            self.methods.append(lambda x: apply_top_k(x, top_k))
        self.key = key

    def __call__(self, logprobs: Any) -> Any:
        import mlx.core as mx

        for method in self.methods:
            logprobs = method(logprobs)
        keys = mx.random.split(self.key)
        self.key = keys[0]
        return mx.random.categorical(logprobs * self.inv_temp, key=keys[1])


def make_request_sampler(params: dict[str, Any]) -> Callable[[Any], Any]:
    """The sampler of one request: ``greedy`` at temperature 0, else mlx-lm's chain with its own key
    (from ``seed``, or fresh random bytes when no seed is given)."""
    import os

    import mlx.core as mx

    temp = float(params["temperature"])
    if temp == 0:
        return greedy
    seed = params.get("seed")
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") >> 1
    top_p = float(params.get("top_p") or 1.0)
    return _KeyedSampler(temp, top_p if top_p < 1.0 else 0.0, float(params.get("min_p") or 0.0),
                         int(params.get("top_k") or 0), mx.random.key(int(seed)))


def make_request_processors(params: dict[str, Any], eos_token_ids: list[int]) -> list[Callable[[Any, Any], Any]]:
    """mlx-lm's logits processors for the request: ``logit_bias``, then the repetition, presence and
    frequency penalties over the last ``repetition_context_size`` tokens (prompt included); and, with
    ``min_tokens``, end-of-sequence tokens held back until that many tokens were generated."""
    from mlx_lm.sample_utils import make_logits_processors

    ctx = params["repetition_context_size"]
    rep = params["repetition_penalty"]
    processors = list(make_logits_processors(
        logit_bias=params.get("logit_bias") or None,
        repetition_penalty=rep if rep != 1.0 else None, repetition_context_size=ctx,
        presence_penalty=params.get("presence_penalty") or None, presence_context_size=ctx,
        frequency_penalty=params.get("frequency_penalty") or None, frequency_context_size=ctx,
    ))
    min_tokens = int(params.get("min_tokens") or 0)
    if min_tokens and eos_token_ids:
        processors.append(MinTokens(min_tokens, eos_token_ids))
    return processors


class MinTokens:
    """Masks the end-of-sequence tokens for the first ``min_tokens`` generated tokens. mlx-lm calls a
    processor once per generated token, so counting calls counts tokens."""

    def __init__(self, min_tokens: int, eos: list[int]) -> None:
        self.left = min_tokens
        self.eos = list(eos)

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self.left <= 0:
            return logits
        self.left -= 1
        return logits.at[:, mx.array(self.eos)].add(-mx.inf)


def fill_logprobs(step: Any, logprobs: Any, k: int, decode: Callable[[list[int]], str]) -> None:
    """Set ``step``'s log-probability, its token's text and the ``k`` most likely alternatives (id, text,
    log-probability; best first) from the full-vocabulary ``logprobs`` of that position."""
    import mlx.core as mx

    token = step.token
    step.logprob = float(logprobs[token].item())
    step.token_text = decode([token])
    if k <= 0:
        step.top_logprobs = []
        return
    top = mx.argpartition(-logprobs, kth=k - 1)[:k]
    pairs = sorted(zip(top.tolist(), logprobs[top].tolist()), key=lambda p: -p[1])
    step.top_logprobs = [(int(t), decode([int(t)]), float(v)) for t, v in pairs]
