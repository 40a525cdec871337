"""The ledger: one DynamoDB table holding environment locks and release records.

Items (hash key `pk`, TTL attribute `expires_at`):

- `lock#<environment>`: the release holding the environment (`holder`), since when, until when.
  One release in flight per environment; a crashed release's lease runs out instead of blocking
  forever. `started`: the deployment its holder started there; `stopping`: an abort is undoing it.
- `release#<release id>`: the outcome of a release, its digest, the stage it stopped at and why.
- `approval#<release id>`: the pending approval (see `podrelease.approval.store`).
- `queue#<environment>`, `wait#...`, `order#...`, `newest#...`: the ordered lock's waiters
  (see `podrelease.release.lockqueue`); `watch#<environment>`: the deployment being watched and
  its task token (see `podrelease.release.watch`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core.errors import InvalidRequest, LockBusy
from podrelease.core.ledger_keys import live_key

RELEASE_RETENTION_SECONDS = 400 * 24 * 3600


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Ledger:
    """Locks and release records on a DynamoDB `Table` resource (injected)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # --- locks ------------------------------------------------------------------------------------
    def acquire_lock(self, environment: str, release_id: str, lease_seconds: int, now: float | None = None) -> dict[str, Any]:
        """Take `environment`'s lock for `release_id`, or raise LockBusy naming the holder.

        Idempotent: the holder taking its own lock again renews the lease.
        """
        now = time.time() if now is None else now
        item = {
            "pk": f"lock#{environment}",
            "holder": release_id,
            "environment": environment,
            "acquired_at": int(now),
            "expires_at": int(now + lease_seconds),
        }
        try:
            self.table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR holder = :rid OR expires_at < :now",
                ExpressionAttributeValues={":rid": release_id, ":now": int(now)},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            holder = self.table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item", {})
            msg = (
                f"{environment} is locked by release {holder.get('holder', '?')} until "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(int(holder.get('expires_at', 0))))}; "
                "this release waits for it"
            )
            raise LockBusy(msg) from exc
        return {"environment": environment, "holder": release_id, "expires_at": item["expires_at"]}

    def release_lock(self, environment: str, release_id: str) -> bool:
        """Release the lock if `release_id` holds it; True when it did. Idempotent."""
        try:
            self.table.delete_item(
                Key={"pk": f"lock#{environment}"},
                ConditionExpression="holder = :rid",
                ExpressionAttributeValues={":rid": release_id},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def lock(self, action: str, environment: str, release_id: str, lease_seconds: int) -> dict[str, Any]:
        """The lock function's two actions: `acquire` (the lock item) or `release` (whether it was held)."""
        if action == "acquire":
            return self.acquire_lock(environment, release_id, lease_seconds)
        if action == "release":
            return {"environment": environment, "released": self.release_lock(environment, release_id)}
        msg = f"unknown lock action {action!r} (expected acquire or release)"
        raise InvalidRequest(msg)

    def note_started(self, environment: str, release_id: str, deployment: dict[str, Any]) -> bool:
        """Keep the deployment `release_id` just started beside its lock (JSON in `started`), so an
        abort that cannot see it yet in the execution's history still finds it. False (nothing kept)
        when the release no longer holds the lock or an abort has fenced it (`fence`): the caller then
        undoes what it started. One item, conditional writes: with `fence`, one of the two sees the other."""
        try:
            self.table.update_item(
                Key={"pk": f"lock#{environment}"},
                UpdateExpression="SET started = :d",
                ConditionExpression="holder = :rid AND attribute_not_exists(stopping)",
                ExpressionAttributeValues={":d": json.dumps(deployment, sort_keys=True), ":rid": release_id},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def fence(self, environment: str, release_id: str) -> dict[str, Any] | None:
        """Mark `environment`'s lock as being undone for `release_id` (no start is kept after this:
        `note_started`) and return the lock item, with the deployment started under it (`started`,
        parsed) if any; None when the release does not hold the lock."""
        try:
            item = self.table.update_item(
                Key={"pk": f"lock#{environment}"},
                UpdateExpression="SET stopping = :yes",
                ConditionExpression="holder = :rid",
                ExpressionAttributeValues={":yes": True, ":rid": release_id},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        started = item.get("started")
        return dict(item) | {"started": json.loads(str(started)) if started else None}

    def lock_holder(self, environment: str) -> str | None:
        item = self.table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item")
        return str(item["holder"]) if item else None

    def watched_deployment(self, environment: str, release_id: str) -> dict[str, Any] | None:
        """The latest state of `release_id`'s deployment in `environment` kept by its watch
        (`podrelease.release.watch`), if it is the one watched there."""
        item = self.table.get_item(Key={"pk": f"watch#{environment}"}, ConsistentRead=True).get("Item")
        if not item or item.get("release") != release_id:
            return None
        return dict(json.loads(str(item["deployment"])))

    def end_watch(self, environment: str, release_id: str) -> dict[str, Any] | None:
        """Stop the watch of `release_id`'s deployment in `environment` (an abort is undoing it: no
        later tick may step it on) and return its latest state; None when it is not the one watched.
        The version moves on, so a tick in the middle of a step stores nothing (`watch.Watcher._store`)."""
        try:
            item = self.table.update_item(
                Key={"pk": f"watch#{environment}"},
                UpdateExpression="SET done = :aborted, version = version + :one",
                ConditionExpression="#r = :release AND done = :open",
                ExpressionAttributeNames={"#r": "release"},
                ExpressionAttributeValues={":aborted": "aborted", ":one": 1, ":release": release_id, ":open": False},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self.watched_deployment(environment, release_id)
        return dict(json.loads(str(item["deployment"])))

    # --- release records ----------------------------------------------------------------------------
    def record_release(self, release_id: str, record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        item = {
            **record,
            "pk": f"release#{release_id}",
            "release_id": release_id,
            "recorded_at": int(now),
            "expires_at": int(now + RELEASE_RETENTION_SECONDS),
        }
        self.table.put_item(Item=item)
        if record.get("outcome") == "SUCCEEDED" and record.get("digest"):  # prod runs it now (a rollback too)
            live = {k: record[k] for k in ("digest", "repository", "tag", "approved_by") if record.get(k)}
            self.table.put_item(Item={**live_key("prod"), **live, "release_id": release_id, "deployed_at": int(now)})
        return item

    def get_release(self, release_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": f"release#{release_id}"}, ConsistentRead=True).get("Item")
        return dict(item) if item else None
