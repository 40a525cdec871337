"""bench.report: the generated block of docs/scalability.md replaces exactly what lies between its markers."""

from __future__ import annotations

import pytest

from bench import report


def test_replace_block_keeps_the_markers_and_everything_around_them():
    text = "intro\n<!-- bench:begin -->\nold figures\n<!-- bench:end -->\nafter\n"
    assert report.replace_block(text, "new figures\n") == "intro\n<!-- bench:begin -->\nnew figures\n<!-- bench:end -->\nafter\n"


def test_replace_block_without_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        report.replace_block("no markers here\n", "x\n")


def test_scalability_block_states_the_before_after_ratio_and_the_burst():
    result = {
        "run": {"started": "2026-11-27T15:00:00+00:00", "before_revision": "d35a2e2",
                "machine": {"git_revision": "abc1234", "cpus": 2, "load_average_at_start": [3.0, 2.0, 1.0]}},
        "transitions_per_release": {"before": {"bake0": 40, "shipped": 120}, "after": {"bake0": 30, "shipped": 30}},
        "cost_per_release_usd": {"before": {"shipped": {"total": 0.003}}, "after": {"shipped": {"total": 0.001}}},
        "burst": {"pushes": 50, "releases_started": 50, "lost": 0, "duplicated": 0, "max_in_flight_per_env": 1,
                  "finished_before_deadline": True, "total_s": 200.4, "prod_digest_push_index": 50, "prod_is_newest": True},
    }
    block = report.scalability_block(result)
    assert "| shipped configs | 120 | 30 | 0.25 |" in block
    assert "| bakes at zero | 40 | 30 | 0.75 |" in block
    # $0.003 per release at 100 a day for 30 days = $9.00; at 1,000 a day = $90.00.
    assert "| $0.00300 | $0.90 | $9.00 | $90.00 |" in block
    assert "live in prod at the end: push 50 of 50 (the newest)" in block
