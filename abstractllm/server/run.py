"""``run_server``: serve the app with uvicorn until SIGINT / SIGTERM, then close the model cleanly."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

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
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level,
                timeout_graceful_shutdown=5, access_log=config.log_level == "debug")
