"""``run_server``: serve the app with uvicorn until SIGINT / SIGTERM, then close the model cleanly."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any, Iterator

from .config import ServerConfig

__all__ = ["run_server", "is_loopback"]

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

    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    if not is_loopback(config.host) and not config.api_key:
        log.warning("listening on %s without --api-key: anyone who can reach this address can use the model",
                    config.host)
    app = create_app(config, llm)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                               timeout_graceful_shutdown=5, access_log=config.log_level == "debug")
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
