"""DORA metrics from a ledger of known releases equal the figures computed by hand."""

from __future__ import annotations

from typing import Any

import pytest

from podrelease.core.times import epoch
from podrelease.release.dora import DAY, compute

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z
HOUR = 3600
ALL = ["verify", "deploy dev", "approval", "verify for prod", "promote", "deploy prod"]
ROLLBACK = ["verify for prod", "promote", "deploy prod"]


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(rid: str, outcome: str, at: float, pushed: float | None = None, stages: list[str] | None = None,
           stopped_at: str | None = None, rollback: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"release_id": rid, "outcome": outcome, "recorded_at": int(at), "stages_done": stages or [],
                            "stopped_at": stopped_at}
    if pushed is not None:
        item["pushed_at"] = iso(pushed)
    if rollback is not None:
        item["rollback"] = rollback
    return item


# A week of releases (window: T0 .. T0 + 7 days):
#   r1: pushed T0+1h, in prod T0+3h                         lead 2 h
#   r2: pushed T0+1d, in prod T0+1d+5h                      lead 5 h; rolled back by rb1 at T0+1d+7h (restore 2 h)
#   rb1: a rollback of prod to r1's digest                   (not a deployment; a rollback)
#   r3: pushed T0+2d, failed in prod's canary                a failed change
#   r4: pushed T0+3d, rejected at approval                   not a prod change
#   r5: pushed T0+4d, in prod T0+4d+1h                      lead 1 h; rolled back by rb2 at T0+4d+5h (restore 4 h)
#   rb2: a rollback of prod                                   (a rollback)
#   r6: pushed T0+5d, in prod T0+5d+3h                      lead 3 h
#   old: in prod 2 days before the window                    outside
#   refused: a refused event                                 nothing
LEDGER = [
    record("old", "SUCCEEDED", T0 - 2 * DAY, T0 - 2 * DAY - HOUR, ALL),
    record("r1", "SUCCEEDED", T0 + 3 * HOUR, T0 + HOUR, ALL),
    record("r2", "SUCCEEDED", T0 + DAY + 5 * HOUR, T0 + DAY, ALL),
    record("rb1", "SUCCEEDED", T0 + DAY + 7 * HOUR, T0 - HOUR, ROLLBACK,
           rollback={"environment": "prod", "requested_by": "arn:aws:iam::1:user/carol", "replaces": "r2"}),
    record("r3", "FAILED", T0 + 2 * DAY + 2 * HOUR, T0 + 2 * DAY, ALL[:5], stopped_at="deploy prod"),
    record("r4", "FAILED", T0 + 3 * DAY + HOUR, T0 + 3 * DAY, ["verify", "deploy dev"], stopped_at="approval"),
    record("r5", "SUCCEEDED", T0 + 4 * DAY + HOUR, T0 + 4 * DAY, ALL),
    record("rb2", "SUCCEEDED", T0 + 4 * DAY + 5 * HOUR, T0 + HOUR, ROLLBACK,
           rollback={"environment": "prod", "requested_by": "arn:aws:iam::1:user/dave", "replaces": "r5"}),
    record("r6", "SUCCEEDED", T0 + 5 * DAY + 3 * HOUR, T0 + 5 * DAY, ALL),
    record("refused", "REJECTED", T0 + 6 * DAY, None, [], stopped_at="normalize"),
]


def test_dora_of_a_known_week_equals_the_hand_computed_figures() -> None:
    figures = compute(LEDGER, T0, T0 + 7 * DAY)
    # Deployments: r1 r2 r5 r6 (rollbacks apart: rb1 rb2) -> 4 in 7 days
    assert figures.deployments == 4
    assert figures.rollbacks == 2
    assert figures.deployment_frequency_per_day == round(4 / 7, 4)
    # Lead times 2 h, 5 h, 1 h, 3 h -> median 2.5 h
    assert figures.lead_time_seconds == 2.5 * HOUR
    # Prod changes: 4 deployments + r3 failed in prod = 5; failed: r3, r2 (rolled back), r5 (rolled back) = 3
    assert figures.change_failure_rate == 0.6
    # Restores: rb1 - r2 = 2 h, rb2 - r5 = 4 h -> median 3 h
    assert figures.time_to_restore_seconds == 3 * HOUR
    assert figures.to_dict() == {
        "since": T0, "until": T0 + 7 * DAY, "deployments": 4, "rollbacks": 2, "deployment_frequency_per_day": 0.5714,
        "lead_time_seconds": 9000.0, "change_failure_rate": 0.6, "time_to_restore_seconds": 10800.0,
    }


def test_dora_of_an_empty_window_has_no_figures_rather_than_zeros() -> None:
    figures = compute(LEDGER, T0 + 10 * DAY, T0 + 11 * DAY)
    assert (figures.deployments, figures.deployment_frequency_per_day) == (0, 0.0)
    assert (figures.lead_time_seconds, figures.change_failure_rate, figures.time_to_restore_seconds) == (None, None, None)


def test_a_rollback_of_a_release_outside_the_window_is_a_rollback_but_no_restore() -> None:
    # r2 (the rolled-back one) is outside [T0+1d+6h, ...): its restore time cannot be told from this window
    figures = compute(LEDGER, T0 + DAY + 6 * HOUR, T0 + 2 * DAY)
    assert (figures.deployments, figures.rollbacks, figures.time_to_restore_seconds, figures.change_failure_rate) == (0, 1, None, None)


@pytest.mark.parametrize(("value", "seconds"), [
    (1_800_000_000, 1_800_000_000.0), ("2027-01-15T08:00:00Z", 1_800_000_000.0), ("2027-01-15T08:00:00+00:00", 1_800_000_000.0),
    (None, None), ("", None), ("yesterday", None), (True, None),
])
def test_epoch_reads_numbers_and_iso_times(value: Any, seconds: float | None) -> None:
    assert epoch(value) == seconds
