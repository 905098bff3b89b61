"""The argument parser. Each sub-command's function is imported only when that command runs."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

from ..params import (PARAMS, SERVER_LOG_FORMAT, SERVER_MAX_BODY_BYTES, SERVER_MAX_N, SERVER_MAX_TOKENS_LIMIT,
                      SERVER_PORT, SERVER_RESPONSES_STORE_BYTES, SERVER_RESPONSES_STORE_SIZE, SERVER_SSE_PING_S)

__all__ = ["build_parser"]

_EPILOG = """examples:
  abstractllm demo
  abstractllm generate "Write a haiku" --model mlx-community/Qwen3-0.6B-4bit -m 64
  abstractllm chat --model ./my-model
  abstractllm serve --model ./my-model --port 8000
  abstractllm models ~/models
  abstractllm batch submit photos/ --prompt "Describe this photo."
The model defaults to $ABSTRACTLLM_MODEL."""


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module, __package__), name)(args)

    return run


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-M", help="model folder or Hugging Face repo id (default: $ABSTRACTLLM_MODEL)")


def _add_load(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=("4", "8"), help="quantize a float model to 4 or 8 bits on load")
    p.add_argument("--full-precision", action="store_true", help="load the weights as float32")
    p.add_argument("--memory-limit", metavar="SIZE", help="memory budget, e.g. 8GB: loads and requests that would "
                   "exceed it are refused (default: the available memory)")
    p.add_argument("--prompt-cache-size", metavar="SIZE", help="RAM for the prefix cache, e.g. 2GB (0: off; default: "
                   "a share of the available memory)")
    p.add_argument("--prompt-cache-dir", metavar="DIR", help="keep prefix-cache entries on disk in DIR too: they "
                   "survive restarts (off by default; see `abstractllm cache`)")
    p.add_argument("--prompt-cache-disk-size", metavar="SIZE", help="disk budget of --prompt-cache-dir, e.g. 20GB")
    p.add_argument("--kv-bits", type=int, choices=(4, 8), help="quantize the KV cache to 4 or 8 bits")
    p.add_argument("--kv-group-size", type=int, choices=(32, 64, 128), help="group size of the KV quantization")
    p.add_argument("--quantized-kv-start", type=_non_negative_int, metavar="N",
                   help="with --kv-bits: keep a request's KV in full precision until it holds N tokens")


def _add_sampling(p: argparse.ArgumentParser, max_tokens: int | None = None) -> None:
    p.add_argument("--max-tokens", "-m", type=_positive_int, default=max_tokens,
                   help="most tokens to generate" + (f" (default {max_tokens})" if max_tokens else ""))
    p.add_argument("--temperature", "-t", type=float, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass")
    p.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--stop", action="append", metavar="S", help="stop string (repeatable)")
    p.add_argument("--system", "-s", help="system prompt")
    _add_thinking(p)


def _add_thinking(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--thinking", dest="thinking", action="store_const", const=True, default=None,
                   help="reasoning models: think before answering (default: the model's own default)")
    g.add_argument("--no-thinking", dest="thinking", action="store_const", const=False,
                   help="reasoning models: answer without thinking (where the chat template can switch it off)")
    p.add_argument("--thinking-budget", type=_non_negative_int, metavar="N",
                   help="reasoning models: end the thinking after N tokens, then answer")


def _tokens_limit(value: str) -> "int | str":
    """``serve --max-tokens-limit``: a positive integer, or ``context`` (the model's context length)."""
    return "context" if value == "context" else _positive_int(value)


def _add_generate(sub: Any) -> None:
    """``abstractllm generate PROMPT``: one reply, streamed."""
    p = sub.add_parser("generate", help="generate a reply to one prompt (streamed)",
                       description="Generate a reply to PROMPT ('-' reads it from stdin) and stream it.")
    p.add_argument("prompt", metavar="PROMPT")
    _add_model(p)
    p.add_argument("--image", "-i", action="append", metavar="PATH", help="an image file or URL (repeatable)")
    p.add_argument("--video", metavar="PATH", help="a video file")
    _add_sampling(p)
    _add_load(p)
    p.add_argument("--output", "-o", metavar="FILE", help="write the reply to FILE instead of the terminal")
    p.add_argument("--json", action="store_true", help="print the whole Response as JSON")
    p.add_argument("--stats", action="store_true", help="print token counts and speed to stderr")
    p.set_defaults(func=_lazy(".commands:cmd_generate"))


def _add_chat(sub: Any) -> None:
    """``abstractllm chat``: an interactive chat with history."""
    p = sub.add_parser("chat", help="interactive chat with history (/image PATH, /reset, /exit)",
                       description="Chat with a model. Commands: /image PATH attaches an image to your next "
                       "message, /reset forgets the conversation, /help, /exit (or Ctrl-D).")
    _add_model(p)
    _add_sampling(p, max_tokens=PARAMS["max_tokens"].default)
    _add_load(p)
    p.add_argument("--stats", action="store_true", help="after each reply, print token counts (cached ones "
                   "too) and speed to stderr")
    p.set_defaults(func=_lazy(".chat:cmd_chat"))


def _add_serve(sub: Any) -> None:
    """``abstractllm serve``: the OpenAI- and Anthropic-compatible HTTP server."""
    p = sub.add_parser("serve", help="serve an OpenAI- and Anthropic-compatible HTTP API",
                       description="Serve MODEL over the OpenAI (chat completions, responses) and Anthropic "
                       "(messages) APIs, with Prometheus /metrics (needs the 'server' extra).")
    _add_model(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=SERVER_PORT, help=f"port (default {SERVER_PORT})")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $ABSTRACTLLM_API_KEY)")
    p.add_argument("--max-body-size", default=f"{SERVER_MAX_BODY_BYTES >> 20}MiB",
                   help=f"largest request body, e.g. 64MiB (default {SERVER_MAX_BODY_BYTES >> 20}MiB)")
    p.add_argument("--allow-local-files", metavar="DIR",
                   help="allow image/video paths in requests, only inside DIR (default: refuse local paths)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="fetch image/video URLs on loopback, private and link-local addresses (default: refuse)")
    p.add_argument("--max-tokens", "-m", type=_positive_int, help="default max tokens per request")
    p.add_argument("--max-tokens-limit", type=_tokens_limit, default=SERVER_MAX_TOKENS_LIMIT, metavar="N",
                   help="the most tokens a reply may have: requests asking for more max_tokens are clamped to N, and "
                        "requests without max_tokens may run up to N (default: context, the model's context length)")
    p.add_argument("--strict-fields", action="store_true",
                   help="answer 400 for unknown request fields (default: ignore them, as the documented fields the "
                        "server cannot honour: logged once, listed in the x-abstractllm-ignored response header)")
    p.add_argument("--max-n", type=_positive_int, default=SERVER_MAX_N, metavar="N",
                   help=f"refuse requests asking for more than N choices (n) (default {SERVER_MAX_N})")
    p.add_argument("--max-batch-size", type=_positive_int, metavar="N",
                   help=f"requests generating together in one batch (default {PARAMS['max_batch_size'].default})")
    p.add_argument("--max-queue-size", type=_non_negative_int, metavar="N",
                   help="requests waiting for the batch; more are answered 429 "
                        f"(default {PARAMS['max_queue_size'].default})")
    p.add_argument("--max-concurrency", type=_positive_int, metavar="N",
                   help="requests in the server at once, generating or waiting; more are answered 429 (sets "
                        "the queue to N minus the batch size)")
    p.add_argument("--model-id", help="the model id /v1/models reports")
    p.add_argument("--responses-store-size", type=_non_negative_int, default=SERVER_RESPONSES_STORE_SIZE, metavar="N",
                   help="/v1/responses replies kept in memory for previous_response_id, least recently used dropped "
                        f"first (default {SERVER_RESPONSES_STORE_SIZE}; 0 keeps none)")
    p.add_argument("--responses-store-bytes", default=f"{SERVER_RESPONSES_STORE_BYTES >> 20}MiB", metavar="SIZE",
                   help="and at most SIZE of them, e.g. 1GiB (default "
                        f"{SERVER_RESPONSES_STORE_BYTES >> 20}MiB)")
    p.add_argument("--sse-ping", type=float, default=SERVER_SSE_PING_S, metavar="S",
                   help=f"streams: a keep-alive comment every S seconds while no event is sent, e.g. during a long "
                        f"prefill (default {SERVER_SSE_PING_S:g})")
    p.add_argument("--jobs-db", metavar="PATH_OR_URL", help="the Batch API's job store: a SQLite file or a "
                   "postgresql:// URL (default: $ABSTRACTLLM_JOBS_DB, else the user's data folder)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default=SERVER_LOG_FORMAT, choices=("text", "json"),
                   help="json: every log line a JSON object, and one access-log line per request (id, method, "
                        f"endpoint, status, tokens, timings) (default {SERVER_LOG_FORMAT})")
    p.add_argument("--distributed", nargs="?", const="auto", choices=("tensor", "pipeline", "auto"),
                   help="under mlx.launch: shard the model over its processes; rank 0 serves HTTP (default mode: "
                        "auto; see docs/distributed.md)")
    p.add_argument("--distributed-timeout", type=float, metavar="S", help="with --distributed: seconds a rank "
                   f"waits on the others before it exits with an error (default {PARAMS['distributed_timeout'].default:g})")
    _add_load(p)
    p.set_defaults(func=_lazy(".commands:cmd_serve"))


def _add_models(sub: Any) -> None:
    """``abstractllm models [FOLDER ...]``: the models found in the Hugging Face cache and in folders."""
    p = sub.add_parser("models", help="list MLX models in the Hugging Face cache and in folders",
                       description="List loadable models (text or vision, size, quantization) found in the "
                       "Hugging Face cache and in the given folders (each folder, and its sub-folders).")
    p.add_argument("folders", nargs="*", metavar="FOLDER")
    p.add_argument("--no-cache", action="store_true", help="skip the Hugging Face cache")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_lazy(".models:cmd_models"))


def _add_demo(sub: Any) -> None:
    """``abstractllm demo``: a tiny offline model, built once, streaming a generation."""
    p = sub.add_parser("demo", help="build a tiny offline model and stream a generation from it",
                       description="Build (once, cached) a tiny model with random weights and stream a "
                       "generation through create_llm('mlx'): the text is gibberish, but every step runs.")
    p.add_argument("--prompt", "-p", default="Tell me about the ocean.", help="the prompt")
    p.add_argument("--max-tokens", "-m", type=_positive_int, default=48, help="tokens to generate (default 48)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, llama-tiny, ... (default tiny)")
    p.add_argument("--temperature", "-t", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_lazy(".commands:cmd_demo"))


def build_parser() -> argparse.ArgumentParser:
    """The ``abstractllm`` parser with its sub-commands."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="abstractllm", description="Run local MLX language and vision models from the terminal or over HTTP.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"abstractllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_generate(sub)
    _add_chat(sub)
    _add_serve(sub)
    _add_models(sub)
    _add_demo(sub)

    from .batch_args import add_batch_parser  # abstractllm batch ... (persistent jobs)

    add_batch_parser(sub, _lazy, _positive_int)
    from .cache import add_cache_parser  # abstractllm cache ls|clear (the disk prompt cache)

    add_cache_parser(sub, _lazy)
    return parser
