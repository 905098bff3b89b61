"""``Job`` (one row of the store), ``JobStatus``, and who a worker is (``WorkerIdentity``).

A job's status moves ``queued -> processing -> completed | failed``; ``cancelled`` is set by
``cancel_job`` (or a cancelled batch). A worker that dies while holding jobs puts nothing in a final
state: its jobs go back to ``queued`` when its lease expires, or at once when another worker on the same
host sees that its process is gone (``pid_alive``). Light: no database library is imported here.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Job", "JobStatus", "WorkerIdentity", "host_id", "pid_alive", "process_start", "TERMINAL"]


class JobStatus(str, Enum):
    """Where a job is: ``queued``, ``processing``, then ``completed``, ``failed`` or ``cancelled``."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: the final statuses
TERMINAL = frozenset({JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value})


@dataclass
class Job:
    """One job as stored. Times are seconds since the epoch (the database's clock); ``usage`` is a dict
    (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cached_tokens``); ``error_type`` is the
    name of the exception that failed it; ``attempts`` counts the claims by workers."""

    id: int
    status: str
    prompt: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    messages: list[Any] | None = None
    images: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    response: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    worker_id: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        data = {k: row[k] for k in row.keys() if k in _FIELDS}
        data["metadata"] = row.get("meta")
        data["images"] = list(row.get("images") or [])
        data["params"] = dict(row.get("params") or {})
        return cls(**data)

    @property
    def done(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-serializable."""
        return asdict(self)

    def result(self) -> dict[str, Any]:
        """The results line of ``abstractllm batch results``: ``id``, ``status``, ``response``, ``error``,
        ``usage``, and what identifies the job (``custom_id``, ``images``, ``prompt``, ``metadata``)."""
        return {"id": self.id, "status": self.status, "response": self.response, "error": self.error,
                "usage": self.usage, "finish_reason": self.finish_reason, "error_type": self.error_type,
                "custom_id": self.custom_id, "images": self.images, "prompt": self.prompt,
                "metadata": self.metadata, "attempts": self.attempts}

    def generate_kwargs(self) -> dict[str, Any]:
        """The arguments of ``llm.generate`` / ``generate_async`` that run this job."""
        kwargs: dict[str, Any] = dict(self.params)
        kwargs["prompt"] = self.prompt
        if self.system_prompt is not None:
            kwargs["system_prompt"] = self.system_prompt
        if self.messages:
            kwargs["messages"] = self.messages
        if self.images:  # explicit image parts: a file is an image whatever its name says
            kwargs["files"] = [{"type": "image", "image": ref} for ref in self.images]
        return kwargs


_FIELDS = {f for f in Job.__dataclass_fields__}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def host_id() -> str:
    """This machine and PID namespace: the hostname, the kernel's boot id and the PID namespace (Linux),
    so that two containers sharing a hostname are never taken for one host."""
    parts = [socket.gethostname()]
    boot = _read("/proc/sys/kernel/random/boot_id")
    if boot:
        parts.append(boot[:8])
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot on Linux; psutil elsewhere), to tell a live
    worker from a new process that reuses its PID; None when unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if stat and ")" in stat:
        fields = stat.rsplit(")", 1)[1].split()
        return fields[19] if len(fields) > 19 else None
    if sys.platform.startswith("linux"):
        return None
    try:
        import psutil

        return str(int(psutil.Process(pid).create_time() * 100))
    except Exception:
        return None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not; with ``start``, a process that started
    at another time is a different process that reuses the PID)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    stat = _read(f"/proc/{pid}/stat")
    if stat and ")" in stat and stat.rsplit(")", 1)[1].split()[:1] in (["Z"], ["X"]):
        return False
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
    return True


#: ids of the workers running in this process (another worker of this process is alive iff listed here)
ACTIVE_WORKERS: set[str] = set()


@dataclass(frozen=True)
class WorkerIdentity:
    """Who holds a job: ``id`` (``host:pid:start:random``), ``host`` (``host_id()``) and ``pid``."""

    id: str
    host: str
    pid: int

    @classmethod
    def new(cls) -> "WorkerIdentity":
        pid = os.getpid()
        return cls(f"{socket.gethostname()}:{pid}:{process_start(pid) or 0}:{secrets.token_hex(3)}", host_id(), pid)

    @staticmethod
    def alive(worker_id: str, pid: int | None) -> bool:
        """Whether the worker ``worker_id`` (recorded on this host with ``pid``) still runs."""
        if pid is None:
            return False
        if pid == os.getpid():
            return worker_id in ACTIVE_WORKERS
        parts = worker_id.rsplit(":", 3)
        start = parts[2] if len(parts) == 4 and parts[2] != "0" else None
        return pid_alive(pid, start)
