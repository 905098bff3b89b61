"""AbstractLLM 1.x module path: ``MediaInput`` (see ``abstractllm.media.legacy``)."""

from .legacy import MediaInput

__all__ = ["MediaInput"]
