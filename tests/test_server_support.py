"""Helpers for the server tests: run ``abstractllm serve`` in a subprocess on a free loopback port.

(No tests here; the module is shared by tests/test_server*.py.)
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "cli_command"]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "abstractllm.cli", *args]


class ServerProcess:
    """``abstractllm serve --port 0`` in a subprocess; the bound port is read from uvicorn's log."""

    def __init__(self, model: str | Path | None, *extra: str, wait_ready: bool = True, env: dict | None = None,
                 argv: list[str] | None = None) -> None:
        self.args = argv or cli_command("serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0",
                                        "--log-level", "info", *extra)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        atexit.register(self._kill_if_running)  # a test run cut short must not leave a server behind
        self.log: list[str] = []
        self._port_seen = threading.Event()
        self.port: int | None = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self._port_seen.wait(60) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        self.url = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            self.wait_health(200)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._port_seen.set()
        self._port_seen.set()

    def wait_health(self, status: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = httpx.get(self.url + "/health", timeout=5)
            last = r
            if r.status_code == status and r.json()["status"] != "loading":
                return r.json()
            time.sleep(0.1)
        raise AssertionError(f"health never answered {status}: {last and last.text}\n" + "".join(self.log))

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stats(self) -> dict:
        return httpx.get(self.url + "/stats", timeout=10, headers=getattr(self, "auth", {})).json()

    def _kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Stop the server with ``sig``; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
