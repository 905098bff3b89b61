"""The job store's tables (SQLAlchemy Core), as the latest migration (``migrations.py``) leaves them.

Times are seconds since the epoch on the database's clock (so that workers on several machines agree on
leases). ``abstractllm_jobs`` holds one row per job; ``abstractllm_files`` and ``abstractllm_batches``
hold the OpenAI Batch API's files and batches (a batch's requests are jobs with its ``batch_id``).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata", "jobs", "files", "batches", "schema_versions", "JOB_COLUMNS"]

metadata = sa.MetaData()


def _time() -> sa.types.TypeEngine:
    return sa.Float(precision=53)  # DOUBLE PRECISION on PostgreSQL, REAL on SQLite


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True)


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY: SQLite's rowid

jobs = sa.Table(
    "abstractllm_jobs", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.Text),
    sa.Column("prompt", sa.Text),
    sa.Column("system_prompt", sa.Text),
    sa.Column("messages", _json()),
    sa.Column("images", _json()),
    sa.Column("params", _json(), nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("finish_reason", sa.String(32)),
    sa.Column("usage", _json()),
    sa.Column("error", sa.Text),
    sa.Column("error_type", sa.String(100)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(300)),
    sa.Column("worker_host", sa.String(300)),
    sa.Column("worker_pid", sa.Integer),
    sa.Column("lease_until", _time()),
    sa.Column("created_at", _time(), nullable=False),
    sa.Column("started_at", _time()),
    sa.Column("finished_at", _time()),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("custom_id", sa.Text),
    sa.Column("meta", _json()),
    sa.Index("ix_abstractllm_jobs_status", "status", "id"),
    sa.Index("ix_abstractllm_jobs_batch", "batch_id", "id"),
    sqlite_autoincrement=True,  # ids are never reused
)

files = sa.Table(
    "abstractllm_files", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
)

batches = sa.Table(
    "abstractllm_batches", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("input_file_id", sa.String(64), nullable=False),
    sa.Column("completion_window", sa.String(16), nullable=False),
    sa.Column("model", sa.Text),
    sa.Column("meta", _json()),
    sa.Column("errors", _json()),
    sa.Column("output_file_id", sa.String(64)),
    sa.Column("error_file_id", sa.String(64)),
    sa.Column("created_at", _time(), nullable=False),
    sa.Column("in_progress_at", _time()),
    sa.Column("finalizing_at", _time()),
    sa.Column("completed_at", _time()),
    sa.Column("failed_at", _time()),
    sa.Column("cancelling_at", _time()),
    sa.Column("cancelled_at", _time()),
    sa.Column("expires_at", _time()),
)

schema_versions = sa.Table(
    "abstractllm_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", _time(), nullable=False),
)

#: the job columns a ``Job`` reads
JOB_COLUMNS = tuple(c.name for c in jobs.columns)
