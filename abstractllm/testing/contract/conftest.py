"""Fixtures of the contract suite when it runs as ``pytest --pyargs abstractllm.testing.contract``."""

from abstractllm.testing.contract.fixtures import contract_target, llm, make_llm  # noqa: F401
