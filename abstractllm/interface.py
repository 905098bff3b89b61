"""``AbstractLLMInterface``: the provider contract, as AbstractLLM 1.x named it.

Every provider of this package is an ``AbstractLLMInterface`` (``BaseProvider`` implements it once over a
single streaming primitive; see ``abstractllm.providers.base``). The methods::

    generate(prompt=None, system_prompt=None, files=None, stream=False, tools=None, *, messages=None, **params)
    await generate_async(...)    # also agenerate(...)
    get_capabilities()           # a Capabilities mapping keyed by ModelCapability
    get_config(), update_config(dict), set_config(**kw), get_param(name, default=None)
    get_model_info(), close()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .enums import ModelCapability, ModelParameter

__all__ = ["AbstractLLMInterface", "ModelParameter", "ModelCapability"]


class AbstractLLMInterface(ABC):
    """The interface every abstractllm provider implements (``isinstance(llm, AbstractLLMInterface)``)."""

    @abstractmethod
    def generate(self, prompt: str | None = None, system_prompt: str | None = None, files: Any = None,
                 stream: bool = False, tools: Any = None, **kwargs: Any) -> Any:
        """Generate a reply: a ``Response``, or with ``stream=True`` an iterator of ``Response`` chunks.

        ``tools``: functions, OpenAI function dicts or ``ToolDefinition``s the model may call; the calls come
        back in ``response.tool_calls`` (a ``Session`` runs the Python ones)."""

    @abstractmethod
    async def generate_async(self, prompt: str | None = None, system_prompt: str | None = None, files: Any = None,
                             stream: bool = False, tools: Any = None, **kwargs: Any) -> Any:
        """``generate``, awaited without blocking the event loop (``stream=True``: an async iterator).

        ``tools``: as in ``generate``."""

    def get_capabilities(self) -> Any:
        """What this provider can do with its configured model. Every provider of this package answers a
        ``Capabilities`` mapping; this default is 1.x's dict (nothing but a 2048-token limit), for a subclass
        that does not say."""
        return {
            ModelCapability.STREAMING: False,
            ModelCapability.MAX_TOKENS: 2048,
            ModelCapability.SYSTEM_PROMPT: False,
            ModelCapability.ASYNC: False,
            ModelCapability.FUNCTION_CALLING: False,
            ModelCapability.TOOL_USE: False,
            ModelCapability.VISION: False,
        }

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The configuration in effect (defaults included)."""

    @abstractmethod
    def update_config(self, config: dict[Any, Any]) -> None:
        """Change configuration keys (validated like ``create_llm``)."""

    def set_config(self, **kwargs: Any) -> None:
        """``update_config`` with keyword arguments."""
        self.update_config(kwargs)

    def get_param(self, param: Any, default: Any = None) -> Any:
        """One configuration value (``ModelParameter`` member or name), or ``default`` when it is unset."""
        name = str(getattr(param, "value", param))
        value = self.get_config().get(name)
        return default if value is None else value
