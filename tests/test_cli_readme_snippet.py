"""The README's "## CLI" and "## Server" sections: each documented ``abstractllm serve`` line starts a real
server that answers the documented ``curl`` line (and refuses a missing API key when the line sets one).
The other CLI lines and the Python blocks are run by tests/test_docs.py, with the same hub-id stand-ins."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from test_server_support import ServerProcess, cli_command

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "docs" / "_server_cli_readme_snippet.md"
STANDINS = {"mlx-community/Qwen3-0.6B-4bit": ("text", "tiny")}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_HUB_ID = re.compile(r"\bmlx-community/[\w.\-]+")


def _snippet_text() -> str:
    if SNIPPET.exists():
        return SNIPPET.read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = []
    for title in ("CLI", "Server"):
        m = re.search(rf"^## {title}\b.*?(?=^## |\Z)", readme, re.S | re.M)
        assert m, f"README.md has no '## {title}' section (and {SNIPPET.name} is gone)"
        sections.append(m.group(0))
    return "\n".join(sections)


def _blocks(lang: str) -> list[str]:
    return [m.group(2) for m in _FENCE.finditer(_snippet_text()) if m.group(1) == lang]


def _substitute(text: str) -> str:
    from abstractllm.testing import demo_model

    def repl(m: re.Match) -> str:
        assert m.group(0) in STANDINS, f"no offline stand-in for {m.group(0)}"
        return str(demo_model(*STANDINS[m.group(0)]))

    return _HUB_ID.sub(repl, text)


def _lines(prefix: str) -> list[str]:
    return [ln.strip() for block in _blocks("bash") for ln in block.splitlines() if ln.strip().startswith(prefix)]


def test_the_snippet_has_what_the_readme_needs():
    assert len(_lines("abstractllm ")) >= 6 and any("demo" in ln for ln in _lines("abstractllm "))
    assert len(_lines("curl ")) == 1 and len(_blocks("python")) == 1


@pytest.mark.parametrize("line", [ln for ln in _lines("abstractllm ") if " serve " in ln])
def test_serve_lines_and_curl(line, tmp_path):
    args = shlex.split(_substitute(line))[1:]
    if "--port" in args:
        args[args.index("--port") + 1] = "0"
    else:
        args += ["--port", "0"]
    srv = ServerProcess(None, argv=cli_command(*args))
    try:
        key = args[args.index("--api-key") + 1] if "--api-key" in args else None
        curl = _lines("curl ")[0].replace("127.0.0.1:8000", f"127.0.0.1:{srv.port}")
        if key:
            r = httpx.post(srv.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 401
            curl = curl.replace("curl -s", f'curl -s -H "Authorization: Bearer {key}"', 1)
        out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] <= 32
    finally:
        assert srv.stop(signal.SIGINT) == 0, "".join(srv.log)
