"""Every configuration key and generation parameter, declared once as data, and the values the package runs with.

Each key has one ``ParamSpec``: its validator (type and range), its default (``default``, or ``default_factory``
where the default depends on the machine), whether it may be given per call, its ``scope`` (what it configures:
``generation``, ``load``, ``server`` or ``remote``), the ``providers`` that implement it (``all``, ``local`` only,
``remote`` only, or ``none``), whether AbstractLLM 1.x had it (``v1``) and whether a change reloads what the
provider built from it (``reload``). Nothing outside this module restates a default: code reads
``default_of(name)`` (tests/test_params_single_source.py checks it).

The providers derive their keys from this table (``provider_keys``): a key a provider implements is accepted; a
key it would ignore is refused with ``InvalidParameterError`` and a did-you-mean, except AbstractLLM 1.x keys,
which it accepts with one ``IgnoredParameterWarning`` (1.x applications send them to every provider).
The validators themselves are in ``abstractllm.param_values``.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

from .enums import ModelParameter
from .exceptions import InvalidParameterError, did_you_mean
from .param_values import (THINKING_LEVELS, _any, _bool, _bytes, _device, _distributed, _dtype, _float, _image_detail,
                           _int, _kv_bits, _logit_bias, _model, _one_of, _optional_bool, _path, _writable_dir, _penalty, _priority,
                           _quantize, _response_format, _seconds, _stop, _str, _template_kwargs, _text, _thinking,
                           _token_ids, _url, format_bytes, parse_bytes)

__all__ = ["ParamSpec", "PARAMS", "THINKING_LEVELS", "GENERATION_PARAMS", "CALL_ONLY", "SAMPLING_PRESETS", "PRIORITY_AGING_S", "PROMPT_CACHE_MAX_ENTRIES", "MAX_TOOL_ROUNDS",
           "DISTRIBUTED_HEARTBEAT_S", "DISTRIBUTED_SYNC_S", "DISTRIBUTED_MAX_STEPS_PER_PLAN",
           "SERVER_PORT", "SERVER_MAX_BODY_BYTES", "SERVER_MAX_TOKENS_LIMIT", "SERVER_MAX_N", "SERVER_RESPONSES_STORE_SIZE",
           "SERVER_RESPONSES_STORE_BYTES", "SERVER_LOG_FORMAT", "SERVER_STRICT_FIELDS", "JOB_LEASE_S", "JOB_HEARTBEAT_S", "JOB_POLL_S",
           "JOB_MAX_ATTEMPTS", "normalize_keys", "validate_params", "parse_bytes", "format_bytes",
           "GENERATION", "LOAD", "SERVER", "REMOTE", "SCOPES", "ALL", "LOCAL", "NONE", "PROVIDER_KINDS", "RELOAD_KEYS",
           "IgnoredParameterWarning", "default_of", "defaults", "provider_keys"]

#: scopes: what a key configures. ``generation``: one reply (sampling, limits, inputs; per call or as a default);
#: ``load``: the model a provider loads and how it holds it in memory; ``server``: how a batching provider
#: schedules requests; ``remote``: the connection to a remote API
GENERATION, LOAD, SERVER, REMOTE = "generation", "load", "server", "remote"
SCOPES = (GENERATION, LOAD, SERVER, REMOTE)
#: which providers implement a key: ``all``, ``local`` (models run in this process: mlx), ``remote`` (an API
#: reached over HTTP: openai, ollama, lmstudio, anthropic) or ``none`` (an AbstractLLM 1.x key kept as a no-op)
ALL, LOCAL, NONE = "all", "local", "none"
PROVIDER_KINDS = (ALL, LOCAL, REMOTE, NONE)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: how to validate it, its default, whether it may be passed per call, what it configures
    (``scope``), which providers implement it (``providers``), whether AbstractLLM 1.x had it (``v1``) and
    whether a changed value reloads the model (``reload``). ``default_factory``, when set, computes the default
    (it depends on the machine) and ``default`` is ``None``."""

    name: str
    validate: Callable[[str, Any], Any]
    default: Any = None
    per_call: bool = False
    doc: str = ""
    scope: str = GENERATION
    providers: str = ALL
    v1: bool = False
    reload: bool = False
    default_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES or self.providers not in PROVIDER_KINDS:
            raise ValueError(f"{self.name}: scope {self.scope!r} / providers {self.providers!r} is not declared")
        if self.default_factory is not None and self.default is not None:
            raise ValueError(f"{self.name}: a default or a default_factory, not both")

    @property
    def local_only(self) -> bool:
        """Only a local model (the mlx provider) uses this key."""
        return self.providers == LOCAL


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
#: server-sent event streams: a keep-alive comment (``: ping``) every this many seconds while no event is sent
#: (a long prefill, a request queued behind a full batch), so that proxies and clients do not time the stream
#: out; a stream whose first token takes longer than this starts (status 200) with these comments, and an
#: error after that is reported in the stream rather than as the response's status
SERVER_SSE_PING_S = 15.0


#: the default ``prompt_cache_bytes``: this share of the memory available when a provider is created ...
PROMPT_CACHE_MEMORY_SHARE = 0.125
#: ... and never less than this (also the default where the available memory cannot be read) ...
PROMPT_CACHE_MIN_DEFAULT_BYTES = 1_000_000_000
#: ... nor more than this
PROMPT_CACHE_MAX_DEFAULT_BYTES = 16_000_000_000


@functools.cache
def _default_prompt_cache_bytes() -> int:
    """The default ``prompt_cache_bytes``: ``PROMPT_CACHE_MEMORY_SHARE`` of the memory available (psutil) when
    the first provider of the process asks, rounded down to whole gigabytes, within
    [``PROMPT_CACHE_MIN_DEFAULT_BYTES``, ``PROMPT_CACHE_MAX_DEFAULT_BYTES``]. Computed once: every provider of a
    process gets the same budget (a machine-dependent default: distributed ranks pin theirs)."""
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unreadable: the floor
        return PROMPT_CACHE_MIN_DEFAULT_BYTES
    share = int(available * PROMPT_CACHE_MEMORY_SHARE) // 10**9 * 10**9
    return min(max(share, PROMPT_CACHE_MIN_DEFAULT_BYTES), PROMPT_CACHE_MAX_DEFAULT_BYTES)


def _keys(scope: str, providers: str, *specs: ParamSpec) -> list[ParamSpec]:
    """One section of the table: ``specs`` with the ``scope`` and ``providers`` they share."""
    return [replace(s, scope=scope, providers=providers) for s in specs]


P = ModelParameter
S = ParamSpec
_SPECS = [
    *_keys(GENERATION, ALL,
        S(P.MAX_TOKENS, _int(1, 1_000_000), 512, True, "Maximum number of tokens to generate.", v1=True),
        S(P.MAX_OUTPUT_TOKENS, _int(1, 1_000_000, optional=True), None, True, "1.x name of max_tokens.", v1=True),
        S(P.TEMPERATURE, _float(0.0, 100.0), 0.7, True, "Sampling temperature; 0 is greedy.", v1=True),
        S(P.TOP_P, _float(0.0, 1.0, lo_open=True), 1.0, True, "Nucleus sampling mass; 1.0 disables.", v1=True),
        S(P.TOP_K, _int(0), 0, True, "Keep the k most likely tokens; 0 disables.", v1=True),
        S(P.MIN_P, _float(0.0, 1.0), 0.0, True, "Minimum probability relative to the top token; 0 disables."),
        S(P.REPETITION_PENALTY, _float(0.0, 10.0, lo_open=True), 1.0, True, "Penalty on repeated tokens; 1.0 disables.", v1=True),
        S(P.FREQUENCY_PENALTY, _penalty, None, True, "Subtract penalty x count of each token already generated; in [-2, 2].", v1=True),
        S(P.PRESENCE_PENALTY, _penalty, None, True, "Subtract penalty from each token already generated; in [-2, 2].", v1=True),
        S(P.LOGIT_BIAS, _logit_bias, None, True, "Additive bias per token id, {id: bias in [-100, 100]}.", v1=True),
        S(P.SEED, _int(0, 2**63 - 1, optional=True), None, True, "Random seed; the same seed gives the same output.", v1=True),
        S(P.STOP, _stop, None, True, "Stop strings (one or a list): generation ends before them.", v1=True),
        S(P.STOP_TOKEN_IDS, _token_ids, None, True, "Token ids that end the generation (besides end of sequence)."),
        S(P.MIN_TOKENS, _int(0, 1_000_000), 0, True, "End of sequence is held back until this many tokens."),
        S(P.LOGPROBS, _bool, False, True, "Return the log-probability of each generated token (Response.logprobs)."),
        S(P.TOP_LOGPROBS, _int(0, 20), 0, True, "With logprobs: also the most likely alternatives (up to 20)."),
        S(P.N, _int(1, 64), 1, True, "How many completions of the prompt (generate returns a list when above 1)."),
        S(P.SYSTEM_PROMPT, _text, None, False, "Default system prompt (generate's system_prompt= overrides it).", v1=True),
        S(P.TOOLS, _any, None, False, "Default tools (generate's tools= overrides them).", v1=True),
        S(P.TOOL_CHOICE, _any, None, True, "Which tool the model must call ('auto', 'none', 'required', a name).", v1=True),
        S(P.RESPONSE_FORMAT, _response_format, None, True, "A JSON schema, pydantic model or {'type': 'json_object'}: the reply is JSON."),
        S(P.THINKING, _thinking, None, True, "Reasoning models: think (True, or 'low' / 'medium' / 'high') or not (False); None: the model's default."),
        S(P.THINKING_BUDGET, _int(0, 1_000_000, optional=True), None, True, "Reasoning models: end the reasoning after this many tokens; the model then answers."),
        S(P.CHAT_TEMPLATE_KWARGS, _template_kwargs, None, True, "Variables passed to the chat template (e.g. {'enable_thinking': False})."),
        S(P.MAX_IMAGE_PIXELS, _int(1, 1_000_000_000), 4_000_000, True, "Images are downscaled to at most this many pixels."),
        S(P.MAX_IMAGE_BYTES, _bytes(optional=False), "50MB", True, "Largest encoded image accepted (URLs, bytes, files)."),
        S(P.MAX_TEXT_FILE_BYTES, _bytes(optional=False), "1MB", True, "Largest text file (.txt .md .csv .tsv .json) inlined from files=."),
        S(P.IMAGE, _any, None, True, "1.x: one image for this call (= files=[image]).", v1=True),
        S(P.IMAGES, _any, None, True, "1.x: images for this call (= files=images).", v1=True)),
    *_keys(GENERATION, LOCAL,
        S(P.REPETITION_CONTEXT_SIZE, _int(1, 100_000), 20, True, "How many recent tokens the penalty looks at."),
        S(P.MAX_KV_SIZE, _int(1, optional=True), None, True, "Rotating KV cache size in tokens; None: unbounded."),
        S(P.VIDEO_FPS, _float(0.0, 120.0, lo_open=True), 2.0, True, "Frames sampled per second of video."),
        S(P.VIDEO_MAX_FRAMES, _int(1, 1024), 32, True, "Most frames taken from one video."),
        S(P.IMAGE_FETCH_TIMEOUT, _float(0.0, 600.0, lo_open=True), 10.0, True, "Seconds to fetch an image URL (remote providers send URLs as they are)."),
        S(P.MAX_INPUT_TOKENS, _int(1, optional=True), None, True, "Refuse prompts longer than this many tokens (ContextWindowExceededError).", v1=True),
        S(P.CONTEXT_WINDOW, _int(1, optional=True), None, True, "Refuse requests whose prompt + max_tokens exceed this (ContextWindowExceededError).", v1=True)),
    *_keys(GENERATION, REMOTE,
        S(P.USER, _text, None, True, "End-user id sent to a remote provider.", v1=True),
        S(P.IMAGE_DETAIL, _image_detail, None, True, "Image detail for remote providers: 'auto', 'low' or 'high'.", v1=True)),
    *_keys(GENERATION, NONE,
        S(P.TRUNCATION_STRATEGY, _any, None, False, "1.x key; a no-op (prompts are never truncated silently).", v1=True),
        S(P.CONTENT_FILTER, _any, None, False, "1.x key; a no-op.", v1=True),
        S(P.MODERATION, _any, None, False, "1.x key; a no-op.", v1=True),
        S(P.LOGGING_ENABLED, _any, None, False, "1.x key; a no-op.", v1=True)),
    *_keys(SERVER, ALL,  # the openai provider sends it to servers that schedule by it (abstractllm serve)
        S(P.PRIORITY, _priority, 1, True, "Admission priority in the batch: RequestPriority.LOW, NORMAL, HIGH.")),
    *_keys(SERVER, LOCAL,
        S(P.MAX_BATCH_SIZE, _int(1, 512), 8, False, "Most requests generating together in one batch."),
        S(P.MAX_QUEUE_SIZE, _int(0, 1_000_000), 256, False, "Most requests waiting for the batch; more: QueueFullError."),
        S(P.PREFILL_STEP_SIZE, _int(1, 1_000_000), 2048, False, "Prompt tokens processed per step."),
        S(P.PREFILL_CHUNK_SIZE, _int(1, 1_000_000), 256, False, "Prompt tokens per step while others decode (bounds their stall).")),
    *_keys(LOAD, ALL,
        S(P.MODEL, _model, None, False, "Local model folder or Hugging Face repo id.", v1=True, reload=True)),
    *_keys(LOAD, LOCAL,
        S(P.REVISION, _str, None, False, "Hub revision (branch, tag or commit) of a repo id.", reload=True),
        S(P.TRUST_REMOTE_CODE, _bool, False, False, "Allow model code from the repo (tokenizers).", reload=True),
        S(P.CACHE_DIR, _path, None, False, "Hugging Face hub cache folder for downloads and lookups.", v1=True, reload=True),
        S(P.QUANTIZE, _quantize, None, False, "Quantize a float model on load: True (4 bits), 4 or 8.", reload=True),
        S(P.LOAD_IN_4BIT, _optional_bool, None, False, "1.x: quantize to 4 bits on load (= quantize=4).", v1=True, reload=True),
        S(P.LOAD_IN_8BIT, _optional_bool, None, False, "1.x: quantize to 8 bits on load (= quantize=8).", v1=True, reload=True),
        S(P.DTYPE, _dtype, "auto", False, "Weight dtype on load; 'auto' picks the fastest for the device.", reload=True),
        S(P.DEVICE, _device, "auto", False, "Where to run: 'auto', 'cpu' or 'gpu' ('mps', 'metal', 'cuda' mean 'gpu').", v1=True, reload=True),
        S(P.MEMORY_LIMIT, _bytes(), None, False, "Memory budget in bytes or '8GB'; default: what is available."),
        S(P.PROMPT_CACHE_BYTES, _bytes(), None, False, "Byte budget of the prompt (KV) cache in memory; 0 disables it. Default: "
          "an eighth of the memory available (whole GB, within [1 GB, 16 GB]).", reload=True,
          default_factory=_default_prompt_cache_bytes),
        S(P.PROMPT_CACHE_DIR, _writable_dir, None, False, "Folder of the prompt cache's disk tier (kept across restarts); None: no disk tier.", reload=True),
        S(P.PROMPT_CACHE_DISK_BYTES, _bytes(optional=False), "10GB", False, "Byte budget of the prompt cache's disk tier.", reload=True),
        S(P.KV_BITS, _kv_bits, None, False, "Quantize the KV cache to 4 or 8 bits; None: float.", reload=True),
        S(P.KV_GROUP_SIZE, _one_of(32, 64, 128), 64, False, "Group size of the KV-cache quantization: 32, 64 or 128.", reload=True),
        S(P.QUANTIZED_KV_START, _int(0), 0, False, "With kv_bits: requests whose prompt holds at least this many tokens get a quantized KV cache (from their first token); shorter ones keep a full-precision one.", reload=True),
        S(P.DISTRIBUTED, _distributed, None, False, "Shard the model over the processes mlx.launch started: 'tensor', 'pipeline' or 'auto'."),
        S(P.DISTRIBUTED_TIMEOUT, _float(1.0, 86_400.0), 60.0, False, "Seconds a rank may wait on the others before it exits with an error (the watchdog).")),
    *_keys(LOAD, NONE,
        S(P.DEVICE_MAP, _any, None, False, "1.x (transformers) key; a no-op.", v1=True)),
    *_keys(REMOTE, REMOTE,
        S(P.API_KEY, _text, None, False, "API key of a remote provider.", v1=True),
        S(P.BASE_URL, _url, None, False, "Base URL of a remote provider's API (an OpenAI-compatible server).", v1=True),
        S(P.ORGANIZATION, _text, None, False, "Organization id sent to a remote provider.", v1=True),
        S(P.TIMEOUT, _seconds, None, False, "Seconds to wait for a remote provider's answer.", v1=True),
        S(P.REQUEST_TIMEOUT, _seconds, None, False, "1.x name of timeout.", v1=True),
        S(P.MAX_RETRIES, _int(0, 100, optional=True), None, False, "Retries of a failed remote request.", v1=True),
        S(P.RETRY_COUNT, _int(0, 100, optional=True), None, False, "1.x name of max_retries.", v1=True),
        S(P.PROXY, _url, None, False, "HTTP(S) proxy URL for a remote provider.", v1=True)),
]
del S
PARAMS: dict[str, ParamSpec] = {str(s.name): s for s in _SPECS}
#: per-call arguments that are no configuration keys (generate's 1.x image arguments)
CALL_ONLY = frozenset({str(P.IMAGE), str(P.IMAGES)})
GENERATION_PARAMS = frozenset(name for name, spec in PARAMS.items() if spec.per_call)
#: keys whose change (``update_config``) makes a local provider load its model again on the next call
RELOAD_KEYS = frozenset(name for name, spec in PARAMS.items() if spec.reload)


class IgnoredParameterWarning(UserWarning):
    """A provider accepted an AbstractLLM 1.x key it has no use for (warned once per provider and key)."""


def _use(spec: ParamSpec, accepted: set[str]) -> str:
    """Why a provider that accepts ``accepted`` has no use for ``spec``'s key."""
    if spec.providers == NONE:
        return "no provider of this package implements it"
    if spec.providers == ALL or any(PARAMS[n].providers == spec.providers for n in accepted if n in PARAMS):
        return "this provider has no field for it"  # a key of its own kind it does not implement
    return {LOCAL: "only local models use it (the mlx provider)",
            REMOTE: "only the remote providers use it (openai, ollama, lmstudio, anthropic)"}[spec.providers]


#: (provider, key) pairs already warned about
_WARNED: set[tuple[str, str]] = set()
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _warn_ignored(name: str, owner: str, accepted: set[str]) -> None:
    if (owner, name) in _WARNED:
        return
    _WARNED.add((owner, name))
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):  # point at the caller's line
        frame, level = frame.f_back, level + 1
    warnings.warn(f"'{name}' has no effect on the {owner} provider: {_use(PARAMS[name], accepted)}. It is accepted "
                  "because AbstractLLM 1.x applications send it; remove it to silence this warning.",
                  IgnoredParameterWarning, stacklevel=level)


def _refused(name: str, allowed: set[str], accepted: set[str], where: str, owner: str | None) -> InvalidParameterError:
    """The error for a name outside ``allowed``: a key another kind of provider uses, or an unknown one."""
    spec = PARAMS.get(name)
    if spec is not None and owner is not None:
        return InvalidParameterError(
            f"The {owner} provider has no use for '{name}', a {spec.scope} key: {_use(spec, accepted)}. Remove it.",
            param=name)
    return InvalidParameterError(
        f"Unknown {where} parameter '{name}'.{did_you_mean(name, allowed)} Accepted: {', '.join(sorted(allowed))}.",
        param=name)


def normalize_keys(config: Mapping[Any, Any]) -> dict[str, Any]:
    """Turn ``ModelParameter`` keys into their plain string names."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = key.value if isinstance(key, Enum) else key
        if not isinstance(name, str):
            raise InvalidParameterError(f"Parameter names must be strings, got {key!r}.")
        out[name] = value
    return out


def validate_params(params: Mapping[Any, Any], accepted: Iterable[str], *, where: str = "configuration",
                    ignored: Iterable[str] = (), owner: str | None = None) -> dict[str, Any]:
    """Validate ``params`` against the ``accepted`` names; return the normalized values.

    ``ignored``: names accepted too, with one ``IgnoredParameterWarning`` per ``owner`` (a provider's name) and
    name when set (not None): the AbstractLLM 1.x keys the provider has no use for. Raises
    ``InvalidParameterError`` for any other name (with a did-you-mean, or naming the providers that use it) or a
    bad value.
    """
    accepted, ignored = set(accepted), set(ignored)
    allowed = accepted | ignored
    out: dict[str, Any] = {}
    for name, value in normalize_keys(params).items():
        if name not in allowed:
            raise _refused(name, allowed, accepted, where, owner)
        spec = PARAMS.get(name)
        out[name] = spec.validate(name, value) if spec else value
        if name not in accepted and value is not None:
            _warn_ignored(name, owner or where, accepted)
    return out


def default_of(name: str) -> Any:
    """The validated default of one key (``default_factory``'s value where it has one)."""
    name = str(name)
    spec = PARAMS[name]
    value = spec.default_factory() if spec.default_factory is not None else spec.default
    return None if value is None else spec.validate(name, value)


def defaults(names: Iterable[str]) -> dict[str, Any]:
    """The validated defaults of ``names``."""
    return {name: default_of(name) for name in names}


def provider_keys(kind: str, *, without: Iterable[str] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """A provider's ``(accepted_config, ignored_config)``, derived from the table. ``kind``: ``"local"`` or
    ``"remote"``; ``without``: keys of that kind (or of all providers) this provider has no field for.

    Accepted: the keys of every provider and of ``kind``, less ``without``. Ignored: the AbstractLLM 1.x keys
    among the others (accepted with one warning). Every other key is refused (``InvalidParameterError``)."""
    if kind not in (LOCAL, REMOTE):
        raise ValueError(f"kind must be {LOCAL!r} or {REMOTE!r}, got {kind!r}")
    skip = {str(k) for k in without}
    accepted = frozenset(n for n, s in PARAMS.items() if s.providers in (ALL, kind) and n not in skip)
    return accepted, frozenset(n for n, s in PARAMS.items() if s.v1 and n not in accepted)
