"""The OpenAI Batch API's files and batches, in the job store: a batch's requests are jobs.

- ``create_file``: an uploaded JSONL file (purpose ``batch``), kept in ``abstractllm_files``.
- ``create_batch``: every line of the input file is checked (``custom_id``, ``method``, ``url``, and the
  body through the caller's ``parse_body``, the same checks as the live endpoint); any bad line fails the
  batch (status ``failed``, ``errors`` with line numbers) and queues nothing; else one job per line is
  queued with the batch, in one transaction (status ``in_progress``).
- ``refresh_batch``: once no job of a batch is queued or running, the batch is finalized once (a
  conditional update decides which process does it): the output file (one line per completed request, the
  ``chat.completion`` body) and the error file (failed and cancelled requests) are written, and the
  status becomes ``completed`` (or ``cancelled``).
- ``cancel_batch``: queued requests are cancelled, running ones finish; then ``cancelled``.

Objects are returned in the OpenAI shapes (``object: "file"`` / ``"batch"``), times in epoch seconds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import sqlalchemy as sa

from .. import exceptions as exc_tree
from .config import JobSpec
from .errors import JobNotFoundError, JobStateError
from .job import Job
from .schema import batches, files, jobs

__all__ = ["create_file", "get_file", "file_content", "list_files", "delete_file", "create_batch", "get_batch",
           "list_batches", "cancel_batch", "refresh_batch", "refresh_open_batches", "MAX_REQUESTS"]

#: most requests in one batch (as OpenAI)
MAX_REQUESTS = 50_000
_OPEN = ("in_progress", "cancelling")


def _ts(value: Any) -> int | None:
    return int(value) if value is not None else None


def _file_object(row: Any) -> dict[str, Any]:
    return {"id": row.id, "object": "file", "bytes": int(row.bytes), "created_at": _ts(row.created_at),
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "status_details": None,
            "expires_at": None}


def create_file(store: Any, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
    """Store an uploaded file; returns its file object."""
    fid = f"file-{uuid.uuid4().hex[:24]}"
    with store._connection() as conn:
        conn.execute(sa.insert(files).values(id=fid, purpose=purpose, filename=filename, bytes=len(data),
                                             created_at=store.now, content=data))
        return _file_object(conn.execute(sa.select(files).where(files.c.id == fid)).one())


def _file_row(conn: sa.Connection, file_id: str, content: bool = False) -> Any:
    cols = [c for c in files.c if content or c.name != "content"]
    row = conn.execute(sa.select(*cols).where(files.c.id == file_id)).first()
    if row is None:
        raise JobNotFoundError(f"No file with id {file_id!r}.", job_id=file_id)
    return row


def get_file(store: Any, file_id: str) -> dict[str, Any]:
    with store._connection(write=False) as conn:
        return _file_object(_file_row(conn, file_id))


def file_content(store: Any, file_id: str) -> bytes:
    with store._connection(write=False) as conn:
        return bytes(_file_row(conn, file_id, content=True).content)


def list_files(store: Any, purpose: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
    stmt = sa.select(*[c for c in files.c if c.name != "content"]).order_by(files.c.created_at.desc(), files.c.id)
    if purpose:
        stmt = stmt.where(files.c.purpose == purpose)
    with store._connection(write=False) as conn:
        return [_file_object(r) for r in conn.execute(stmt.limit(limit))]


def delete_file(store: Any, file_id: str) -> dict[str, Any]:
    with store._connection() as conn:
        _file_row(conn, file_id)
        conn.execute(sa.delete(files).where(files.c.id == file_id))
    return {"id": file_id, "object": "file", "deleted": True}


def _counts(conn: sa.Connection, batch_id: str) -> dict[str, int]:
    out = {"queued": 0, "processing": 0, "completed": 0, "failed": 0, "cancelled": 0}
    stmt = sa.select(jobs.c.status, sa.func.count()).where(jobs.c.batch_id == batch_id).group_by(jobs.c.status)
    out.update({s: int(n) for s, n in conn.execute(stmt)})
    return out


def _batch_object(row: Any, counts: dict[str, int]) -> dict[str, Any]:
    out = {"id": row.id, "object": "batch", "endpoint": row.endpoint, "model": row.model, "errors": row.errors,
           "input_file_id": row.input_file_id, "completion_window": row.completion_window, "status": row.status,
           "output_file_id": row.output_file_id, "error_file_id": row.error_file_id, "expired_at": None,
           "request_counts": {"total": sum(counts.values()), "completed": counts["completed"],
                              "failed": counts["failed"]},
           "metadata": row.meta}
    for name in ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
                 "cancelling_at", "cancelled_at"):
        out[name] = _ts(getattr(row, name))
    return out


def _line_error(line: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _check_line(number: int, raw: str, endpoint: str, seen: set[str], model_key: str | None,
                parse_body: Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any]]]) -> JobSpec | dict[str, Any]:
    """One line of a batch's input file: its job, or its error (``seen``: the custom ids of the lines before)."""
    try:
        line = json.loads(raw)
    except ValueError as exc:
        return _line_error(number, "invalid_json_line", f"Not valid JSON: {exc}")
    if not isinstance(line, dict):
        return _line_error(number, "invalid_json_line", "Each line must be a JSON object.")
    cid, body = line.get("custom_id"), line.get("body")
    if not isinstance(cid, str) or not cid:
        return _line_error(number, "missing_required_parameter", "custom_id: a non-empty string is required.",
                           "custom_id")
    if cid in seen:
        return _line_error(number, "duplicate_custom_id", f"custom_id {cid!r} is used twice.", "custom_id")
    seen.add(cid)
    if line.get("method", "POST") != "POST":
        return _line_error(number, "invalid_method", "method must be 'POST'.", "method")
    if line.get("url") != endpoint:
        return _line_error(number, "invalid_url", f"url must be the batch's endpoint {endpoint!r}, got "
                           f"{line.get('url')!r:.60}.", "url")
    if not isinstance(body, dict):
        return _line_error(number, "invalid_request", "body must be a JSON object.", "body")
    try:
        messages, params = parse_body(body)
    except Exception as exc:
        return _line_error(number, "invalid_request", str(getattr(exc, "message", exc)), getattr(exc, "param", None))
    return JobSpec(prompt=None, messages=messages, params=params, model=model_key, custom_id=cid)


def create_batch(store: Any, input_file_id: str, endpoint: str, completion_window: str,
                 metadata: dict[str, str] | None, *, model_key: str | None, model_id: str | None,
                 parse_body: Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any]]]) -> dict[str, Any]:
    """Create a batch over the uploaded ``input_file_id``. ``parse_body(body)`` checks one request body
    and returns its ``(messages, params)`` or raises (its message becomes the line's error)."""
    with store._connection(write=False) as conn:
        source = _file_row(conn, input_file_id, content=True)
    errors: list[dict[str, Any]] = []
    specs: list[JobSpec] = []
    seen: set[str] = set()
    if source.purpose != "batch":
        errors.append(_line_error(0, "invalid_file", f"File {input_file_id} has purpose {source.purpose!r}, "
                                  "not 'batch'.", "input_file_id"))
    for number, raw in enumerate(bytes(source.content).decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip() or errors and len(errors) >= 100:
            continue
        checked = _check_line(number, raw, endpoint, seen, model_key, parse_body)
        (specs if isinstance(checked, JobSpec) else errors).append(checked)
    if not specs and not errors:
        errors.append(_line_error(0, "empty_file", f"File {input_file_id} holds no request.", "input_file_id"))
    if len(specs) > MAX_REQUESTS:
        errors.append(_line_error(0, "too_many_requests", f"At most {MAX_REQUESTS} requests per batch.",
                                  "input_file_id"))
    bid = f"batch_{uuid.uuid4().hex[:24]}"
    row = dict(id=bid, endpoint=endpoint, input_file_id=input_file_id, completion_window=completion_window,
               model=model_id, meta=metadata, created_at=store.now, expires_at=store.now + 24 * 3600.0)
    if errors:
        row.update(status="failed", failed_at=store.now, errors={"object": "list", "data": errors})
    else:
        row.update(status="in_progress", in_progress_at=store.now)
    with store._connection() as conn:  # the batch and its jobs, in one transaction
        conn.execute(sa.insert(batches).values(**row))
        if not errors:
            for spec in specs:
                spec.batch_id = bid
            store._insert(conn, specs)
    return get_batch(store, bid)


def _batch_row(conn: sa.Connection, batch_id: str) -> Any:
    row = conn.execute(sa.select(batches).where(batches.c.id == batch_id)).first()
    if row is None:
        raise JobNotFoundError(f"No batch with id {batch_id!r}.", job_id=batch_id)
    return row


def get_batch(store: Any, batch_id: str, *, refresh: bool = True) -> dict[str, Any]:
    """The batch object (finalized first if its last request just ended)."""
    if refresh:
        refresh_batch(store, batch_id)
    with store._connection(write=False) as conn:
        return _batch_object(_batch_row(conn, batch_id), _counts(conn, batch_id))


def list_batches(store: Any, after: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
    """Batches, newest first, after the batch ``after``; returns ``(batches, has_more)``."""
    refresh_open_batches(store)
    order = (batches.c.created_at.desc(), batches.c.id.desc())
    stmt = sa.select(batches).order_by(*order).limit(limit + 1)
    with store._connection(write=False) as conn:
        if after:
            ref = _batch_row(conn, after)
            stmt = stmt.where(sa.or_(batches.c.created_at < ref.created_at,
                                     sa.and_(batches.c.created_at == ref.created_at, batches.c.id < ref.id)))
        rows = conn.execute(stmt).all()
        out = [_batch_object(r, _counts(conn, r.id)) for r in rows[:limit]]
    return out, len(rows) > limit


def cancel_batch(store: Any, batch_id: str) -> dict[str, Any]:
    """Cancel a batch: its queued requests are cancelled at once, running ones finish."""
    with store._connection() as conn:
        row = _batch_row(conn, batch_id)
        if row.status in ("completed", "failed", "expired"):
            raise JobStateError(f"Batch {batch_id} is {row.status}: it cannot be cancelled.", status=row.status)
        if row.status == "in_progress":
            conn.execute(sa.update(batches).where(batches.c.id == batch_id)
                         .values(status="cancelling", cancelling_at=store.now))
            conn.execute(sa.update(jobs).where(jobs.c.batch_id == batch_id, jobs.c.status == "queued")
                         .values(status="cancelled", finished_at=store.now))
    return get_batch(store, batch_id)


def _status_code(job: Job) -> int:
    cls = getattr(exc_tree, job.error_type or "", None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        if issubclass(cls, (exc_tree.InvalidRequestError, exc_tree.FileProcessingError,
                            exc_tree.UnsupportedFeatureError)):
            return 400
        if issubclass(cls, exc_tree.MemoryLimitError):
            return 507
    return 500


def _output_line(job: Job, model: str | None) -> dict[str, Any]:
    usage = job.usage or {}
    body = {"id": f"chatcmpl-{job.batch_id}-{job.id}", "object": "chat.completion", "created": _ts(job.finished_at),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": job.response},
                                         "logprobs": None,
                                         "finish_reason": "stop" if job.finish_reason == "cancelled" else job.finish_reason}],
            "usage": {"prompt_tokens": usage.get("prompt_tokens", 0),
                      "completion_tokens": usage.get("completion_tokens", 0),
                      "total_tokens": usage.get("total_tokens", 0),
                      "prompt_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)}}}
    return {"id": f"batch_req_{job.id}", "custom_id": job.custom_id,
            "response": {"status_code": 200, "request_id": f"req_{job.id}", "body": body}, "error": None}


def _error_line(job: Job) -> dict[str, Any]:
    if job.status == "cancelled":
        return {"id": f"batch_req_{job.id}", "custom_id": job.custom_id, "response": None,
                "error": {"code": "batch_cancelled", "message": "The batch was cancelled before this request ran."}}
    status = _status_code(job)
    body = {"error": {"message": job.error, "type": "invalid_request_error" if status < 500 else "server_error",
                      "param": None, "code": job.error_type}}
    return {"id": f"batch_req_{job.id}", "custom_id": job.custom_id,
            "response": {"status_code": status, "request_id": f"req_{job.id}", "body": body}, "error": None}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


def refresh_batch(store: Any, batch_id: str) -> bool:
    """Finalize the batch if none of its requests is queued or running (once, whoever calls first):
    write its output and error files and mark it completed or cancelled. Returns whether it did."""
    with store._connection() as conn:
        row = _batch_row(conn, batch_id)
        if row.status not in _OPEN:
            return False
        counts = _counts(conn, batch_id)
        if counts["queued"] or counts["processing"]:
            return False
        final = "completed" if row.status == "in_progress" else "cancelled"
        won = conn.execute(sa.update(batches).where(batches.c.id == batch_id, batches.c.status == row.status)
                           .values(status=final, finalizing_at=store.now,
                                   **{f"{final}_at": store.now})).rowcount == 1
        if not won:
            return False
        done = [Job.from_row(r._mapping) for r in
                conn.execute(sa.select(jobs).where(jobs.c.batch_id == batch_id).order_by(jobs.c.id))]
        ok = [_output_line(j, row.model) for j in done if j.status == "completed"]
        bad = [_error_line(j) for j in done if j.status in ("failed", "cancelled")]
        ids: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for key, lines, suffix in (("output_file_id", ok, "output"), ("error_file_id", bad, "error")):
            if lines:
                data = _jsonl(lines)
                ids[key] = fid = f"file-{uuid.uuid4().hex[:24]}"
                conn.execute(sa.insert(files).values(id=fid, purpose="batch_output", filename=f"{batch_id}_{suffix}.jsonl",
                                                     bytes=len(data), created_at=store.now, content=data))
        conn.execute(sa.update(batches).where(batches.c.id == batch_id).values(**ids))
    return True


def refresh_open_batches(store: Any) -> int:
    """``refresh_batch`` for every batch in progress or cancelling; returns how many were finalized."""
    with store._connection(write=False) as conn:
        open_ids = [r[0] for r in conn.execute(sa.select(batches.c.id).where(batches.c.status.in_(_OPEN)))]
    return sum(refresh_batch(store, bid) for bid in open_ids)
