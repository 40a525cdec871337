"""Operators' actions in the ledger: blocked digests and the log of who did what (`podrelease`).

Items in the ledger table (beside `podrelease.release.ledger`'s locks and release records):

- `block#<digest>`: the digest may not be released (`DigestBlocked` at the release's first state)
  until someone unblocks it; who blocked it, when and why.
- `action#<epoch ms>#<random>`: one operator action (block, unblock, rollback, abort, rerelease, ...):
  who (the caller's ARN), what, on which release or digest, when. Kept as long as release records.

Unblocking deletes the block item and is itself an action, so the history of a digest's blocks
stays readable after it is unblocked.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from podrelease.core.errors import DigestBlocked, InvalidRequest
from podrelease.release.events import DIGEST_RE
from podrelease.release.ledger import RELEASE_RETENTION_SECONDS

BLOCK_PREFIX = "block#"
ACTION_PREFIX = "action#"


def _digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        msg = f"{digest[:80]!r} is not a digest (sha256:<64 hex>)"
        raise InvalidRequest(msg)
    return digest


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item with its Decimals as ints (every number here is a whole second or count)."""
    return {k: int(v) if type(v).__name__ == "Decimal" else v for k, v in item.items()}


@dataclass
class Actions:
    """Blocks and the action log on the ledger's DynamoDB `Table` resource (injected)."""

    table: Any

    # --- the action log ---------------------------------------------------------------------------
    def record(self, action: str, who: str, now: float | None = None, **details: Any) -> dict[str, Any]:
        """Append one operator action; `details` (release id, digest, environment, ...) as given."""
        now = time.time() if now is None else now
        item = {
            **{k: v for k, v in details.items() if v not in (None, "")},
            "pk": f"{ACTION_PREFIX}{int(now * 1000):015d}#{secrets.token_hex(4)}",
            "action": action,
            "who": who,
            "at": int(now),
            "expires_at": int(now + RELEASE_RETENTION_SECONDS),
        }
        self.table.put_item(Item=item)
        return item

    def history(self, release_id: str | None = None, digest: str | None = None) -> list[dict[str, Any]]:
        """Every recorded action (of one release or digest when given), oldest first."""
        items = [_plain(i) for i in _scan(self.table, ACTION_PREFIX)]
        if release_id:
            items = [i for i in items if i.get("release_id") == release_id]
        if digest:
            items = [i for i in items if i.get("digest") == digest]
        return sorted(items, key=lambda i: str(i["pk"]))

    # --- blocked digests ---------------------------------------------------------------------------
    def block(self, digest: str, who: str, reason: str = "", now: float | None = None) -> dict[str, Any]:
        """Block `digest` (idempotent: blocking it again keeps the first block) and record who did."""
        now = time.time() if now is None else now
        item = {"pk": BLOCK_PREFIX + _digest(digest), "digest": digest, "blocked_by": who, "blocked_at": int(now),
                "reason": reason or "blocked by an operator"}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        self.record("block", who, now, digest=digest, reason=reason)
        return self.blocked(digest) or item

    def unblock(self, digest: str, who: str, now: float | None = None) -> bool:
        """Lift the block on `digest`; True when there was one. Recorded either way."""
        old = self.table.delete_item(Key={"pk": BLOCK_PREFIX + _digest(digest)}, ReturnValues="ALL_OLD").get("Attributes")
        self.record("unblock", who, now, digest=digest, was_blocked=bool(old))
        return bool(old)

    def blocked(self, digest: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": BLOCK_PREFIX + digest}, ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def is_blocked(self, digest: str) -> bool:
        return self.blocked(digest) is not None

    def refuse_if_blocked(self, digest: str) -> None:
        """DigestBlocked naming who blocked `digest`, when and why; nothing when it is not blocked."""
        block = self.blocked(digest)
        if block:
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(block.get("blocked_at", 0))))
            msg = (f"{digest} is blocked by {block.get('blocked_by', '?')} since {at} ({block.get('reason', '')}); "
                   "`podrelease unblock` it to release it")
            raise DigestBlocked(msg)

    def all_blocked(self) -> list[dict[str, Any]]:
        return sorted((_plain(i) for i in _scan(self.table, BLOCK_PREFIX)), key=lambda i: int(i.get("blocked_at", 0)))


def _scan(table: Any, prefix: str) -> list[dict[str, Any]]:
    """Every item whose key starts with `prefix` (a scan: the ledger is small, and this is the operator's CLI)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"FilterExpression": Attr("pk").begins_with(prefix), "ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def scan_prefix(table: Any, prefix: str) -> list[dict[str, Any]]:
    """The ledger's items of one kind (`release#`, `approval#`, `lock#`, ...), numbers as ints."""
    return [_plain(i) for i in _scan(table, prefix)]
