"""The server's seam with the provider, and its server-sent events.

1. ``abstractllm/server/*.py`` (parsed with :mod:`ast`, nothing imported) import no ``mlx`` module and nothing of
   ``abstractllm.providers.mlx``, name no such module in a string (``sys.modules`` / ``importlib`` lookups),
   reach into no provider internals (``llm.worker``, the raw ``llm.config`` dict, ``llm._anything``), and import
   no private name from another module.
2. ``runtime_info()`` and ``configured_max_tokens()``: the MLX provider's, before and after its model loads, and a
   remote provider's defaults.
3. A stream queued behind a generation that holds the batch's one place gets keep-alive comments (``: ping``)
   while its first token is pending, then its reply; the ``openai`` and ``anthropic`` SDKs parse the very bytes
   the server sent (comments included) for chat completions, the Responses API and Anthropic's Messages.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVER = Path(__file__).resolve().parent.parent / "abstractllm" / "server"
PACKAGE = "abstractllm.server"
_MLX_NAME = re.compile(r"^mlx(\.|_lm\b|_vlm\b|$)|(^|\.)providers\.mlx(\.|$)")
_MLX_STRING = re.compile(r"^mlx(\.|_lm\b|_vlm\b)|(^|\.)providers\.mlx(\.|$)")  # "mlx" alone: a provider's name
_INTERNAL = ("worker", "config")  # the provider's thread and its raw config dict (get_config() is the surface)


# ------------------------------------------------------------------------------------- 1. the import walk
def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_llm(expr: ast.expr) -> bool:
    """``llm``, ``state.llm``, ``self.state.llm``..."""
    return (isinstance(expr, ast.Name) and expr.id == "llm") or (isinstance(expr, ast.Attribute) and expr.attr == "llm")


def _reaches_in(attr: str) -> bool:
    return attr in _INTERNAL or (attr.startswith("_") and not attr.startswith("__"))


def _import_problems(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [f"imports {a.name}" for a in node.names if _MLX_NAME.search(a.name)]
    if not isinstance(node, ast.ImportFrom):
        return []
    source = _resolve(node, module, is_package)
    out = [f"imports {a.name} from {source}" for a in node.names
           if _MLX_NAME.search(source) or _MLX_NAME.search(f"{source}.{a.name}")]
    if source != module and source != "__future__":
        out += [f"imports the private name {a.name} from {source}" for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def _node_problems(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MLX_STRING.search(node.value):
        return [f"names the module {node.value!r}"]
    if isinstance(node, ast.Attribute) and _is_llm(node.value) and _reaches_in(node.attr):
        return [f"reads llm.{node.attr}"]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2 and _is_llm(node.args[0]) and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str) and _reaches_in(node.args[1].value)):
        return [f"reads llm.{node.args[1].value} ({node.func.id})"]
    return []


def problems(source: str, module: str, is_package: bool = False) -> list[str]:
    """What ``source`` (the text of ``module``) does that the server must not (see the module docstring)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        out += [f"line {getattr(node, 'lineno', '?')}: {p}" for p in
                _import_problems(node, module, is_package) + _node_problems(node)]
    return out


def _server_modules() -> list[tuple[str, Path]]:
    return [(PACKAGE if p.name == "__init__.py" else f"{PACKAGE}.{p.stem}", p) for p in sorted(SERVER.glob("*.py"))]


def test_the_server_uses_only_the_providers_public_surface():
    found = {module: problems(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
             for module, path in _server_modules()}
    assert len(found) > 20, found.keys()
    assert not {m: p for m, p in found.items() if p}, found


def test_the_walk_finds_each_kind_of_reach():
    bad = """
import mlx.core as mx
import mlx_lm
from mlx.core import array
from ..providers.mlx.backend import fast_blas_status
from abstractllm.providers.mlx import engine
from ..providers import mlx
from ..jobs.config import _json_value
from .generation import _first
import sys
sys.modules.get("mlx.core")
sys.modules["abstractllm.providers.mlx.backend"]
state.llm.worker.call(len)
llm.config["max_tokens"]
self.state.llm._engine
getattr(state.llm, "config", None)
"""
    found = problems(bad, f"{PACKAGE}.routes")
    assert len(found) == 14, "\n".join(found)
    fine = """
from __future__ import annotations
from .fields import validation_error as _validation_error
from .app import create_app as _create
from ..providers.base import aggregate_chunks
provider = "mlx"
state.llm.get_config()
state.llm.runtime_info()
getattr(state.llm, "count_tokens", None)
"""
    assert problems(fine, f"{PACKAGE}.routes") == []


# ------------------------------------------------------------------------------- 2. the provider's surface
def test_runtime_info_of_the_mlx_provider(tiny_model):
    from abstractllm import create_llm

    llm = create_llm("mlx", model=str(tiny_model), max_tokens=7)
    try:
        before = llm.runtime_info()
        assert before["provider"] == "mlx" and before["model"] == str(tiny_model)
        assert before["loaded"] is False and before["device"] is None
        assert set(before["memory"]) == {"process_rss", "mlx_active", "mlx_peak", "mlx_cache"}
        assert llm.configured_max_tokens() == 7
        llm.load()
        info = llm.runtime_info()
        assert info["loaded"] is True and info["device"] == "cpu"
        assert info["blas"].startswith("OpenBLAS ")  # active (which library) or inactive (why)
        memory, device = info["memory"], info["device_memory"]
        assert memory["process_rss"] > 10_000_000 and memory["mlx_active"] > 0
        assert memory["mlx_peak"] >= memory["mlx_active"]
        assert device["unified"] is True and device["total"] > device["available"] > 0
        assert device["allocated"] == memory["mlx_active"]
        assert device["reserved"] == memory["mlx_active"] + memory["mlx_cache"]
    finally:
        llm.close()


def test_runtime_info_of_a_remote_provider_and_configured_max_tokens():
    from abstractllm import create_llm

    llm = create_llm("openai", model="m", api_key="k", base_url="http://127.0.0.1:9/v1")  # never contacted
    info = llm.runtime_info()
    assert info["provider"] == "openai" and info["model"] == "m" and info["loaded"] is True
    assert info["device"] is None and info["blas"] is None and set(info["memory"]) == {"process_rss"}
    assert info["device_memory"]["allocated"] is None and info["device_memory"]["total"] > 0
    assert llm.configured_max_tokens() is None and llm.get_config()["max_tokens"] == 512  # the default
    llm.update_config({"max_tokens": 9})
    assert llm.configured_max_tokens() == 9


def test_the_ping_interval_must_be_positive():
    from abstractllm.server import ServerConfig

    for bad in (0, -1.0, True, "5", float("nan")):
        with pytest.raises(ValueError, match="sse_ping_s"):
            ServerConfig(model="m", sse_ping_s=bad)


# ------------------------------------------------------------------------------ 3. keep-alive comments
PING = b": ping\n\n"
HI = [{"role": "user", "content": "Hi"}]
#: a generation that holds the batch's one place until the test disconnects it (far from its end)
LONG = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 200000, "stream": True}


@pytest.fixture(scope="module")
def narrow(tiny_model):
    """A server that batches one request at a time and pings streams every 0.2 s."""
    from abstractllm.server import ServerConfig, start_server

    config = ServerConfig(model=str(tiny_model), port=0, sse_ping_s=0.2, max_tokens_limit=200000,
                          llm_config={"max_batch_size": 1})
    with start_server(config) as server:
        yield server


def _queued_stream(server, path: str, body: dict) -> bytes:
    """The raw bytes of a stream of ``body`` on ``path`` opened while ``LONG`` holds the batch: read until a
    keep-alive comment came (its first token cannot, the batch is full), then ``LONG`` is disconnected (it is
    cancelled, the queued request runs) and the rest is read to the end."""
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", server.base_url + "/chat/completions", json=LONG) as long:
            assert long.status_code == 200
            lines = long.iter_lines()
            assert sum(next(lines).startswith("data: ") for _ in range(8)) >= 3  # it is generating
            with http.stream("POST", server.base_url + path, json=body) as queued:
                assert queued.status_code == 200, queued.read()
                assert queued.headers["content-type"].startswith("text/event-stream")
                pieces, seen = queued.iter_bytes(), b""
                while PING not in seen:  # no deadline needed: the read times out after 60 s without a byte
                    seen += next(pieces)
                long.close()  # the client of the long generation leaves: it stops, the queued one is admitted
                return seen + b"".join(pieces)


def _replay(sdk, raw: bytes) -> Any:
    """An HTTP client whose every response is ``raw``, as the server sent it, for ``sdk`` to parse: a client of the
    HTTP package the SDK is built on (``httpx``, or its fork ``httpx2`` in recent releases)."""
    http = importlib.import_module(sdk._base_client.URL.__module__.partition(".")[0])
    return http.Client(transport=http.MockTransport(
        lambda request: http.Response(200, headers={"content-type": "text/event-stream"}, content=raw)))


def _data(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


def test_a_queued_chat_stream_is_pinged_and_the_openai_sdk_parses_it(narrow):
    import openai

    raw = _queued_stream(narrow, "/chat/completions", {"messages": HI, "max_tokens": 3, "temperature": 0,
                                                         "stream": True})
    assert raw.count(PING) >= 1 and _data(raw)[-1] == "[DONE]"
    client = openai.OpenAI(base_url="http://replay/v1", api_key="x", http_client=_replay(openai, raw))
    chunks = list(client.chat.completions.create(model="m", messages=HI, stream=True))
    assert len(chunks) == len(_data(raw)) - 1  # every event but [DONE]; the comments skipped
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)  # three tokens of text


def test_a_queued_messages_stream_is_pinged_and_the_anthropic_sdk_parses_it(narrow):
    import anthropic

    raw = _queued_stream(narrow, "/messages", {"messages": HI, "max_tokens": 3, "temperature": 0, "stream": True})
    assert raw.startswith(PING)  # message_start waits for the first chunk (it carries the prompt's usage)
    names = [line[7:] for line in raw.decode().split("\n") if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    client = anthropic.Anthropic(base_url="http://replay", api_key="x", http_client=_replay(anthropic, raw))
    events = list(client.messages.create(model="m", max_tokens=3, messages=HI, stream=True))
    assert [e.type for e in events] == [n for n in names if n != "ping"]  # Anthropic's own ping event is skipped
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 3


def test_a_queued_responses_stream_is_pinged_and_the_openai_sdk_parses_it(narrow):
    import openai

    raw = _queued_stream(narrow, "/responses", {"input": "Hi", "max_output_tokens": 3, "temperature": 0,
                                                 "stream": True})
    assert raw.count(PING) >= 1
    names = [line[7:] for line in raw.decode().split("\n") if line.startswith("event: ")]
    client = openai.OpenAI(base_url="http://replay/v1", api_key="x", http_client=_replay(openai, raw))
    events = list(client.responses.create(model="m", input="Hi", stream=True))
    assert [e.type for e in events] == names and names[0] == "response.created"
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 3
