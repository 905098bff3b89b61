"""Persistent inference jobs: queue thousands of prompt (+ image) requests in a database, run them with
one or many workers, survive crashes, resume.

    from abstractllm.jobs import queue_inference, run_worker, list_jobs
    job = queue_inference({"prompt": "Describe this photo.", "image_path": "cat.jpg", "max_tokens": 64},
                          store="jobs.db")
    run_worker("jobs.db", model="mlx-community/Qwen2-VL-2B-Instruct-4bit", concurrency=8)
    print(list_jobs("completed", store="jobs.db")[0].response)

The store is SQLite by default (one file, no server) or PostgreSQL for workers on several machines
(``postgresql://`` URLs; the ``jobs`` extra installs SQLAlchemy and psycopg). Modules: ``config``
(``validate_config``; no database library), ``job`` (``Job``, ``JobStatus``), ``store`` (``JobStore``),
``migrations``, ``worker`` (``run_worker``), ``batches`` (the OpenAI Batch API's files and batches),
``api`` (the functions below). Importing this package imports no database library and no backend.
See docs/jobs.md.
"""

from __future__ import annotations

from typing import Any

from .config import default_db_url, validate_config
from .errors import InvalidConfigError, JobNotFoundError, JobStateError, JobStoreError
from .job import Job, JobStatus

__all__ = [
    "validate_config", "do_inference", "queue_inference", "get_job", "list_jobs", "cancel_job", "retry_failed",
    "run_worker", "arun_worker", "WorkerProgress", "JobStore", "open_store", "get_store", "Job", "JobStatus",
    "default_db_url", "InvalidConfigError", "JobNotFoundError", "JobStateError", "JobStoreError",
]

_LAZY = {
    "do_inference": ".api", "queue_inference": ".api", "get_job": ".api", "list_jobs": ".api",
    "cancel_job": ".api", "retry_failed": ".api", "get_store": ".api",
    "run_worker": ".worker", "arun_worker": ".worker", "WorkerProgress": ".worker",
    "JobStore": ".store", "open_store": ".store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'abstractllm.jobs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
