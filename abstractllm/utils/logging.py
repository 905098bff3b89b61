"""AbstractLLM 1.x's ``configure_logging``, over the standard ``logging`` module (the ``abstractllm`` logger)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["configure_logging"]


def configure_logging(log_level: int | str = logging.WARNING, console_output: bool | None = None,
                      **options: Any) -> None:
    """Set the ``abstractllm`` logger's level (and, with ``console_output=True``, give it a console handler).
    1.x's other options (log files, provider request logging) are accepted and ignored."""
    logger = logging.getLogger("abstractllm")
    logger.setLevel(log_level if isinstance(log_level, int) else str(log_level).upper())
    if console_output and not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        logger.addHandler(logging.StreamHandler())
