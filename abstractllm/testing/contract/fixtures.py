"""The contract suite's fixtures: ``contract_target`` (from the command-line options; override it to
choose targets yourself), ``make_llm(**config)`` (providers closed at the end of the module) and ``llm``
(a shared greedy provider)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from abstractllm import create_llm
from abstractllm.testing.pytest_plugin import contract_options

__all__ = ["contract_target", "make_llm", "llm"]


@pytest.fixture(scope="module")
def contract_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``{"provider", "model", "base_url"?, "api_key"?, "config"?}`` from ``--provider``, ``--model``,
    ``--base-url``, ``--api-key``; with ``--family``, one zoo family's offline model per module run (a family
    that reasons gets a small ``thinking_budget``: random weights would think until ``max_tokens``)."""
    family = getattr(request, "param", None)
    if isinstance(family, dict) and "family" in family:
        from abstractllm.testing.zoo import FAMILIES, family_model

        config = {"thinking_budget": 4} if FAMILIES[family["family"]].reasoning else {}
        return {"provider": "mlx", "model": str(family_model(family["family"])), "config": config}
    options = contract_options(request.config)
    if not options.get("provider") or not options.get("model"):
        pytest.skip("the contract suite needs --provider NAME --model MODEL (and --base-url / --api-key for a "
                    "remote server)")
    return {k: v for k, v in options.items() if v is not None}


@pytest.fixture(scope="module")
def make_llm(contract_target: dict[str, Any]) -> Any:
    """``make_llm(**config)``: a provider for the target with extra config; all are closed afterwards."""
    created: list[Any] = []

    def make(**config: Any) -> Any:
        base = {k: contract_target[k] for k in ("base_url", "api_key") if contract_target.get(k)}
        base.update(contract_target.get("config") or {})
        llm = create_llm(contract_target["provider"], model=contract_target["model"], **{**base, **config})
        created.append(llm)
        return llm

    yield make
    for llm in created:
        llm.close()


@pytest.fixture(scope="module")
def llm(make_llm: Callable[..., Any]) -> Any:
    """One greedy provider shared by the module's tests (tests must leave it usable)."""
    return make_llm(temperature=0.0, max_tokens=16)
