"""``SamplingParams``: the sampling settings of a request as one value, with presets.

    from abstractllm import SamplingParams
    llm.generate("Hi", sampling_params=SamplingParams.greedy(max_tokens=5))
    llm.generate("Hi", sampling_params=SamplingParams.creative(), seed=3)   # keyword arguments win

Every field is validated like the same keyword argument of ``generate`` (``abstractllm.params``); unset
fields (``None``) keep the provider's configured defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .params import PARAMS, SAMPLING_PRESETS

__all__ = ["SamplingParams"]


@dataclass
class SamplingParams:
    """Sampling settings (``None``: the provider's default). See ``abstractllm.params`` for each range."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    min_tokens: int | None = None
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                setattr(self, f.name, PARAMS[f.name].validate(f.name, value))

    @classmethod
    def greedy(cls, **overrides: Any) -> "SamplingParams":
        """Deterministic: the most likely token every time (``temperature=0``)."""
        return cls(**{**SAMPLING_PRESETS["greedy"], **overrides})

    @classmethod
    def creative(cls, **overrides: Any) -> "SamplingParams":
        """Varied text: a high temperature over the nucleus of likely tokens."""
        return cls(**{**SAMPLING_PRESETS["creative"], **overrides})

    @classmethod
    def balanced(cls, **overrides: Any) -> "SamplingParams":
        """Between the two: a moderate temperature, a nucleus, a light repetition penalty."""
        return cls(**{**SAMPLING_PRESETS["balanced"], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as ``generate`` keyword arguments."""
        return {k: v for k, v in asdict(self).items() if v is not None}
