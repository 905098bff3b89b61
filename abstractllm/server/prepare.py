"""``prepare_generation``: what is done to a generation request before the provider sees it, in one place for
every route (chat completions, completions, the seed project's generate, the Responses API, Anthropic's
Messages, and each line of a Batch API file): the model loaded, the server's ``--max-n``, the request's soft
``thinking`` resolved against the served model (``reasoning.apply_soft_thinking``), the reply's length bounded,
the media policy (local paths checked and resolved, http(s) images fetched with private addresses refused:
``media_policy``), system messages placed as the model's chat template takes them, and the choices' seeds.

The reply's length: a request without ``max_tokens`` (``max_output_tokens``) may run to the end of the
context, as OpenAI's do, bounded by ``--max-tokens-limit`` (default: the model's context length); the
server's ``--max-tokens`` (a provider made with ``max_tokens``), when it was started with one, is the default
instead. A request asking for more than the limit is clamped to it (and to what is left of the context), not
refused: the reply ends with the finish reason ``length`` (``max_tokens``) if it gets there. A prompt that
leaves no room in the context is a 400 (``context_length_exceeded``: "prompt is too long: N tokens > M
maximum", Anthropic's wording, which clients such as Claude Code act on). A Batch API line is checked when its
batch is created: its ``max_tokens`` is clamped to the limit, one without gets the provider's default (clamped
too), and its images are fetched when its job runs (``fetch_media``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ..params import PARAMS, default_of
from .errors import APIError
from .media_policy import apply_media_policy, fetch_remote_media
from .reasoning import apply_soft_thinking
from .schemas import ParsedRequest
from .state import ServerState
from .stats import provider_config

__all__ = ["Prepared", "prepare_generation", "bound_max_tokens", "fit_to_context", "fetch_media", "ready_messages",
           "place_system_messages", "max_tokens_limit", "context_length"]

log = logging.getLogger("abstractllm.server")
_COUNTED = ("tools", "tool_choice", "thinking", "chat_template_kwargs")  # what changes the prompt's length


@dataclass
class Prepared:
    """A request checked for the provider: its ``messages`` (the media policy applied to local paths), its
    ``params`` (``max_tokens`` bounded), its number of choices and whether its length is still to be fitted
    to what its prompt leaves of the context (``fit``)."""

    messages: list[Any]
    params: dict[str, Any]
    n: int = 1
    fit: bool = False

    async def finish(self, state: ServerState) -> tuple[list[Any], list[dict[str, Any]]]:
        """For a live request: its remote media fetched, its system messages placed, its length fitted to the
        context; returns the messages and each choice's parameters (seeded requests: seed, seed + 1, ...)."""
        messages = await place_system_messages(state, await fetch_media(state, self.messages))
        if self.fit:
            await fit_to_context(state, self.params, messages)
        choices = []
        for i in range(self.n):
            params = dict(self.params)
            if i and params.get("seed") is not None:
                params["seed"] = params["seed"] + i
            choices.append(params)
        return messages, choices


def prepare_generation(state: ServerState, req: ParsedRequest, *, batch: bool = False) -> Prepared:
    """The checks every generation route makes (see the module docstring), on ``req`` (its ``params`` are
    updated). A live request needs the model loaded (503) and ``n`` within ``--max-n`` (400); a Batch API line
    (``batch``) must not stream (400), and its parameters are validated here (``InvalidParameterError``), as the
    provider validates a live request's. Live requests then ``await prepared.finish(state)``."""
    if not batch:
        state.require_loaded()
    apply_soft_thinking(state.llm, req)  # reasoning_effort, where the served model takes it
    if batch and req.stream:
        raise APIError(400, "'stream' is not supported in a batch.", param="stream")
    if not batch and req.n > state.config.max_n:
        raise APIError(400, f"'n' = {req.n} is above this server's limit of {state.config.max_n} (--max-n).",
                       param="n", code="invalid_value")
    fit = bound_max_tokens(state, req.params, open_ended=not batch)
    if batch:  # checked now, as the provider checks a live request's
        req.params = {k: PARAMS[k].validate(k, v) for k, v in req.params.items()}
    messages = apply_media_policy(req.messages, state.config.allow_local_files)
    return Prepared(messages, req.params, req.n, fit)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _configured_max_tokens(state: ServerState) -> int | None:
    """The provider's configured ``max_tokens`` (``serve --max-tokens``), if it was made with one."""
    try:
        value = state.llm.configured_max_tokens()
    except Exception:
        value = None
    value = value or state.config.llm_config.get("max_tokens")
    return value if _is_count(value) else None


def bound_max_tokens(state: ServerState, params: dict[str, Any], *, open_ended: bool) -> bool:
    """Bound ``params["max_tokens"]`` by ``--max-tokens-limit``, as the module docstring says; True when the
    reply may run to the limit and is to be lowered to what the prompt leaves of the context (``fit_to_context``).
    ``open_ended``: a request without ``max_tokens`` runs to the limit (or the provider's configured
    ``max_tokens``); otherwise (a Batch API line) it gets the provider's default, clamped to the limit. A value
    the provider will refuse (0, a string) is left for its error."""
    asked = params.get("max_tokens")
    if asked is not None and not (_is_count(asked) and asked > 0):
        return False
    limit = max_tokens_limit(state)
    if asked is not None:
        if limit is None or asked <= limit:
            return False
        params["max_tokens"] = limit  # clamped, not refused
        return open_ended
    default = _configured_max_tokens(state)
    if default is None and not open_ended:
        default = default_of("max_tokens")  # what the provider's default will be
    if default is not None:
        if open_ended:
            params["max_tokens"] = min(default, limit) if limit else default
        elif limit is not None and default > limit:
            params["max_tokens"] = limit
        return False
    params.pop("max_tokens", None)  # an explicit null: the same as none
    if limit is not None:
        params["max_tokens"] = limit
    return True


async def fit_to_context(state: ServerState, params: dict[str, Any], messages: list[Any]) -> None:
    """Lower ``params["max_tokens"]`` to what the prompt (counted through the chat template) leaves of the
    context; a 400 (``context_length_exceeded``) when it leaves nothing. A provider that cannot count tokens, or a
    model that does not say its context length, is left as it is."""
    ctx = context_length(state)
    counter = getattr(state.llm, "count_tokens", None)
    if not ctx or not callable(counter):
        return
    try:
        prompt = int(await asyncio.to_thread(counter, messages=messages,
                                             **{k: params[k] for k in _COUNTED if k in params}))
    except Exception:
        return  # the generation will say what is wrong with the request
    if prompt >= ctx:
        raise APIError(400, f"prompt is too long: {prompt} tokens > {ctx - 1} maximum (the model's context "
                       f"length is {ctx} tokens, the reply included)", param="messages", code="context_length_exceeded")
    params["max_tokens"] = min(params.get("max_tokens") or ctx, ctx - prompt)


def context_length(state: ServerState) -> int | None:
    """The served model's context length (its capabilities' ``max_tokens``), once known; ``None`` if it does not
    say."""
    if state.context_length is None and state.status == "ok":
        try:
            value = state.llm.get_capabilities().get("max_tokens")
        except Exception:
            value = None
        state.context_length = value if _is_count(value) and value > 0 else 0
    return state.context_length or None


def max_tokens_limit(state: ServerState) -> int | None:
    """``--max-tokens-limit``: a number, the model's context length (``"context"``, the default), or ``None`` (no
    bound, or a context length the provider does not say)."""
    limit = state.config.max_tokens_limit
    return context_length(state) if limit == "context" else limit


async def fetch_media(state: ServerState, messages: list[Any]) -> list[Any]:
    """``messages`` with their http(s) images fetched (private addresses refused unless
    ``--allow-private-urls``) and handed on as data URIs, within the provider's ``image_fetch_timeout`` and
    ``max_image_bytes``."""
    config = provider_config(state)
    timeout = float(config.get("image_fetch_timeout") or default_of("image_fetch_timeout"))
    max_bytes = int(config.get("max_image_bytes") or default_of("max_image_bytes"))
    return await fetch_remote_media(messages, allow_private=state.config.allow_private_urls, timeout=timeout,
                                    max_bytes=max_bytes)


async def ready_messages(state: ServerState, messages: list[Any]) -> list[Any]:
    """``messages`` as a generation would get them (the media policy, remote media fetched, system messages
    placed), for a route that only counts their tokens."""
    return await place_system_messages(state, await fetch_media(
        state, apply_media_policy(messages, state.config.allow_local_files)))


def _system_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


async def _several_system_messages(state: ServerState) -> bool:
    """Whether the served model's chat template keeps a system message after the first turn (Qwen's and Llama
    3's do; Mistral's and Gemma's refuse it): measured once, by counting the tokens of a conversation with and
    without one. A provider that cannot count tokens (a remote one) gets the messages as they are."""
    if state.multi_system is None:
        counter = getattr(state.llm, "count_tokens", None)
        if not callable(counter):
            state.multi_system = True
        else:
            base = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Bye"}]
            probe = base[:3] + [{"role": "system", "content": "Answer in French, always, and very politely."}] + base[3:]
            try:
                without = await asyncio.to_thread(counter, messages=base)
                with_it = await asyncio.to_thread(counter, messages=probe)
                state.multi_system = with_it >= without + 5
            except Exception:
                state.multi_system = False
            log.info("the chat template %s system messages after the first turn", "keeps" if state.multi_system
                     else "does not take")
    return state.multi_system


async def place_system_messages(state: ServerState, messages: list[Any]) -> list[Any]:
    """System messages after the first one (Claude Code sends some mid-conversation; Codex several developer
    messages): kept in place where the chat template takes them, else merged, in order, into one system prompt
    at the start (two user turns the removal leaves side by side are joined: such templates want turns to
    alternate)."""
    if not any(isinstance(m, dict) and m.get("role") == "system" for m in messages[1:]):
        return messages
    if await _several_system_messages(state):
        return messages
    texts = [_system_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    rest: list[Any] = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            continue
        last = rest[-1] if rest else None
        if isinstance(last, dict) and isinstance(m, dict) and last.get("role") == m.get("role") == "user":
            rest[-1] = {**last, "content": _joined(last.get("content"), m.get("content"))}  # turns must alternate
        else:
            rest.append(m)
    return [{"role": "system", "content": "\n\n".join(t for t in texts if t)}] + rest


def _joined(a: Any, b: Any) -> Any:
    """Two user turns' contents as one (the system message between them went into the system prompt)."""
    if isinstance(a, str) and isinstance(b, str):
        return f"{a}\n\n{b}"
    parts = lambda c: c if isinstance(c, list) else [{"type": "text", "text": c or ""}]  # noqa: E731
    return parts(a) + parts(b)
