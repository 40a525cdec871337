"""The e2e tier: every `make demo` scenario, run as the command a user runs, ends as it expects.

Each scenario is a fresh `python -m local.demo --scenario NAME` process (moto server, the stack from
template.yaml, the handlers); the demo checks the end state itself (release outcome, live aliases,
the prod repository, locks) and exits 0 only when all of it is as the scenario expects.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.demo import SCENARIOS
from tests.log_scan import known_secret, scan_text

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
#: Scenarios that run more than one release or wait for several approvers (seconds for the whole demo process).
LONGER = {"rollback": 900, "stopped": 600, "lost-event": 600, "outside-window": 600, "latency-rollback": 600,
          "blocked-digest": 600, "two-approvers": 600, "self-approval": 600}


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.timeout(LONGER[s] + 60)) if s in LONGER else s
                                      for s in sorted(SCENARIOS)])
def test_scenario_ends_as_expected(scenario: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common'}{os.pathsep}{ROOT}"}
    result = subprocess.run(  # noqa: S603 - our own demo module
        [sys.executable, "-m", "local.demo", "--scenario", scenario, "--minute-seconds", "0.5", "--work-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=LONGER.get(scenario, 300), check=False,
    )
    output = result.stdout + result.stderr
    # The suite-wide log scan (tests/conftest.py) checks what the demo printed and its function logs
    # (<work dir>/<scenario>/logs, under this session's temp dir).
    scan_text(f"make demo SCENARIO={scenario} output", output)
    # The demo leaves the secrets of its local AWS (secret versions, task tokens, approval tokens)
    # beside its logs, so the scan knows exactly what must not appear.
    for known in sorted(tmp_path.rglob("known-secrets.json")):
        for value, kind in json.loads(known.read_text()):
            known_secret(value, f"{kind} (make demo SCENARIO={scenario})")
    for mail in sorted(tmp_path.rglob("outbox/*.eml")):
        body = mail.read_text(errors="replace")
        for link in re.findall(r"\?t=([A-Za-z0-9_.-]+)", body):
            known_secret(link, "approval token mailed by the demo")
    assert result.returncode == 0, output[-4000:]
    assert f"== scenario {scenario}: ended as expected" in result.stdout
    expected = SCENARIOS[scenario]
    assert f"ended    {expected.expect_status}" in result.stdout
    if expected.expect_error:
        assert f"with {expected.expect_error}" in result.stdout


def test_unknown_scenario_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "local.demo", "--scenario", "nope", "--work-dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common'}{os.pathsep}{ROOT}"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "unknown scenario 'nope'" in result.stderr
