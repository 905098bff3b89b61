"""Helpers shared by the commands: the default model, errors, provider creation, streaming output."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterable

__all__ = ["CLIError", "fail", "model_from", "llm_config_from", "make_llm", "stream_to", "MODEL_ENV"]

#: environment variable holding the default model
MODEL_ENV = "ABSTRACTLLM_MODEL"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> int:
    first = " ".join(str(message).split())  # one line
    print(f"abstractllm: error: {first}", file=sys.stderr)
    return code


def model_from(args: argparse.Namespace) -> str:
    """``--model``, else ``$ABSTRACTLLM_MODEL``, else a usage error."""
    model = getattr(args, "model", None) or os.environ.get(MODEL_ENV)
    if not model:
        raise CLIError(f"no model given: pass --model PATH_OR_REPO_ID or set {MODEL_ENV}.", 2)
    return model


def llm_config_from(args: argparse.Namespace) -> dict[str, Any]:
    """Load-time options (``--quantize``, ``--full-precision``, ``--memory-limit``) as ``create_llm`` config."""
    config: dict[str, Any] = {}
    quantize = getattr(args, "quantize", None)
    full = getattr(args, "full_precision", False)
    if quantize and full:
        raise CLIError("--quantize and --full-precision exclude each other.", 2)
    if quantize:
        config["quantize"] = int(quantize)
    if full:
        config["dtype"] = "float32"
    if getattr(args, "memory_limit", None):
        config["memory_limit"] = args.memory_limit  # validated by the provider ("8GB", "512MiB", bytes)
    return config


def make_llm(model: str, *, load: bool = False, **config: Any) -> Any:
    """``create_llm("mlx", ...)``, checking the model folder / repo before anything loads. With
    ``load``, load the weights now, with the backends' progress prints sent to stderr (stdout carries
    only the generated text, or the JSON)."""
    import contextlib

    from ..registry import create_llm

    llm = create_llm("mlx", model=model, **config)
    try:
        llm.get_capabilities()  # resolves and inspects the model: a bad path fails here, in one line
        if load:
            with contextlib.redirect_stdout(sys.stderr):
                llm.load()
    except BaseException:
        llm.close()
        raise
    return llm


def stream_to(chunks: Iterable[Any], out: Any = None) -> Any:
    """Print streamed chunks as they come; return the last chunk (it carries usage and timings)."""
    out = out or sys.stdout
    last = None
    for chunk in chunks:
        if chunk.content:
            out.write(chunk.content)
            out.flush()
        last = chunk
    return last
