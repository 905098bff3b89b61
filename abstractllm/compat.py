"""AbstractLLM 1.x compatibility: the one place where 1.x spellings become this package's.

Applications written against AbstractLLM 1.x run unchanged; docs/migration.md has the full table. What is
translated here, before any validation:

- configuration and per-call keys: ``max_output_tokens`` -> ``max_tokens``, ``request_timeout`` ->
  ``timeout`` (it wins when both are given), ``retry_count`` -> ``max_retries`` (``KEY_ALIASES``);
- ``generate`` arguments: ``media=``, ``image=`` and ``images=`` add to ``files=`` (``call_files``).

1.x names that are the same objects as ours live where 1.x imported them from: ``abstractllm.interface``
(``AbstractLLMInterface``), ``abstractllm.factory`` (``create_llm``, ``create_session``,
``get_llm_providers``), ``abstractllm.types.GenerateResponse`` (= ``Response``), ``abstractllm.enums``
(``MessageRole``; ``ModelCapability("supports_vision")`` finds ``VISION``), ``abstractllm.exceptions``
(``ModelLoadingError`` = ``ModelLoadError``, ``MemoryExceededError`` = ``MemoryLimitError``),
``abstractllm.session`` (``Session``), and ``agenerate`` on every provider (= ``generate_async``).
"""

from __future__ import annotations

from typing import Any, Sequence

from .exceptions import InvalidParameterError

__all__ = ["KEY_ALIASES", "merge_key_aliases", "call_files", "DEFAULT_MODELS", "with_default_model", "call_model"]

#: the model a provider uses when none is given (1.x had one per provider). MLX: a small instruct model,
#: resolved through the Hugging Face cache like any repo id (offline and not cached: ``ModelNotFoundError``
#: saying so); the others: 1.x's defaults, sent as the request's model.
DEFAULT_MODELS = {
    "mlx": "mlx-community/Qwen3-0.6B-4bit",
    "openai": "gpt-4o",
    "anthropic": "claude-3-5-haiku-20241022",
    "ollama": "phi4-mini:latest",
    "lmstudio": "qwen/qwen3-next-80b",
}

#: 1.x key -> (the key it means here, which wins when both are given with different values: "alias", "ours",
#: or "error"). 1.x's request_timeout was the HTTP timeout specifically, so it wins over timeout.
KEY_ALIASES = {
    "max_output_tokens": ("max_tokens", "error"),
    "request_timeout": ("timeout", "alias"),
    "retry_count": ("max_retries", "ours"),
}


def merge_key_aliases(params: dict[str, Any]) -> dict[str, Any]:
    """Rename 1.x keys to ours (in place; returns ``params``). When both spellings are given with different
    values, ``KEY_ALIASES`` says which wins (or that it is an ``InvalidParameterError``); an alias set to
    ``None`` is dropped."""
    for old, (new, winner) in KEY_ALIASES.items():
        if old not in params:
            continue
        value = params.pop(old)
        if value is None:
            continue
        if params.get(new) is not None and params[new] != value:
            if winner == "error":
                raise InvalidParameterError(
                    f"'{old}' is the 1.x name of '{new}': give one of them, not different values for both.",
                    param=old)
            if winner == "ours":
                continue
        params[new] = value
    return params


def with_default_model(provider: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``DEFAULT_MODELS[provider]`` as its model when it has none (in place; returned)."""
    if config.get("model") is None and provider in DEFAULT_MODELS:  # model="" stays an error
        import logging

        config["model"] = DEFAULT_MODELS[provider]
        logging.getLogger("abstractllm").info("No model given: the %s provider uses its default, %s.", provider,
                                              config["model"])
    return config


def call_model(params: dict[str, Any], configured: Any) -> dict[str, Any]:
    """Take 1.x's per-call ``model=`` out of ``params`` (in place; returned). The configured model is the
    one a provider serves (an MLX provider holds that model in memory): the same name is accepted silently,
    another one is ignored with a ``DeprecationWarning`` that says what to do instead."""
    model = params.pop("model", None)
    if model is not None and str(model) != str(configured):
        import warnings

        warnings.warn(f"generate(model={model!r}) is ignored: this provider serves {configured!r}. Use "
                      f"create_llm(provider, model={model!r}) or llm.update_config(model=...) "
                      "(docs/migration.md).", DeprecationWarning, stacklevel=4)
    return params


def call_files(files: Any, media: Any = None, image: Any = None, images: Any = None) -> list[Any] | None:
    """``files=`` plus 1.x's ``media=``, ``image=`` and ``images=`` (each one item or a list), in that order."""
    out: list[Any] = []
    for value in (files, media, images):
        if value is None:
            continue
        out.extend(_as_list(value))
    if image is not None:
        out.append(image)
    out = [_unwrap_media(item) for item in out]
    return out if out else (None if files is None else [])


def _unwrap_media(item: Any) -> Any:
    """A 1.x media object (``ImageInput``, ``TextInput``, ...) as the file input it names."""
    unwrap = getattr(item, "as_file_input", None)
    return unwrap() if callable(unwrap) and hasattr(item, "media_type") else item


def _as_list(value: Any) -> list[Any]:
    import os

    if isinstance(value, (str, bytes, bytearray, dict, os.PathLike)) or not isinstance(value, Sequence):
        return [value]
    return list(value)
