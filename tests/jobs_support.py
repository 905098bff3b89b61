"""Helpers for the job tests (no tests here): a throwaway PostgreSQL server, the CLI in a subprocess,
folders of images.

``postgres_server()`` gives ``$ABSTRACTLLM_TEST_POSTGRES_URL`` when set (``.ci/run`` starts a server and
sets it); else it starts its own cluster (``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` or
the PATH) in a temp folder on a free loopback port, as the ``postgres`` (or ``nobody``) user when run as
root, which PostgreSQL refuses; it is stopped and removed afterwards. When neither works the caller
skips, with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "postgres_server", "run_cli", "cli", "write_images", "wait_for"]

URL_ENV = "ABSTRACTLLM_TEST_POSTGRES_URL"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "abstractllm.cli", *args]


def run_cli(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ABSTRACTLLM_MODEL"}
    environ.update(env or {})
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env=environ,
                          stdin=subprocess.DEVNULL)


def write_images(folder: Path, n: int, *, bad: tuple[str, ...] = ()) -> list[Path]:
    """``n`` small PNGs (all different) and, for each name in ``bad``, a file named as an image that is not one."""
    from abstractllm.testing.media import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        path.write_bytes(png_bytes(24 + 4 * (i % 5), 24 + 4 * (i % 3), (40 * i % 256, 120, 200 - i % 200)))
        paths.append(path)
    for name in bad:
        (folder / name).write_bytes(b"this is not an image")
    return paths


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server for tests: ``url``; ``stop()`` stops and removes one this class started."""

    def __init__(self, url: str, root: str | None = None, pg_ctl: str | None = None, user: Any = None) -> None:
        self.url, self.root, self._pg_ctl, self._user = url, root, pg_ctl, user

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run([self._pg_ctl, "-D", os.path.join(self.root, "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, user=self._user)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def postgres_server() -> tuple[PostgresServer | None, str]:
    """A running server (or None) and, when None, why."""
    url = os.environ.get(URL_ENV)
    if url:
        return PostgresServer(url), ""
    bindir = _binaries()
    if bindir is None:
        return None, (f"no PostgreSQL server: {URL_ENV} is not set and initdb is not installed "
                      "(apt-get install postgresql, or set the URL of a server)")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        for name in ("postgres", "nobody"):
            try:
                user = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        if user is None:
            return None, "running as root and no 'postgres' or 'nobody' user to run PostgreSQL as"
    root = tempfile.mkdtemp(prefix="abstractllm-pg-")
    run_as = user.pw_uid if user is not None else None
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    port = _free_port()
    initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
    try:
        r = subprocess.run([initdb, "-D", os.path.join(root, "data"), "-U", "abstractllm", "--auth=trust",
                            "-E", "UTF8", "--no-sync"], capture_output=True, text=True, timeout=120, user=run_as)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-300:]}")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        r = subprocess.run([pg_ctl, "-D", os.path.join(root, "data"), "-o", opts, "-l",
                            os.path.join(root, "log"), "-w", "-t", "60", "start"],
                           capture_output=True, text=True, timeout=120, user=run_as)
        if r.returncode != 0:
            log = Path(root, "log").read_text(errors="replace")[-500:] if Path(root, "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        subprocess.run([pg_ctl, "-D", os.path.join(root, "data"), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60, user=run_as)
        shutil.rmtree(root, ignore_errors=True)
        return None, f"could not start a throwaway PostgreSQL server: {exc}"
    return PostgresServer(f"postgresql://abstractllm@127.0.0.1:{port}/postgres", root, pg_ctl, run_as), ""
