"""Validation of configuration keys and generation parameters, declared as data.

Each parameter has one ``ParamSpec``: its validator (type and range), its default and whether it may be
given per call. Providers declare which names they accept; everything else is refused with
``InvalidParameterError`` and a did-you-mean, never silently ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .enums import ModelParameter
from .exceptions import InvalidParameterError, did_you_mean

__all__ = ["ParamSpec", "PARAMS", "THINKING_LEVELS", "GENERATION_PARAMS", "CALL_ONLY", "SAMPLING_PRESETS", "PRIORITY_AGING_S", "PROMPT_CACHE_MAX_ENTRIES", "MAX_TOOL_ROUNDS",
           "DISTRIBUTED_HEARTBEAT_S", "DISTRIBUTED_SYNC_S", "DISTRIBUTED_MAX_STEPS_PER_PLAN",
           "SERVER_PORT", "SERVER_MAX_BODY_BYTES", "SERVER_MAX_TOKENS_LIMIT", "SERVER_MAX_N", "SERVER_RESPONSES_STORE_SIZE",
           "SERVER_RESPONSES_STORE_BYTES", "SERVER_LOG_FORMAT", "SERVER_STRICT_FIELDS", "JOB_LEASE_S", "JOB_HEARTBEAT_S", "JOB_POLL_S",
           "JOB_MAX_ATTEMPTS", "normalize_keys", "validate_params", "parse_bytes", "format_bytes"]


def _fail(name: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(f"Invalid value for '{name}': {message}", param=name)


def _int(lo: int | None = None, hi: int | None = None, *, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, f"expected an integer, got {type(value).__name__} {value!r}.")
        if lo is not None and value < lo:
            raise _fail(name, f"{value} is below the minimum {lo}.")
        if hi is not None and value > hi:
            raise _fail(name, f"{value} is above the maximum {hi}.")
        return value

    return check


def _float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, f"expected a number, got {type(value).__name__} {value!r}.")
        value = float(value)
        if math.isnan(value) or value > hi or value < lo or (lo_open and value == lo):
            bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
            raise _fail(name, f"{value} is outside {bound}.")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"expected True or False, got {value!r}.")
    return value


def _str(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(name, f"expected a non-empty string, got {value!r}.")
    return value


def _model(name: str, value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"expected a local folder or a Hugging Face repo id, got {value!r}.")
    return value


def _stop(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise _fail(name, f"expected a string or a list of strings, got {value!r}.")
    if any(s == "" for s in items):
        raise _fail(name, "stop strings must not be empty.")
    if len(items) > 16:
        raise _fail(name, f"at most 16 stop strings, got {len(items)}.")
    return list(dict.fromkeys(items))


def _text(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(name, f"expected a string, got {type(value).__name__} {value!r:.80}.")
    return value


def _any(name: str, value: Any) -> Any:
    """A documented no-op key (accepted so that one config works on every provider)."""
    return value


def _url(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise _fail(name, f"expected an http(s) URL such as 'http://localhost:8000/v1', got {value!r:.80}.")
    return value.rstrip("/")


def _seconds(name: str, value: Any) -> Any:
    if value is None:
        return None
    return _float(0.0, 86_400.0, lo_open=True)(name, value)


def _penalty(name: str, value: Any) -> Any:
    if value is None:
        return None
    return _float(-2.0, 2.0)(name, value)


def _logit_bias(name: str, value: Any) -> dict[int, float] | None:
    """``{token_id: bias}``; ids as ints or numeric strings (the OpenAI JSON form), biases in [-100, 100]."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(name, f"expected a dict of token id -> bias, got {type(value).__name__}.")
    if len(value) > 1024:
        raise _fail(name, f"at most 1024 entries, got {len(value)}.")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())):
            raise _fail(name, f"token ids must be non-negative integers (or numeric strings), got {key!r:.40}.")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias) or not -100 <= bias <= 100:
            raise _fail(name, f"the bias of token {key} must be a number in [-100, 100], got {bias!r:.40}.")
        out[int(key)] = float(bias)
    return out


def _device(name: str, value: Any) -> str:
    names = {"auto": "auto", "cpu": "cpu", "gpu": "gpu", "metal": "gpu", "mps": "gpu", "cuda": "gpu"}
    if not isinstance(value, str) or value.lower() not in names:
        raise _fail(name, f"expected one of {', '.join(names)}; got {value!r}.{did_you_mean(str(value), names)}")
    return names[value.lower()]


def _image_detail(name: str, value: Any) -> Any:
    if value not in (None, "auto", "low", "high"):
        raise _fail(name, f"expected 'auto', 'low' or 'high', got {value!r}.")
    return value


def _path(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"expected a folder path, got {value!r}.")
    return value


def _quantize(name: str, value: Any) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return 4
    if isinstance(value, int) and value in (2, 3, 4, 5, 6, 8):
        return value
    raise _fail(name, f"expected True (4 bits), False, or one of 2, 3, 4, 5, 6, 8 bits; got {value!r}.")


def _dtype(name: str, value: Any) -> str:
    allowed = ("auto", "float32", "float16", "bfloat16")
    if value not in allowed:
        raise _fail(name, f"expected one of {', '.join(allowed)}; got {value!r}.{did_you_mean(str(value), allowed)}")
    return value


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, name: str = "size") -> int:
    """Parse a byte count: an int, or a string such as ``"8GB"``, ``"512 MiB"``, ``"1.5g"``."""
    if isinstance(value, bool):
        raise _fail(name, f"expected a byte count, got {value!r}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise _fail(name, f"expected a non-negative byte count, got {value!r}.")
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise _fail(name, f"expected bytes as an int or a string like '8GB' or '512MiB', got {value!r}.")


def format_bytes(n: float) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units, as in error messages and tables)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _bytes(*, optional: bool = True) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        return parse_bytes(value, name)

    return check


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: how to validate it, its default, and whether it may be passed per call."""

    name: str
    validate: Callable[[str, Any], Any]
    default: Any = None
    per_call: bool = False
    doc: str = ""


#: the levels ``thinking`` takes besides True / False
THINKING_LEVELS = ("low", "medium", "high")


def _thinking(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool) or value in THINKING_LEVELS:
        return value
    raise _fail(name, f"expected True, False or one of {', '.join(map(repr, THINKING_LEVELS))}, got {value!r}.")


def _template_kwargs(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(name, f"expected an object of template variables, got {type(value).__name__} {value!r:.80}.")
    return dict(value)


def _optional_bool(name: str, value: Any) -> Any:
    return None if value is None else _bool(name, value)


def _response_format(name: str, value: Any) -> Any:
    from .structured import normalize_response_format

    return normalize_response_format(value)


def _priority(name: str, value: Any) -> Any:
    from .enums import RequestPriority

    if isinstance(value, str) and value.upper() in RequestPriority.__members__:
        return RequestPriority[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in set(RequestPriority):
        return RequestPriority(value)
    raise _fail(name, f"expected RequestPriority.LOW, NORMAL or HIGH (or 'low', 'normal', 'high'), got {value!r}.")


def _token_ids(name: str, value: Any) -> list[int]:
    if value is None:
        return []
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                       for t in items):
        raise _fail(name, f"expected a list of non-negative token ids, got {value!r:.80}.")
    if len(items) > 64:
        raise _fail(name, f"at most 64 stop token ids, got {len(items)}.")
    return list(dict.fromkeys(items))


def _distributed(name: str, value: Any) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return "auto"
    if isinstance(value, str) and value.lower() in ("tensor", "pipeline", "auto"):
        return value.lower()
    raise _fail(name, f"expected 'tensor', 'pipeline' or 'auto' (or None), got {value!r}.")


#: a request waiting for admission gains one priority level per this many seconds (anti-starvation)
PRIORITY_AGING_S = 10.0
# Entries (whole replies and message-boundary snapshots) the RAM tier of a text model's prefix cache keeps at most;
# ``prompt_cache_bytes`` bounds their size.
PROMPT_CACHE_MAX_ENTRIES = 64
#: SamplingParams presets (keyword overrides win)
SAMPLING_PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0},
    "creative": {"temperature": 1.0, "top_p": 0.95},
    "balanced": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.05},
}
#: the prompts of the vision conveniences (describe_image, describe_video)
DESCRIBE_IMAGE_PROMPT = "Describe this image in detail."
DESCRIBE_VIDEO_PROMPT = "Describe what happens in this video."
#: persistent jobs (abstractllm.jobs): a worker's claim on a job lasts this long unless renewed (heartbeat)
JOB_LEASE_S = 30.0
#: how often a worker renews its leases (and notices jobs cancelled or taken from it)
JOB_HEARTBEAT_S = 5.0
#: how often an idle worker looks for new jobs, and for leases left by dead workers
JOB_POLL_S = 0.5
#: claims of one job before it fails for good (a worker that dies while running it spends one)
JOB_MAX_ATTEMPTS = 3

#: ``Session.generate(..., execute_tools=True)``: the most rounds that call tools in one turn
MAX_TOOL_ROUNDS = 8

#: distributed mode: rank 0 sends the other ranks a heartbeat (and gathers every rank's memory) at
#: least this often while idle, so a rank that is gone is noticed within about this long
DISTRIBUTED_HEARTBEAT_S = 1.0
#: distributed mode: while generating, rank 0 tells the others what changed (admissions, cancellations)
#: before a step, or once per this many seconds of steps when nothing waits. Each message is a round trip
#: that also stops the overlap of the next step's graph building with the current step's compute; a
#: request arriving mid-batch or a cancellation waits at most about this long (mlx-lm's server: 0.5 s)
DISTRIBUTED_SYNC_S = 0.25
#: ... and at most this many steps between two of rank 0's messages
DISTRIBUTED_MAX_STEPS_PER_PLAN = 32

#: remote providers: the longest the capability probe (``GET /v1/models/{id}``) waits, in seconds (the
#: provider's ``timeout`` when shorter)
REMOTE_CAPABILITIES_TIMEOUT_S = 5.0

#: ``abstractllm serve`` defaults (``ServerConfig`` and the CLI read them here)
SERVER_PORT = 8000
#: request body limit: room for a few images as data URIs
SERVER_MAX_BODY_BYTES = 32 * 1024 * 1024
#: upper bound on a request's ``max_tokens`` (a request asking for more is clamped to it); ``"context"``: the
#: served model's context length, so that a request without ``max_tokens`` may run to the end of the context, as
#: OpenAI's do (agent clients such as Codex send none, Claude Code asks for 32000 or more); ``None``: no bound
SERVER_MAX_TOKENS_LIMIT: int | str | None = "context"
#: upper bound on a request's ``n`` (choices generated together in the batch)
SERVER_MAX_N = 8
#: ``/v1/responses`` kept in memory for ``previous_response_id`` (least recently used dropped first; 0: none)
SERVER_RESPONSES_STORE_SIZE = 256
#: and at most this many bytes of them (their JSON, images as data URIs included)
SERVER_RESPONSES_STORE_BYTES = 256 * 1024 * 1024
#: the server's log lines: ``text``, or ``json`` (one JSON object per line, with a JSON access log)
SERVER_LOG_FORMAT = "text"
#: unknown request fields: ignored (logged once, listed in the ``x-abstractllm-ignored`` header), or with
#: ``True`` (``--strict-fields``) a 400 naming them
SERVER_STRICT_FIELDS = False


P = ModelParameter
_SPECS = [
    ParamSpec(P.MODEL, _model, None, False, "Local model folder or Hugging Face repo id."),
    ParamSpec(P.REVISION, _str, None, False, "Hub revision (branch, tag or commit) of a repo id."),
    ParamSpec(P.TRUST_REMOTE_CODE, _bool, False, False, "Allow model code from the repo (tokenizers)."),
    ParamSpec(P.MAX_TOKENS, _int(1, 1_000_000), 512, True, "Maximum number of tokens to generate."),
    ParamSpec(P.TEMPERATURE, _float(0.0, 100.0), 0.7, True, "Sampling temperature; 0 is greedy."),
    ParamSpec(P.TOP_P, _float(0.0, 1.0, lo_open=True), 1.0, True, "Nucleus sampling mass; 1.0 disables."),
    ParamSpec(P.TOP_K, _int(0), 0, True, "Keep the k most likely tokens; 0 disables."),
    ParamSpec(P.MIN_P, _float(0.0, 1.0), 0.0, True, "Minimum probability relative to the top token; 0 disables."),
    ParamSpec(P.REPETITION_PENALTY, _float(0.0, 10.0, lo_open=True), 1.0, True, "Penalty on repeated tokens; 1.0 disables."),
    ParamSpec(P.REPETITION_CONTEXT_SIZE, _int(1, 100_000), 20, True, "How many recent tokens the penalty looks at."),
    ParamSpec(P.SEED, _int(0, 2**63 - 1, optional=True), None, True, "Random seed; the same seed gives the same output."),
    ParamSpec(P.STOP, _stop, None, True, "Stop strings (one or a list): generation ends before them."),
    ParamSpec(P.STOP_TOKEN_IDS, _token_ids, None, True, "Token ids that end the generation (besides end of sequence)."),
    ParamSpec(P.MIN_TOKENS, _int(0, 1_000_000), 0, True, "End of sequence is held back until this many tokens."),
    ParamSpec(P.LOGPROBS, _bool, False, True, "Return the log-probability of each generated token (Response.logprobs)."),
    ParamSpec(P.TOP_LOGPROBS, _int(0, 20), 0, True, "With logprobs: also the most likely alternatives (up to 20)."),
    ParamSpec(P.PRIORITY, _priority, 1, True, "Admission priority in the batch: RequestPriority.LOW, NORMAL, HIGH."),
    ParamSpec(P.QUANTIZE, _quantize, None, False, "Quantize a float model on load: True (4 bits), 4 or 8."),
    ParamSpec(P.DTYPE, _dtype, "auto", False, "Weight dtype on load; 'auto' picks the fastest for the device."),
    ParamSpec(P.MEMORY_LIMIT, _bytes(), None, False, "Memory budget in bytes or '8GB'; default: what is available."),
    ParamSpec(P.PROMPT_CACHE_BYTES, _bytes(), "1GB", False, "Byte budget of the prompt (KV) cache; 0 disables it."),
    ParamSpec(P.MAX_KV_SIZE, _int(1, optional=True), None, True, "Rotating KV cache size in tokens; None: unbounded."),
    ParamSpec(P.PREFILL_STEP_SIZE, _int(1, 1_000_000), 2048, False, "Prompt tokens processed per step."),
    ParamSpec(P.MAX_BATCH_SIZE, _int(1, 512), 8, False, "Most requests generating together in one batch."),
    ParamSpec(P.MAX_QUEUE_SIZE, _int(0, 1_000_000), 256, False, "Most requests waiting for the batch; more: QueueFullError."),
    ParamSpec(P.PREFILL_CHUNK_SIZE, _int(1, 1_000_000), 256, False, "Prompt tokens per step while others decode (bounds their stall)."),
    ParamSpec(P.DISTRIBUTED, _distributed, None, False, "Shard the model over the processes mlx.launch started: 'tensor', 'pipeline' or 'auto'."),
    ParamSpec(P.DISTRIBUTED_TIMEOUT, _float(1.0, 86_400.0), 60.0, False, "Seconds a rank may wait on the others before it exits with an error (the watchdog)."),
    ParamSpec(P.MAX_IMAGE_PIXELS, _int(1, 1_000_000_000), 4_000_000, True, "Images are downscaled to at most this many pixels."),
    ParamSpec(P.VIDEO_FPS, _float(0.0, 120.0, lo_open=True), 2.0, True, "Frames sampled per second of video."),
    ParamSpec(P.VIDEO_MAX_FRAMES, _int(1, 1024), 32, True, "Most frames taken from one video."),
    ParamSpec(P.IMAGE_FETCH_TIMEOUT, _float(0.0, 600.0, lo_open=True), 10.0, True, "Seconds to fetch an image URL."),
    ParamSpec(P.MAX_IMAGE_BYTES, _bytes(optional=False), "50MB", True, "Largest encoded image accepted (URLs, bytes, files)."),
    ParamSpec(P.MAX_TEXT_FILE_BYTES, _bytes(optional=False), "1MB", True, "Largest text file (.txt .md .csv .tsv .json) inlined from files=."),
    # -- AbstractLLM 1.x keys. Each provider implements a key or lists it in its ignored_config (a
    #    documented no-op), so that one application config works on every provider.
    ParamSpec(P.SYSTEM_PROMPT, _text, None, False, "Default system prompt (generate's system_prompt= overrides it)."),
    ParamSpec(P.FREQUENCY_PENALTY, _penalty, None, True, "Subtract penalty x count of each token already generated; in [-2, 2]."),
    ParamSpec(P.PRESENCE_PENALTY, _penalty, None, True, "Subtract penalty from each token already generated; in [-2, 2]."),
    ParamSpec(P.LOGIT_BIAS, _logit_bias, None, True, "Additive bias per token id, {id: bias in [-100, 100]}."),
    ParamSpec(P.TOOLS, _any, None, False, "Default tools (generate's tools= overrides them)."),
    ParamSpec(P.TOOL_CHOICE, _any, None, True, "Which tool the model must call ('auto', 'none', 'required', a name)."),
    ParamSpec(P.RESPONSE_FORMAT, _response_format, None, True, "A JSON schema, pydantic model or {'type': 'json_object'}: the reply is JSON."),
    ParamSpec(P.THINKING, _thinking, None, True, "Reasoning models: think (True, or 'low' / 'medium' / 'high') or not (False); None: the model's default."),
    ParamSpec(P.THINKING_BUDGET, _int(0, 1_000_000, optional=True), None, True, "Reasoning models: end the reasoning after this many tokens; the model then answers."),
    ParamSpec(P.CHAT_TEMPLATE_KWARGS, _template_kwargs, None, True, "Variables passed to the chat template (e.g. {'enable_thinking': False})."),
    ParamSpec(P.N, _int(1, 64), 1, True, "How many completions of the prompt (generate returns a list when above 1)."),
    ParamSpec(P.API_KEY, _text, None, False, "API key of a remote provider."),
    ParamSpec(P.BASE_URL, _url, None, False, "Base URL of a remote provider's API (an OpenAI-compatible server)."),
    ParamSpec(P.ORGANIZATION, _text, None, False, "Organization id sent to a remote provider."),
    ParamSpec(P.TIMEOUT, _seconds, None, False, "Seconds to wait for a remote provider's answer."),
    ParamSpec(P.REQUEST_TIMEOUT, _seconds, None, False, "1.x name of timeout."),
    ParamSpec(P.MAX_RETRIES, _int(0, 100, optional=True), None, False, "Retries of a failed remote request."),
    ParamSpec(P.RETRY_COUNT, _int(0, 100, optional=True), None, False, "1.x name of max_retries."),
    ParamSpec(P.PROXY, _url, None, False, "HTTP(S) proxy URL for a remote provider."),
    ParamSpec(P.USER, _text, None, True, "End-user id sent to a remote provider."),
    ParamSpec(P.MAX_OUTPUT_TOKENS, _int(1, 1_000_000, optional=True), None, True, "1.x name of max_tokens."),
    ParamSpec(P.MAX_INPUT_TOKENS, _int(1, optional=True), None, True, "Refuse prompts longer than this many tokens (ContextWindowExceededError)."),
    ParamSpec(P.CONTEXT_WINDOW, _int(1, optional=True), None, True, "Refuse requests whose prompt + max_tokens exceed this (ContextWindowExceededError)."),
    ParamSpec(P.TRUNCATION_STRATEGY, _any, None, False, "1.x key; accepted as a no-op (prompts are never truncated silently)."),
    ParamSpec(P.LOAD_IN_4BIT, _optional_bool, None, False, "1.x: quantize to 4 bits on load (= quantize=4)."),
    ParamSpec(P.LOAD_IN_8BIT, _optional_bool, None, False, "1.x: quantize to 8 bits on load (= quantize=8)."),
    ParamSpec(P.DEVICE, _device, "auto", False, "Where to run: 'auto', 'cpu' or 'gpu' ('mps', 'metal', 'cuda' mean 'gpu')."),
    ParamSpec(P.DEVICE_MAP, _any, None, False, "1.x (transformers) key; accepted as a no-op."),
    ParamSpec(P.CACHE_DIR, _path, None, False, "Hugging Face hub cache folder for downloads and lookups."),
    ParamSpec(P.IMAGE, _any, None, True, "1.x: one image for this call (= files=[image])."),
    ParamSpec(P.IMAGES, _any, None, True, "1.x: images for this call (= files=images)."),
    ParamSpec(P.IMAGE_DETAIL, _image_detail, None, True, "Image detail for remote providers: 'auto', 'low' or 'high'."),
    ParamSpec(P.CONTENT_FILTER, _any, None, False, "1.x key; accepted as a no-op."),
    ParamSpec(P.MODERATION, _any, None, False, "1.x key; accepted as a no-op."),
    ParamSpec(P.LOGGING_ENABLED, _any, None, False, "1.x key; accepted as a no-op."),
]
PARAMS: dict[str, ParamSpec] = {str(s.name): s for s in _SPECS}
#: per-call arguments that are no configuration keys (generate's 1.x image arguments)
CALL_ONLY = frozenset({str(P.IMAGE), str(P.IMAGES)})
GENERATION_PARAMS = frozenset(name for name, spec in PARAMS.items() if spec.per_call)


def normalize_keys(config: Mapping[Any, Any]) -> dict[str, Any]:
    """Turn ``ModelParameter`` keys into their plain string names."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = key.value if isinstance(key, Enum) else key
        if not isinstance(name, str):
            raise InvalidParameterError(f"Parameter names must be strings, got {key!r}.")
        out[name] = value
    return out


def validate_params(
    params: Mapping[Any, Any], accepted: Iterable[str], *, where: str = "configuration"
) -> dict[str, Any]:
    """Validate ``params`` against ``accepted`` names; return the normalized values.

    Raises ``InvalidParameterError`` for an unknown name (with a did-you-mean) or a bad value.
    """
    accepted = list(accepted)
    out: dict[str, Any] = {}
    for name, value in normalize_keys(params).items():
        if name not in accepted:
            raise InvalidParameterError(
                f"Unknown {where} parameter '{name}'.{did_you_mean(name, accepted)} "
                f"Accepted: {', '.join(sorted(accepted))}.",
                param=name,
            )
        spec = PARAMS.get(name)
        out[name] = spec.validate(name, value) if spec else value
    return out


def defaults(names: Iterable[str]) -> dict[str, Any]:
    """The validated defaults of ``names``."""
    out = {}
    for name in names:
        spec = PARAMS[name]
        out[name] = spec.validate(name, spec.default) if spec.default is not None else None
    return out
