"""The four DORA metrics, computed from the ledger's release records alone (`compute`: pure, no AWS,
no clock), and published on a schedule (`publish_from_ledger`, the dora function: Powertools Metrics).

A release record (`podrelease.release.summary`) says how a release ended (`outcome`), which stages
it completed (`stages_done`), when it was recorded (`recorded_at`, epoch seconds), when its image
was pushed (`pushed_at`, the push event's ISO time) and, for an operator's rollback, what it rolled
back (`rollback.replaces`: the release it took out of prod). Over a window [since, until):

- **deployments**: releases that completed "deploy prod" (rollbacks counted apart, in `rollbacks`);
  **deployment frequency** is deployments per day of the window.
- **lead time** (push -> prod): the median of `recorded_at - pushed_at` over the deployments.
- **change failure rate**: failed changes / prod changes, where a prod change is a deployment or a
  release that failed while deploying prod (its canary rolled back), and a failed change is such a
  failed release or a deployment an operator later rolled back.
- **time to restore**: the median, over operator rollbacks in the window, of the time from the
  rolled-back deployment going live (its `recorded_at`) to the rollback's completion. (A canary
  rolled back by its alarm never held all of prod and is not counted here; it counts as a failure.)

A figure with nothing to compute it from is None, never 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from podrelease.core import metrics
from podrelease.core.times import epoch
from podrelease.release.actions import scan_prefix

DAY = 86400
PROD_STAGE = "deploy prod"


@dataclass(frozen=True)
class Dora:
    since: int
    until: int
    deployments: int
    rollbacks: int
    deployment_frequency_per_day: float
    lead_time_seconds: float | None
    change_failure_rate: float | None
    time_to_restore_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _deployed_to_prod(record: Mapping[str, Any]) -> bool:
    return record.get("outcome") == "SUCCEEDED" and PROD_STAGE in (record.get("stages_done") or [])


def _rollback_of(record: Mapping[str, Any]) -> str | None:
    rollback = record.get("rollback")
    return str(rollback.get("replaces") or "") or None if isinstance(rollback, Mapping) else None


def _is_rollback(record: Mapping[str, Any]) -> bool:
    return isinstance(record.get("rollback"), Mapping)


def compute(records: Iterable[Mapping[str, Any]], since: float, until: float) -> Dora:
    """The DORA metrics of the releases recorded in [since, until)."""
    window = [r for r in records if (at := epoch(r.get("recorded_at"))) is not None and since <= at < until]
    by_id = {str(r.get("release_id")): r for r in window}
    deployments = [r for r in window if _deployed_to_prod(r) and not _is_rollback(r)]
    rollbacks = [r for r in window if _deployed_to_prod(r) and _is_rollback(r)]
    failed_in_prod = [r for r in window if r.get("outcome") == "FAILED" and r.get("stopped_at") == PROD_STAGE]

    lead_times = [at - pushed for r in deployments
                  if (at := epoch(r.get("recorded_at"))) is not None and (pushed := epoch(r.get("pushed_at"))) is not None]
    rolled_back = {rid for r in rollbacks if (rid := _rollback_of(r)) in by_id and _deployed_to_prod(by_id[rid])}
    restores = [float(epoch(r["recorded_at"]) or 0) - float(epoch(by_id[rid]["recorded_at"]) or 0)
                for r in rollbacks if (rid := _rollback_of(r)) in rolled_back]
    changes = len(deployments) + len(failed_in_prod)
    failures = len(failed_in_prod) + len(rolled_back)
    days = max((until - since) / DAY, 1e-9)
    return Dora(
        since=int(since),
        until=int(until),
        deployments=len(deployments),
        rollbacks=len(rollbacks),
        deployment_frequency_per_day=round(len(deployments) / days, 4),
        lead_time_seconds=statistics.median(lead_times) if lead_times else None,
        change_failure_rate=round(failures / changes, 4) if changes else None,
        time_to_restore_seconds=statistics.median(restores) if restores else None,
    )


#: Metric name -> (the figure, its unit) as published; template.yaml's releases dashboard shows them.
PUBLISHED = {
    metrics.DORA_DEPLOYMENTS: ("deployments", "Count"),
    metrics.DORA_DEPLOYMENT_FREQUENCY: ("deployment_frequency_per_day", "Count"),
    metrics.DORA_LEAD_TIME: ("lead_time_seconds", "Seconds"),
    metrics.DORA_CHANGE_FAILURE_RATE: ("change_failure_rate", "Count"),
    metrics.DORA_TIME_TO_RESTORE: ("time_to_restore_seconds", "Seconds"),
}


def publish(figures: Dora) -> dict[str, float]:
    """Each figure as one metric (EMF); a figure that is None (nothing to compute it from) is not
    published, so the dashboard shows a gap rather than a 0 that never happened. What was published."""
    published: dict[str, float] = {}
    for name, (field, unit) in PUBLISHED.items():
        value = getattr(figures, field)
        if value is not None:
            metrics.gauge(name, float(value), unit)
            published[name] = float(value)
    return published


def publish_from_ledger(table: Any, now: float, window_days: int) -> dict[str, Any]:
    """The figures of the `window_days` before `now` from the ledger's release records, published."""
    figures = compute(scan_prefix(table, "release#"), now - window_days * DAY, now)
    return figures.to_dict() | {"published": publish(figures)}
