"""AbstractLLM 1.x module path: ``TextInput`` (see ``abstractllm.media.legacy``)."""

from .legacy import TextInput

__all__ = ["TextInput"]
