"""AbstractLLM 1.x module path: ``from abstractllm.providers.ollama import OllamaProvider`` (the provider is
``abstractllm.providers.openai.OllamaProvider``: Ollama's OpenAI-compatible API)."""

from .openai import OllamaProvider

__all__ = ["OllamaProvider"]
