"""abstractllm's pytest plugin (registered through the ``pytest11`` entry point): the options of the
provider contract suite. Importing it is light (no backend, no SDK).

    pytest --pyargs abstractllm.testing.contract --provider NAME --model MODEL [--base-url URL] [--api-key KEY]

Each option also exists as ``--abstractllm-<name>`` (the only spelling registered when another plugin
already owns the short one).
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption", "contract_options"]

_OPTIONS = (
    ("provider", "the provider to check, as create_llm takes it (mlx, openai, ollama, lmstudio, a plugin's name)"),
    ("model", "the model id or path to create the provider with"),
    ("base-url", "base_url for a remote provider (an OpenAI-compatible server)"),
    ("api-key", "api_key for a remote provider"),
)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("abstractllm", "abstractllm provider contract suite (abstractllm.testing.contract)")
    for name, help_text in _OPTIONS:
        dest = "abstractllm_" + name.replace("-", "_")
        try:
            group.addoption(f"--{name}", f"--abstractllm-{name}", dest=dest, default=None, help=help_text)
        except ValueError:  # another plugin owns --name: keep only the prefixed spelling
            group.addoption(f"--abstractllm-{name}", dest=dest, default=None, help=help_text)


def contract_options(config: Any) -> dict[str, Any]:
    """The contract suite's options from a pytest ``config``: provider, model, base_url, api_key."""
    return {name.replace("-", "_"): config.getoption("abstractllm_" + name.replace("-", "_"), default=None)
            for name, _ in _OPTIONS}
