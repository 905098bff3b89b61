"""The swap, proven: examples/existing_app.py, written only with AbstractLLM 1.x calls, runs unchanged on
"mlx" and on "openai" pointed at the project's own server (a real subprocess serving the same offline
model, on loopback), and every greedy reply is the same on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_server_support import ServerProcess

APP = Path(__file__).resolve().parent.parent / "examples" / "existing_app.py"


def _run(*args: str) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), proc.stdout


def test_the_same_1x_app_runs_on_mlx_and_on_openai_against_our_server(tiny_model):
    local, local_out = _run("mlx", str(tiny_model))
    server = ServerProcess(tiny_model)
    try:
        remote, remote_out = _run("openai", "local", server.url + "/v1")
    finally:
        server.stop()
    assert remote == local  # the same greedy replies, call for call
    assert all(local.values())
    for out in (local_out, remote_out):
        assert "bad parameter: InvalidParameterError True" in out
        assert "no vision: UnsupportedFeatureError" in out
        assert "session: ['system', 'user', 'assistant', 'user', 'assistant', 'user']" in out
    assert "unreachable model: ModelNotFoundError" in local_out
    assert "unreachable model: ProviderConnectionError" in remote_out
