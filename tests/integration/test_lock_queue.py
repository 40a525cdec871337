"""The ordered lock (`podrelease.release.lockqueue.LockQueue`) on a moto table shaped like the template's.

GIVEN releases asking for an environment's lock with their task tokens
WHEN they queue, supersede each other, and the holder lets go (also many at once)
THEN the lock item, the queue item and the answers each waiting task got say exactly who holds the
environment, who waits in which order, and who was resumed or superseded, each exactly once.

Step Functions is `Tasks`, a task-token store with the service's answer rules (the first answer
wins; a closed task answers TaskTimedOut), so the tests read back who was resumed and how.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from podrelease.core.errors import Superseded
from podrelease.release.lockqueue import LockQueue
from tests.conftest import FAKE_CREDENTIALS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

LEASE = 600


class Tasks:
    """Task tokens as Step Functions answers them: once each, TaskTimedOut after (or once closed)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str, Any]] = {}
        self.closed: set[str] = set()
        self.lock = threading.Lock()

    def _answer(self, token: str, outcome: tuple[str, Any]) -> None:
        with self.lock:
            if token in self.answers or token in self.closed:
                raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "closed"}}, "SendTask")
            self.answers[token] = outcome

    def send_task_success(self, taskToken: str, output: str) -> None:
        self._answer(taskToken, ("success", json.loads(output)))

    def send_task_failure(self, taskToken: str, error: str, cause: str) -> None:
        self._answer(taskToken, (error, json.loads(cause)["errorMessage"]))

    def resumed(self) -> list[str]:
        return [token for token, (kind, _) in self.answers.items() if kind == "success"]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Iterator[Any]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield ledger_table("ledger")


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


def queue_of(table: Any, tasks: Tasks) -> LockQueue:
    return LockQueue(table, tasks, LEASE)


def release(rid: str, repository: str = "podinfo", time: str = "2026-11-27T15:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": rid, "repository": repository, "digest": "sha256:" + rid.encode().hex().ljust(64, "0")[:64], "time": time} | extra


def holder(table: Any, environment: str = "dev") -> str | None:
    item = table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item")
    return str(item["holder"]) if item else None


def waiting(table: Any, environment: str = "dev") -> list[str]:
    item = table.get_item(Key={"pk": f"queue#{environment}"}, ConsistentRead=True).get("Item") or {}
    return [str(w["release"]) for w in item.get("waiters", [])]


def test_a_free_lock_is_taken_at_once(table: Any, tasks: Tasks) -> None:
    queue_of(table, tasks).acquire("dev", release("a"), "token-a")
    assert holder(table) == "a"
    assert waiting(table) == []
    assert tasks.answers["token-a"][0] == "success"


def test_waiters_queue_in_push_order_and_each_is_resumed_on_hand_off(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a", "one"), "token-a")
    # GIVEN c (pushed later) asks before b (pushed earlier): other repositories, nothing superseded
    locks.acquire("dev", release("c", "two", time="2026-11-27T15:00:09Z"), "token-c")
    locks.acquire("dev", release("b", "three", time="2026-11-27T15:00:05Z"), "token-b")
    assert waiting(table) == ["b", "c"]
    assert tasks.resumed() == ["token-a"]  # nobody waiting was answered while the lock was held
    # WHEN the holder lets go, THEN the lock goes to the earliest push, which alone is resumed
    assert locks.release("dev", "a") is True
    assert holder(table) == "b"
    assert waiting(table) == ["c"]
    assert tasks.resumed() == ["token-a", "token-b"]
    assert tasks.answers["token-b"][1]["holder"] == "b"
    locks.release("dev", "b")
    assert holder(table) == "c"
    assert tasks.resumed() == ["token-a", "token-b", "token-c"]
    locks.release("dev", "c")
    assert holder(table) is None


def test_a_newer_push_supersedes_the_older_one_waiting_for_dev(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a", time="2026-11-27T15:00:00Z"), "token-a")
    locks.acquire("dev", release("b", time="2026-11-27T15:00:01Z"), "token-b")
    locks.acquire("dev", release("c", time="2026-11-27T15:00:02Z"), "token-c")
    assert waiting(table) == ["c"]
    kind, cause = tasks.answers["token-b"]
    assert kind == "Superseded"
    assert "release c" in cause
    locks.release("dev", "a")
    assert holder(table) == "c"
    assert tasks.answers["token-c"][0] == "success"


def test_an_older_push_arriving_after_a_newer_waiter_is_superseded_itself(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a", time="2026-11-27T15:00:00Z"), "token-a")
    locks.acquire("dev", release("c", time="2026-11-27T15:00:09Z"), "token-c")
    with pytest.raises(Superseded, match="release c"):
        locks.acquire("dev", release("b", time="2026-11-27T15:00:05Z"), "token-b")
    assert waiting(table) == ["c"]
    assert "token-b" not in tasks.answers


def test_same_second_pushes_keep_the_order_they_arrived_in(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a"), "token-a")
    locks.acquire("dev", release("b"), "token-b")
    locks.acquire("dev", release("c"), "token-c")  # the same second: the later arrival is the newer push
    assert tasks.answers["token-b"][0] == "Superseded"
    assert waiting(table) == ["c"]


def test_an_environment_never_moves_back_to_an_older_digest_unless_asked(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("prod", release("c", time="2026-11-27T15:00:09Z"), "token-c")  # the newer one took prod
    locks.release("prod", "c")
    with pytest.raises(Superseded, match="older digest"):
        locks.acquire("prod", release("b", time="2026-11-27T15:00:05Z"), "token-b")
    assert holder(table, "prod") is None
    # a person asks for the older digest: a rollback is let through
    locks.acquire("prod", release("b-rollback", time="2026-11-27T15:00:05Z", rollback=True), "token-rb")
    assert holder(table, "prod") == "b-rollback"
    assert tasks.answers["token-rb"][0] == "success"


def test_a_waiter_that_became_older_than_the_environment_is_told_on_hand_off(table: Any, tasks: Tasks) -> None:
    """prod queues do not supersede (each waiter was approved), but hand-off never moves prod back."""
    locks = queue_of(table, tasks)
    locks.acquire("prod", release("x", "other"), "token-x")
    locks.acquire("prod", release("b", time="2026-11-27T15:00:05Z"), "token-b")
    locks.acquire("prod", release("c", time="2026-11-27T15:00:09Z"), "token-c")
    assert waiting(table, "prod") == ["b", "c"]
    locks.mark_newest("prod", {"release": "d", "repository": "podinfo", "order": "2026-11-27T15:00:10Z#999"})
    locks.release("prod", "x")
    assert tasks.answers["token-b"][0] == "Superseded"
    assert tasks.answers["token-c"][0] == "Superseded"
    assert holder(table, "prod") is None


def test_hand_off_skips_a_waiter_whose_execution_ended(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a", "one"), "token-a")
    locks.acquire("dev", release("b", "two", time="2026-11-27T15:00:01Z"), "token-b")
    locks.acquire("dev", release("c", "three", time="2026-11-27T15:00:02Z"), "token-c")
    tasks.closed.add("token-b")  # b's execution was stopped while it waited
    locks.release("dev", "a")
    assert holder(table) == "c"
    assert waiting(table) == []
    assert tasks.resumed() == ["token-a", "token-c"]


def test_a_retried_acquire_keeps_its_place_and_answers_its_new_token(table: Any, tasks: Tasks) -> None:
    locks = queue_of(table, tasks)
    locks.acquire("dev", release("a", "one"), "token-a")
    locks.acquire("dev", release("b", "two", time="2026-11-27T15:00:01Z"), "token-b1")
    locks.acquire("dev", release("c", "three", time="2026-11-27T15:00:02Z"), "token-c")
    locks.acquire("dev", release("b", "two", time="2026-11-27T15:00:01Z"), "token-b2")  # its wait timed out: asks again
    assert waiting(table) == ["b", "c"]
    locks.release("dev", "a")
    assert holder(table) == "b"
    assert "token-b1" not in tasks.answers
    assert tasks.answers["token-b2"][0] == "success"


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _atomic_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each DynamoDB item call atomic, as DynamoDB makes it: moto's in-process table does not lock, so
    two threads' conditional writes could both pass their condition. The races between calls (read
    the queue, then write the lock) stay as they are."""
    from moto.dynamodb.models import DynamoDBBackend

    guard = threading.RLock()
    for method in ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "transact_write_items"):
        original = getattr(DynamoDBBackend, method)

        def atomic(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with guard:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, method, atomic)


def test_racing_acquires_and_releases_resume_every_release_exactly_once(
    table: Any, tasks: Tasks, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve releases of twelve repositories ask at once, then every holder lets go while the
    others race to hand off: at every moment one holder, and each release resumed exactly once."""
    _atomic_items(monkeypatch)
    count = 12
    releases = [release(f"r{i:02d}", f"repo{i}", time=f"2026-11-27T15:00:{i:02d}Z") for i in range(count)]

    def ask(i: int) -> None:
        own = boto3.resource("dynamodb").Table(table.name)
        LockQueue(own, tasks, LEASE).acquire("dev", releases[i], f"token-{i}")

    _in_threads(count, ask)
    assert len(tasks.resumed()) == 1
    assert sorted([*waiting(table), str(holder(table))]) == sorted(r["id"] for r in releases)
    order = []
    for _ in range(count):
        current = holder(table)
        assert current is not None
        order.append(current)

        def let_go(i: int, current: str = current) -> None:
            own = boto3.resource("dynamodb").Table(table.name)
            locks = LockQueue(own, tasks, LEASE)
            if i == 0:
                locks.release("dev", current)
            else:
                locks.hand_off("dev")

        _in_threads(4, let_go)
    assert holder(table) is None
    assert sorted(order) == sorted(r["id"] for r in releases)
    assert len(tasks.resumed()) == count
    assert all(kind == "success" for kind, _ in tasks.answers.values())
    assert order[1:] == sorted(order[1:])  # after the first taker, strictly in push order
