"""``abstractllm/params.py`` is the only source of values (issue 23, item 4).

- No numeric default declared there (a ``ParamSpec`` default, or a module constant such as ``JOB_LEASE_S``) is
  written again as a literal elsewhere in ``abstractllm/``: an AST walk finds each such literal, everywhere for
  values of 100 and more, and in default positions (``x or 8``, ``.get(key, 8)``, a parameter's default, a
  keyword named after a key) for the smaller ones. ``ALLOWED`` lists the real constants that happen to have such
  a value, each with its reason.
- Every key declares its scope and the providers that implement it; the providers' accepted / ignored lists are
  derived from that table; a key a provider would ignore is refused, except AbstractLLM 1.x keys, which warn once.
- The keys of issue 24 (KV-cache quantization, the prompt cache's disk tier) are declared and validated.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from abstractllm import InvalidParameterError, ModelParameter, create_llm
from abstractllm import params
from abstractllm.params import (ALL, LOAD, LOCAL, NONE, PARAMS, PROVIDER_KINDS, RELOAD_KEYS, REMOTE, SCOPES,
                                IgnoredParameterWarning, default_of, provider_keys)

ROOT = Path(__file__).resolve().parent.parent
#: the table and its validators: the source itself
SOURCE = {"abstractllm/params.py", "abstractllm/param_values.py"}
#: folders not scanned, with the reason
SKIPPED = {"abstractllm/testing/": "builds the offline test models: their numbers (vocabulary 256, rope_theta 1e6, "
                                   "...) are model architecture, not parameters"}
#: values too common to mean a default anywhere (identities, "disabled")
NEUTRAL = {0, 1}
#: (file, enclosing function or class, value) -> why this literal is a constant of its own, not a default restated
ALLOWED = {
    ("abstractllm/cli/batch.py", "ProgressBar.__init__", 10.0): "the progress line's period on a pipe, in seconds",
    ("abstractllm/cli/cache.py", "_short", 60): "the width of a cache key in `abstractllm cache ls`",
    ("abstractllm/interface.py", "AbstractLLMInterface.get_capabilities", 2048):
        "AbstractLLM 1.x's default capability dict (a 2048-token context), not prefill_step_size",
    ("abstractllm/jobs/batches.py", "list_batches", 20): "a page of batches (OpenAI's default `limit`)",
    ("abstractllm/jobs/store.py", "_sqlite_engine", 30): "SQLite's busy timeout, in seconds",
    ("abstractllm/jobs/worker.py", "arun_worker", 0.5): "how often the worker reports its progress, in seconds",
    ("abstractllm/media/images.py", "_check_size", 1e6): "pixels per megapixel, in an error message",
    ("abstractllm/media/images.py", "_resize_in_strips", 1_000_000): "below 1 MP an image is resized in one call",
    ("abstractllm/media/video.py", "plan_video", 1_000_000): "microseconds per second (PyAV's container duration)",
    ("abstractllm/media/video.py", "plan_video", 50_000_000): "the largest video frame, 50 MP (pixels, not bytes)",
    ("abstractllm/providers/mlx/schema_check.py", "check", 20): "the most schema errors reported at once",
    ("abstractllm/providers/mlx/schemas.py", "<module>", 256): "compiled grammars kept (an LRU)",
    ("abstractllm/providers/mlx/vision_media.py", "vision_bytes", 2):
        "a vision tower's usual spatial merge, when config.json does not say",
    ("abstractllm/providers/mlx/vision_media.py", "vision_bytes", 8):
        "a text model's usual number of heads, when config.json does not say",
    ("abstractllm/providers/worker.py", "SerialWorker.close", 30.0): "how long close() waits for the thread",
    ("abstractllm/providers/worker.py", "_close_all_workers", 60.0): "how long interpreter exit waits for a worker",
    ("abstractllm/server/app.py", "create_app.lifespan", 60): "how long shutdown waits for a model still loading",
    ("abstractllm/server/batch_api.py", "BatchService.stop", 30): "how long shutdown waits for the batch worker",
    ("abstractllm/server/batch_api.py", "batch_list", 20): "a page of batches (OpenAI's default `limit`)",
    ("abstractllm/server/run.py", "RunningServer.stop", 30.0): "how long a graceful stop waits",
    ("abstractllm/tools/common_tools.py", "<module>", 1_000_000): "the 1.x file tools' read cap (1 MB), as 1.x had it",
    ("abstractllm/tools/common_tools.py", "search_files", 20): "1.x's `head_limit` default (the same signature)",
    ("abstractllm/tools/common_tools.py", "file_tools.search_files", 20): "1.x's `head_limit` default",
    ("abstractllm/tools/common_tools.py", "_search_files", 20): "1.x's `head_limit` default",
}

#: AbstractLLM 1.1.0's ModelParameter values (its abstractllm/enums.py): the keys 1.x applications send
V1_KEYS = {
    "temperature", "max_tokens", "system_prompt", "top_p", "frequency_penalty", "presence_penalty", "stop", "model",
    "api_key", "base_url", "timeout", "retry_count", "logit_bias", "seed", "top_k", "repetition_penalty",
    "max_input_tokens", "max_output_tokens", "context_window", "truncation_strategy", "device", "device_map",
    "load_in_8bit", "load_in_4bit", "cache_dir", "organization", "user", "proxy", "request_timeout", "max_retries",
    "image", "images", "image_detail", "tools", "tool_choice", "content_filter", "moderation", "logging_enabled",
}


# ---------------------------------------------------------------------------------------------- no literal restated
def _declared() -> dict[float, list[str]]:
    """Every numeric value params.py declares -> the names declaring it."""
    out: dict[float, list[str]] = {}
    for name, spec in PARAMS.items():
        value = None if spec.default_factory is not None else default_of(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.setdefault(value, []).append(name)
    for name in dir(params):
        value = getattr(params, name)
        if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.setdefault(value, []).append(name)
    return out


def _default_positions(tree: ast.AST) -> set[int]:
    """ids of the nodes that are a fallback or a default: ``x or N``, ``.get(k, N)``, ``getattr(o, k, N)``,
    a parameter's default, a keyword or dict key named after a parameter (``max_tokens=512``), ``default=N``."""
    keys = set(PARAMS) | {"default"}
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            out.update(id(v) for v in node.values[1:])
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("get", "setdefault", "pop") and len(node.args) >= 2:
                out.add(id(node.args[1]))
            if isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) >= 3:
                out.add(id(node.args[2]))
            out.update(id(k.value) for k in node.keywords if k.arg in keys)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            out.update(id(d) for d in node.args.defaults + node.args.kw_defaults if d is not None)
        elif isinstance(node, ast.Dict):
            out.update(id(v) for k, v in zip(node.keys, node.values)
                       if isinstance(k, ast.Constant) and k.value in keys)
    return out


class _Literals(ast.NodeVisitor):
    """The numeric literals of one module, each with its enclosing class / function (``Class.method``)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.found: list[tuple[str, ast.Constant]] = []

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.stack.append(name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Constant(self, node: ast.Constant) -> None:
        if type(node.value) in (int, float):
            self.found.append((".".join(self.stack) or "<module>", node))


def _restated() -> list[tuple[str, str, float, int, list[str]]]:
    """(file, scope, value, line, names) of every literal equal to a declared default, outside the source."""
    declared = _declared()
    hits = []
    for path in sorted((ROOT / "abstractllm").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in SOURCE or any(rel.startswith(d) for d in SKIPPED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        positions = _default_positions(tree)
        scan = _Literals()
        scan.visit(tree)
        for scope, node in scan.found:
            value = node.value
            if value in NEUTRAL or value not in declared:
                continue
            if abs(value) >= 100 or id(node) in positions:
                hits.append((rel, scope, value, node.lineno, declared[value]))
    return hits


def test_no_default_declared_in_params_is_restated_as_a_literal():
    bad = [f"{rel}:{line} ({scope}): {value!r} is the default of {', '.join(names)}: read it from "
           "abstractllm.params (default_of(name) or the constant), or add the literal to ALLOWED with its reason"
           for rel, scope, value, line, names in _restated() if (rel, scope, value) not in ALLOWED]
    assert not bad, "\n".join(bad)


def test_every_allowance_is_still_needed():
    seen = {(rel, scope, value) for rel, scope, value, _, _ in _restated()}
    stale = [f"{key}: {reason}" for key, reason in ALLOWED.items() if key not in seen]
    assert not stale, "ALLOWED entries that match nothing any more (remove them):\n" + "\n".join(stale)


def test_the_scan_finds_a_restated_default(tmp_path):
    """The walk itself: the literals the issue named are found, where they would be restatements."""
    tree = ast.parse("def f(config, timeout=10.0):\n    return config.get('max_batch_size') or 8, max(256, 3)\n")
    positions, scan = _default_positions(tree), _Literals()
    scan.visit(tree)
    declared = _declared()
    flagged = {node.value for _, node in scan.found if node.value in declared and node.value not in NEUTRAL
               and (abs(node.value) >= 100 or id(node) in positions)}
    assert flagged == {10.0, 8, 256}


# ---------------------------------------------------------------------------------------------- scopes, providers
def test_every_key_declares_its_scope_providers_and_default_once():
    assert set(PARAMS) == {str(m) for m in ModelParameter}
    for name, spec in PARAMS.items():
        assert spec.scope in SCOPES and spec.providers in PROVIDER_KINDS, name
        assert spec.doc, name
        assert spec.v1 == (name in V1_KEYS), name
        if spec.providers == NONE:
            assert spec.v1, f"{name}: a key no provider implements is only kept for AbstractLLM 1.x"
    assert PARAMS["max_batch_size"].local_only and PARAMS["api_key"].providers == REMOTE
    assert PARAMS["max_tokens"].providers == ALL and PARAMS["max_tokens"].default == 512


def test_the_providers_lists_are_derived_from_params():
    from abstractllm.providers.anthropic import AnthropicProvider
    from abstractllm.providers.mlx.provider import RELOAD_KEYS as MLX_RELOAD_KEYS
    from abstractllm.providers.mlx.provider import MLXProvider
    from abstractllm.providers.openai import LMStudioProvider, OllamaProvider, OpenAIProvider

    assert (MLXProvider.accepted_config, MLXProvider.ignored_config) == provider_keys(LOCAL)
    for cls in (OpenAIProvider, OllamaProvider, LMStudioProvider):
        assert (cls.accepted_config, cls.ignored_config) == provider_keys(REMOTE)
    assert (AnthropicProvider.accepted_config, AnthropicProvider.ignored_config) == provider_keys(
        REMOTE, without=("organization", "image_detail", "priority"))
    for cls in (MLXProvider, OpenAIProvider, AnthropicProvider):
        assert not cls.accepted_config & cls.ignored_config
        assert all(PARAMS[k].v1 for k in cls.ignored_config), cls.name
    assert "max_batch_size" not in OpenAIProvider.accepted_config | OpenAIProvider.ignored_config
    assert "priority" in OpenAIProvider.accepted_config  # sent in the body (abstractllm serve schedules by it)
    assert MLX_RELOAD_KEYS is RELOAD_KEYS


def test_a_key_the_provider_would_ignore_is_refused():
    from abstractllm.providers.anthropic import AnthropicProvider
    from abstractllm.providers.openai import OpenAIProvider

    remote = dict(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0)
    for key, value in (("max_batch_size", 4), ("quantize", 4), ("kv_bits", 4), ("prompt_cache_bytes", "1GB")):
        with pytest.raises(InvalidParameterError, match="only local models use it") as err:
            OpenAIProvider(**remote, **{key: value})
        assert err.value.param == key
    with pytest.raises(InvalidParameterError, match="Did you mean 'max_retries'"):
        OpenAIProvider(**remote, max_retry=1)  # an unknown key keeps its did-you-mean
    with pytest.raises(InvalidParameterError) as err:
        AnthropicProvider(model="m", api_key="k", priority=2)
    assert err.value.param == "priority"
    llm = OpenAIProvider(**remote)
    with pytest.raises(InvalidParameterError, match="video_fps"):  # per call too, before anything is sent
        llm.generate("Hi", video_fps=1.0)


def test_a_1x_key_the_provider_has_no_use_for_warns_once():
    from abstractllm.providers.openai import OpenAIProvider

    params._WARNED.discard(("openai", "device"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        a = OpenAIProvider(model="m", api_key="k", device="cpu", load_in_8bit=None)  # None: not set, no warning
        a.update_config({"temperature": 0.1})
        OpenAIProvider(model="m", api_key="k", device="gpu")
    ours = [w for w in seen if issubclass(w.category, IgnoredParameterWarning)]
    assert len(ours) == 1 and "'device' has no effect on the openai provider" in str(ours[0].message)
    assert ours[0].filename == __file__  # it points at the caller's line
    assert a.get_param("device") == "cpu"  # kept in the configuration, as 1.x kept it


# ---------------------------------------------------------------------------------------------- issue 24's keys
@pytest.mark.parametrize("name,good,bad", [
    ("kv_bits", [None, 4, 8], [2, 3, 16, "4", True, 4.0]),
    ("kv_group_size", [32, 64, 128], [16, 48, 256, "64", True, 64.0, None]),
    ("quantized_kv_start", [0, 1, 4096], [-1, 1.5, "0", None]),
    ("prompt_cache_dir", [None, "/tmp/cache", Path("/tmp/cache")], ["", "  ", 3]),
    ("prompt_cache_disk_bytes", [0, 10**9, "5GB", "512MiB"], [-1, "lots", None, True]),
])
def test_the_kv_and_disk_cache_keys_are_validated(name, good, bad):
    spec = PARAMS[name]
    assert (spec.scope, spec.providers, spec.reload) == (LOAD, LOCAL, True)
    assert name in RELOAD_KEYS and ModelParameter[name.upper()] == name
    for value in good:
        spec.validate(name, value)
    for value in bad:
        with pytest.raises(InvalidParameterError) as err:
            spec.validate(name, value)
        assert err.value.param == name


def test_the_kv_and_disk_cache_defaults():
    assert default_of("kv_bits") is None and default_of("kv_group_size") == 64
    assert default_of("quantized_kv_start") == 0 and default_of("prompt_cache_dir") is None
    assert default_of("prompt_cache_disk_bytes") == 10 * 10**9
    assert default_of("prompt_cache_dir") is None
    with create_llm("mlx", model="org/not-loaded", kv_bits=8, kv_group_size=32, prompt_cache_dir=Path("/tmp/c"),
                    prompt_cache_disk_bytes="2GB") as llm:
        config = llm.get_config()
        assert (config["kv_bits"], config["kv_group_size"], config["prompt_cache_dir"],
                config["prompt_cache_disk_bytes"]) == (8, 32, "/tmp/c", 2 * 10**9)
    with pytest.raises(InvalidParameterError, match="expected 4 or 8 bits"):
        create_llm("mlx", model="org/not-loaded", kv_bits=3)


def test_prompt_cache_bytes_default_comes_from_the_available_memory():
    import psutil

    spec = PARAMS["prompt_cache_bytes"]
    assert spec.default is None and spec.default_factory is not None
    value = default_of("prompt_cache_bytes")
    lo, hi = params.PROMPT_CACHE_MIN_DEFAULT_BYTES, params.PROMPT_CACHE_MAX_DEFAULT_BYTES
    assert lo <= value <= hi
    assert value % 10**9 == 0 and default_of("prompt_cache_bytes") == value  # whole GB, once per process
    share = psutil.virtual_memory().available * params.PROMPT_CACHE_MEMORY_SHARE
    expected = min(max(share, lo), hi)
    assert abs(value - expected) <= 10**9 + 0.1 * expected  # rounded down; the memory moved since


def test_migration_guide_lists_the_keys_that_warn():
    """docs/migration.md says which keys warn on which provider: the lists derived from params.py."""
    import re

    from abstractllm.providers.anthropic import AnthropicProvider
    from abstractllm.providers.mlx.provider import MLXProvider
    from abstractllm.providers.openai import OpenAIProvider

    text = (ROOT / "docs" / "migration.md").read_text(encoding="utf-8")

    def listed(prefix: str) -> set[str]:
        line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
        return set(re.findall(r"`(\w+)`", line.split(":", 1)[1]))

    remote = listed("- on `openai`, `ollama` and `lmstudio`:")
    assert listed("- on `mlx`:") == MLXProvider.ignored_config
    assert remote == OpenAIProvider.ignored_config
    assert remote | listed("- on `anthropic`:") == AnthropicProvider.ignored_config
