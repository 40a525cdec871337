"""The lock handler (an environment's ordered lock in the ledger) against moto (see handler_world.py):
the lock item it writes and deletes, the queue a release joins while another holds the lock, and
the task tokens it answers (Step Functions is test_lock_queue.Tasks, the service's answer rules)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError, InvalidRequest
from tests.conftest import import_handler
from tests.integration.handler_world import FAR_FUTURE, OTHER_RELEASE_ID, RELEASE, RELEASE_ID, Context, item
from tests.integration.test_lock_queue import Tasks


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
def lock(ledger: Any, monkeypatch: pytest.MonkeyPatch, tasks: Tasks) -> Any:
    monkeypatch.setenv("LOCK_LEASE_SECONDS", "600")
    module = import_handler("lock")
    module.locks.sfn = tasks
    return module


def lock_event(action: str, environment: str = "dev", release_id: str = RELEASE_ID) -> dict[str, Any]:
    event = {"action": action, "environment": environment, "release": RELEASE | {"id": release_id}}
    return event | ({"task_token": f"token-{release_id}"} if action == "acquire" else {})


def test_lock_acquire_writes_the_lock_item_with_the_configured_lease(lock: Any, ledger: Any, tasks: Tasks) -> None:
    before = int(time.time())
    lock.handler(lock_event("acquire"), Context())
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
    # AND the waiting task is answered at once with the lock
    kind, output = tasks.answers[f"token-{RELEASE_ID}"]
    assert (kind, output["holder"], output["environment"]) == ("success", RELEASE_ID, "dev")
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


def test_lock_held_by_another_release_queues_the_acquire_and_release_is_a_no_op(lock: Any, ledger: Any, tasks: Tasks) -> None:
    held = {
        "pk": "lock#dev",
        "holder": OTHER_RELEASE_ID,
        "environment": "dev",
        "acquired_at": 1750000000,
        "expires_at": FAR_FUTURE,
    }
    ledger.put_item(Item=held)
    # WHEN this release asks for the lock THEN it waits in the queue, its task not answered
    reply = lock.handler(lock_event("acquire"), Context())
    assert reply["queued_at"] == 0
    assert [w["release"] for w in item(ledger, "queue#dev")["waiters"]] == [RELEASE_ID]
    assert tasks.answers == {}
    # AND releasing it (e.g. from a confused retry) does not free another release's lock
    assert lock.handler(lock_event("release"), Context()) == {"environment": "dev", "released": False}
    assert item(ledger, "lock#dev") == held


def test_lock_whose_lease_ran_out_is_taken_over(lock: Any, ledger: Any, tasks: Tasks) -> None:
    ledger.put_item(
        Item={"pk": "lock#prod", "holder": OTHER_RELEASE_ID, "environment": "prod", "acquired_at": 1, "expires_at": 2}
    )
    reply = lock.handler(lock_event("acquire", "prod"), Context())
    assert reply["handed_to"] == RELEASE_ID
    assert tasks.answers[f"token-{RELEASE_ID}"][0] == "success"
    stored = item(ledger, "lock#prod")
    assert stored is not None
    assert (stored["holder"], stored["expires_at"] - stored["acquired_at"]) == (RELEASE_ID, 600)


def test_lock_acquire_without_a_task_token_is_refused(lock: Any, ledger: Any) -> None:
    event = lock_event("acquire")
    del event["task_token"]
    with pytest.raises(InvalidRequest, match="task_token"):
        lock.handler(event, Context())
    assert item(ledger, "lock#dev") is None


def test_lock_without_a_ledger_table_fails_at_import(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable LEDGER_TABLE is not set;"):
        import_handler("lock")
