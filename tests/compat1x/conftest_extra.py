# --- appended by abstractllm's tests/compat1x/run_1x_suite.py (not part of AbstractLLM 1.1.0) -------------
# What the adapted conftest adds to 1.1.0's own: nothing a test asserts changes. The providers reach the
# local server through the environment the runner sets (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, OLLAMA_HOST,
# dummy API keys); each test gets a time limit (no pytest-timeout needed), since a 1.x test that waits on a
# service that is not there must not stall the run.
import os as _compat1x_os
import signal as _compat1x_signal

import pytest as _compat1x_pytest

_COMPAT1X_TIMEOUT = int(_compat1x_os.environ.get("COMPAT1X_TEST_TIMEOUT", "90"))


def _compat1x_alarm(signum, frame):  # pragma: no cover - only when a test hangs
    raise TimeoutError(f"compat1x: the test ran past {_COMPAT1X_TIMEOUT} s")


@_compat1x_pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    previous = _compat1x_signal.signal(_compat1x_signal.SIGALRM, _compat1x_alarm)
    _compat1x_signal.alarm(_COMPAT1X_TIMEOUT)
    try:
        yield
    finally:
        _compat1x_signal.alarm(0)
        _compat1x_signal.signal(_compat1x_signal.SIGALRM, previous)


# Each test's outcome (and a short reason) for the runner: COMPAT1X_RESULTS names the JSON file.
_compat1x_results = {}


def _compat1x_reason(report):
    text = getattr(report, "longreprtext", "") or ""
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[-1])
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ")]
    return (errors[-1] if errors else (lines[-1] if lines else ""))[:400]


def pytest_runtest_logreport(report):
    entry = _compat1x_results.get(report.nodeid)
    if report.when == "setup" and not report.passed:
        outcome = "skipped" if report.skipped else "error"
    elif report.when == "call":
        outcome = "skipped" if report.skipped else ("passed" if report.passed else "failed")
    elif report.when == "teardown" and report.failed and (entry is None or entry[0] == "passed"):
        outcome = "error"
    else:
        return
    _compat1x_results[report.nodeid] = (outcome, _compat1x_reason(report))


def pytest_collectreport(report):
    if report.failed:
        _compat1x_results[report.nodeid + "::<collect>"] = ("error", _compat1x_reason(report))


def pytest_sessionfinish(session, exitstatus):
    path = _compat1x_os.environ.get("COMPAT1X_RESULTS")
    if path:
        import json as _json

        with open(path, "w", encoding="utf-8") as fh:
            _json.dump(_compat1x_results, fh, indent=1)
