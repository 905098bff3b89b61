"""AbstractLLM 1.x module path: ``ImageInput`` (see ``abstractllm.media.legacy``)."""

from .legacy import ImageInput

__all__ = ["ImageInput"]
