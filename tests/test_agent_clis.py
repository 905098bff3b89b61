"""Real agent clients against ``abstractllm serve`` on loopback: Claude Code (Anthropic Messages), Codex CLI
(OpenAI Responses) and OpenCode (OpenAI chat completions), each with its default settings and the offline
switches docs/agents.md documents (the invocations below are the documented ones:
``test_docs_show_the_tested_setup`` keeps the two in step).

Each client completes a plain task and a tool round trip:

- plain: the served model is scripted to answer "Done." to any prompt; the client prints it and exits 0.
- round trip: a scripted model answers every prompt with a call of one of the client's own tools (Claude Code's
  ``Bash``, Codex's ``exec_command``, OpenCode's ``bash``) running a harmless ``echo``. A scripted model writes
  the same reply to every prompt, so the conversation is routed: a small proxy on loopback sends the requests
  that carry a tool result to the "Done." server and the others to the tool-calling one. The client runs the
  command, sends its output back (checked in the request the proxy saw), gets "Done." and ends cleanly.

The clients are npm packages, installed by ``.ci/run`` into ``.ci/node`` (pinned versions); a client that is
not installed is skipped, saying how to install it. Each run is bounded (``RUN_TIMEOUT_S``). Most of the time
is the zoo model's prefill of the clients' long prompts (Claude Code's is about 28k tokens) on CPU.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from test_server_support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"  # where .ci/run installs the clients
RUN_TIMEOUT_S = 300
DONE = "Done."
PLAIN_PROMPT = "Say hi"
TOOL_PROMPT = "Run echo in the shell"

#: the clients: their npm package, the files and environment they run with ({url}: the server's root URL,
#: {home}: the home folder of the run), the command line ({prompt}), and the tool call the scripted model makes
CLAUDE_CODE_ENV = {
    "ANTHROPIC_BASE_URL": "{url}",
    "ANTHROPIC_API_KEY": "unused",
    "CLAUDE_CONFIG_DIR": "{home}/.claude",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
}
CODEX_CONFIG = """model = "local"
model_provider = "abstractllm"

[model_providers.abstractllm]
name = "abstractllm"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "ABSTRACTLLM_API_KEY"
"""
OPENCODE_CONFIG = """{
  "$schema": "https://opencode.ai/config.json",
  "provider": {
    "abstractllm": {
      "npm": "@ai-sdk/openai-compatible",
      "name": "abstractllm",
      "options": {"baseURL": "{url}/v1", "apiKey": "unused"},
      "models": {"local": {"name": "local"}}
    }
  },
  "model": "abstractllm/local"
}
"""


@dataclass
class Client:
    name: str
    package: str
    binary: str
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str]  # path (under {home} or {work}) -> content
    tool_call: str  # the scripted model's reply for the round trip
    tool_output: str  # what the command prints
    natives: tuple[str, ...] = ()  # the platform packages' binaries (globs under node_modules), should the
    # package's launcher be missing (its install script not run)


CLIENTS = {
    "claude": Client(
        "Claude Code", "@anthropic-ai/claude-code", "claude",
        ["claude", "-p", "{prompt}", "--output-format", "json"], CLAUDE_CODE_ENV, {},
        '<tool_call>\n{"name": "Bash", "arguments": {"command": "echo hi-from-claude", '
        '"description": "Print a greeting"}}\n</tool_call>', "hi-from-claude", ("@anthropic-ai/claude-code-*/claude",)),
    "codex": Client(
        "Codex CLI", "@openai/codex", "codex",
        ["codex", "exec", "--skip-git-repo-check", "{prompt}"],
        {"CODEX_HOME": "{home}/.codex", "ABSTRACTLLM_API_KEY": "unused"}, {"{home}/.codex/config.toml": CODEX_CONFIG},
        '<tool_call>\n{"name": "exec_command", "arguments": {"cmd": "echo hi-from-codex"}}\n</tool_call>',
        "hi-from-codex"),
    "opencode": Client(
        "OpenCode", "opencode-ai", "opencode",
        ["opencode", "run", "{prompt}"],
        {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"},
        {"{work}/opencode.json": OPENCODE_CONFIG},
        '<tool_call>\n{"name": "bash", "arguments": {"command": "echo hi-from-opencode", '
        '"description": "Print a greeting"}}\n</tool_call>', "hi-from-opencode", ("opencode-*/bin/opencode",)),
}


def _executable(client: Client) -> str:
    """The client's executable (.ci/node first, then PATH); skips the test, saying how to install it, when it
    is missing or does not run."""
    candidates = [NODE_BIN / client.binary]
    for pattern in client.natives:
        candidates += sorted(NODE_BIN.parent.glob(pattern))
    on_path = shutil.which(client.binary)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.exists():
            try:
                out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60,
                                     stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0:
                return str(path)
    pytest.skip(f"{client.name} is not installed (or does not run here): .ci/run installs it with "
                f"npm install --prefix .ci/node {client.package}")


# ---------------------------------------------------------------------------------------------- the proxy
def _carries_a_tool_result(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    for m in data.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "tool":
            return True
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return True
    items = data.get("input")
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output") for i in items)


class Router:
    """An HTTP proxy on loopback: requests carrying a tool result go to ``after_tool``, the others to ``first``;
    responses (server-sent events included) stream back as they come. ``seen`` records each request."""

    def __init__(self, first: str, after_tool: str) -> None:
        self.seen: list[dict] = []
        router = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                target = after_tool if _carries_a_tool_result(body) else first
                router.seen.append({"method": self.command, "path": self.path, "target": target,
                                    "body": json.loads(body) if body else None})
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                with httpx.Client(timeout=None) as client, \
                        client.stream(self.command, target + self.path, content=body, headers=headers) as r:
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                            self.send_header(k, v)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        for chunk in r.iter_raw():
                            self.wfile.write(chunk)
                            self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_HEAD = _forward

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------- running
def _scripted_server(script: str) -> ServerProcess:
    from abstractllm.testing.zoo import family_model

    return ServerProcess(family_model("qwen3", script=script))


@pytest.fixture(scope="module")
def done_server():
    """The server whose model answers "Done." to anything (the plain tasks, and the ends of the round trips)."""
    srv = _scripted_server(DONE)
    yield srv
    assert srv.stop() == 0, "".join(srv.log)


def _fill(text: str, **values: str) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_client(client: Client, url: str, prompt: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``client`` with the documented setup against the server at ``url`` (its root), in a fresh home and
    working folder under ``tmp_path``."""
    exe = _executable(client)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    values = {"url": url, "home": str(home), "work": str(work), "prompt": prompt}
    for path, content in client.files.items():
        target = Path(_fill(path, **values))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(content, url=url), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
                "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local/state"),
                "PWD": str(work), "NO_PROXY": "127.0.0.1,localhost", "CI": "1"})
    env.update({k: _fill(v, **values) for k, v in client.env.items()})
    argv = [exe] + [_fill(a, **values) for a in client.argv[1:]]
    try:
        return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{client.name} did not finish within {RUN_TIMEOUT_S} s\n--- stdout\n{exc.stdout}\n"
                    f"--- stderr\n{exc.stderr}")


def _report(out: subprocess.CompletedProcess, server: ServerProcess | None = None) -> str:
    log = "".join(server.log[-40:]) if server is not None else ""
    return f"exit {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}\n--- server\n{log}"


def _answer(client: Client, out: subprocess.CompletedProcess) -> str:
    """What the client printed as the model's final answer."""
    if client.binary == "claude":
        result = json.loads(out.stdout)
        assert result["is_error"] is False and result["subtype"] == "success", result
        return result["result"]
    return out.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("key", list(CLIENTS))
def test_plain_task(key, done_server, tmp_path):
    client = CLIENTS[key]
    started = time.monotonic()
    out = run_client(client, done_server.url, PLAIN_PROMPT, tmp_path)
    assert out.returncode == 0, _report(out, done_server)
    assert _answer(client, out).endswith(DONE), _report(out, done_server)
    assert time.monotonic() - started < RUN_TIMEOUT_S


def _tool_results(key: str, body: dict) -> list[str]:
    """The tool outputs a request carries back, whatever its API."""
    out = []
    if key == "claude":
        for m in body["messages"]:
            for b in m["content"] if isinstance(m["content"], list) else []:
                if b.get("type") == "tool_result":
                    c = b.get("content")
                    out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c or []))
    elif key == "codex":
        out = [i["output"] if isinstance(i["output"], str) else json.dumps(i["output"])
               for i in body["input"] if i.get("type") == "function_call_output"]
    else:
        out = [m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
               for m in body["messages"] if m.get("role") == "tool"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("key", list(CLIENTS))
def test_tool_round_trip(key, done_server, tmp_path):
    client = CLIENTS[key]
    _executable(client)  # skip before starting a server for nothing
    tool_server = _scripted_server(client.tool_call)
    router = Router(tool_server.url, done_server.url)
    try:
        out = run_client(client, router.url, TOOL_PROMPT, tmp_path)
    finally:
        router.close()
        assert tool_server.stop() == 0, "".join(tool_server.log)
    assert out.returncode == 0, _report(out, tool_server)
    assert _answer(client, out).endswith(DONE), _report(out, tool_server)
    posts = [r for r in router.seen if r["method"] == "POST" and r["body"] and r["target"] == tool_server.url
             and (r["body"].get("tools"))]
    assert posts, f"{client.name} never asked the tool-calling model: {[r['path'] for r in router.seen]}"
    answered = [r for r in router.seen if r["target"] == done_server.url]
    assert answered, f"{client.name} never sent the tool's result back"
    results = [text for r in answered for text in _tool_results(key, r["body"])]
    assert any(client.tool_output in text for text in results), results
    if key == "claude":
        assert json.loads(out.stdout)["num_turns"] == 2
    else:
        assert client.tool_output in out.stdout + out.stderr  # the client shows the command's output


def test_docs_show_the_tested_setup():
    """docs/agents.md documents the invocations and the setup these tests run (the same strings)."""
    doc = (ROOT / "docs" / "agents.md").read_text(encoding="utf-8")
    for client in CLIENTS.values():
        assert client.package in doc
        command = " ".join(_fill(a, prompt='"' + PLAIN_PROMPT + '"') for a in client.argv)
        assert command in doc, f"docs/agents.md does not show {command!r}"
        for name, value in client.env.items():
            shown = _fill(value, url="http://127.0.0.1:8000", home="$HOME")
            assert f"{name}={shown}" in doc, f"docs/agents.md does not set {name}={shown}"
        for content in client.files.values():
            for line in _fill(content, url="http://127.0.0.1:8000").strip().splitlines():
                assert line in doc, f"docs/agents.md does not show the configuration line {line!r}"
