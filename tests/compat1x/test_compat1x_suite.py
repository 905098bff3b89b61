"""AbstractLLM 1.1.0's own tests against this package: every test that passes on 1.1.0 (recorded in
baseline_1x.json by ``python tests/compat1x/run_1x_suite.py --write-baseline``) and tests 1.x's public
contract must pass here. 1.1.0's tests come from its sdist on the package index, fetched at run time (never
stored in this repo); without the index the test is skipped, saying so. The whole comparison, README
included, is ``python tests/compat1x/run_1x_suite.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_1x_suite as suite  # noqa: E402


def test_every_contract_test_passing_on_1_1_0_passes_here(tmp_path):
    pytest.importorskip("mlx_lm", reason="the local server serves MLX models")
    sdist = suite.find_sdist()
    if sdist is None:
        pytest.skip(f"cannot get {suite.SPEC}'s sdist from the package index (offline?): 1.x's suite not run")
    baseline = json.loads(suite.BASELINE.read_text(encoding="utf-8"))
    wanted = suite.contract_ids(baseline)
    assert len(wanted) >= 30  # the baseline is 1.1.0's real run, not an empty file
    work = suite.extract(sdist, tmp_path)
    suite.adapt_conftest(work)
    files = sorted({t.split("::")[0] for t in wanted})
    server = suite.start_local_server()
    try:
        ours = suite.per_function(wanted, suite.run_target(Path(sys.executable), work, server, files, timeout=600))
    finally:
        server.stop()
    failing = {t: ours[t] for t in wanted if ours[t][0] != "passed"}
    assert not failing, "1.x contract tests that pass on 1.1.0 fail here:\n" + "\n".join(
        f"{t}: {o} {r}" for t, (o, r) in failing.items())
