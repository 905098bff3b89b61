"""abstractllm's pytest plugin (registered through the ``pytest11`` entry point): the options of the
provider contract suite. Importing it is light (no backend, no SDK).

    pytest --pyargs abstractllm.testing.contract --provider NAME --model MODEL [--base-url URL] [--api-key KEY]
    pytest --pyargs abstractllm.testing.contract --family all      # the zoo's families (abstractllm.testing.zoo)

Each option also exists as ``--abstractllm-<name>`` (the only spelling registered when another plugin
already owns the short one).
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption", "pytest_generate_tests", "contract_options"]

_OPTIONS = (
    ("provider", "the provider to check, as create_llm takes it (mlx, openai, ollama, lmstudio, a plugin's name)"),
    ("model", "the model id or path to create the provider with"),
    ("base-url", "base_url for a remote provider (an OpenAI-compatible server)"),
    ("api-key", "api_key for a remote provider"),
    ("family", "run over abstractllm.testing.zoo's offline models instead of --model (provider mlx): a family's "
               "name, several separated by commas, or 'all'"),
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


def pytest_generate_tests(metafunc: Any) -> None:
    """``--family``: the suite's ``contract_target`` runs once per zoo family (provider mlx)."""
    if "contract_target" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("abstractllm_family", default=None)
    if not option:
        return
    from .zoo import FAMILIES

    names = list(FAMILIES) if option == "all" else [n.strip() for n in option.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"--family: unknown {', '.join(unknown)}; the zoo has {', '.join(FAMILIES)} (or 'all')")
    metafunc.parametrize("contract_target", [{"provider": "mlx", "family": n} for n in names], indirect=True,
                         ids=names, scope="module")
