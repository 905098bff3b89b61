"""The interface the scheduler drives: one ``ModelAdapter`` per loaded model (``text.TextAdapter`` over
mlx-lm, ``vision.VisionAdapter`` over mlx-vlm, ``vision_text.RoutedAdapter`` over both), chosen by
``registry.py``. Everything here runs on the provider's worker thread.

The batching interface (``scheduler.BatchAdapter``): ``capacity`` (the batch size: the one source of it,
from the ``max_batch_size`` config and the model's limits), ``admit`` (a request joins the batch),
``step`` (one decode step of the batch, or a prefill chunk, yielding at most one ``Step`` per request),
``release`` (a request that ended or was cancelled leaves; its prompt cache is stored) and ``recover``
(after a failed step). An adapter keeps its per-request state itself (keyed by the request); in ``admit``
it may set up the request's output (``req.pipeline``: hidden tokens, reasoning splitter, tool-call
extractor; ``req.emit`` wrapped) and nothing else of it. The checks every adapter shares live here once:
parameters against the model's vocabulary, and the random state after a failed step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from ...exceptions import InvalidParameterError
from .source import ModelSpec

if TYPE_CHECKING:
    from .scheduler import EngineRequest
    from .pipeline import Step

__all__ = ["ModelAdapter"]


class ModelAdapter(ABC):
    """A loaded model that generates for several requests at once (see the module docstring)."""

    kind: str = "text"

    def __init__(self, spec: ModelSpec, config: dict[str, Any], on_gpu: bool) -> None:
        self.spec = spec
        self.config = config
        self.on_gpu = on_gpu
        self.info: dict[str, Any] = {}
        self.cache_hits = 0
        self.cache_lookups = 0

    # ------------------------------------------------------------------ lifecycle
    @abstractmethod
    def load(self) -> None:
        """Load the weights (and tokenizer / processor)."""

    @abstractmethod
    def unload(self) -> None:
        """Drop the model, its batch and its prompt cache."""

    @abstractmethod
    def clear_cache(self) -> None:
        """Drop the prompt cache (requests in flight keep their own KV cache)."""

    @property
    @abstractmethod
    def cache_stats(self) -> dict[str, int]:
        """``entries``, ``bytes`` and ``hits`` of the prompt cache."""

    # ------------------------------------------------------------------ batching
    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many requests can be admitted at once."""

    @abstractmethod
    def admit(self, req: "EngineRequest") -> bool:
        """Prepare ``req`` (template, media, cache lookup, memory check) and add it to the batch. Typed
        errors raise here, before anything is generated; False: it cannot join the current batch now (it
        waits until the batch changes)."""

    @abstractmethod
    def step(self) -> list[tuple["EngineRequest", "Step"]]:
        """Advance the batch once; the steps produced (at most one per admitted request)."""

    @abstractmethod
    def release(self, req: "EngineRequest", *, failed: bool = False) -> None:
        """Take ``req`` out of the batch (finished, stopped or cancelled) and store its prompt cache,
        unless ``failed`` (its cache may be half-updated)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every admitted request (after a failed step, on unload)."""

    def recover(self) -> None:
        """After a failed step: drop the batch and give the sampler a usable random state."""
        self.reset()
        self.reseed_after_failure()

    def cached_tokens(self, req: "EngineRequest") -> int:
        """The prompt tokens of admitted ``req`` served from the prompt cache (the lock-step loop checks that
        every rank found as many)."""
        return 0

    # ------------------------------------------------------------------ shared checks
    def check_params(self, params: dict[str, Any]) -> None:
        """Parameters that only the model can judge: token ids within its vocabulary."""
        vocab = self.spec.vocab_size
        if vocab is None:
            return
        top_k = params.get("top_k") or 0
        if top_k and top_k >= vocab:
            raise InvalidParameterError(
                f"Invalid value for 'top_k': {top_k} must be below the model's vocabulary size ({vocab}); "
                "0 disables top-k.", param="top_k")
        for name in ("logit_bias", "stop_token_ids"):
            ids = params.get(name) or ()
            bad = [t for t in ids if t >= vocab]
            if bad:
                raise InvalidParameterError(
                    f"Invalid value for '{name}': token id {bad[0]} is outside the model's vocabulary "
                    f"(0..{vocab - 1}).", param=name)

    @staticmethod
    def reseed_after_failure() -> None:
        """An error inside a compiled sampler leaves this thread's random state as an unevaluable
        placeholder: every later sampling call would fail. Give it a fresh key."""
        import os

        import mlx.core as mx

        mx.random.seed(int.from_bytes(os.urandom(8), "little") >> 1)
