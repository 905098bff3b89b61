"""Helpers shared by the commands: the default model, errors, provider creation, streaming output."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterable

__all__ = ["CLIError", "fail", "model_from", "llm_config_from", "make_llm", "stream_to", "ChunkPrinter", "MODEL_ENV"]

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
    """Load-time options (``--quantize``, ``--full-precision``, ``--memory-limit``, the prefix cache's and the KV
    cache's) as ``create_llm`` config."""
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
    for flag, key in (("prompt_cache_size", "prompt_cache_bytes"), ("prompt_cache_dir", "prompt_cache_dir"),
                      ("prompt_cache_disk_size", "prompt_cache_disk_bytes"), ("kv_bits", "kv_bits"),
                      ("kv_group_size", "kv_group_size"), ("quantized_kv_start", "quantized_kv_start")):
        if getattr(args, flag, None) is not None:
            config[key] = getattr(args, flag)  # validated by the provider (abstractllm.params)
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


#: ANSI "dim" and "reset": the reasoning's style on a terminal
DIM, RESET = "\x1b[2m", "\x1b[0m"
#: the lines around the reasoning
THINKING_OPEN, THINKING_CLOSE = "[thinking]", "[/thinking]"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ChunkPrinter:
    """Prints streamed chunks as they come: the answer to ``out``, a reasoning model's thinking to
    ``reasoning_out`` (default: ``out``) apart from it, between ``[thinking]`` and ``[/thinking]`` lines,
    dimmed (ANSI) only where that stream is a terminal. ``close()`` ends an open reasoning block (and the
    dim style)."""

    def __init__(self, out: Any = None, reasoning_out: Any = None) -> None:
        self.out = out or sys.stdout
        self.reasoning_out = reasoning_out or self.out
        self.dim = _isatty(self.reasoning_out)
        self.inside = False

    def write(self, chunk: Any) -> None:
        if chunk.reasoning:
            if not self.inside:
                self.reasoning_out.write((DIM if self.dim else "") + THINKING_OPEN + "\n")
                self.inside = True
            self.reasoning_out.write(chunk.reasoning)
            self.reasoning_out.flush()
        if chunk.content:
            self.close()
            self.out.write(chunk.content)
            self.out.flush()

    def close(self) -> None:
        if self.inside:
            self.inside = False
            self.reasoning_out.write("\n" + THINKING_CLOSE + (RESET if self.dim else "") + "\n")
            self.reasoning_out.flush()


def stream_to(chunks: Iterable[Any], out: Any = None, reasoning_out: Any = None) -> Any:
    """Print streamed chunks as they come (``ChunkPrinter``); return the last chunk (it carries usage and
    timings)."""
    printer = ChunkPrinter(out, reasoning_out)
    last = None
    try:
        for chunk in chunks:
            printer.write(chunk)
            last = chunk
    finally:
        printer.close()
    return last
