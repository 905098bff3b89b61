"""abstractllm: one Python interface to language models, with a local MLX provider.

    from abstractllm import create_llm
    llm = create_llm("mlx", model="mlx-community/Qwen3-0.6B-4bit")
    print(llm.generate("Hello").content)

Importing this package is light: no backend (mlx, mlx-lm, mlx-vlm) is imported until a provider needs it.
"""

from .enums import ModelCapability, ModelParameter
from .exceptions import (
    AbstractLLMError,
    GenerationError,
    ImageProcessingError,
    InvalidParameterError,
    MemoryLimitError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedFeatureError,
    UnsupportedProviderError,
)
from .providers.base import BaseProvider
from .registry import available_providers, create_llm, register_provider
from .types import Message, Response, Usage

__version__ = "0.1.0"

__all__ = [
    "create_llm",
    "register_provider",
    "available_providers",
    "BaseProvider",
    "ModelParameter",
    "ModelCapability",
    "Response",
    "Usage",
    "Message",
    "AbstractLLMError",
    "UnsupportedProviderError",
    "InvalidParameterError",
    "ModelLoadError",
    "ModelNotFoundError",
    "MemoryLimitError",
    "ImageProcessingError",
    "UnsupportedFeatureError",
    "GenerationError",
    "__version__",
]
