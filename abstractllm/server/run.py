"""``run_server``: serve the app with uvicorn until SIGINT / SIGTERM, then close the model cleanly."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import logging.config
from typing import Any, Iterator

from .config import ServerConfig

__all__ = ["run_server", "start_server", "RunningServer", "is_loopback"]

log = logging.getLogger("abstractllm.server")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(config: ServerConfig, llm: Any = None) -> None:
    """Create the app and serve it on ``config.host:config.port`` (blocks)."""
    import uvicorn

    from .app import create_app
    from .logs import configure_logging, route_stderr

    log_config = configure_logging(config.log_level, config.log_format)
    if log_config is not None:
        logging.config.dictConfig(log_config)  # now, so that the lines before uvicorn starts are JSON too
        route_stderr()  # native libraries' lines (llguidance's warnings) and Python warnings as JSON lines too
    if not is_loopback(config.host) and not config.api_key:
        log.warning("listening on %s without --api-key: anyone who can reach this address can use the model",
                    config.host)
    app = create_app(config, llm)
    extra = {"log_config": log_config} if log_config is not None else {}
    uvicorn_access_log = config.log_level == "debug" and log_config is None  # JSON mode has its own access log
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                               timeout_graceful_shutdown=5, access_log=uvicorn_access_log, **extra)
    _GracefulServer(uv_config).run()


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown (the process then dies of the
        signal); a server stopped on purpose and cleanly should exit with code 0 instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    return GracefulServer


def _GracefulServer(config: Any) -> Any:  # noqa: N802 - a class built lazily (uvicorn is optional)
    return _graceful_server_class()(config)


class RunningServer:
    """A server running in a background thread of this process (see ``start_server``)."""

    def __init__(self, server: Any, thread: Any, app: Any) -> None:
        self._server, self._thread, self.app = server, thread, app
        self.host, self.port = _bound_address(server)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``: ``http://host:port/v1``."""
        return self.url + "/v1"

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down gracefully (the model is closed if the server created it)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _bound_address(server: Any) -> tuple[str, int]:
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            host, port = sock.getsockname()[:2]
            return host, port
    return server.config.host, server.config.port


def start_server(config: ServerConfig, llm: Any = None, *, timeout: float = 600.0) -> RunningServer:
    """Start the server in a background thread and return once the model is loaded (``port=0`` picks a
    free port: read it from ``.port`` / ``.base_url``). Use it as a context manager to stop it."""
    import threading
    import time

    import uvicorn

    from ..exceptions import AbstractLLMError, ModelLoadError
    from .app import create_app

    app = create_app(config, llm)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="abstractllm-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    state = app.state.server
    # uvicorn offers no readiness event: wait on the server thread in short slices until it is up and
    # the model has finished loading (or the thread died, or the deadline passed).
    while not (server.started and state.status != "loading"):
        if not thread.is_alive():
            raise AbstractLLMError(f"The server could not start on {config.host}:{config.port} (port in use?).")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(30)
            raise AbstractLLMError(f"The server did not become ready within {timeout:.0f} s.")
        thread.join(0.02)
    running = RunningServer(server, thread, app)
    if state.status == "error":
        running.stop()
        raise ModelLoadError(f"The model could not be loaded: {state.load_error}")
    return running
