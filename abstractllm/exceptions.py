"""Every error abstractllm raises, in one tree.

Backend errors (mlx, mlx-lm, mlx-vlm, Pillow, the network, a remote provider's SDK) are converted to these
at one boundary per layer, so application code can catch ``AbstractLLMError`` and swap providers without
learning new types. Every error carries ``provider`` (the provider's name, when one raised it),
``original_exception`` (the backend's exception it was converted from) and ``details`` (a dict).

The tree::

    AbstractLLMError
    ├── UnsupportedProviderError        (also ValueError) unknown provider name, or its extra is not installed
    ├── InvalidRequestError             (also ValueError) the request cannot be served as given
    │   ├── InvalidParameterError       bad config key, parameter type or range (``param`` names it)
    │   └── ContextWindowExceededError  the prompt (plus max_tokens) does not fit the model's context window
    ├── ModelLoadError                  the model cannot be loaded (bad folder, config, architecture)
    │   ├── ModelNotFoundError          no such folder / repo, or not cached while offline
    │   └── UnsupportedModelError       the backend has no model of that architecture
    ├── ResourceExceededError           a resource budget would be exceeded
    │   ├── MemoryLimitError            (also MemoryError) the work would exceed the memory budget
    │   └── QueueFullError              the provider's request queue is full (retry later)
    ├── FileProcessingError             a file input cannot be read or is refused (size, type, source)
    │   └── ImageProcessingError        an image or video input cannot be read or is refused
    ├── UnsupportedFeatureError         the model or provider lacks a capability (e.g. vision, tools)
    ├── GenerationError                 generation failed inside the backend
    ├── ProviderAPIError                a remote provider answered with an error (``status_code``, ``body``)
    │   ├── AuthenticationError         the API key is missing, wrong or not allowed (401, 403)
    │   ├── QuotaExceededError          rate limit or quota exceeded (429)
    │   └── ContentFilterError          the provider's content filter refused the request or reply
    ├── ProviderConnectionError         (also ConnectionError) the provider's server cannot be reached
    └── RequestTimeoutError             (also TimeoutError) the provider did not answer in time

AbstractLLM 1.x names: ``ModelLoadingError`` is ``ModelLoadError`` and ``MemoryExceededError`` is
``MemoryLimitError`` (the same classes). Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

__all__ = [
    "AbstractLLMError",
    "UnsupportedProviderError",
    "InvalidRequestError",
    "InvalidParameterError",
    "ContextWindowExceededError",
    "ModelLoadError",
    "ModelLoadingError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "ResourceExceededError",
    "MemoryLimitError",
    "MemoryExceededError",
    "QueueFullError",
    "FileProcessingError",
    "ImageProcessingError",
    "UnsupportedFeatureError",
    "GenerationError",
    "ProviderAPIError",
    "AuthenticationError",
    "QuotaExceededError",
    "ContentFilterError",
    "ProviderConnectionError",
    "RequestTimeoutError",
    "did_you_mean",
]


class AbstractLLMError(Exception):
    """Root of every error raised by abstractllm.

    ``provider``: the name of the provider that raised it (``"mlx"``, ``"openai"``, ...), when known;
    ``original_exception``: the backend exception it was converted from, if any (also ``__cause__``);
    ``details``: a dict of extra facts (status codes, sizes, ...).
    """

    def __init__(self, message: str = "", *, provider: str | None = None,
                 original_exception: BaseException | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self._original = original_exception
        self.details: dict[str, Any] = dict(details or {})

    @property
    def original_exception(self) -> BaseException | None:
        """The backend exception this error was converted from (given, else the ``raise ... from`` cause)."""
        return self._original if self._original is not None else self.__cause__

    @original_exception.setter
    def original_exception(self, value: BaseException | None) -> None:
        self._original = value

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedProviderError(AbstractLLMError, ValueError):
    """The provider name is unknown, or its optional dependencies are not installed."""


class InvalidRequestError(AbstractLLMError, ValueError):
    """The request cannot be served as given (malformed input, a value the provider refuses)."""


class InvalidParameterError(InvalidRequestError):
    """A configuration key or generation parameter is unknown, of the wrong type, or out of range.

    ``param`` names the offending parameter when there is one.
    """

    def __init__(self, message: str = "", *, param: str | None = None, value: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.param = param
        self.value = value
        if param is not None:
            self.details.setdefault("param", param)

    @property
    def parameter(self) -> str | None:
        """The 1.x name of ``param``."""
        return self.param


class ContextWindowExceededError(InvalidRequestError):
    """The prompt, plus the tokens asked for, does not fit the model's context window.

    ``context_window`` and ``content_length`` (tokens) carry the numbers when known.
    """

    def __init__(self, message: str = "", *, context_window: int | None = None, content_length: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.context_window = context_window
        self.content_length = content_length


class ModelLoadError(AbstractLLMError):
    """The model exists but cannot be loaded (corrupt config, missing weights, unknown architecture)."""


ModelLoadingError = ModelLoadError  # the AbstractLLM 1.x name


class ModelNotFoundError(ModelLoadError):
    """No model at that path, or a hub repo id that is not cached and cannot be downloaded."""


class UnsupportedModelError(ModelLoadError):
    """The model exists but its architecture is not supported by the backend (1.x name)."""


class ResourceExceededError(AbstractLLMError):
    """The work would exceed a resource budget."""


class MemoryLimitError(ResourceExceededError, MemoryError):
    """The requested work needs more memory than is available or allowed; refused before allocating.

    ``required_bytes`` and ``available_bytes`` carry the numbers from the message.
    """

    def __init__(self, message: str = "", *, required_bytes: int | None = None, available_bytes: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.required_bytes = required_bytes
        self.available_bytes = available_bytes

    # 1.x attribute names
    @property
    def required_memory(self) -> int | None:
        return self.required_bytes

    @property
    def available_memory(self) -> int | None:
        return self.available_bytes


MemoryExceededError = MemoryLimitError  # the AbstractLLM 1.x name


class QueueFullError(ResourceExceededError):
    """The provider already holds ``max_queue_size`` requests waiting for a place in the batch; nothing
    was queued. Retry later (``retry_after_s`` suggests when), or raise ``max_queue_size``."""

    def __init__(self, message: str = "", *, queue_size: int | None = None, retry_after_s: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s


class FileProcessingError(AbstractLLMError):
    """A file input (text file, image, video) cannot be read, is of an unsupported type, or is too large.
    ``file_path`` and ``file_type`` read ``details`` when known."""

    @property
    def file_path(self) -> str | None:
        return self.details.get("file_path")

    @property
    def file_type(self) -> str | None:
        return self.details.get("file_type")


class ImageProcessingError(FileProcessingError):
    """An image or video input cannot be loaded, decoded or is refused (size, type, source)."""


class UnsupportedFeatureError(AbstractLLMError):
    """The provider or model does not support what was asked (images to a text model, video, tools...).
    ``feature`` names it when known (a ``ModelCapability`` or a word)."""

    def __init__(self, message: str = "", *, feature: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.feature = feature


class GenerationError(AbstractLLMError):
    """Generation failed inside the backend."""


class ProviderAPIError(AbstractLLMError):
    """A remote provider answered with an error. ``status_code`` is its HTTP status (None if there was no
    response) and ``body`` what it said (parsed JSON when it sent JSON)."""

    def __init__(self, message: str = "", *, status_code: int | None = None, body: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.body = body
        if status_code is not None:
            self.details.setdefault("status_code", status_code)


class AuthenticationError(ProviderAPIError):
    """The provider refused the credentials: the API key is missing, invalid, or lacks the permission."""


class QuotaExceededError(ProviderAPIError):
    """The provider's rate limit or usage quota is exceeded; retry later or raise the limit."""


class ContentFilterError(ProviderAPIError):
    """The provider's content filter refused the request or the reply."""


class ProviderConnectionError(AbstractLLMError, ConnectionError):
    """The provider's server could not be reached (refused, DNS failure, TLS error, dropped connection)."""


class RequestTimeoutError(AbstractLLMError, TimeoutError):
    """The provider did not answer within the configured ``timeout``."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
