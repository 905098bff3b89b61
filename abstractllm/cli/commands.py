"""``generate``, ``serve`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .common import CLIError, llm_config_from, make_llm, model_from, stream_to

__all__ = ["cmd_generate", "cmd_serve", "cmd_demo", "sampling_params", "footer", "batching_config"]


def sampling_params(args: argparse.Namespace) -> dict[str, Any]:
    """The generation parameters given on the command line (unset ones keep the provider's defaults)."""
    out: dict[str, Any] = {}
    for flag, name in (("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                       ("top_k", "top_k"), ("seed", "seed"), ("stop", "stop"), ("thinking", "thinking"),
                       ("thinking_budget", "thinking_budget")):
        value = getattr(args, flag, None)
        if value is not None:
            out[name] = value
    return out


def footer(last: Any) -> str:
    """A one-line summary of a generation: tokens (cached and reasoning ones too), speed, finish reason."""
    if last is None or last.usage is None:
        return ""
    u = last.usage
    speed = f", {last.tokens_per_second:.1f} tok/s" if last.tokens_per_second else ""
    cached = f" ({u.cached_tokens} cached)" if u.cached_tokens else ""
    thought = f" ({u.reasoning_tokens} reasoning)" if u.reasoning_tokens else ""
    return (f"[{u.prompt_tokens} prompt{cached} + {u.completion_tokens} generated tokens{thought}{speed}, "
            f"finish: {last.finish_reason}]")


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    files = list(args.image or []) + ([args.video] if args.video else [])
    for f in files:
        if not f.startswith(("http://", "https://", "data:")) and not Path(f).is_file():
            raise CLIError(f"no such file: {f}")
    llm = make_llm(model_from(args), load=True, **llm_config_from(args))
    try:
        # explicit parts: --image / --video say what the file is, whatever its name (a .json is no text file here)
        parts = [{"type": "image", "image": f} for f in args.image or []]
        parts += [{"type": "video", "video": args.video}] if args.video else []
        kwargs = dict(system_prompt=args.system, files=parts or None, **sampling_params(args))
        if args.json:
            resp = llm.generate(prompt, **kwargs)
            print(json.dumps(resp.to_dict(), indent=2, ensure_ascii=False))
        elif args.output:
            resp = llm.generate(prompt, **kwargs)
            try:
                Path(args.output).write_text(resp.content, encoding="utf-8")
            except OSError as exc:
                raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
            print(f"wrote {len(resp.content)} characters to {args.output} {footer(resp)}", file=sys.stderr)
        else:
            # the reasoning goes to stderr (dimmed on a terminal): stdout carries the answer only
            last = stream_to(llm.generate(prompt, stream=True, **kwargs), reasoning_out=sys.stderr)
            print()
            if args.stats or sys.stderr.isatty():
                print(footer(last), file=sys.stderr)
    finally:
        llm.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..testing import demo_model

    print("Building the offline demo model (cached after the first run)...", file=sys.stderr)
    try:
        path = demo_model("text", args.preset)
    except (KeyError, ValueError) as exc:
        raise CLIError(f"unknown preset {args.preset!r} ({exc})", 2) from exc
    print(f"Model: {path}", file=sys.stderr)
    print("Note: this model has RANDOM weights, so the text below is gibberish. It shows the whole pipeline "
          "(load, chat template, sampling, streaming) running on your machine.", file=sys.stderr)
    print(f"Prompt: {args.prompt}", file=sys.stderr)
    llm = make_llm(str(path), load=True)
    from ..providers.mlx.backend import fast_blas_status

    print(f"BLAS: {fast_blas_status()}", file=sys.stderr)  # which float32 matmul library MLX uses
    try:
        chunks = llm.generate(args.prompt, stream=True, max_tokens=args.max_tokens,
                              temperature=args.temperature, seed=args.seed)
        last = stream_to(chunks)
        print()
        print(footer(last), file=sys.stderr)
    finally:
        llm.close()
    return 0


def batching_config(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-batch-size``, ``--max-queue-size`` and ``--max-concurrency`` as provider configuration."""
    from ..params import PARAMS

    out: dict[str, Any] = {}
    batch = args.max_batch_size or PARAMS["max_batch_size"].default
    if args.max_batch_size:
        out["max_batch_size"] = args.max_batch_size
    if args.max_queue_size is not None:
        out["max_queue_size"] = args.max_queue_size
    if args.max_concurrency is not None:
        if args.max_queue_size is not None:
            raise CLIError("--max-concurrency sets the queue size: give it or --max-queue-size, not both.", 2)
        if args.max_concurrency < batch:
            raise CLIError(f"--max-concurrency {args.max_concurrency} is below the batch size {batch} "
                           "(--max-batch-size).", 2)
        out["max_queue_size"] = args.max_concurrency - batch
    return out


def _distributed_config(args: argparse.Namespace) -> dict[str, Any]:
    """``--distributed`` and ``--distributed-timeout`` as ``create_llm`` config."""
    out: dict[str, Any] = {}
    if getattr(args, "distributed", None):
        out["distributed"] = args.distributed
    if getattr(args, "distributed_timeout", None) is not None:
        if not out:
            raise CLIError("--distributed-timeout goes with --distributed.", 2)
        out["distributed_timeout"] = args.distributed_timeout
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CLIError(f'the server needs FastAPI and uvicorn ({exc.name} is missing): '
                       'pip install "abstractllm[server]"') from exc
    from ..params import parse_bytes
    from ..server import ServerConfig, run_server

    allow = None
    if args.allow_local_files:
        allow = Path(args.allow_local_files).expanduser()
        if not allow.is_dir():
            raise CLIError(f"--allow-local-files: {args.allow_local_files} is not a folder", 2)
        allow = allow.resolve()
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be 0-65535, got {args.port}", 2)
    if args.max_tokens and isinstance(args.max_tokens_limit, int) and args.max_tokens > args.max_tokens_limit:
        raise CLIError(f"--max-tokens {args.max_tokens} is above --max-tokens-limit {args.max_tokens_limit}", 2)
    if not args.sse_ping > 0:
        raise CLIError(f"--sse-ping must be a positive number of seconds, got {args.sse_ping}", 2)
    llm_config = llm_config_from(args)
    if args.max_tokens:
        llm_config["max_tokens"] = args.max_tokens
    llm_config.update(batching_config(args))
    llm_config.update(_distributed_config(args))
    config = ServerConfig(
        model=model_from(args), llm_config=llm_config, host=args.host, port=args.port,
        api_key=args.api_key or os.environ.get("ABSTRACTLLM_API_KEY") or None,
        max_body_bytes=parse_bytes(args.max_body_size, "--max-body-size"), allow_local_files=allow,
        model_id=args.model_id, log_level=args.log_level, allow_private_urls=args.allow_private_urls,
        max_tokens_limit=args.max_tokens_limit, max_n=args.max_n, jobs_db=args.jobs_db,
        log_format=args.log_format, responses_store_size=args.responses_store_size,
        responses_store_bytes=parse_bytes(args.responses_store_bytes, "--responses-store-bytes"),
        strict_fields=args.strict_fields, sse_ping_s=args.sse_ping,
    )
    llm = make_llm(config.model, **llm_config)  # a bad model fails now, before the port opens
    if llm_config.get("distributed"):  # every rank runs this command line under mlx.launch
        from ..server.distributed import serve_ranks

        return serve_ranks(config, llm)
    where = f" on http://{config.host}:{config.port}/v1" if config.port else ""
    message = (f"Serving {config.resolved_model_id()}{where} (the model loads in the background; GET /health "
               "answers 200 once it is ready)")
    if config.log_format == "json":
        from ..server.logs import json_line

        message = json_line("abstractllm.cli", message)
    print(message, file=sys.stderr)
    try:
        run_server(config, llm)
    finally:
        llm.close()
    return 0
