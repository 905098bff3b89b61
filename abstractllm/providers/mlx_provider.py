"""AbstractLLM 1.x module path: ``from abstractllm.providers.mlx_provider import MLXProvider``
(``abstractllm.providers.mlx.MLXProvider``)."""

from .mlx import MLXProvider

__all__ = ["MLXProvider"]
