"""The approval records in the ledger table, on a DynamoDB `Table` resource (injected), as
`podrelease.release.ledger` keeps locks and release records in the same table.

`approval#<release id>`: task_token, execution_arn, digest, repository, image_uri, approvers,
evidence, dev, status (pending | approved | rejected | superseded | withdrawn), decided_by, decided_at,
decision_jti, votes (each person's vote: decision, subject, email, issuer, at, link, approver, comment,
block), voters (the provider subjects that voted: one vote each), refused (refused attempts: who, why, when),
callback (sending | delivered | task_gone | failed), callback_error, notified
(approver -> SNS message id), created_at, updated_at, expires_at (also the table's TTL attribute).

`approval-waiting#<repository>`: the release of the repository that waits for approval (the newest
to ask), so a newer one can supersede it.

Every vote and every decision is a conditional update on `status = pending`: once decided, later
ones change nothing; a person votes once (`voters`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from podrelease.core.ledger_keys import live_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podrelease.approval.tokens import Claims

PK_PREFIX = "approval#"
WAITING_PREFIX = "approval-waiting#"
PENDING, APPROVED, REJECTED, SUPERSEDED = "pending", "approved", "rejected", "superseded"
#: A pending approval whose release ended without deciding (stopped, timed out): its links refuse.
WITHDRAWN = "withdrawn"
#: Refused attempts kept on a record (the first ones: a signed-in stranger cannot grow it without end).
MAX_REFUSED = 20
# Step Functions' answers to SendTask* when the waiting task no longer exists.
TASK_GONE_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _storable(values: Mapping[str, Any]) -> dict[str, Any]:
    # DynamoDB wants Decimal, not float: round-trip through JSON once.
    return dict(json.loads(json.dumps(values, default=str), parse_float=Decimal))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(v) for v in value]
    return value


def _key(release_id: str) -> dict[str, str]:
    return {"pk": PK_PREFIX + release_id}


class ApprovalStore:
    """Approval records on the ledger's `Table` resource."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, release_id: str) -> dict[str, Any] | None:
        """The approval record of a release, read consistently, or None."""
        item = self.table.get_item(Key=_key(release_id), ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def live(self, environment: str) -> dict[str, Any] | None:
        """What runs in `environment` now, as the last release there recorded it, or None."""
        item = self.table.get_item(Key=live_key(environment), ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def create(self, record: Mapping[str, Any]) -> bool:
        """Store a new pending record; False when the release already has one."""
        try:
            self.table.put_item(Item=_storable({**record, "pk": PK_PREFIX + record["release_id"]}),
                                ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return False
        return True

    def refresh_task_token(
        self, release_id: str, execution_arn: str, digest: str, task_token: str, now: float
    ) -> dict[str, Any] | None:
        """Give a pending record of this execution and digest a new task token (the Task was retried);
        None when the record is decided or belongs to another execution or digest."""
        return self._update_if(
            Key=_key(release_id),
            UpdateExpression="SET task_token = :t, updated_at = :now",
            ConditionExpression="#s = :pending AND execution_arn = :exe AND digest = :dig",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":t": task_token, ":now": int(now), ":pending": PENDING, ":exe": execution_arn,
                                       ":dig": digest},
        )

    def _update_if(self, **update: Any) -> dict[str, Any] | None:
        """A conditional update returning the new record, or None when its condition did not hold."""
        try:
            out = self.table.update_item(**update, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return None
        return dict(_plain(out["Attributes"]))

    def mark_notified(self, release_id: str, approver: str, message_id: str) -> None:
        """Remember one approver's email, so a retry after a crash does not email them twice."""
        self.table.update_item(
            Key=_key(release_id),
            UpdateExpression="SET notified.#a = :m",
            ExpressionAttributeNames={"#a": approver},
            ExpressionAttributeValues={":m": message_id},
        )

    def vote(self, claims: Claims, vote: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """Append one person's `vote` (decision, who signed in, from which link, the comment) to a record
        still pending, unexpired and bound to the token's execution and digest, on which that person
        (provider subject) has not voted; the record with the vote, or None when any of that no longer holds."""
        return self._update_if(
            Key=_key(claims.rid),
            UpdateExpression="SET votes = list_append(if_not_exists(votes, :none), :vote), updated_at = :now "
            "ADD voters :voter",
            ConditionExpression="#s = :pending AND expires_at > :now AND execution_arn = :exe AND digest = :dig "
            "AND NOT contains(voters, :subject)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":now": int(now), ":pending": PENDING, ":exe": claims.exe, ":dig": claims.dig,
                                       ":none": [], ":vote": [_storable(vote)], ":voter": {vote["subject"]},
                                       ":subject": vote["subject"]},
        )

    def conclude(self, release_id: str, status: str, decided_by: str, jti: str, now: float) -> dict[str, Any] | None:
        """End a pending record as `status` (the votes reached the policy's numbers); the decided record,
        or None when it was no longer pending."""
        return self._update_if(
            Key=_key(release_id),
            UpdateExpression="SET #s = :s, decided_by = :by, decided_at = :now, decision_jti = :jti, "
            "#c = :sending, updated_at = :now",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status", "#c": "callback"},
            ExpressionAttributeValues={":s": status, ":by": decided_by, ":now": int(now), ":jti": jti,
                                       ":sending": "sending", ":pending": PENDING},
        )

    def note_refused(self, release_id: str, attempt: Mapping[str, Any], now: float) -> None:
        """Keep a refused attempt to decide (who, why, when) beside the votes; at most MAX_REFUSED."""
        self._update_if(
            Key=_key(release_id),
            UpdateExpression="SET refused = list_append(if_not_exists(refused, :none), :one), updated_at = :now",
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(refused) OR size(refused) < :max)",
            ExpressionAttributeValues={":none": [], ":one": [_storable(attempt)], ":now": int(now), ":max": MAX_REFUSED},
        )

    def supersede(self, release_id: str, by: str, now: float) -> dict[str, Any] | None:
        """End a pending record as superseded by `by`; the record, or None when it was not pending."""
        return self._update_if(
            Key=_key(release_id),
            UpdateExpression="SET #s = :sup, decided_by = :by, decided_at = :now, #c = :sending, updated_at = :now",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status", "#c": "callback"},
            ExpressionAttributeValues={":sup": SUPERSEDED, ":by": by, ":now": int(now), ":sending": "sending",
                                       ":pending": PENDING},
        )

    def withdraw(self, release_id: str, reason: str, now: float) -> dict[str, Any] | None:
        """End a pending record because its release ended (stopped, timed out) without a decision: every
        link refuses from now on. The record, or None when it was not pending (or there is none)."""
        return self._update_if(
            Key=_key(release_id),
            UpdateExpression="SET #s = :w, decided_by = :by, decided_at = :now, updated_at = :now",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":w": WITHDRAWN, ":by": reason, ":now": int(now), ":pending": PENDING},
        )

    def set_callback(self, release_id: str, state: str, error: str | None, now: float) -> None:
        """What became of telling Step Functions the decision (sending | delivered | task_gone | failed)."""
        values: dict[str, Any] = {":c": state, ":now": int(now)}
        expression = "SET #c = :c, updated_at = :now"
        if error:
            expression += ", callback_error = :e"
            values[":e"] = error
        self.table.update_item(
            Key=_key(release_id),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#c": "callback"},
            ExpressionAttributeValues=values,
        )

    def waiting(self, repository: str) -> str | None:
        """The release of `repository` that waits for approval, if any."""
        item = self.table.get_item(Key={"pk": WAITING_PREFIX + repository}, ConsistentRead=True).get("Item") or {}
        release_id = item.get("release_id")
        return release_id if isinstance(release_id, str) else None

    def pending_since(self, repository: str) -> float | None:
        """When the release of `repository` that waits for approval asked for it; None when none waits."""
        release_id = self.waiting(repository)
        record = self.get(release_id) if release_id else None
        if not record or record.get("status") != PENDING:
            return None
        return float(record.get("created_at", 0))

    def set_waiting(self, repository: str, release_id: str, now: float, expires_at: int) -> None:
        self.table.put_item(Item={"pk": WAITING_PREFIX + repository, "release_id": release_id, "updated_at": int(now),
                                  "expires_at": expires_at})


def callback_state(error_code: str) -> str:
    """The record's callback state after Step Functions refused a SendTask* call with `error_code`."""
    return "task_gone" if error_code in TASK_GONE_ERRORS else "failed"


def iso(ts: float) -> str:
    """A record's timestamp as the page and the email show it."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
