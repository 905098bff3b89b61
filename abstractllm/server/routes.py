"""The endpoints: OpenAI chat/completions (plain and server-sent events), models, health, stats,
cache clearing, and the seed project's ``POST /api/v1/generate``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from .generation import complete, stream
from .schemas import parse_chat, parse_completion, parse_vlm_generate
from .shapes import chat_chunk, chat_response, completion_chunk, completion_response, new_id
from .state import ServerState, json_body, read_body, uptime  # read_body: defined in state.py, re-exported here
from .stats import distributed_info, memory_snapshot, prompt_cache, provider_stats

__all__ = ["router", "read_body"]

router = APIRouter()
_Body = Depends(json_body)  # the request's JSON object, within --max-body-size


def _state(request: Request) -> ServerState:
    return request.app.state.server


# ---------------------------------------------------------------------------------------------- routes
@router.post("/v1/chat/completions")
async def chat_completions(request: Request, body: dict[str, Any] = _Body) -> Any:
    state = _state(request)
    req = parse_chat(body, state.config.strict_fields)
    if req.stream:
        return await stream(state, req, request, chat_chunk, chat=True)
    responses = await complete(state, req, request)
    return JSONResponse(chat_response(new_id("chatcmpl"), state.model_id, responses, req.legacy_functions))


@router.post("/v1/completions")
async def completions(request: Request, body: dict[str, Any] = _Body) -> Any:
    state = _state(request)
    req = parse_completion(body, state.config.strict_fields)
    if req.stream:
        return await stream(state, req, request, completion_chunk, chat=False)
    responses = await complete(state, req, request)
    return JSONResponse(completion_response(new_id("cmpl"), state.model_id, responses))


@router.post("/api/v1/generate")
async def vlm_generate(request: Request, body: dict[str, Any] = _Body) -> Any:
    """The VLM-server form: ``{messages, max_new_tokens, temperature, top_p}`` ->
    ``{response, usage: {input_tokens, output_tokens, total_tokens}, processing_time}``."""
    state = _state(request)
    req = parse_vlm_generate(body, state.config.strict_fields)
    t0 = time.perf_counter()
    (resp,) = await complete(state, req, request)
    u = resp.usage
    return JSONResponse({
        "response": resp.content,
        "usage": {"input_tokens": u.prompt_tokens if u else 0, "output_tokens": u.completion_tokens if u else 0,
                  "total_tokens": u.total_tokens if u else 0},
        "processing_time": round(time.perf_counter() - t0, 4),
    })


def _model_object(state: ServerState) -> dict[str, Any]:
    """The served model as OpenAI lists it, plus what the provider declares of it (``capabilities``,
    ``context_length``): clients such as abstractllm's openai provider read them."""
    out: dict[str, Any] = {"id": state.model_id, "object": "model", "created": int(state.stats.started),
                           "owned_by": "abstractllm"}
    try:
        caps = state.llm.get_capabilities()
        out["capabilities"] = sorted(str(c) for c in caps if str(c) != "max_tokens")
        out["context_length"] = caps.get("max_tokens")
    except Exception:  # not inspectable (bad model path): the plain OpenAI fields
        pass
    return out


@router.get("/v1/models")
async def models(request: Request) -> Any:
    state = _state(request)
    return {"object": "list", "data": [await asyncio.to_thread(_model_object, state)]}


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request) -> Any:
    """This server serves one model, and every model name in a request addresses it (as in
    ``/v1/chat/completions``): any id answers with the served model's object."""
    return await asyncio.to_thread(_model_object, _state(request))


@router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request) -> Any:
    """``GET`` / ``HEAD /``: 200 while the server runs (Claude Code checks the base URL with ``HEAD /``; an open
    path, like ``/health``, that tells nothing about the model)."""
    return JSONResponse({"object": "abstractllm.server", "status": _state(request).status})


@router.get("/health")
async def health(request: Request) -> Any:
    state = _state(request)
    body = {"status": state.status, "model_loaded": state.status == "ok", "device": state.device,
            "uptime_s": uptime(state)}
    if not state.config.api_key:  # with a key, /health is the one open path: the details are in /stats
        body["model"] = state.model_id
        body["blas"] = state.blas
        if state.load_error:
            body["error"] = state.load_error
        body.update(distributed_info(state.llm))
    return JSONResponse(body, status_code=200 if state.status == "ok" else 503)


@router.get("/stats")
async def stats(request: Request) -> Any:
    """The provider's own statistics (``get_stats()``, the same names), and the server's."""
    state = _state(request)
    body = provider_stats(state)
    body.update(state.stats.as_dict())
    body.update({"model": state.model_id, "status": state.status, "prompt_cache": prompt_cache(state),
                 "memory": memory_snapshot(state.llm), "blas": state.blas, "error": state.load_error})
    body.update(distributed_info(state.llm))
    return body


@router.post("/v1/cache/clear")
async def clear_cache(request: Request) -> Any:
    state = _state(request)
    state.require_loaded()
    await asyncio.to_thread(state.llm.clear_cache)  # between two steps of a busy batch
    return {"cleared": True, "prompt_cache": prompt_cache(state), "memory": memory_snapshot(state.llm)}
