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

    def __init__(self, message: str = "", provider: str | None = None,
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

    def __init__(self, *args: Any, param: str | None = None, value: Any = None, parameter: str | None = None,
                 message: str | None = None, **kwargs: Any) -> None:
        if len(args) >= 2:  # 1.x: InvalidParameterError(parameter, value, message=None, provider=None, ...)
            param, value, rest = args[0], args[1], list(args[2:])
            message = rest.pop(0) if rest else message
            kwargs.update(_positional_1x(rest))
        elif args:
            message = args[0]
        param = param if param is not None else parameter
        if message is None:
            message = f"Invalid value '{value}' for parameter '{param}'" if param is not None else ""
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

    def __init__(self, *args: Any, context_window: int | None = None, content_length: int | None = None,
                 message: str | None = None, **kwargs: Any) -> None:
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            # 1.x: ContextWindowExceededError(context_window, content_length, message=None, provider=None, ...)
            rest = list(args)
            context_window = rest.pop(0)
            content_length = rest.pop(0) if rest else content_length
            message = rest.pop(0) if rest else message
            kwargs.update(_positional_1x(rest))
        elif args:
            message = args[0]
        if message is None:
            message = (f"Content length ({content_length}) exceeds maximum context window ({context_window})"
                       if context_window is not None else "")
        super().__init__(message, **kwargs)
        self.context_window = context_window
        self.content_length = content_length


class ModelLoadError(AbstractLLMError):
    """The model exists but cannot be loaded (corrupt config, missing weights, unknown architecture).
    ``model_name`` names it when known (1.x: ``ModelLoadingError(message, provider, model_name, ...)``)."""

    def __init__(self, message: str = "", provider: str | None = None, model_name: str | None = None,
                 original_exception: BaseException | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, provider, original_exception, details)
        self.model_name = model_name


ModelLoadingError = ModelLoadError  # the AbstractLLM 1.x name


class ModelNotFoundError(ModelLoadError):
    """No model at that path, or a hub repo id that is not cached and cannot be downloaded.

    1.x's form ``ModelNotFoundError(model_name, reason=None, search_path=None, provider=None, ...)`` is
    accepted too (a first argument without spaces, or ``reason`` / ``search_path`` given)."""

    def __init__(self, *args: Any, reason: str | None = None, search_path: str | None = None,
                 model_name: str | None = None, **kwargs: Any) -> None:
        rest = list(args)
        first = rest.pop(0) if rest else ""
        if (rest or reason is not None or search_path is not None or model_name is not None
                or (not kwargs and isinstance(first, str) and first and not any(c.isspace() for c in first))):
            model_name = model_name if model_name is not None else first
            reason = rest.pop(0) if rest else reason
            search_path = rest.pop(0) if rest else search_path
            kwargs.update(_positional_1x(rest))
            message = f"Model '{model_name}' not found" + (f": {reason}" if reason else "") + (
                f" (searched in: {search_path})" if search_path else "")
        else:
            message = first
        super().__init__(message, **kwargs)
        self.model_name = model_name
        self.reason = reason
        self.search_path = search_path
        if search_path:
            self.details.setdefault("search_path", search_path)


class UnsupportedModelError(ModelLoadError):
    """The model exists but its architecture is not supported by the backend (1.x name)."""


class ResourceExceededError(AbstractLLMError):
    """The work would exceed a resource budget."""


class MemoryLimitError(ResourceExceededError, MemoryError):
    """The requested work needs more memory than is available or allowed; refused before allocating.

    ``required_bytes`` and ``available_bytes`` carry the numbers from the message.
    """

    def __init__(self, message: str = "", *args: Any, required_bytes: int | None = None,
                 available_bytes: int | None = None, required_memory: int | None = None,
                 available_memory: int | None = None, **kwargs: Any) -> None:
        kwargs.update(_positional_1x(list(args)))  # 1.x: (message, provider, original_exception, details, ...)
        super().__init__(message, **kwargs)
        self.required_bytes = required_bytes if required_bytes is not None else required_memory
        self.available_bytes = available_bytes if available_bytes is not None else available_memory

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
    ``file_path`` and ``file_type`` read ``details`` when known (1.x: also constructor arguments)."""

    def __init__(self, message: str = "", *args: Any, file_path: str | None = None, file_type: str | None = None,
                 **kwargs: Any) -> None:
        rest = list(args)  # 1.x: (message, provider, original_exception, details, file_path, file_type)
        kwargs.update(_positional_1x(rest[:3]))
        file_path = rest[3] if len(rest) > 3 else file_path
        file_type = rest[4] if len(rest) > 4 else file_type
        super().__init__(message, **kwargs)
        for key, value in (("file_path", file_path), ("file_type", file_type)):
            if value is not None:
                self.details.setdefault(key, str(value))

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

    def __init__(self, *args: Any, feature: Any = None, message: str | None = None, **kwargs: Any) -> None:
        rest = list(args)
        if feature is None and (len(rest) >= 2 or (rest and not kwargs and (
                not isinstance(rest[0], str) or hasattr(rest[0], "value")
                or (rest[0] and not any(c.isspace() for c in rest[0]))))):
            # 1.x: UnsupportedFeatureError(feature, message=None, provider=None, ...)
            feature = rest.pop(0)
            message = rest.pop(0) if rest else message
            kwargs.update(_positional_1x(rest))
        elif rest:
            message = rest[0]
        if message is None:
            name = getattr(feature, "value", feature)
            message = f"Feature '{name}' is not supported by this provider/model" if feature is not None else ""
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


def _positional_1x(rest: list[Any]) -> dict[str, Any]:
    """1.x's trailing positional arguments (provider, original_exception, details) as keywords."""
    return {k: v for k, v in zip(("provider", "original_exception", "details"), rest) if v is not None}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
