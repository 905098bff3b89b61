"""Every error abstractllm raises, in one tree.

Backend errors (mlx, mlx-lm, mlx-vlm, Pillow, the network) are converted to these at one boundary per
layer, so application code can catch ``AbstractLLMError`` and swap providers without learning new types.

The tree::

    AbstractLLMError
    ├── UnsupportedProviderError        unknown provider name, or its extra is not installed
    ├── InvalidParameterError           (also ValueError) bad config key, type or range
    ├── ModelLoadError                  the model cannot be loaded (bad folder, config, architecture)
    │   └── ModelNotFoundError          no such folder / repo, or not cached while offline
    ├── MemoryLimitError                (also MemoryError) the work would exceed the memory budget
    ├── ImageProcessingError            an image or video input cannot be read or is refused
    ├── UnsupportedFeatureError         the model or provider lacks a capability (e.g. vision)
    └── GenerationError                 generation failed inside the backend

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "AbstractLLMError",
    "UnsupportedProviderError",
    "InvalidParameterError",
    "ModelLoadError",
    "ModelNotFoundError",
    "MemoryLimitError",
    "ImageProcessingError",
    "UnsupportedFeatureError",
    "GenerationError",
    "did_you_mean",
]


class AbstractLLMError(Exception):
    """Root of every error raised by abstractllm."""


class UnsupportedProviderError(AbstractLLMError):
    """The provider name is unknown, or its optional dependencies are not installed."""


class InvalidParameterError(AbstractLLMError, ValueError):
    """A configuration key or generation parameter is unknown, of the wrong type, or out of range.

    ``param`` names the offending parameter when there is one.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelLoadError(AbstractLLMError):
    """The model exists but cannot be loaded (corrupt config, missing weights, unknown architecture)."""


class ModelNotFoundError(ModelLoadError):
    """No model at that path, or a hub repo id that is not cached and cannot be downloaded."""


class MemoryLimitError(AbstractLLMError, MemoryError):
    """The requested work needs more memory than is available or allowed; refused before allocating.

    ``required_bytes`` and ``available_bytes`` carry the numbers from the message.
    """

    def __init__(
        self, message: str, *, required_bytes: int | None = None, available_bytes: int | None = None
    ) -> None:
        super().__init__(message)
        self.required_bytes = required_bytes
        self.available_bytes = available_bytes


class ImageProcessingError(AbstractLLMError):
    """An image or video input cannot be loaded, decoded or is refused (size, type, source)."""


class UnsupportedFeatureError(AbstractLLMError):
    """The provider or model does not support what was asked (images to a text model, video, ...)."""


class GenerationError(AbstractLLMError):
    """Generation failed inside the backend."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
