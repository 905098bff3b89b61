"""The MLX provider: text models through mlx-lm, vision models through mlx-vlm, one shared pipeline.

Importing this package does not import mlx; the backend is imported when a model is loaded.
"""

from .provider import MLXProvider

__all__ = ["MLXProvider"]
