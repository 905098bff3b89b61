"""The provider registry and ``create_llm``.

Built-in providers are registered here by name, as ``"module:Class"`` strings so that nothing heavy is
imported until a provider is created. Third-party packages register through the entry-point group
``abstractllm.providers``::

    # their pyproject.toml
    [project.entry-points."abstractllm.providers"]
    myprovider = "mypackage.provider:MyProvider"
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from .exceptions import UnsupportedProviderError, did_you_mean

__all__ = ["create_llm", "register_provider", "available_providers", "get_llm_providers", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "abstractllm.providers"


@dataclass(frozen=True)
class _Entry:
    target: Any  # a class (or a function that makes the provider), or "module:name"
    extra: str | None = None  # the pip extra that installs its dependencies
    requires: tuple[str, ...] = ()  # top-level modules that must be importable


_BUILTIN: dict[str, _Entry] = {
    "mlx": _Entry("abstractllm.providers.mlx.factory:create_mlx_provider", extra="mlx",
                  requires=("mlx", "mlx_lm")),
    "openai": _Entry("abstractllm.providers.openai:OpenAIProvider", extra="openai", requires=("openai",)),
    "ollama": _Entry("abstractllm.providers.openai:OllamaProvider", extra="openai", requires=("openai",)),
    "lmstudio": _Entry("abstractllm.providers.openai:LMStudioProvider", extra="openai", requires=("openai",)),
    "anthropic": _Entry("abstractllm.providers.anthropic:AnthropicProvider", extra="anthropic",
                        requires=("anthropic",)),
}
_REGISTERED: dict[str, _Entry] = {}
#: names that are planned but not available yet: create_llm says why
_NOT_YET: dict[str, str] = {}


def register_provider(name: str, target: Any, *, extra: str | None = None, requires: tuple[str, ...] = ()) -> None:
    """Register a provider class (or ``"module:Class"``) under ``name`` for ``create_llm``."""
    if not isinstance(name, str) or not name:
        raise UnsupportedProviderError("A provider name must be a non-empty string.")
    _REGISTERED[name.lower()] = _Entry(target, extra, tuple(requires))


def _entry_point_providers() -> dict[str, _Entry]:
    from importlib.metadata import entry_points  # here: importing abstractllm stays light

    return {ep.name.lower(): _Entry(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _all_entries() -> dict[str, _Entry]:
    return {**_entry_point_providers(), **_BUILTIN, **_REGISTERED}


def available_providers() -> list[str]:
    """Names ``create_llm`` accepts: built-in, registered, and from entry points."""
    return sorted(_all_entries())


def get_llm_providers() -> list[str]:
    """The registered provider names (the AbstractLLM 1.x name of ``available_providers``)."""
    return available_providers()


def _missing_modules(requires: tuple[str, ...]) -> list[str]:
    missing = []
    for mod in requires:
        try:
            if importlib.util.find_spec(mod) is None:
                missing.append(mod)
        except (ImportError, ValueError):
            missing.append(mod)
    return missing


def _resolve(name: str, entry: _Entry) -> type:
    missing = _missing_modules(entry.requires)
    if missing:
        raise UnsupportedProviderError(
            f"The '{name}' provider needs {', '.join(missing)}, which is not installed. "
            f"Install it with: pip install \"abstractllm[{entry.extra or name}]\""
        )
    target = entry.target
    try:
        if hasattr(target, "load") and hasattr(target, "group"):  # an EntryPoint
            return target.load()
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        hint = f' Install it with: pip install "abstractllm[{entry.extra}]"' if entry.extra else ""
        raise UnsupportedProviderError(f"The '{name}' provider could not be imported: {exc}.{hint}") from exc
    return target


def create_llm(provider: str, model: Any = None, **config: Any):
    """Create a provider by name: ``create_llm("mlx", model="path/or/repo-id", temperature=0.7)``; the
    model may also come positionally (``create_llm("openai", "gpt-4o-mini")``) or as ``ModelParameter.MODEL``.

    Config keys may be plain names or ``ModelParameter`` members. Unknown providers raise
    ``UnsupportedProviderError`` (with the available names); unknown keys or bad values raise
    ``InvalidParameterError``.
    """
    from .params import normalize_keys

    if not isinstance(provider, str):
        raise UnsupportedProviderError(f"The provider must be a name such as 'mlx', got {provider!r}.")
    entries = _all_entries()
    key = provider.lower()
    if key not in entries:
        if key in _NOT_YET:
            raise UnsupportedProviderError(_NOT_YET[key])
        raise UnsupportedProviderError(
            f"Unknown provider '{provider}'.{did_you_mean(key, entries)} "
            f"Available providers: {', '.join(sorted(entries))}."
        )
    cls = _resolve(key, entries[key])
    config = normalize_keys(config)
    if model is not None:
        config["model"] = model
    return cls(**config)
