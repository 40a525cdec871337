"""A finished release as metrics (Powertools, EMF): what the record function emits beside the record.

- `ReleasesSucceeded`, or `ReleasesFailed` by `reason` (the named error);
- `Refusals` by `reason` when the release was refused (a verification failure or a refused event);
- `ReleaseDuration` (push to record) by `outcome`;
- `StageDuration` by `stage` (each Task state's time from entered to exited, from the execution's
  history, summed over its retries and polls);
- `ApprovalWait` (approval asked to decided), when the release was decided on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core import errors, metrics
from podrelease.core.times import epoch


def is_refusal(outcome: str, error: str | None) -> bool:
    """A refused event, or a refusal of the signature gate (any VerificationFailed)."""
    if outcome == "REJECTED":
        return True
    kind = getattr(errors, error or "", None)
    return isinstance(kind, type) and issubclass(kind, errors.VerificationFailed)


def stage_durations(history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds spent in each Task state (entered to exited), summed over its visits."""
    entered: dict[str, float] = {}
    spent: dict[str, float] = {}
    for event in history:
        kind = str(event.get("type", ""))
        stamp = epoch(event.get("timestamp"))
        if stamp is None:
            continue
        if kind == "TaskStateEntered":
            entered[str(event.get("stateEnteredEventDetails", {}).get("name", ""))] = stamp
        elif kind == "TaskStateExited":
            name = str(event.get("stateExitedEventDetails", {}).get("name", ""))
            if name in entered:
                spent[name] = spent.get(name, 0.0) + stamp - entered.pop(name)
    return spent


def emit(record: Mapping[str, Any], pushed_at: str, now: float, history: Iterable[Mapping[str, Any]] = (),
         approval: Mapping[str, Any] | None = None) -> None:
    """The metrics of one finished release (its ledger `record`)."""
    outcome, error = str(record.get("outcome")), record.get("error")
    if outcome == "SUCCEEDED":
        metrics.count(metrics.RELEASES_SUCCEEDED)
    else:
        metrics.count(metrics.RELEASES_FAILED, "reason", str(error or "unknown"))
        if is_refusal(outcome, error):
            metrics.count(metrics.REFUSALS, "reason", str(error))
    pushed = epoch(pushed_at)
    if pushed is not None:
        metrics.seconds(metrics.RELEASE_DURATION, now - pushed, "outcome", outcome)
    for stage, spent in sorted(stage_durations(history).items()):
        metrics.seconds(metrics.STAGE_DURATION, spent, "stage", stage)
    asked, decided = epoch((approval or {}).get("created_at")), epoch((approval or {}).get("decided_at"))
    if asked is not None and decided is not None:
        metrics.seconds(metrics.APPROVAL_WAIT, decided - asked)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """The execution's history events (without data); empty when Step Functions will not give it
    (the stage durations are then left out, the record is written all the same)."""
    try:
        return [event for page in sfn.get_paginator("get_execution_history").paginate(
            executionArn=execution_arn, includeExecutionData=False) for event in page.get("events", [])]
    except ClientError:
        return []
