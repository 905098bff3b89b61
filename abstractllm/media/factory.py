"""AbstractLLM 1.x module path: ``MediaFactory`` (see ``abstractllm.media.legacy``)."""

from .legacy import MediaFactory

__all__ = ["MediaFactory"]
