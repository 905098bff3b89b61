"""Run the Python blocks of a README in order, in one shared namespace (as a reader pastes them into one
session), each with a time limit; print one JSON line: ``{"blocks": [{"index", "runnable", "ok", "error"}]}``.

A block that does not parse is "not runnable". Used by ``run_1x_suite.py`` with each target's interpreter.
"""

from __future__ import annotations

import ast
import io
import json
import re
import signal
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout


def blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _alarm(signum, frame):  # pragma: no cover - only when a block hangs
    raise TimeoutError("the block ran past its time limit")


def main(path: str, timeout: int = 60) -> None:
    text = open(path, encoding="utf-8").read()
    namespace: dict = {"__name__": "__readme__"}
    out = []
    signal.signal(signal.SIGALRM, _alarm)
    for i, block in enumerate(blocks(text)):
        try:
            code = compile(ast.parse(block), f"<README block {i}>", "exec")
        except SyntaxError as exc:
            out.append({"index": i, "runnable": False, "ok": False, "error": f"SyntaxError: {exc.msg}"})
            continue
        sink = io.StringIO()
        signal.alarm(timeout)
        try:
            with redirect_stdout(sink), redirect_stderr(sink):
                exec(code, namespace)
            out.append({"index": i, "runnable": True, "ok": True, "error": None})
        except BaseException as exc:  # noqa: BLE001 - a block's failure is its result
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            out.append({"index": i, "runnable": True, "ok": False,
                        "error": f"{type(exc).__name__}: {str(exc)[:300]}", "trace": "".join(tb[-3:])[-1500:]})
        finally:
            signal.alarm(0)
    sys.stdout.write(json.dumps({"blocks": out}) + "\n")
    sys.stdout.flush()
    import os

    os._exit(0)  # a block may have left threads running (clients, servers): do not wait on them


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60)
