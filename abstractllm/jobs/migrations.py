"""Versioned schema migrations of the job store, applied in order when a store is opened.

Each migration is a function of an open connection inside the migration's transaction; the version
reached is recorded in ``abstractllm_schema``. On PostgreSQL the migrating process holds an advisory lock,
on SQLite the write lock (``BEGIN IMMEDIATE``), so workers starting together migrate once. A database
written by a newer abstractllm (a version above ``LATEST``) is refused rather than misread.

A migration's tables are frozen copies as of that version: ``schema.py`` describes the latest state, and a
test checks that migrating an empty database gives exactly ``schema.py``'s tables and columns. To change
the schema, add a migration (``ALTER TABLE ...`` through SQLAlchemy) and change ``schema.py`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from .errors import JobStoreError

__all__ = ["Migration", "MIGRATIONS", "LATEST", "migrate", "current_version"]

_PG_LOCK_KEY = 0x61626C6A  # pg_advisory_xact_lock key of the migrations ("ablj")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    upgrade: Callable[[sa.Connection], None]


def _v1(conn: sa.Connection) -> None:
    """Version 1: jobs, the Batch API's files and batches."""
    md = sa.MetaData()
    t = sa.Float(precision=53)
    js = sa.JSON(none_as_null=True)
    sa.Table(
        "abstractllm_jobs", md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False), sa.Column("model", sa.Text),
        sa.Column("prompt", sa.Text), sa.Column("system_prompt", sa.Text), sa.Column("messages", js),
        sa.Column("images", js), sa.Column("params", js, nullable=False), sa.Column("response", sa.Text),
        sa.Column("finish_reason", sa.String(32)), sa.Column("usage", js), sa.Column("error", sa.Text),
        sa.Column("error_type", sa.String(100)), sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False), sa.Column("worker_id", sa.String(300)),
        sa.Column("worker_host", sa.String(300)), sa.Column("worker_pid", sa.Integer),
        sa.Column("lease_until", t), sa.Column("created_at", t, nullable=False), sa.Column("started_at", t),
        sa.Column("finished_at", t), sa.Column("batch_id", sa.String(64)), sa.Column("custom_id", sa.Text),
        sa.Column("meta", js),
        sa.Index("ix_abstractllm_jobs_status", "status", "id"),
        sa.Index("ix_abstractllm_jobs_batch", "batch_id", "id"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "abstractllm_files", md,
        sa.Column("id", sa.String(64), primary_key=True), sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.Text, nullable=False), sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", t, nullable=False), sa.Column("content", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "abstractllm_batches", md,
        sa.Column("id", sa.String(64), primary_key=True), sa.Column("status", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False), sa.Column("model", sa.Text),
        sa.Column("meta", js), sa.Column("errors", js), sa.Column("output_file_id", sa.String(64)),
        sa.Column("error_file_id", sa.String(64)), sa.Column("created_at", t, nullable=False),
        *(sa.Column(name, t) for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                                          "cancelling_at", "cancelled_at", "expires_at")),
    )
    md.create_all(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, files and batches", _v1),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: sa.Connection) -> int:
    """The schema version of the database (0: empty)."""
    from .schema import schema_versions

    if not sa.inspect(conn).has_table(schema_versions.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar() or 0)


def migrate(conn: sa.Connection, now: sa.ColumnElement) -> int:
    """Bring the database (inside the caller's write transaction) to ``LATEST``; returns the version."""
    from .schema import schema_versions

    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    version = current_version(conn)
    if version > LATEST:
        raise JobStoreError(f"This job store has schema version {version}, written by a newer abstractllm "
                            f"(this one knows up to {LATEST}): upgrade abstractllm to use it.")
    if version == LATEST:
        return version
    schema_versions.create(conn, checkfirst=True)
    for migration in MIGRATIONS[version:]:
        migration.upgrade(conn)
        conn.execute(sa.insert(schema_versions).values(version=migration.version,
                                                       description=migration.description, applied_at=now))
    return LATEST
