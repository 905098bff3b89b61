"""The provider contract suite (abstractllm.testing.contract) over every registered provider: mlx on the
offline text and vision models, openai / ollama / lmstudio pointed at the project's own server on loopback
(serving the same offline models) through the official openai SDK, and anthropic pointed at the same
server's /v1/messages through the official anthropic SDK. No mocks.

The same suite runs from the command line against any provider:
``pytest --pyargs abstractllm.testing.contract --provider NAME --model MODEL [--base-url URL] [--api-key KEY]``
(the last test here runs it so, in a subprocess).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from abstractllm.testing.contract.fixtures import llm, make_llm  # noqa: F401  (the suite's fixtures)
from abstractllm.testing.contract.test_contract import *  # noqa: F401,F403  (the suite's tests)

TARGETS = {
    "mlx-text": ("mlx", "text", None),
    "mlx-vision": ("mlx", "vision", None),
    "openai-text": ("openai", "text", "server"),
    "openai-vision": ("openai", "vision", "server"),
    "ollama-text": ("ollama", "text", "server"),
    "lmstudio-text": ("lmstudio", "text", "server"),
    "anthropic-text": ("anthropic", "text", "root"),  # the SDK's base_url: the server's root, without /v1
    "anthropic-vision": ("anthropic", "vision", "root"),
}


@pytest.fixture(scope="module")
def servers(tiny_model, vision_model):
    """``abstractllm serve`` (in this process, on a free loopback port) per offline model, started on first use."""
    from abstractllm.server import ServerConfig, start_server

    models = {"text": tiny_model, "vision": vision_model}
    running: dict[str, object] = {}

    def base_url(kind: str, root: bool = False) -> str:
        if kind not in running:
            running[kind] = start_server(ServerConfig(model=str(models[kind]), port=0))
        return running[kind].url if root else running[kind].base_url

    yield base_url
    for server in running.values():
        server.stop()


@pytest.fixture(scope="module", params=list(TARGETS))
def contract_target(request, servers, tiny_model, vision_model):
    provider, kind, remote = TARGETS[request.param]
    if remote:
        return {"provider": provider, "model": "local", "base_url": servers(kind, root=remote == "root")}
    return {"provider": provider, "model": str(tiny_model if kind == "text" else vision_model)}


def test_the_suite_runs_from_the_command_line(tiny_model):
    """``pytest --pyargs abstractllm.testing.contract --provider mlx --model PATH``: the options come from
    the package's pytest plugin; without them the suite skips with the usage."""
    args = [sys.executable, "-m", "pytest", "--pyargs", "abstractllm.testing.contract", "-q", "-p", "no:cacheprovider",
            "-k", "generate_returns or stream_joined or bad_parameters or capabilities"]
    r = subprocess.run([*args, "--provider", "mlx", "--model", str(tiny_model)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
    bare = subprocess.run(args + ["-rs"], capture_output=True, text=True, timeout=300)
    assert bare.returncode == 0 and "needs --provider NAME --model MODEL" in bare.stdout


def test_the_whole_suite_over_every_zoo_family():
    """``--family all``: the contract suite once per family of abstractllm.testing.zoo (docs/testing.md)."""
    from abstractllm.testing.zoo import FAMILIES

    args = [sys.executable, "-m", "pytest", "--pyargs", "abstractllm.testing.contract", "-q", "-p", "no:cacheprovider",
            "--family", "all"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
    collected = subprocess.run([*args, "--collect-only"], capture_output=True, text=True, timeout=300).stdout
    assert all(f"test_generate_returns_a_response[{name}]" in collected for name in FAMILIES)
    unknown = subprocess.run([*args[:-1], "nonesuch"], capture_output=True, text=True, timeout=300)
    assert unknown.returncode != 0 and "unknown nonesuch" in unknown.stdout + unknown.stderr
