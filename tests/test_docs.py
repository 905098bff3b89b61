"""Docs are code: every Python block in README.md and docs/ runs, every CLI line in their shell blocks runs,
and every relative link resolves.

The mechanism, as the README says: examples name real Hugging Face models; here each hub id listed in
``HUB_STANDINS`` is replaced by the path of an offline demo model built by ``abstractllm.testing`` before the
block runs. Examples of the remote providers name real remote models (``gpt-4o-mini``); here they run
against the project's own server on loopback, which their base-URL environment variables point at
(``remote_env``). A block naming a hub id that is not listed fails, so no example can silently go untested.
Shell lines that install (``pip``, ``python3 -m venv``) or run the test suite are not re-run here; lines that
start with ``abstractllm`` are run, except ``abstractllm serve``: tests/test_cli_readme_snippet.py starts each
documented serve line and sends it the documented ``curl`` request.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOC_FILES = [p for p in DOC_FILES if not p.name.startswith("_")]

#: the scripted replies of the reasoning examples (docs/reasoning.md): what the real models write
THINKING_REPLY = "<think>\nThe user greets me. A short, friendly answer.\n</think>\n\nHello! How can I help?"
HARMONY_REPLY = ("<|channel|>analysis<|message|>A greeting: answer briefly.<|end|><|start|>assistant"
                 "<|channel|>final<|message|>Hello! How can I help?")

#: hub id -> (kind, preset) of the offline demo model that stands in for it, or ("family", zoo family, script):
#: a model of abstractllm.testing.zoo with the real family's tokenizer layout and template (scripted: its greedy
#: reply is the script)
HUB_STANDINS = {
    "mlx-community/Qwen3-0.6B-4bit": ("family", "qwen3", None),
    "mlx-community/Qwen3-1.7B-4bit": ("family", "qwen3", THINKING_REPLY),
    "mlx-community/gpt-oss-20b-MXFP4-Q8": ("family", "gpt_oss", HARMONY_REPLY),
    "mlx-community/Qwen3-0.6B-bf16": ("text", "tiny"),
    "mlx-community/Qwen3-1.7B-bf16": ("text", "small"),  # a head size of 64: KV quantization (prefix-cache.md)
    "mlx-community/Llama-3.2-1B-Instruct-4bit": ("text", "llama-tiny"),
    "mlx-community/Qwen2-VL-2B-Instruct-4bit": ("vision", "tiny"),
    "mlx-community/Qwen2.5-VL-3B-Instruct-4bit": ("vision", "tiny"),
}
_HUB_ID = re.compile(r"\b(mlx-community|Qwen|meta-llama|mistralai|google|microsoft|openai)/[\w.\-]+")
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(lang: set[str]):
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for i, m in enumerate(_FENCE.finditer(text)):
            if m.group(1) in lang:
                line = text[: m.start()].count("\n") + 1
                yield pytest.param(path, m.group(2), id=f"{path.relative_to(ROOT)}:{line}")


def _substitute(code: str) -> str:
    from abstractllm.testing import demo_model

    def repl(m: re.Match) -> str:
        hub_id = m.group(0)
        if hub_id not in HUB_STANDINS:
            pytest.fail(f"example names hub model {hub_id!r}: add a stand-in to HUB_STANDINS in tests/test_docs.py")
        kind, preset, *script = HUB_STANDINS[hub_id]
        if kind == "family":
            from abstractllm.testing.zoo import family_model

            return str(family_model(preset, script=script[0]))
        return str(demo_model(kind, preset))

    return _HUB_ID.sub(repl, code)


@pytest.fixture(scope="session")
def remote_env(vision_model):
    """Examples of the remote providers (openai, ollama, lmstudio, anthropic) run against the project's own
    server on loopback, serving the offline vision model (it answers text and images; every model name
    addresses it): their base-URL and key environment variables point there."""
    from abstractllm.server import ServerConfig, start_server

    server = start_server(ServerConfig(model=str(vision_model), port=0))
    root = server.base_url
    yield {"OPENAI_BASE_URL": root, "OPENAI_API_KEY": "sk-docs", "OLLAMA_HOST": root[: -len("/v1")],
           "LMSTUDIO_BASE_URL": root, "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-docs"}
    server.stop()


@pytest.mark.parametrize("path, code", list(_blocks({"python", "py"})))
def test_python_block_runs(path, code, tmp_path, remote_env):
    script = tmp_path / "example.py"
    script.write_text(_substitute(code), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, **remote_env, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, f"{path}: exit {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"


def _cli_lines():
    for param in _blocks({"bash", "sh", "shell", "console"}):
        path, code = param.values
        for raw in code.splitlines():
            line = raw.strip().lstrip("$ ").strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("abstractllm"):
                    yield pytest.param(path, part, id=f"{param.id}:{part[:40]}")


def _cli_params():
    params = list(_cli_lines())
    return params or [pytest.param(None, None, marks=pytest.mark.skip(reason="no CLI lines in the docs"))]


@pytest.mark.parametrize("path, line", _cli_params())
def test_cli_line_runs(path, line, tmp_path):
    argv = shlex.split(_substitute(line))
    exe = Path(sys.executable).with_name("abstractllm")
    argv[0] = str(exe) if exe.exists() else argv[0]
    if len(argv) > 1 and argv[1] == "serve":
        pytest.skip("served and queried by tests/test_cli_readme_snippet.py")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"{path}: {line}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        file_part = target.split("#", 1)[0]
        assert (path.parent / file_part).exists(), f"{path.relative_to(ROOT)}: broken link {target}"


@pytest.mark.parametrize("doc", ["docs/mlx/provider.md", "docs/api/providers/mlx.md"])
def test_every_parameter_is_documented(doc):
    from abstractllm import ModelParameter

    text = (ROOT / doc).read_text(encoding="utf-8")
    for member in ModelParameter:
        assert f"| `{member.value}` | `{member.name}` |" in text, f"{doc}: no table row for {member.value}"


def test_every_exception_is_documented():
    import abstractllm.exceptions as exc

    for doc in ("docs/mlx/provider.md", "docs/api/providers/mlx.md", "docs/api/core.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for name in exc.__all__:
            if name[0].isupper() and name != "AbstractLLMError":
                assert name in text, f"{doc} does not mention {name}"
