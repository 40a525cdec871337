"""No release ends without its cleanup: what runs when an execution ended where its failure path
could not run.

An execution stopped by hand (`ABORTED`), one past its `TimeoutSeconds` (`TIMED_OUT`), or one failed
by an error `States.ALL` cannot catch (`FAILED` without a release record) ran neither Record nor
Abort. The rule on the state machine's status-change events calls `Cleanup.run`, which does what the
failure path does, from the execution's last known state (its history):

1-2. `undo_stopped` (shared with `podrelease abort`): the deploy function's `abort` action, the
   failure path's own Task (stops the CodeDeploy deployment in flight, points the alias back, moves
   fleet traffic back, releases the locks), then withdraws an approval still pending, so its links
   refuse (`ApprovalStore.withdraw`, given by the caller);
3. records the release as FAILED with the ending as its error, and notifies (once).

Exactly once: a `cleanup#<release id>` item in the ledger. Steps 1-2 are idempotent and are repeated
by a retried event until the item is marked `done` by a conditional update; only the call that
marks it publishes the email and counts the ending.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core import edge, metrics
from podrelease.core.errors import InvalidRequest, ReleaseError
from podrelease.release.ledger import Ledger
from podrelease.release.summary import summarize

#: The endings this cleans up after (the rule's pattern names the same).
ENDINGS = ("ABORTED", "TIMED_OUT", "FAILED")
#: The error a recorded ending carries, per status (a FAILED execution's own error is kept).
ENDING_ERRORS = {"ABORTED": "ReleaseStopped", "TIMED_OUT": "ReleaseTimedOut", "FAILED": "ReleaseFailedUncaught"}
CLEANUP_PREFIX = "cleanup#"
CLEANUP_RETENTION_SECONDS = 400 * 24 * 3600


class CleanupFailed(ReleaseError):
    """The undo (the deploy function's abort) failed; the event is retried, the cleanup is not marked done."""

    transient = True


@dataclass(frozen=True)
class Ending:
    """A `Step Functions Execution Status Change` event of the release state machine."""

    execution_arn: str
    name: str
    status: str
    error: str
    cause: str

    @classmethod
    def parse(cls, event: Any, where: str = "cleanup") -> Ending:
        body = edge.mapping(event, where)
        if body.get("source") != "aws.states" or body.get("detail-type") != "Step Functions Execution Status Change":
            msg = f"{where}: not a Step Functions execution status change event"
            raise InvalidRequest(msg)
        detail = edge.field(body, "detail", dict, where)
        return cls(
            execution_arn=edge.field(detail, "executionArn", str, where),
            name=edge.field(detail, "name", str, where),
            status=edge.field(detail, "status", str, where),
            error=str(detail.get("error") or ""),
            cause=str(detail.get("cause") or ""),
        )


def last_state(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """The execution's last state that knew its release (a state's input or output in the history);
    an empty state when no state ever had it (the event was refused before Normalize finished)."""
    found: dict[str, Any] = {}
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn, includeExecutionData=True):
        for event in page.get("events", []):
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
            text = details.get("input", details.get("output"))
            try:
                state = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                continue
            if isinstance(state, dict) and isinstance(state.get("release"), dict):
                found = state
    return found


def undo_stopped(lambda_client: Any, deploy_function: str, withdraw: Callable[[str, str, float], object], release_id: str,
                 state: dict[str, Any], reason: str, now: float) -> dict[str, Any]:
    """Undo a release that stopped (or is being stopped) without its failure path: the one entry point
    of the status-change rule's cleanup and of `podrelease abort`. Runs the failure path's Abort Task
    (the deploy function's `abort` action with the execution's `state`: in-flight deployments rolled
    back, alias and fleet traffic moved back, locks released), then withdraws an approval still pending
    so its links refuse. Idempotent. The deploy function's reply, with `approval_withdrawn`."""
    reply = lambda_client.invoke(FunctionName=deploy_function, Payload=json.dumps({"action": "abort", "state": state}).encode())
    body = json.loads(reply["Payload"].read() or b"null")
    if reply.get("FunctionError"):
        error = body.get("errorType", "Unhandled") if isinstance(body, dict) else "Unhandled"
        message = body.get("errorMessage", "") if isinstance(body, dict) else ""
        msg = f"the deploy function's abort failed with {error} ({message}); nothing was marked done, so it can be run again"
        raise CleanupFailed(msg)
    undone = dict(body) if isinstance(body, dict) else {}
    return undone | {"approval_withdrawn": withdraw(release_id, reason, now) is not None}


@dataclass(frozen=True)
class Cleanup:
    """The clients and names one stack's cleanup uses (injected)."""

    sfn: Any
    lambda_client: Any
    sns: Any
    ledger: Ledger
    withdraw: Callable[[str, str, float], object]  # approval store's withdraw (approval is not release's to import)
    deploy_function: str
    notify_topic_arn: str

    def _claim(self, ending: Ending, now: float) -> dict[str, Any]:
        """The cleanup item of the release, created on first sight."""
        table = self.ledger.table
        key = {"pk": CLEANUP_PREFIX + ending.name}
        try:
            table.put_item(Item={**key, "release_id": ending.name, "status": "cleaning", "ending": ending.status,
                                 "started_at": int(now), "expires_at": int(now + CLEANUP_RETENTION_SECONDS)},
                           ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return dict(table.get_item(Key=key, ConsistentRead=True).get("Item") or {})

    def _mark_done(self, release_id: str, now: float) -> bool:
        try:
            self.ledger.table.update_item(
                Key={"pk": CLEANUP_PREFIX + release_id},
                UpdateExpression="SET #s = :done, done_at = :now",
                ConditionExpression="#s <> :done",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": "done", ":now": int(now)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def run(self, ending: Ending, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        if ending.status not in ENDINGS:
            return {"release_id": ending.name, "cleaned": False, "reason": f"{ending.status} needs no cleanup"}
        if self.ledger.get_release(ending.name) is not None and self.ledger.table.get_item(
                Key={"pk": CLEANUP_PREFIX + ending.name}, ConsistentRead=True).get("Item") is None:
            return {"release_id": ending.name, "cleaned": False, "reason": "the failure path recorded it"}
        claim = self._claim(ending, now)
        if claim.get("status") == "done":
            return {"release_id": ending.name, "cleaned": False, "reason": "already cleaned up"}
        state = last_state(self.sfn, ending.execution_arn)
        undone = undo_stopped(self.lambda_client, self.deploy_function, self.withdraw, ending.name, state,
                              f"the release ended {ending.status}", now)
        withdrawn = bool(undone.pop("approval_withdrawn"))
        error = {"Error": ending.error if ending.status == "FAILED" and ending.error else ENDING_ERRORS[ending.status],
                 "Cause": ending.cause or f"the execution ended {ending.status} without running its failure path; "
                                           "cleaned up by the status-change rule"}
        summary = summarize("FAILED", state | {"error": error}, ending.name)
        summary["record"] |= {"ending": ending.status, "cleaned_up_at": int(now)}
        self.ledger.record_release(summary["record"]["release_id"], summary["record"], now)
        first = self._mark_done(ending.name, now)
        if first:
            metrics.count(metrics.UNCLEAN_ENDINGS, "ending", ending.status)
            self.sns.publish(TopicArn=self.notify_topic_arn, Subject=summary["subject"],
                             Message=summary["message"] + f"\nEnding: {ending.status} (cleaned up after the execution ended)")
        return {"release_id": ending.name, "cleaned": True, "notified": first, "undone": undone,
                "approval_withdrawn": withdrawn, "error": error["Error"]}
