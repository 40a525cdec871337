"""The ledger (`podrelease.release.ledger.Ledger`) on a moto DynamoDB table shaped like the template's.

GIVEN a lock state WHEN a release acquires, renews or releases an environment lock THEN the item in
the table (read back with get_item) holds exactly the expected holder and lease, or LockBusy names
the holder. Release records round-trip through `record_release` / `get_release`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from moto import mock_aws

from podrelease.core.errors import InvalidRequest, LockBusy
from podrelease.release.ledger import RELEASE_RETENTION_SECONDS, Ledger
from tests.conftest import FAKE_CREDENTIALS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REGION = "us-east-1"
NOW = 1_750_000_000  # 2025-06-15T15:06:40Z
LEASE = 600
A, B = "podinfo-aaaaaaaaaaaa-1111111111111111", "podinfo-bbbbbbbbbbbb-2222222222222222"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Iterator[Any]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield ledger_table("ledger")


def lock_item(table: Any, environment: str = "dev") -> dict[str, Any] | None:
    return table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item")


def test_acquire_writes_the_lock_item_for_the_holder(table: Any) -> None:
    # GIVEN a free environment WHEN release A acquires it
    out = Ledger(table).acquire_lock("dev", A, LEASE, now=NOW)
    # THEN the reply and the stored item name A with its lease
    assert out == {"environment": "dev", "holder": A, "expires_at": NOW + LEASE}
    assert lock_item(table) == {
        "pk": "lock#dev",
        "holder": A,
        "environment": "dev",
        "acquired_at": NOW,
        "expires_at": NOW + LEASE,
    }
    assert Ledger(table).lock_holder("dev") == A


def test_the_holder_acquiring_again_renews_its_lease(table: Any) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    # WHEN A acquires again later (a Lambda retry)
    out = ledger.acquire_lock("dev", A, LEASE, now=NOW + 100)
    # THEN the lease runs from the renewal
    assert out["expires_at"] == NOW + 100 + LEASE
    item = lock_item(table)
    assert item is not None
    assert (item["holder"], item["acquired_at"], item["expires_at"]) == (A, NOW + 100, NOW + 100 + LEASE)


@pytest.mark.parametrize("offset", [0, LEASE - 1, LEASE], ids=["at once", "just before expiry", "at expiry"])
def test_another_release_gets_lock_busy_naming_the_holder(table: Any, offset: int) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    # WHEN B tries while A's lease has not run out
    with pytest.raises(LockBusy) as info:
        ledger.acquire_lock("dev", B, LEASE, now=NOW + offset)
    # THEN the error names A and the lease's end, and the lock is unchanged
    assert str(info.value) == f"dev is locked by release {A} until 2025-06-15T15:16:40Z; this release waits for it"
    assert info.value.transient is True
    assert lock_item(table) == {
        "pk": "lock#dev",
        "holder": A,
        "environment": "dev",
        "acquired_at": NOW,
        "expires_at": NOW + LEASE,
    }


def test_an_expired_lease_can_be_taken_over(table: Any) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    # WHEN B asks after A's lease has run out (A crashed)
    out = ledger.acquire_lock("dev", B, LEASE, now=NOW + LEASE + 1)
    # THEN B holds the lock
    assert out == {"environment": "dev", "holder": B, "expires_at": NOW + LEASE + 1 + LEASE}
    assert ledger.lock_holder("dev") == B
    # AND A, coming back, is now the one kept out
    with pytest.raises(LockBusy, match=f"locked by release {B}"):
        ledger.acquire_lock("dev", A, LEASE, now=NOW + LEASE + 2)


def test_locks_of_different_environments_are_independent(table: Any) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    ledger.acquire_lock("prod", B, LEASE, now=NOW)
    assert (ledger.lock_holder("dev"), ledger.lock_holder("prod")) == (A, B)


def test_release_by_a_non_holder_returns_false_and_leaves_the_lock(table: Any) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    before = lock_item(table)
    assert ledger.release_lock("dev", B) is False
    assert lock_item(table) == before


def test_release_by_the_holder_removes_the_lock_and_is_idempotent(table: Any) -> None:
    ledger = Ledger(table)
    ledger.acquire_lock("dev", A, LEASE, now=NOW)
    # WHEN A releases twice
    first = ledger.release_lock("dev", A)
    second = ledger.release_lock("dev", A)
    # THEN the first removes the item and the second finds nothing to do
    assert (first, second) == (True, False)
    assert lock_item(table) is None
    assert ledger.lock_holder("dev") is None
    # AND B can now take it at once
    assert ledger.acquire_lock("dev", B, LEASE, now=NOW + 1)["holder"] == B


def test_release_of_a_never_taken_lock_returns_false(table: Any) -> None:
    assert Ledger(table).release_lock("prod", A) is False
    assert lock_item(table, "prod") is None


def test_the_lock_functions_actions_take_and_give_back_the_lock_and_refuse_any_other(table: Any) -> None:
    ledger = Ledger(table)
    # WHEN the lock function acquires THEN the reply is the lock, as acquire_lock answers it
    taken = ledger.lock("acquire", "dev", A, LEASE)
    assert (taken["holder"], lock_item(table)["holder"]) == (A, A)  # type: ignore[index]
    # AND an action it does not know changes nothing
    with pytest.raises(InvalidRequest, match=r"^unknown lock action 'steal' \(expected acquire or release\)$"):
        ledger.lock("steal", "dev", B, LEASE)
    assert ledger.lock_holder("dev") == A
    # AND release gives it back, once
    assert ledger.lock("release", "dev", A, LEASE) == {"environment": "dev", "released": True}
    assert ledger.lock("release", "dev", A, LEASE) == {"environment": "dev", "released": False}
    assert lock_item(table) is None


def test_a_release_record_round_trips(table: Any) -> None:
    ledger = Ledger(table)
    record = {
        "outcome": "FAILED",
        "repository": "podinfo",
        "digest": "sha256:" + "ab" * 32,
        "stages_done": ["verify"],
        "stopped_at": "deploy dev",
        "error": "DeploymentFailed",
        "cause": "rolled back",
    }
    # WHEN the outcome is recorded
    written = ledger.record_release(A, record, now=NOW)
    # THEN reading it back gives the record plus its key, id, time and retention
    expected = record | {
        "pk": f"release#{A}",
        "release_id": A,
        "recorded_at": NOW,
        "expires_at": NOW + RELEASE_RETENTION_SECONDS,
    }
    assert written == expected
    assert ledger.get_release(A) == expected
    assert ledger.get_release(B) is None


def test_recording_a_release_again_overwrites_it(table: Any) -> None:
    ledger = Ledger(table)
    ledger.record_release(A, {"outcome": "FAILED"}, now=NOW)
    ledger.record_release(A, {"outcome": "SUCCEEDED"}, now=NOW + 5)
    stored = ledger.get_release(A)
    assert stored is not None
    assert (stored["outcome"], stored["recorded_at"]) == ("SUCCEEDED", NOW + 5)
