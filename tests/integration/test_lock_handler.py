"""The lock handler (an environment's lock in the ledger) against moto (see handler_world.py): the
lock item it writes and deletes, and a lock another release holds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError, LockBusy
from tests.conftest import import_handler
from tests.integration.handler_world import FAR_FUTURE, OTHER_RELEASE_ID, RELEASE, RELEASE_ID, Context, item


@pytest.fixture
def lock(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LOCK_LEASE_SECONDS", "600")
    return import_handler("lock")


def lock_event(action: str, environment: str = "dev", release_id: str = RELEASE_ID) -> dict[str, Any]:
    return {"action": action, "environment": environment, "release": RELEASE | {"id": release_id}}


def test_lock_acquire_writes_the_lock_item_with_the_configured_lease(lock: Any, ledger: Any) -> None:
    before = int(time.time())
    reply = lock.handler(lock_event("acquire"), Context())
    stored = item(ledger, "lock#dev")
    assert stored is not None
    assert stored == {
        "pk": "lock#dev",
        "holder": RELEASE_ID,
        "environment": "dev",
        "acquired_at": stored["acquired_at"],
        "expires_at": stored["acquired_at"] + 600,
    }
    assert before <= stored["acquired_at"] <= int(time.time())
    assert reply == {"environment": "dev", "holder": RELEASE_ID, "expires_at": stored["expires_at"]}
    # AND prod is untouched
    assert item(ledger, "lock#prod") is None


def test_lock_release_deletes_the_item_and_a_second_release_changes_nothing(lock: Any, ledger: Any) -> None:
    lock.handler(lock_event("acquire"), Context())
    # WHEN the holder releases the lock, and the task is retried
    first = lock.handler(lock_event("release"), Context())
    again = lock.handler(lock_event("release"), Context())
    # THEN the item is gone, and the retry reports it held nothing
    assert item(ledger, "lock#dev") is None
    assert first == {"environment": "dev", "released": True}
    assert again == {"environment": "dev", "released": False}


def test_lock_held_by_another_release_makes_acquire_wait_and_release_a_no_op(lock: Any, ledger: Any) -> None:
    held = {
        "pk": "lock#dev",
        "holder": OTHER_RELEASE_ID,
        "environment": "dev",
        "acquired_at": 1750000000,
        "expires_at": FAR_FUTURE,
    }
    ledger.put_item(Item=held)
    # WHEN this release asks for the lock THEN LockBusy names the holder and its lease
    with pytest.raises(LockBusy) as info:
        lock.handler(lock_event("acquire"), Context())
    assert str(info.value) == f"dev is locked by release {OTHER_RELEASE_ID} until 2100-01-01T00:00:00Z; this release waits for it"
    # AND releasing it (e.g. from a confused retry) does not free another release's lock
    assert lock.handler(lock_event("release"), Context()) == {"environment": "dev", "released": False}
    assert item(ledger, "lock#dev") == held


def test_lock_whose_lease_ran_out_is_taken_over(lock: Any, ledger: Any) -> None:
    ledger.put_item(
        Item={"pk": "lock#prod", "holder": OTHER_RELEASE_ID, "environment": "prod", "acquired_at": 1, "expires_at": 2}
    )
    reply = lock.handler(lock_event("acquire", "prod"), Context())
    assert reply["holder"] == RELEASE_ID
    stored = item(ledger, "lock#prod")
    assert stored is not None
    assert (stored["holder"], stored["expires_at"] - stored["acquired_at"]) == (RELEASE_ID, 600)


def test_lock_without_a_ledger_table_fails_at_import(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable LEDGER_TABLE is not set;"):
        import_handler("lock")
