"""Shared fixtures: models built offline once per test session, under a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point abstractllm.testing.demo_model (and subprocesses) at a per-session cache; stay offline."""
    cache = tmp_path_factory.mktemp("models")
    os.environ["ABSTRACTLLM_DEMO_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    # the default job store (abstractllm.jobs, abstractllm batch, the server's Batch API): never the user's
    os.environ["ABSTRACTLLM_JOBS_DB"] = str(tmp_path_factory.mktemp("jobs") / "jobs.db")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return cache


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A Qwen3-architecture text model (~1 MB, ChatML template)."""
    from abstractllm.testing import demo_model

    return demo_model("text", "tiny")


@pytest.fixture(scope="session")
def llama_model() -> Path:
    """A Llama-architecture text model (~1 MB, ChatML template)."""
    from abstractllm.testing import demo_model

    return demo_model("text", "llama-tiny")


@pytest.fixture(scope="session")
def tiny_llm(tiny_model: Path):
    """One shared greedy provider on the tiny model (tests must leave it usable)."""
    from abstractllm import create_llm

    llm = create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=24)
    yield llm
    llm.close()


@pytest.fixture(scope="session")
def vision_model() -> Path:
    """A Qwen2-VL-architecture vision model (~1 MB, 4..16 vision tokens per image), built offline."""
    from abstractllm.testing import demo_model

    return demo_model("vision", "tiny")
