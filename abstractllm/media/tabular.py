"""AbstractLLM 1.x module path: ``TabularInput`` (see ``abstractllm.media.legacy``)."""

from .legacy import TabularInput

__all__ = ["TabularInput"]
