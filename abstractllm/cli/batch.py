"""``abstractllm batch``: submit, run, status, results, retry, cancel (persistent jobs, ``abstractllm.jobs``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .common import CLIError, llm_config_from, make_llm, model_from

__all__ = ["cmd_submit", "cmd_run", "cmd_status", "cmd_results", "cmd_retry", "cmd_cancel", "ProgressBar"]


def _store(args: argparse.Namespace) -> Any:
    try:
        from ..jobs.store import JobStore
    except ImportError as exc:
        raise CLIError(f'persistent jobs need SQLAlchemy ({exc.name} is missing): pip install "abstractllm[jobs]"')
    return JobStore(args.db)


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, key in (("prompt", "prompt"), ("system", "system_prompt"), ("model", "model"),
                      ("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                      ("top_k", "top_k"), ("min_p", "min_p"), ("repetition_penalty", "repetition_penalty"),
                      ("seed", "seed"), ("stop", "stop"), ("max_attempts", "max_attempts")):
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    return out


def cmd_submit(args: argparse.Namespace) -> int:
    from ..jobs.config import image_files, job_spec, read_jsonl

    source = Path(args.input)
    defaults = _defaults(args)
    if source.is_dir():
        if not args.prompt:
            raise CLIError("a folder of images needs --prompt: the prompt asked of every image.", 2)
        paths = list(image_files(source, recursive=args.recursive))
        if not paths:
            raise CLIError(f"no image files in {source} (by suffix: .jpg, .png, .webp, ...)"
                           + ("" if args.recursive else "; --recursive also looks in sub-folders"))
        specs = [job_spec({**defaults, "image_path": str(p)}) for p in paths]
    elif source.is_file():
        specs = read_jsonl(source, defaults)
    else:
        raise CLIError(f"no such file or folder: {source}")
    with _store(args) as store:
        ids = store.submit(specs)
        where = str(store)
    span = f"id {ids[0]}" if len(ids) == 1 else f"ids {ids[0]}-{ids[-1]}"
    print(f"queued {len(ids)} job{'s' if len(ids) != 1 else ''} ({span}) in {where}", file=sys.stderr)
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class ProgressBar:
    """The worker's progress on ``out`` (stderr): a bar redrawn in place on a terminal, a line every
    ``every_s`` seconds otherwise. Shows done / total, failures, jobs/s and the ETA."""

    def __init__(self, out: TextIO | None = None, every_s: float = 10.0, width: int = 24) -> None:
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.every_s, self.width = every_s, width
        self.last = 0.0

    def line(self, p: Any) -> str:
        total, done = p.total, p.done
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        failed = p.counts.get("failed", 0)
        running = p.counts.get("processing", 0)
        return (f"[{bar}] {done}/{total} done, {running} running, {failed} failed, {p.jobs_per_s:.2f} jobs/s, "
                f"ETA {_duration(p.eta_s) if done < total else '0s'}")

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r" + self.line(p) + "\x1b[K")
            self.out.flush()
        elif p.finished or now - self.last >= self.every_s:
            self.last = now
            print(self.line(p), file=self.out, flush=True)

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from ..jobs.worker import arun_worker
    from ..params import JOB_LEASE_S, PARAMS, default_of

    model = model_from(args)
    concurrency = args.concurrency or int(PARAMS["max_batch_size"].default)
    lease = args.lease if args.lease is not None else JOB_LEASE_S
    if not 1 <= lease <= 3600:
        raise CLIError(f"--lease must be in [1, 3600] seconds, got {args.lease}", 2)
    store = _store(args)
    try:
        llm = make_llm(model, load=True, max_batch_size=concurrency, max_queue_size=max(default_of("max_queue_size"), concurrency),
                       **llm_config_from(args))
    except BaseException:
        store.close()
        raise
    bar = None if args.quiet else ProgressBar()
    print(f"worker on {model}, {concurrency} at once, store {store}", file=sys.stderr)

    async def work() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, stop.set)  # finish cleanly: running jobs go back
        except (NotImplementedError, RuntimeError):
            pass
        return await arun_worker(store, model=model, llm=llm, concurrency=concurrency, lease_s=lease,
                                 max_jobs=args.max_jobs, exit_when_done=not args.watch, stop=stop,
                                 on_progress=bar, progress_s=0.5 if bar is not None and bar.tty else 2.0)

    try:
        progress = asyncio.run(work())
    finally:
        if bar is not None:
            bar.close()
        llm.close()
        counts = store.counts(model=model, batches=False)
        other = sum(store.counts(batches=False).values()) - sum(counts.values())
        store.close()
    print(f"this run: {progress.completed} completed, {progress.failed} failed in {progress.elapsed_s:.1f} s "
          f"({progress.jobs_per_s:.2f} jobs/s); store: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f"; {other} jobs for other models" if other else ""), file=sys.stderr)
    return 1 if counts["failed"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    with _store(args) as store:
        counts = store.counts()
        failures = store.list("failed", limit=5)
        where = str(store)
    if args.json:
        print(json.dumps({"store": where, "counts": counts, "total": sum(counts.values())}))
        return 0
    print(f"{where}: {sum(counts.values())} jobs")
    for status, n in counts.items():
        print(f"  {status:<11} {n}")
    for job in failures:
        print(f"  job {job.id} failed: {(job.error or '').splitlines()[0][:160] if job.error else ''}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    n = 0
    with _store(args) as store:
        statuses = args.status or None
        out: TextIO
        try:
            out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
        try:
            for job in store.iter_jobs(statuses):
                out.write(json.dumps(job.result(), ensure_ascii=False) + "\n")
                n += 1
        finally:
            if out is not sys.stdout:
                out.close()
    if args.output:
        print(f"wrote {n} results to {args.output}", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _store(args) as store:
        n = store.retry_failed(args.ids or None)
    print(f"queued {n} failed job{'s' if n != 1 else ''} again", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _store(args) as store:
        for job_id in args.ids:
            print(f"job {job_id}: {store.cancel(job_id).status}", file=sys.stderr)
    return 0
