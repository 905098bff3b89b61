"""The arguments of ``abstractllm batch`` (submit, run, status, results, retry, cancel). Light: imports
nothing but argparse; the commands themselves are in ``batch.py``."""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["add_batch_parser"]

_DESCRIPTION = """Persistent inference jobs in a database (SQLite file by default, or postgresql://).
  abstractllm batch submit photos/ --prompt "Describe this photo." --max-tokens 64
  abstractllm batch submit requests.jsonl          (one job config a line: {"prompt": ..., "image_path": ...})
  abstractllm batch run --model mlx-community/Qwen2-VL-2B-Instruct-4bit --concurrency 8
  abstractllm batch status
  abstractllm batch results -o results.jsonl
A worker killed mid-run loses nothing: run it again and it resumes. See docs/jobs.md."""


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH_OR_URL",
                   help="the job store: a SQLite file or a postgresql:// URL (default: $ABSTRACTLLM_JOBS_DB, else "
                        "jobs.db in the user's data folder)")


def _add_submit(bsub: Any, lazy: Callable[[str], Any], positive_int: Callable[[str], int]) -> None:
    """``abstractllm batch submit``: jobs from a JSONL file or a folder of images."""
    p = bsub.add_parser("submit", help="queue jobs from a JSONL file or a folder of images",
                        description="Queue one job per line of INPUT.jsonl (a JSON object of job fields: prompt, "
                        "image_path(s), image_url(s), model, max_tokens, ...), or one job per image of FOLDER "
                        "(--prompt required; the images are not decoded: a bad one fails when it runs). The "
                        "options are defaults that a line's own fields override. Nothing is queued if any line "
                        "is invalid; every bad line is reported with its number.")
    p.add_argument("input", metavar="INPUT.jsonl|FOLDER")
    p.add_argument("--prompt", "-p", help="the prompt (required for a folder)")
    p.add_argument("--system", "-s", help="system prompt")
    p.add_argument("--model", "-M", help="bind the jobs to this model (default: any worker's model)")
    p.add_argument("--max-tokens", "-m", type=positive_int, help="most tokens to generate")
    p.add_argument("--temperature", "-t", type=float, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass")
    p.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    p.add_argument("--min-p", type=float, help="minimum probability relative to the top token")
    p.add_argument("--repetition-penalty", type=float, help="penalty on repeated tokens")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--stop", action="append", metavar="S", help="stop string (repeatable)")
    p.add_argument("--max-attempts", type=positive_int, help="claims of a job before it fails for good (default 3)")
    p.add_argument("--recursive", "-r", action="store_true", help="FOLDER: also the images of its sub-folders")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_submit"))


def _add_run(bsub: Any, lazy: Callable[[str], Any], positive_int: Callable[[str], int]) -> None:
    """``abstractllm batch run``: a worker."""
    p = bsub.add_parser("run", help="run queued jobs on a model (a worker), with a progress bar",
                        description="Run the jobs queued for no model or for MODEL, up to --concurrency at once "
                        "in one batch. Exits when no queued or running job is left (it waits for the leases of "
                        "other workers), with code 1 if any job failed. Resumable: stop it (Ctrl-C) or lose it "
                        "(kill -9) and run it again.")
    p.add_argument("--model", "-M", help="model folder or Hugging Face repo id (default: $ABSTRACTLLM_MODEL)")
    p.add_argument("--concurrency", "-c", type=positive_int, help="jobs in flight at once (default 8: the batch size)")
    p.add_argument("--max-jobs", type=positive_int, metavar="N", help="stop after N jobs")
    p.add_argument("--watch", action="store_true", help="keep waiting for new jobs instead of exiting (Ctrl-C stops)")
    p.add_argument("--lease", type=float, metavar="SECONDS", help="lease of a claimed job (default 30)")
    p.add_argument("--quantize", choices=("4", "8"), help="quantize a float model to 4 or 8 bits on load")
    p.add_argument("--full-precision", action="store_true", help="load the weights as float32")
    p.add_argument("--memory-limit", metavar="SIZE", help="memory budget, e.g. 8GB")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, only the summary")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_run"))


def _add_reports(bsub: Any, lazy: Callable[[str], Any], positive_int: Callable[[str], int]) -> None:
    """``abstractllm batch status``, ``results``, ``retry``, ``cancel``."""
    p = bsub.add_parser("status", help="how many jobs are queued, running, completed, failed, cancelled")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_status"))

    p = bsub.add_parser("results", help="write every job's result as JSON lines",
                        description="One JSON line per job of every status: id, status, response, error, usage "
                        "(and finish_reason, custom_id, images, prompt, metadata, attempts).")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    p.add_argument("--status", action="append", metavar="STATUS",
                   help="only jobs of this status (repeatable: queued, processing, completed, failed, cancelled)")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_results"))

    p = bsub.add_parser("retry", help="queue failed jobs again")
    p.add_argument("ids", nargs="*", type=positive_int, metavar="ID", help="only these jobs (default: every failed one)")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_retry"))

    p = bsub.add_parser("cancel", help="cancel queued or running jobs")
    p.add_argument("ids", nargs="+", type=positive_int, metavar="ID")
    _add_db(p)
    p.set_defaults(func=lazy(".batch:cmd_cancel"))


def add_batch_parser(sub: Any, lazy: Callable[[str], Any], positive_int: Callable[[str], int]) -> None:
    """Add ``batch`` and its sub-commands to the ``abstractllm`` parser's sub-parsers ``sub``."""
    batch = sub.add_parser("batch", help="persistent jobs: submit, run (resumable), status, results",
                           description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND")

    _add_submit(bsub, lazy, positive_int)
    _add_run(bsub, lazy, positive_int)
    _add_reports(bsub, lazy, positive_int)
    batch.set_defaults(func=lambda args: (batch.print_help(), 2)[1])
