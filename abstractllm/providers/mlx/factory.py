"""Where the MLX provider is chosen: ``create_llm("mlx", ...)`` calls :func:`create_mlx_provider`, which makes
a :class:`~abstractllm.providers.mlx.provider.MLXProvider`, or a
:class:`~abstractllm.providers.mlx.distributed_provider.DistributedMLXProvider` when ``distributed=`` is given.

The choice lives here, above both classes, so that ``provider.py`` never imports ``distributed_provider.py``
(which subclasses it). ``MLXProvider(distributed=...)`` raises ``UnsupportedFeatureError`` naming
``create_llm``.
"""

from __future__ import annotations

from typing import Any

from ...enums import ModelParameter
from .provider import MLXProvider

__all__ = ["create_mlx_provider", "wants_distributed"]


def wants_distributed(config: Any, kwargs: dict[str, Any]) -> bool:
    """``distributed=`` given (by name or as ``ModelParameter.DISTRIBUTED``) and not None/False."""
    for source in (config or {}, kwargs):
        for key, value in source.items():
            if str(getattr(key, "value", key)) == str(ModelParameter.DISTRIBUTED) and value not in (None, False):
                return True
    return False


def create_mlx_provider(config: dict[Any, Any] | None = None, **kwargs: Any) -> MLXProvider:
    """The MLX provider for this configuration: ``distributed="tensor" | "pipeline" | "auto"`` makes a
    ``DistributedMLXProvider`` (under ``mlx.launch``), anything else an ``MLXProvider``."""
    if wants_distributed(config, kwargs):
        from .distributed_provider import DistributedMLXProvider  # here: its imports are needed only then

        return DistributedMLXProvider(config, **kwargs)
    return MLXProvider(config, **kwargs)
