"""The OpenAI-compatible HTTP server (``abstractllm serve``), in the ``server`` extra.

    from abstractllm.server import ServerConfig, run_server, start_server
    run_server(ServerConfig(model="Qwen/Qwen3-0.6B", port=8000))   # blocks, like the CLI
    with start_server(ServerConfig(model="Qwen/Qwen3-0.6B", port=0)) as server:
        ...                                                     # server.base_url

Modules: ``config`` (``ServerConfig``), ``app`` (``create_app``: FastAPI app, auth, lifespan),
``routes`` (the endpoints), ``schemas`` (request checks, response shapes), ``fields`` (the field policy: documented
fields the server cannot honour and unknown ones ignored, listed in ``x-abstractllm-ignored``; ``--strict-fields``),
``prepare`` (``prepare_generation``: limits, reply lengths, media policy, system-message placement, seeds),
``generation`` (the provider's streams, whole replies), ``sse`` (server-sent events, keep-alive comments),
``partial`` (tool calls cut by
``max_tokens``), ``reasoning`` (reasoning models:
``reasoning_effort`` and Anthropic's ``thinking`` against the served model, thinking signatures),
``media_policy`` (local file rules, image URLs fetched with private addresses refused), ``stats`` (the
server's counters, and what it reads of the provider: ``runtime_info()``, ``get_stats()``), ``errors``
(OpenAI error shape, status mapping), ``run`` (uvicorn). Importing this package
does not import FastAPI; ``create_app`` and ``run_server`` do.
"""

from __future__ import annotations

from typing import Any

from .config import DEFAULT_MAX_BODY_BYTES, ServerConfig

__all__ = ["ServerConfig", "DEFAULT_MAX_BODY_BYTES", "create_app", "run_server", "start_server"]


def create_app(config: ServerConfig, llm: Any = None) -> Any:
    """Build the FastAPI app (see ``abstractllm.server.app.create_app``)."""
    from .app import create_app as _create

    return _create(config, llm)


def run_server(config: ServerConfig, llm: Any = None) -> None:
    """Serve until interrupted (see ``abstractllm.server.run.run_server``)."""
    from .run import run_server as _run

    _run(config, llm)


def start_server(config: ServerConfig, llm: Any = None, **kwargs: Any) -> Any:
    """Serve in a background thread of this process; returns once the model is loaded (see
    ``abstractllm.server.run.start_server``)::

        with start_server(ServerConfig(model=path, port=0)) as server:
            print(server.base_url)   # http://127.0.0.1:PORT/v1
    """
    from .run import start_server as _start

    return _start(config, llm, **kwargs)
