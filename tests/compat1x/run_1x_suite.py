#!/usr/bin/env python
"""Run AbstractLLM 1.1.0's own test suite and README against this package, and against 1.1.0 itself.

    python tests/compat1x/run_1x_suite.py                 # both targets, every test, the README
    python tests/compat1x/run_1x_suite.py --target ours   # this package only (1.1.0's results from baseline)
    python tests/compat1x/run_1x_suite.py --write-baseline   # record 1.1.0's results in baseline_1x.json

What it does, all offline but for the package registry:

1. Gets 1.1.0's sdist (``pip download abstractllm==1.1.0 --no-deps --no-binary :all:``, kept in
   ``$COMPAT1X_CACHE``, default ``~/.cache/abstractllm-compat1x``; ``$COMPAT1X_SDIST`` may name the file)
   and extracts ``tests/`` and ``README.md`` only into a temp folder; 1.x code is never copied into this repo.
2. Adapts only the conftest: 1.1.0's own, with its provider imports made optional (HuggingFace is not a
   provider here) and ``conftest_extra.py`` appended (a per-test time limit, the outcome log). No test and
   no assertion is changed.
3. Serves offline models (``abstractllm.testing.zoo``) with this package's server on loopback, in this
   process (``start_server``); the tests reach it through the environment: ``OPENAI_BASE_URL``,
   ``ANTHROPIC_BASE_URL``, ``OLLAMA_HOST`` and dummy API keys. The served model is a router over scripted
   qwen3 models (see ``ScriptedRouter``): a reply that calls ``calculator`` / ``get_weather`` when those tools
   are offered and no tool result has come back yet, else a fixed text reply. Every reply goes through the
   real MLX provider, chat template and tool-call parser.
4. Runs the suite with ``--run-api-tests`` (the server stands in for the APIs) and the README's Python blocks
   in order in one namespace, with this package and with ``abstractllm==1.1.0`` (installed from PyPI into a
   cached venv), on the same server.
5. Prints the classification of each test function: ``passes`` (passes on 1.1.0 and here), ``gap`` (passes
   on 1.1.0, not here), ``stale-on-1.1.0`` (fails on 1.1.0 itself), ``private`` (tests 1.x internals),
   ``dropped-on-purpose`` (a feature docs/migration.md says is not carried, with the reason), ``not-run``
   (its precondition is not met on 1.1.0: skipped there).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPEC = "abstractllm==1.1.0"
SDIST_NAME = "abstractllm-1.1.0.tar.gz"
BASELINE = HERE / "baseline_1x.json"
#: the packages 1.1.0's venv gets besides abstractllm itself (its provider extras, and pytest; the SDKs of its
#: time: 1.1.0 passes arguments newer SDKs refuse)
V11_DEPS = ["openai<2", "anthropic<1", "requests", "aiohttp", "docstring-parser", "jsonschema", "pytest", "pillow",
            "pydantic", "numpy"]

#: the reply of the text model, and of the tool-calling models (the qwen3 tool-call format)
TEXT_REPLY = "Sure. The result is 8."
TOOL_REPLIES = {
    "calculator": '<tool_call>\n{"name": "calculator", "arguments": {"operation": "add", "a": 5, "b": 3}}\n</tool_call>',
    "get_weather": '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>',
}

# ------------------------------------------------------------------------------------------ classification
#: tests of 1.x internals (private methods, internal modules): not the public contract
PRIVATE: dict[str, str] = {
    r"test_tool_calls\.py::TestOllamaToolCalls::test_ollama_extract_tool_calls":
        "calls OllamaProvider._extract_tool_calls (private)",
    r"test_tool_integration\.py::TestProviderToolIntegration::":
        "abstractllm.providers.migration_status / BaseProvider internals (1.x's refactoring bookkeeping)",
    r"test_mlx_registration\.py::": "abstractllm.providers.registry.register_mlx_provider (1.x internal)",
    r"test_interfaces\.py::TestBaseProviderTools::": "BaseProvider._validate_tool_support / _process_tools (private)",
}
#: tests of features docs/migration.md says are not carried, with the reason
DROPPED: dict[str, str] = {
    r"tests/tmp/test_structured_response\.py::":
        "abstractllm.structured_response: replaced by generate(response_format=...) (docs/migration.md)",
    r"tests/tmp/test_integration\.py::":
        "imports abstractllm.structured_response (replaced by response_format=) and hierarchical memory",
    r"huggingface": "the HuggingFace provider is not carried (docs/migration.md)",
}
#: the server's answer to 1.x's tool-loop follow-up request (an empty user message): reported to the server
SERVER_400 = "Nothing to answer: the prompt and messages are empty"
#: README blocks (by index) of features not carried, with the reason
README_DROPPED = {8: "abstractllm.memory.HierarchicalMemory: no hierarchical memory (docs/migration.md)",
                  15: "the huggingface provider is not carried (docs/migration.md)"}


def _match(table: dict[str, str], test_id: str) -> str | None:
    for pattern, reason in table.items():
        if re.search(pattern, test_id):
            return reason
    return None


def classify(test_id: str, ours: str | None, v11: str | None) -> str:
    if _match(PRIVATE, test_id):
        return "private"
    if _match(DROPPED, test_id):
        return "dropped-on-purpose"
    if v11 in (None, "skipped"):
        return "not-run"
    if v11 != "passed":
        return "stale-on-1.1.0"
    return "passes" if ours == "passed" else "gap"


# ------------------------------------------------------------------------------------------ the 1.x sources
def cache_dir() -> Path:
    path = Path(os.environ.get("COMPAT1X_CACHE") or Path.home() / ".cache" / "abstractllm-compat1x")
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_sdist(download: bool = True) -> Path | None:
    """1.1.0's sdist: ``$COMPAT1X_SDIST``, the cached copy, else downloaded from the package index."""
    given = os.environ.get("COMPAT1X_SDIST")
    if given:
        return Path(given) if Path(given).is_file() else None
    cached = cache_dir() / SDIST_NAME
    if cached.is_file():
        return cached
    if not download:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", SPEC, "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, "-q"], capture_output=True, text=True, timeout=300)
        got = Path(tmp) / SDIST_NAME
        if r.returncode != 0 or not got.is_file():
            return None
        os.replace(got, cached)
    return cached


def extract(sdist: Path, dest: Path) -> Path:
    """Extract 1.1.0's ``tests/`` and ``README.md`` (never its package) into ``dest``; return ``dest``."""
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if len(parts) < 2 or ".." in parts or not (m.isfile() or m.isdir()):
                continue
            rel = Path(*parts[1:])
            if rel.parts[0] == "tests" or str(rel) == "README.md":
                m.name = str(rel)
                members.append(m)
        tar.extractall(dest, members=members)
    return dest


def adapt_conftest(work: Path) -> None:
    """1.1.0's conftest with its provider imports made optional, ``conftest_extra.py`` appended, and a
    pytest.ini with 1.1.0's markers."""
    conftest = work / "tests" / "conftest.py"
    text = conftest.read_text(encoding="utf-8")

    def optional(m: re.Match) -> str:
        names = [n.strip() for n in m.group(2).split(",")]
        fallback = "; ".join(f"{n} = None" for n in names)
        return f"try:\n    {m.group(0)}\nexcept ImportError:  # compat1x: not a provider here\n    {fallback}"

    text = re.sub(r"^from abstractllm\.providers\.(\w+) import ([\w, ]+)$", optional, text, flags=re.M)
    text += "\n\n" + (HERE / "conftest_extra.py").read_text(encoding="utf-8")
    conftest.write_text(text, encoding="utf-8")
    (work / "pytest.ini").write_text(
        "[pytest]\ntestpaths = tests\nmarkers =\n" + "".join(
            f"    {m}: 1.x marker\n" for m in ("openai", "anthropic", "ollama", "huggingface", "vision", "async",
                                               "streaming", "slow", "api_call")), encoding="utf-8")


def test_functions(work: Path) -> list[str]:
    """Every test function of the suite, as pytest would collect it (``path::Class::name``), read statically
    so that a module that fails to import on one side still counts its tests."""
    out = []
    for path in sorted((work / "tests").rglob("*.py")):
        if not (path.name.startswith("test_") or path.name.endswith("_test.py")):
            continue
        rel = path.relative_to(work).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                out.append(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub.name.startswith("test"):
                        out.append(f"{rel}::{node.name}::{sub.name}")
    return out


# ------------------------------------------------------------------------------------------ the local server
class ScriptedRouter:
    """The served "model": scripted qwen3 models behind the real MLX provider. A request that offers a tool
    named in ``TOOL_REPLIES`` and has no tool result after its last user turn goes to that tool's model (the
    reply calls it); every other request goes to the text model. Everything else is the text provider's."""

    def __init__(self, text_llm: Any, tool_llms: dict[str, Any]) -> None:
        self._text = text_llm
        self._tools = tool_llms

    def __getattr__(self, name: str) -> Any:
        return getattr(self._text, name)

    def _pick(self, messages: Any, params: dict[str, Any]) -> Any:
        tools = params.get("tools") or []
        names = []
        for t in tools:
            spec = t.get("function", t) if isinstance(t, dict) else t
            names.append(spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", None))
        after_user = []
        for m in messages or []:
            role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
            text = m.get("content") if isinstance(m, dict) else getattr(m, "text", None)
            if role == "user" and text:
                after_user = []
            else:
                after_user.append(role)
        if "tool" in after_user:
            return self._text
        for name in names:
            if name in self._tools:
                return self._tools[name]
        return self._text

    def generate_async(self, *args: Any, messages: Any = None, **params: Any) -> Any:
        return self._pick(messages, params).generate_async(*args, messages=messages, **params)

    def generate(self, *args: Any, messages: Any = None, **params: Any) -> Any:
        return self._pick(messages, params).generate(*args, messages=messages, **params)

    def load(self) -> None:
        for llm in (self._text, *self._tools.values()):
            llm.load()

    def close(self) -> None:
        for llm in (self._text, *self._tools.values()):
            llm.close()


def start_local_server() -> Any:
    """This package's server on loopback (port chosen by the OS), serving a ``ScriptedRouter``."""
    from abstractllm import create_llm
    from abstractllm.server import ServerConfig, start_server
    from abstractllm.testing.zoo import family_model

    text_path = family_model("qwen3", script=TEXT_REPLY)
    config = {"max_tokens": 256, "temperature": 0.0}
    router = ScriptedRouter(create_llm("mlx", model=str(text_path), **config),
                            {name: create_llm("mlx", model=str(family_model("qwen3", script=reply)), **config)
                             for name, reply in TOOL_REPLIES.items()})
    return start_server(ServerConfig(model=str(text_path), port=0, log_level="error", max_tokens_limit=None),
                        router)


def target_env(server: Any, results: Path) -> dict[str, str]:
    base = server.base_url.rstrip("/")
    root = base[:-3] if base.endswith("/v1") else base
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update({
        "OPENAI_API_KEY": "sk-compat1x", "OPENAI_BASE_URL": base,
        "ANTHROPIC_API_KEY": "sk-ant-compat1x", "ANTHROPIC_BASE_URL": root,
        "OLLAMA_HOST": root, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "COMPAT1X_RESULTS": str(results), "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false",
    })
    env.pop("PYTHONPATH", None)
    return env


# ------------------------------------------------------------------------------------------ the 1.1.0 venv
def ensure_v11_python() -> Path:
    """A venv with ``abstractllm==1.1.0`` from the package index (kept in the cache folder)."""
    given = os.environ.get("COMPAT1X_V11_PYTHON")
    if given:
        return Path(given)
    venv = cache_dir() / "venv-1.1.0"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if not marker.is_file():
        base = python312()
        if base is None:
            raise RuntimeError("1.1.0 needs Python >= 3.12 (its f-strings); none found: set COMPAT1X_PY312")
        subprocess.run([str(base), "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", SPEC, *V11_DEPS], check=True, timeout=900)
        marker.write_text("ok")
    return python


def python312() -> Path | None:
    """An interpreter that can import 1.1.0 (it needs Python >= 3.12): ``$COMPAT1X_PY312``, this one, one on
    PATH, or one of pyenv's."""
    import glob
    import shutil

    candidates = [os.environ.get("COMPAT1X_PY312")]
    if sys.version_info >= (3, 12):
        candidates.append(sys.executable)
    candidates += [shutil.which(f"python3.{m}") for m in (12, 13)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[23]*/bin/python3")))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


# ------------------------------------------------------------------------------------------ running
def run_target(python: Path, work: Path, server: Any, select: list[str] | None = None,
               timeout: int = 3000) -> dict[str, list[str]]:
    """Run the suite (or ``select``, pytest node ids) with ``python``; {nodeid: [outcome, reason]}."""
    results = work / f"results-{abs(hash(str(python)))}.json"
    results.unlink(missing_ok=True)
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin",
           "--run-api-tests", "--import-mode=importlib", "--continue-on-collection-errors", "-o", "addopts=", "--no-header", "-rN", *(select or ["tests"])]
    subprocess.run(cmd, cwd=work, env=target_env(server, results), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=timeout)
    return json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}


def per_function(ids: list[str], raw: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each test function's outcome: its parametrized cases together (any failure fails it, all skipped
    skip it); a function of a module that failed to import is an error with that reason."""
    by_fn: dict[str, list[tuple[str, str]]] = {}
    collect_errors = {k.split("::")[0]: v for k, v in raw.items() if k.endswith("::<collect>")}
    for nodeid, (outcome, reason) in raw.items():
        if nodeid.endswith("::<collect>"):
            continue
        by_fn.setdefault(re.sub(r"\[.*\]$", "", nodeid), []).append((outcome, reason))
    out = {}
    for test_id in ids:
        cases = by_fn.get(test_id)
        if not cases:
            err = collect_errors.get(test_id.split("::")[0])
            out[test_id] = ["error", err[1]] if err else ["missing", ""]
            continue
        for worst in ("error", "failed", "passed", "skipped"):
            hit = [c for c in cases if c[0] == worst]
            if hit:
                out[test_id] = [worst, hit[0][1]]
                break
    return out


def run_readme(python: Path, work: Path, server: Any) -> list[dict[str, Any]]:
    results = work / "readme.json"
    r = subprocess.run([str(python), str(HERE / "readme_driver.py"), str(work / "README.md"), "60"], cwd=work,
                       env=target_env(server, results), capture_output=True, text=True, timeout=1800)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith('{"blocks"'):
            return json.loads(line)["blocks"]
    return [{"index": -1, "runnable": True, "ok": False, "error": (r.stderr or r.stdout)[-500:]}]


def report(ids: list[str], ours: dict, v11: dict, readme_ours: list, readme_v11: list,
           verbose: bool = False) -> dict[str, Any]:
    classes: dict[str, list[str]] = {}
    for test_id in ids:
        o, v = (ours.get(test_id) or [None])[0], (v11.get(test_id) or [None])[0]
        classes.setdefault(classify(test_id, o, v), []).append(test_id)
    order = ["passes", "gap", "stale-on-1.1.0", "private", "dropped-on-purpose", "not-run"]
    print(f"\n1.1.0 test functions: {len(ids)}")
    for name in order:
        print(f"  {name:20s} {len(classes.get(name, []))}")
    blocked = [t for t in classes.get("stale-on-1.1.0", []) if SERVER_400 in (v11.get(t) or ["", ""])[1]]
    if blocked:
        ok = [t for t in blocked if (ours.get(t) or [None])[0] == "passed"]
        print(f"  (of stale-on-1.1.0: {len(blocked)} fail on 1.1.0 only because this package's server answers "
              f"1.x's empty follow-up user message with 400; {len(ok)} of them pass here)")
    contract = len(classes.get("passes", [])) + len(classes.get("gap", []))
    print(f"contract tests passing on 1.1.0: {contract}; passing here: {len(classes.get('passes', []))}")
    for name in ("gap",) + (("stale-on-1.1.0", "private", "dropped-on-purpose") if verbose else ()):
        for test_id in classes.get(name, []):
            reason = (ours.get(test_id) or ["", ""])[1] if name == "gap" else (
                _match(PRIVATE, test_id) or _match(DROPPED, test_id) or (v11.get(test_id) or ["", ""])[1])
            print(f"  [{name}] {test_id}: {reason}")
    runnable = [b for b in readme_v11 if b.get("runnable")]
    ok_v11 = {b["index"] for b in readme_v11 if b.get("ok")}
    ok_ours = {b["index"] for b in readme_ours if b.get("ok")}
    print(f"\nREADME: {len(runnable)} runnable Python blocks; 1.1.0 passes {len(ok_v11)}, this package "
          f"{len(ok_ours)}")
    for b in readme_ours:
        if b.get("runnable") and not b.get("ok"):
            why = README_DROPPED.get(b["index"])
            where = " (and on 1.1.0)" if b["index"] not in ok_v11 else (" (dropped on purpose)" if why else "")
            print(f"  block {b['index']} fails here{where}: {why or b['error']}")
    gaps = sorted(ok_v11 - ok_ours - set(README_DROPPED))
    print(f"README blocks passing on 1.1.0 and failing here (not dropped on purpose): {gaps or 'none'}")
    return {"classes": classes, "readme": {"v11": sorted(ok_v11), "ours": sorted(ok_ours), "gaps": gaps}}


def contract_ids(baseline: dict[str, Any]) -> list[str]:
    """The test functions that pass on 1.1.0 and are neither private nor dropped on purpose."""
    return sorted(t for t, (outcome, _) in baseline["tests"].items()
                  if outcome == "passed" and classify(t, "passed", "passed") == "passes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["both", "ours", "v11"], default="both")
    ap.add_argument("--write-baseline", action="store_true", help="record 1.1.0's outcomes in baseline_1x.json")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--keep", help="extract into this folder and keep it")
    ap.add_argument("-k", "--select", nargs="*", help="pytest node ids (relative to the extracted folder)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    sdist = find_sdist()
    if sdist is None:
        print(f"cannot get {SPEC}'s sdist (no package index?): nothing run")
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="compat1x-")
    work = Path(args.keep or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    extract(sdist, work)
    adapt_conftest(work)
    ids = test_functions(work)
    t0 = time.monotonic()
    server = start_local_server()
    try:
        ours: dict = {}
        v11: dict = {}
        readme_ours: list = []
        readme_v11: list = []
        if args.target in ("both", "v11") or args.write_baseline:
            python = ensure_v11_python()
            v11 = per_function(ids, run_target(python, work, server, args.select))
            readme_v11 = [] if args.no_readme else run_readme(python, work, server)
            print(f"1.1.0 ran in {time.monotonic() - t0:.0f} s")
        else:
            base = json.loads(BASELINE.read_text(encoding="utf-8"))
            v11, readme_v11 = base["tests"], base["readme"]
        if args.target in ("both", "ours"):
            t1 = time.monotonic()
            ours = per_function(ids, run_target(Path(sys.executable), work, server, args.select))
            readme_ours = [] if args.no_readme else run_readme(Path(sys.executable), work, server)
            print(f"this package ran in {time.monotonic() - t1:.0f} s")
        if args.write_baseline:
            BASELINE.write_text(json.dumps({"spec": SPEC, "tests": v11, "readme": readme_v11}, indent=1,
                                           sort_keys=True) + "\n", encoding="utf-8")
        if args.target == "v11":
            ours = {k: [None, ""] for k in ids}
        if args.keep:
            (work / "outcomes.json").write_text(json.dumps({"ours": ours, "v11": v11, "readme_ours": readme_ours,
                                                            "readme_v11": readme_v11}, indent=1))
        report(ids, ours, v11, readme_ours, readme_v11, args.verbose)
    finally:
        server.stop()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
