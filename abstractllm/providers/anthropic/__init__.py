"""The remote provider ``"anthropic"``: Anthropic's Messages API through the official ``anthropic`` SDK,
at api.anthropic.com or any compatible server via ``base_url`` (the server's root, without ``/v1``:
abstractllm's own ``abstractllm serve`` answers ``/v1/messages``). ``pip install "abstractllm[anthropic]"``.

Importing this package does not import the SDK; creating a provider does.
"""

from .provider import AnthropicProvider

__all__ = ["AnthropicProvider"]
