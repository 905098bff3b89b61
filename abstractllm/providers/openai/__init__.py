"""Remote providers over the OpenAI chat-completions API, through the official ``openai`` SDK:
``"openai"`` (api.openai.com or any OpenAI-compatible server via ``base_url``), ``"ollama"`` and
``"lmstudio"`` (the same client with their local default URLs). ``pip install "abstractllm[openai]"``.

Importing this package does not import the SDK; creating a provider does.
"""

from .provider import LMStudioProvider, OllamaProvider, OpenAIProvider

__all__ = ["OpenAIProvider", "OllamaProvider", "LMStudioProvider"]
