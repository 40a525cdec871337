"""The ordered environment lock: waiters queue in the ledger in push order, newest wins.

A release asks for an environment's lock with its Step Functions task token and then waits on that
token, costing no state transitions. Ledger items (beside `lock#<environment>`, see `ledger`):

- `queue#<environment>`: the waiters in push order (`waiters`: release, repository, order) and a
  `version` every change is conditioned on, so two writers never both change the same queue.
- `wait#<environment>#<release id>`: the waiter's task token (its own item, never in a log line).
- `order#<release id>`: the release's place in push order: the push event's time, then the order in
  which releases first asked for a lock (a counter, `counter#order`), for pushes within one second.
- `newest#<environment>#<repository>`: the order of the last release of the repository that took
  the environment's lock. A release older than it would move the environment back to an older
  digest: it ends with `Superseded` and deploys nothing, unless its input asks for a rollback.

When the holder lets go (`release`), the lock is handed to the head of the queue: one conditional
put of the lock item decides who hands it off, so each waiter is resumed exactly once, however many
callers race. A newer digest of a repository supersedes the releases of that repository still
waiting for the dev lock (SendTaskFailure `Superseded`): a burst deploys its newest push.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core import edge
from podrelease.core.errors import InvalidRequest, Superseded

#: How many times a queue change is tried again when another writer changed the queue first.
QUEUE_WRITE_ATTEMPTS = 20
WAITER_RETENTION_SECONDS = 8 * 24 * 3600
#: Answers to SendTask* that mean the waiter no longer waits (its execution ended or was stopped).
GONE = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist", "ExecutionDoesNotExist"})
#: Environments whose waiters a newer digest of the same repository supersedes.
SUPERSEDE_WAITING = frozenset({"dev"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class LockRequest:
    action: str  # acquire | release
    environment: str
    release: dict[str, Any]
    task_token: str  # acquire: answered when the lock is this release's

    @classmethod
    def parse(cls, event: Any) -> LockRequest:
        body = edge.mapping(event, "lock")
        action = edge.action(body, ("acquire", "release"), "lock")
        release = edge.field(body, "release", dict, "lock")
        for name in ("id", "repository", "digest"):
            edge.field(release, name, str, "lock: release")
        environment = edge.field(body, "environment", str, "lock")
        if environment not in ("dev", "prod"):
            raise InvalidRequest(f"lock: unknown environment {environment!r} (expected dev or prod)")
        token = edge.field(body, "task_token", str, "lock") if action == "acquire" else ""
        return cls(action, environment, release, token)


class QueueConflict(Exception):
    """Another writer changed the queue between our read and our write."""


class LockQueue:
    """The ordered lock on a DynamoDB `Table` resource, resuming waiters through a Step Functions client."""

    def __init__(self, table: Any, sfn: Any, lease_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.table, self.sfn, self.lease_seconds, self.clock = table, sfn, lease_seconds, clock

    # --- reading ------------------------------------------------------------------------------------
    def _get(self, key: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def queue(self, environment: str) -> tuple[list[dict[str, Any]], int]:
        """The waiters in push order, and the queue's version (0: no queue item yet)."""
        item = self._get(f"queue#{environment}") or {}
        return [dict(w) for w in item.get("waiters", [])], int(item.get("version", 0))

    def holder(self, environment: str) -> dict[str, Any] | None:
        """The lock item while its lease runs; None when the lock is free or its lease ran out."""
        item = self._get(f"lock#{environment}")
        return item if item and int(item.get("expires_at", 0)) >= int(self.clock()) else None

    def order_of(self, release: dict[str, Any]) -> str:
        """The release's place in push order (assigned once; the same answer on every call)."""
        known = self._get(f"order#{release['id']}")
        if known:
            return str(known["order"])
        count = self.table.update_item(Key={"pk": "counter#order"}, UpdateExpression="ADD n :one",
                                       ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW")["Attributes"]["n"]
        order = f"{release.get('time') or ''}#{int(count):012d}"
        try:
            self.table.put_item(Item={"pk": f"order#{release['id']}", "order": order,
                                      "expires_at": int(self.clock() + WAITER_RETENTION_SECONDS)},
                                ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return str(self._get(f"order#{release['id']}")["order"])  # type: ignore[index]
        return order

    def _newer_live(self, environment: str, release: dict[str, Any], order: str) -> str | None:
        """The newer release of the repository that already took this environment, if any."""
        mark = self._get(f"newest#{environment}#{release['repository']}")
        if mark and str(mark["order"]) > order and mark.get("release") != release["id"]:
            return str(mark["release"])
        return None

    # --- acquiring ------------------------------------------------------------------------------------
    def acquire(self, environment: str, release: dict[str, Any], task_token: str) -> dict[str, Any]:
        """Take the lock now (its task is answered at once) or queue for it (answered on hand-off).

        Raises Superseded when a newer release of the repository already took the environment or
        waits for it, unless the release is a rollback."""
        rollback = bool(release.get("rollback"))
        order = self.order_of(release)
        held = self.holder(environment)
        if held is not None and held.get("holder") == release["id"]:  # a retried acquire of a lock it holds
            self.sfn.send_task_success(taskToken=task_token, output=json.dumps(
                {"environment": environment, "holder": release["id"], "expires_at": int(held["expires_at"])}))
            return {"environment": environment, "release": release["id"], "order": order, "handed_to": release["id"]}
        newer = None if rollback else self._newer_live(environment, release, order)
        if newer:
            msg = (f"{environment} already took release {newer}, a newer push of {release['repository']}: "
                   f"release {release['id']} ({release['digest']}) would move it back to an older digest; "
                   "ask for a rollback to do that")
            raise Superseded(msg)
        self.table.put_item(Item={"pk": f"wait#{environment}#{release['id']}", "task_token": task_token,
                                  "expires_at": int(self.clock() + WAITER_RETENTION_SECONDS)})
        entry = {"release": release["id"], "repository": release["repository"], "digest": release["digest"],
                 "order": order, "rollback": rollback}
        superseded = self._enqueue(environment, entry)
        for older in superseded:
            self._fail(environment, older, f"release {release['id']} ({release['digest']}) is a newer push of "
                                            f"{release['repository']} waiting for the {environment} lock; the newest deploys")
        handed = self.hand_off(environment)
        waiters, _ = self.queue(environment)
        position = next((i for i, w in enumerate(waiters) if w["release"] == release["id"]), None)
        return {"environment": environment, "release": release["id"], "order": order, "handed_to": handed,
                "queued_at": position, "superseded": [w["release"] for w in superseded]}

    def _enqueue(self, environment: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Put `entry` in the queue in push order; returns the older waiters of its repository it superseded."""
        for _ in range(QUEUE_WRITE_ATTEMPTS):
            waiters, version = self.queue(environment)
            mine = [w for w in waiters if w["release"] == entry["release"]]
            others = [w for w in waiters if w["release"] != entry["release"]]
            same = [w for w in others if w["repository"] == entry["repository"]]
            superseded: list[dict[str, Any]] = []
            if environment in SUPERSEDE_WAITING and not entry["rollback"]:
                newer = [w for w in same if str(w["order"]) > entry["order"]]
                if newer:
                    msg = (f"release {newer[-1]['release']} ({newer[-1]['digest']}), a newer push of {entry['repository']}, "
                           f"waits for the {environment} lock: release {entry['release']} would deploy an older digest")
                    if mine:
                        self._write_queue(environment, others, version)
                    raise Superseded(msg)
                superseded = [w for w in same if not w.get("rollback")]
                others = [w for w in others if w not in superseded]
            if mine and not superseded:
                return []  # already queued (a retried acquire): keep its place
            waiters = sorted([*others, entry], key=lambda w: str(w["order"]))
            try:
                self._write_queue(environment, waiters, version)
            except QueueConflict:
                continue
            return superseded
        msg = f"the {environment} queue kept changing under {QUEUE_WRITE_ATTEMPTS} attempts to join it"
        raise RuntimeError(msg)

    def _write_queue(self, environment: str, waiters: list[dict[str, Any]], version: int) -> None:
        condition = "attribute_not_exists(pk)" if version == 0 else "version = :v"
        values = {} if version == 0 else {":v": version}
        try:
            self.table.put_item(Item={"pk": f"queue#{environment}", "waiters": waiters, "version": version + 1},
                                ConditionExpression=condition, **({"ExpressionAttributeValues": values} if values else {}))
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise QueueConflict from exc
            raise

    # --- releasing and handing off ---------------------------------------------------------------------
    def release(self, environment: str, release_id: str) -> bool:
        """Let go of the lock if `release_id` holds it (True when it did), then hand it to the next waiter."""
        try:
            self.table.delete_item(Key={"pk": f"lock#{environment}"}, ConditionExpression="holder = :rid",
                                   ExpressionAttributeValues={":rid": release_id})
            released = True
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            released = False
        self.hand_off(environment)
        return released

    def hand_off(self, environment: str) -> str | None:
        """Give a free lock to the head of the queue and resume it; the release resumed, if any."""
        while True:
            if self.holder(environment) is not None:
                return None
            waiters, _ = self.queue(environment)
            if not waiters:
                return None
            head = waiters[0]
            now = int(self.clock())
            try:
                self.table.put_item(
                    Item={"pk": f"lock#{environment}", "holder": head["release"], "environment": environment,
                          "acquired_at": now, "expires_at": now + self.lease_seconds},
                    ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                    ExpressionAttributeValues={":now": now},
                )
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    return None  # someone else handed it off (or took it) first
                raise
            self._dequeue(environment, head["release"])
            if self._resume(environment, head):
                return str(head["release"])
            self.table.delete_item(Key={"pk": f"lock#{environment}"}, ConditionExpression="holder = :rid",
                                   ExpressionAttributeValues={":rid": head["release"]})

    def _dequeue(self, environment: str, release_id: str) -> None:
        for _ in range(QUEUE_WRITE_ATTEMPTS):
            waiters, version = self.queue(environment)
            if all(w["release"] != release_id for w in waiters):
                return
            try:
                self._write_queue(environment, [w for w in waiters if w["release"] != release_id], version)
            except QueueConflict:
                continue
            return

    def _resume(self, environment: str, head: dict[str, Any]) -> bool:
        """Answer the new holder's task; False when it no longer waits (or is superseded: then it is told so)."""
        if not head.get("rollback"):
            mark = self._get(f"newest#{environment}#{head['repository']}")
            if mark and str(mark["order"]) > str(head["order"]) and mark.get("release") != head["release"]:
                self._fail(environment, head, f"{environment} already took release {mark['release']}, a newer push of "
                                              f"{head['repository']}: this release would move it back to an older digest")
                return False
        token = (self._get(f"wait#{environment}#{head['release']}") or {}).get("task_token")
        if not token:
            return False
        output = {"environment": environment, "holder": head["release"], "queued": True,
                  "expires_at": int(self.clock()) + self.lease_seconds}
        try:
            self.sfn.send_task_success(taskToken=token, output=json.dumps(output))
        except ClientError as exc:
            if _code(exc) in GONE:
                return False
            raise
        self.mark_newest(environment, head)
        return True

    def mark_newest(self, environment: str, entry: dict[str, Any]) -> None:
        self.table.put_item(Item={"pk": f"newest#{environment}#{entry['repository']}", "release": entry["release"],
                                  "order": entry["order"], "digest": entry.get("digest", "")})

    def _fail(self, environment: str, waiter: dict[str, Any], cause: str) -> None:
        token = (self._get(f"wait#{environment}#{waiter['release']}") or {}).get("task_token")
        if not token:
            return
        try:
            self.sfn.send_task_failure(taskToken=token, error=Superseded.__name__,
                                       cause=json.dumps({"errorType": Superseded.__name__, "errorMessage": cause}))
        except ClientError as exc:
            if _code(exc) not in GONE:
                raise
