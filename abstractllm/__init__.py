"""abstractllm: one Python interface to language models, with a local MLX provider.

    from abstractllm import create_llm
    llm = create_llm("mlx", model="mlx-community/Qwen3-0.6B-4bit")
    print(llm.generate("Hello").content)

Importing this package is light: no backend (mlx, mlx-lm, mlx-vlm) and no provider SDK (openai) is
imported until a provider needs it. The AbstractLLM 1.x names are here too (``AbstractLLMInterface``,
``GenerateResponse``, ``Session``, ``create_session``, ``get_llm_providers``, ...): see
``abstractllm.compat`` and docs/migration.md.
"""

from .enums import MessageRole, ModelCapability, ModelParameter, RequestPriority
from .exceptions import (
    AbstractLLMError,
    AuthenticationError,
    ContentFilterError,
    ContextWindowExceededError,
    FileProcessingError,
    GenerationError,
    ImageProcessingError,
    InvalidParameterError,
    InvalidRequestError,
    MemoryExceededError,
    MemoryLimitError,
    ModelLoadError,
    ModelLoadingError,
    ModelNotFoundError,
    ProviderAPIError,
    ProviderConnectionError,
    QueueFullError,
    QuotaExceededError,
    RequestTimeoutError,
    ResourceExceededError,
    UnsupportedFeatureError,
    UnsupportedModelError,
    UnsupportedProviderError,
)
from .interface import AbstractLLMInterface
from .providers.base import BaseProvider
from .providers.worker import AsyncResponseStream, ResponseStream
from .registry import available_providers, create_llm, get_llm_providers, register_provider
from .sampling import SamplingParams
from .session import BasicSession, Session, create_enhanced_session, create_session
from .types import Capabilities, GenerateResponse, Message, Response, ToolCall, Usage

__version__ = "0.1.0"

__all__ = [
    "create_llm",
    "create_session",
    "create_enhanced_session",
    "register_provider",
    "available_providers",
    "get_llm_providers",
    "AbstractLLMInterface",
    "BaseProvider",
    "Session",
    "BasicSession",
    "ModelParameter",
    "ModelCapability",
    "MessageRole",
    "RequestPriority",
    "SamplingParams",
    "Response",
    "GenerateResponse",
    "ResponseStream",
    "AsyncResponseStream",
    "Usage",
    "Capabilities",
    "ToolCall",
    "Message",
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
    "__version__",
]
