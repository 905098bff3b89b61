"""AbstractLLM 1.x module path: ``from abstractllm.providers.lmstudio_provider import LMStudioProvider``
(``abstractllm.providers.openai.LMStudioProvider``)."""

from .openai import LMStudioProvider

__all__ = ["LMStudioProvider"]
