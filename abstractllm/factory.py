"""The AbstractLLM 1.x import path of the factory functions: ``create_llm``, ``create_session`` and
``get_llm_providers`` (the registry lives in ``abstractllm.registry``, sessions in ``abstractllm.session``)."""

from __future__ import annotations

from .registry import available_providers, create_llm, get_llm_providers
from .session import create_session

__all__ = ["create_llm", "create_session", "get_llm_providers", "available_providers"]
