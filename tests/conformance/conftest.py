"""The conformance tier's coverage report: which suite cases and shipped vectors the client was run
on, what each had to give and what it gave. Printed at the end of the run and written to
build/conformance/coverage.json (`make conformance`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "build" / "conformance" / "coverage.json"
_RECORD: pytest.StashKey[dict[str, dict[str, Any]]] = pytest.StashKey()


@pytest.fixture
def conformance_record(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Where a test writes the outcome of one case: {case: {suite, expected, outcome, reason}}."""
    return request.config.stash.setdefault(_RECORD, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    record = config.stash.get(_RECORD, {})
    if not record:
        return
    agree = sum(1 for r in record.values() if r["expected"] == r["outcome"])
    terminalreporter.section("conformance coverage")
    for case in sorted(record):
        row = record[case]
        mark = "ok " if row["expected"] == row["outcome"] else "BAD"
        terminalreporter.write_line(f"{mark} {case:<58} expected {row['expected']:<8} got {row['outcome']:<8} [{row['suite']}]")
    suite = sorted({c.split(" (")[0] for c, r in record.items() if r["suite"].startswith("sigstore-conformance")})
    terminalreporter.write_line(
        f"{agree} of {len(record)} runs as expected; sigstore-conformance bundle-verify cases covered: {len(suite)} "
        f"({', '.join(suite)})"
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"runs": record, "suite_cases": suite, "as_expected": agree}, indent=2, sort_keys=True) + "\n")
    terminalreporter.write_line(f"written to {REPORT.relative_to(ROOT)}")
