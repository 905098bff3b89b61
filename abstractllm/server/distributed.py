"""``abstractllm serve --distributed``: one server over a model sharded across the processes MLX's launcher
started (every rank runs the same command line).

Rank 0 answers HTTP (the usual app: batching, streaming, ``/health``, ``/stats``); the other ranks load
their shards and follow rank 0's requests (``DistributedMLXProvider.follow``). ``/health`` (without an API
key) and ``/stats`` add ``distributed``: the world size, the mode and every rank's memory (gathered about
once a second). When the group fails (a rank died: MLX reports the lost connection within a heartbeat; a
rank stopped answering: the watchdog ends the waiting rank after ``distributed_timeout``), rank 0 stops
the server and exits with status 1 and the reason; the other ranks exit too, never hang.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from .config import ServerConfig
from .stats import distributed_info  # defined in stats.py (routes.py reads it there), re-exported here

__all__ = ["serve_ranks", "distributed_info"]


def serve_ranks(config: ServerConfig, llm: Any) -> int:
    """Serve ``llm`` (a ``DistributedMLXProvider``) on this rank: rank 0 runs the HTTP server until it is
    stopped or the group fails; another rank follows rank 0. Returns the exit status; closes ``llm``."""
    from ..exceptions import AbstractLLMError

    where = f"rank {llm.rank} of {llm.world_size}"
    if llm.rank != 0:
        print(f"abstractllm serve: {where}: holding a shard of {config.resolved_model_id()} and following rank 0",
              file=sys.stderr, flush=True)
        try:
            llm.follow()
        except AbstractLLMError as exc:
            print(f"abstractllm serve: {where}: stopped: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            llm.close()
        return 0

    from .run import run_server

    def stop(error: BaseException) -> None:  # on the worker thread: uvicorn stops on SIGTERM, gracefully
        print(f"abstractllm serve: {where}: the group failed, stopping the server: {error}", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    llm.on_fatal(stop)
    where_http = f" on http://{config.host}:{config.port}/v1" if config.port else ""
    print(f"Serving {config.resolved_model_id()}{where_http} from {where} (every rank loads its shard; GET /health "
          "answers 200 once they have)", file=sys.stderr, flush=True)
    try:
        run_server(config, llm)
    finally:
        llm.close()
    error = llm.distributed_error
    if error is not None:
        print(f"abstractllm serve: {where}: stopped: {error}", file=sys.stderr, flush=True)
        return 1
    return 0
