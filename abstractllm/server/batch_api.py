"""The OpenAI Batch API over the job store (``abstractllm.jobs``), beside the live endpoints.

``POST /v1/files`` (multipart: ``purpose=batch`` and a JSONL ``file`` of ``/v1/chat/completions``
requests), ``GET /v1/files[/{id}[/content]]``, ``DELETE /v1/files/{id}``, ``POST /v1/batches``,
``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``. Each request line is checked as the live
endpoint checks its body (``schemas.parse_chat``, then ``prepare.prepare_generation``: the media policy,
``--max-tokens-limit`` (a larger ``max_tokens`` is clamped to it), the parameters' ranges); its jobs run on the
server's own provider at ``RequestPriority.LOW``, at most half the batch size at once, so live requests are
admitted first and find room in the batch.

The store is ``ServerConfig.jobs_db`` (``--jobs-db``), else the default one (``$ABSTRACTLLM_JOBS_DB`` or
the user's data folder). It is opened, and its worker started, when the server starts if it was named or
already exists, else on the first Batch API call: a server that never sees a batch creates no file. The
worker runs only the jobs of batches made for this server's model (``abstractllm batch run`` leaves them
to servers, so that these media rules always apply). Bodies are read with the server's
``--max-body-size`` limit and validated with pydantic models; errors have the OpenAI shape.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from ..exceptions import AbstractLLMError
from ..params import default_of
from .errors import APIError
from .state import raw_body
from .stats import provider_config

__all__ = ["router", "BatchService", "install_batch_api", "CreateBatchBody"]

log = logging.getLogger("abstractllm.server")
router = APIRouter()
ENDPOINTS = ("/v1/chat/completions",)


class CreateBatchBody(BaseModel):
    """``POST /v1/batches``."""

    model_config = ConfigDict(extra="forbid")
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: dict[str, Any] | None = None  # accepted; files do not expire here


class BatchService:
    """The server's job store (opened lazily), and the tasks that run and finalize its batches."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.url = getattr(state.config, "jobs_db", None)
        self._store: Any = None
        self._lock = threading.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """At server start: open the store and start the worker if the store was named or exists."""
        self._loop = asyncio.get_running_loop()
        try:
            from ..jobs.config import default_db_url

            exists = self.url is not None or Path(default_db_url()).exists() or "://" in default_db_url()
            if exists:
                await asyncio.to_thread(self.store)
        except Exception as exc:  # the live endpoints serve anyway; Batch API calls report the error
            log.error("the Batch API's job store cannot be opened: %s", exc)

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    def store(self) -> Any:
        """The store (opened on first use, and the worker started); raises ``APIError`` if it cannot be."""
        with self._lock:
            if self._store is None:
                try:
                    from ..jobs.store import JobStore

                    self._store = JobStore(self.url)
                except ImportError as exc:
                    raise APIError(501, f'The Batch API needs the jobs extra ({exc.name} is missing): pip install '
                                   '"abstractllm[jobs]"', type="server_error", code="not_installed") from exc
                except AbstractLLMError as exc:
                    raise APIError(503, f"The Batch API's job store cannot be opened: {exc}",
                                   type="server_error", code="job_store_unavailable") from exc
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._start_tasks)
            return self._store

    def _start_tasks(self) -> None:
        if not self._tasks and not self._stop.is_set():
            self._tasks = [asyncio.get_running_loop().create_task(self._work()),
                           asyncio.get_running_loop().create_task(self._finalize())]

    async def _work(self) -> None:
        from ..enums import RequestPriority
        from ..jobs.worker import arun_worker

        while self.state.status == "loading" and not self._stop.is_set():
            await asyncio.sleep(0.1)
        if self.state.status != "ok":
            return
        batch_size = int(provider_config(self.state).get("max_batch_size") or default_of("max_batch_size"))
        try:
            await arun_worker(self._store, llm=self.state.llm, model=self.state.config.model,
                              concurrency=max(1, batch_size // 2), priority=RequestPriority.LOW,
                              batches_only=True, exit_when_done=False, stop=self._stop, prepare=self._prepare)
        except Exception:
            log.exception("the batch worker stopped")

    async def _finalize(self) -> None:
        from ..jobs.batches import refresh_open_batches

        while not self._stop.is_set():
            try:
                await asyncio.to_thread(refresh_open_batches, self._store)
            except Exception as exc:
                log.warning("finalizing batches failed: %s", exc)
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def _prepare(self, job: Any) -> dict[str, Any]:
        """A batch job's ``generate_async`` arguments: its image URLs fetched as the live endpoint does."""
        from ..exceptions import ImageProcessingError
        from .prepare import fetch_media

        try:
            messages = await fetch_media(self.state, copy.deepcopy(job.messages))
        except APIError as exc:
            raise ImageProcessingError(exc.message) from None
        return {"messages": messages, **job.params}

    # ------------------------------------------------------------------ request lines
    def parse_body(self, body: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """One request line's body, checked as ``POST /v1/chat/completions`` checks it (``prepare_generation``)."""
        from ..jobs.config import json_value
        from ..messages import normalize_messages
        from .prepare import prepare_generation
        from .schemas import parse_chat

        prepared = prepare_generation(self.state, parse_chat(body, self.state.config.strict_fields), batch=True)
        normalize_messages(None, messages=prepared.messages)  # structure only: nothing is fetched or decoded
        return prepared.messages, {k: json_value(v) for k, v in prepared.params.items()}


def _service(request: Request) -> BatchService:
    return request.app.state.batch


async def _store(request: Request) -> Any:
    """The job store, opened off the event loop on first use."""
    return await asyncio.to_thread(_service(request).store)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A store operation off the event loop, its errors in the OpenAI shape."""
    from ..jobs.errors import JobNotFoundError, JobStateError

    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except JobNotFoundError as exc:
        raise APIError(404, str(exc), code="not_found") from None
    except JobStateError as exc:
        raise APIError(409, str(exc), code="invalid_state") from None


def _body(model: type[BaseModel], data: bytes) -> Any:
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or None
        raise APIError(400, f"{where + ': ' if where else ''}{err.get('msg')}", param=where) from None


# ---------------------------------------------------------------------------------------------- files
@router.post("/v1/files")
async def upload_file(request: Request, body: bytes = Depends(raw_body)) -> Any:
    from starlette.requests import Request as StarletteRequest

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await StarletteRequest(request.scope, replay).form(max_files=1, max_fields=8)
    except AssertionError as exc:  # python-multipart is missing
        raise APIError(501, f'File uploads need python-multipart: pip install "abstractllm[jobs]" ({exc})',
                       type="server_error") from None
    except Exception as exc:
        raise APIError(400, f"The upload is not valid multipart/form-data: {exc}") from None
    purpose, upload = form.get("purpose"), form.get("file")
    if purpose != "batch":
        raise APIError(400, f"purpose must be 'batch' (this server keeps files for the Batch API), got {purpose!r}.",
                       param="purpose")
    if upload is None or isinstance(upload, str):
        raise APIError(400, "A 'file' part is required.", param="file")
    data = await upload.read()
    store = await _store(request)
    return await _call(_create_file, store, data, upload.filename or "upload.jsonl", purpose)


def _create_file(store: Any, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
    from ..jobs.batches import create_file

    return create_file(store, data, filename, purpose)


@router.get("/v1/files")
async def files_list(request: Request, purpose: str | None = None) -> Any:
    from ..jobs.batches import list_files

    data = await _call(list_files, await _store(request), purpose)
    return {"object": "list", "data": data, "has_more": False}


@router.get("/v1/files/{file_id}")
async def file_get(file_id: str, request: Request) -> Any:
    from ..jobs.batches import get_file

    return await _call(get_file, await _store(request), file_id)


@router.get("/v1/files/{file_id}/content")
async def file_get_content(file_id: str, request: Request) -> Any:
    from ..jobs.batches import file_content

    data = await _call(file_content, await _store(request), file_id)
    return Response(content=data, media_type="application/jsonl")


@router.delete("/v1/files/{file_id}")
async def file_delete(file_id: str, request: Request) -> Any:
    from ..jobs.batches import delete_file

    return await _call(delete_file, await _store(request), file_id)


# -------------------------------------------------------------------------------------------- batches
@router.post("/v1/batches")
async def batch_create(request: Request, raw: bytes = Depends(raw_body)) -> Any:
    from ..jobs.batches import create_batch

    service = _service(request)
    body = _body(CreateBatchBody, raw)
    if body.endpoint not in ENDPOINTS:
        raise APIError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}, got {body.endpoint!r}.", param="endpoint")
    if body.completion_window != "24h":
        raise APIError(400, f"completion_window must be '24h', got {body.completion_window!r}.",
                       param="completion_window")
    state = request.app.state.server
    obj = await _call(create_batch, await _store(request), body.input_file_id, body.endpoint, body.completion_window,
                      body.metadata, model_key=state.config.model, model_id=state.model_id,
                      parse_body=service.parse_body)
    return JSONResponse(obj)


@router.get("/v1/batches")
async def batch_list(request: Request, after: str | None = None, limit: int = 20) -> Any:
    from ..jobs.batches import list_batches

    if not 1 <= limit <= 100:
        raise APIError(400, f"limit must be in [1, 100], got {limit}.", param="limit")
    data, more = await _call(list_batches, await _store(request), after, limit)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@router.get("/v1/batches/{batch_id}")
async def batch_get(batch_id: str, request: Request) -> Any:
    from ..jobs.batches import get_batch

    return await _call(get_batch, await _store(request), batch_id)


@router.post("/v1/batches/{batch_id}/cancel")
async def batch_cancel(batch_id: str, request: Request) -> Any:
    from ..jobs.batches import cancel_batch

    return await _call(cancel_batch, await _store(request), batch_id)


def install_batch_api(app: Any, state: Any) -> BatchService:
    """Add the Batch API's routes to ``app`` and its service as ``app.state.batch`` (started and stopped
    by the app's lifespan)."""
    app.include_router(router)
    app.state.batch = BatchService(state)
    return app.state.batch
