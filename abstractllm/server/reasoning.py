"""Reasoning models behind the three APIs: what the served model can do with ``thinking``, how the APIs'
own knobs map onto it, and the opaque signature of Anthropic's thinking blocks.

The provider takes ``thinking`` (True / False / "low" / "medium" / "high"), ``thinking_budget`` and
``chat_template_kwargs``, and refuses ``thinking`` on a model with no reasoning format (a 400 naming the
model). The APIs' knobs are softer: OpenAI's ``reasoning_effort`` (``reasoning.effort`` in the Responses API)
is ignored by a model that does not reason, as OpenAI ignores it; ``"none"`` / ``"minimal"`` and Anthropic's
``{"type": "disabled"}`` turn thinking off only where the model has a switch for it; Anthropic's
``{"type": "adaptive"}`` turns it on only where the model can think. Such a *soft* value travels in
``ParsedRequest.soft_thinking`` and is resolved here against the served model (``apply_soft_thinking``);
a request's own ``thinking`` always wins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

__all__ = ["EFFORTS", "effort_thinking", "apply_soft_thinking", "reasoning_format", "sign_thinking"]

#: OpenAI's ``reasoning_effort`` values -> ``thinking`` (a level; False: off where the model can switch it off)
EFFORTS: dict[str, Any] = {"none": False, "minimal": False, "low": "low", "medium": "medium", "high": "high",
                           "xhigh": "high", "max": "high"}

_UNKNOWN = object()
_KEY = secrets.token_bytes(32)  # per process: signatures do not survive a restart (nor are they checked)


def effort_thinking(effort: str | None) -> Any:
    """The soft ``thinking`` of an OpenAI ``reasoning_effort`` (None: nothing asked)."""
    return None if effort is None else EFFORTS[effort]


def reasoning_format(llm: Any) -> Any:
    """The served model's ``thinking_support()`` (``format``, ``switch``, ``levels``), ``None`` when it does not
    reason, or ``_UNKNOWN`` for a provider that does not say (a remote one)."""
    support = getattr(llm, "thinking_support", None)
    return support() if callable(support) else _UNKNOWN


def apply_soft_thinking(llm: Any, req: Any) -> None:
    """Set ``req.params["thinking"]`` from ``req.soft_thinking`` where the served model can take it: a level or
    True on a model that reasons, False on one whose thinking has a switch (a provider that does not say
    gets the value as is). A request's explicit ``thinking`` is kept."""
    soft = getattr(req, "soft_thinking", None)
    if soft is None or req.params.get("thinking") is not None:
        return
    fmt = reasoning_format(llm)
    if fmt is None:
        return  # a model that does not reason ignores the effort, as OpenAI's do
    if soft is False and fmt is not _UNKNOWN and not fmt.get("switch"):
        return  # it always thinks (harmony): the effort is ignored rather than refused
    req.params["thinking"] = soft


def sign_thinking(text: str) -> str:
    """The ``signature`` of an Anthropic thinking block: a base64 HMAC-SHA256 of its text under a key made when
    the process starts. Opaque to clients; the server does not check it when the block is sent back."""
    return base64.b64encode(hmac.new(_KEY, text.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")
