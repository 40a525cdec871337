"""Events the starter, normalize, lock and record handlers do not accept, against moto (see
handler_world.py). The other handlers' refusals are beside their other tests (test_deploy_handler.py,
test_promote_handler.py, test_traffic_hook_handler.py)."""

from __future__ import annotations

from typing import Any

import pytest

from podrelease.core.errors import InvalidRequest
from tests.conftest import import_handler
from tests.integration.handler_world import (
    DIGEST,
    FAR_FUTURE,
    OTHER_RELEASE_ID,
    RELEASE,
    RELEASE_ID,
    REPOSITORY,
    Context,
    Starter,
    push_event,
)

# The state machine and the operator's runbook are each handler's only callers: an event they never
# send (an unknown action, a missing or mistyped field) is a defect, refused at the edge with
# InvalidRequest naming the field, before anything is read or written.

REFUSED = [
    pytest.param("lock", {"action": "steal", "environment": "dev", "release": RELEASE},
                 "lock: unknown action 'steal' (expected one of acquire, release)", id="lock unknown action"),
    pytest.param("lock", {"action": "release", "release": RELEASE}, "lock: the event has no 'environment'",
                 id="lock without environment"),
    pytest.param("lock", {"action": "acquire", "environment": "dev", "release": {"digest": DIGEST}},
                 "lock: release: the event has no 'id'", id="lock without release id"),
    pytest.param("lock", {"environment": "dev", "release": RELEASE}, "lock: the event has no 'action'", id="lock without action"),
    pytest.param("record", {"outcome": "MAYBE", "state": {"release": RELEASE}, "execution_name": RELEASE_ID},
                 "record: unknown outcome 'MAYBE' (expected one of SUCCEEDED, FAILED, REJECTED)", id="record unknown outcome"),
    pytest.param("record", {"outcome": "FAILED", "state": {"release": RELEASE}}, "record: the event has no 'execution_name'",
                 id="record without execution name"),
    pytest.param("record", {"outcome": "FAILED", "state": "gone", "execution_name": RELEASE_ID},
                 "record: 'state' must be dict, not str", id="record with a mistyped state"),
    pytest.param("normalize", {"event": push_event(), "execution_name": RELEASE_ID}, "normalize: the event has no 'execution'",
                 id="normalize without execution"),
    pytest.param("starter", {"action": "redeploy", "repository": REPOSITORY, "digest": DIGEST},
                 "starter: unknown action 'redeploy' (expected one of rerelease)", id="starter unknown action"),
    pytest.param("starter", {"action": "rerelease", "repository": REPOSITORY}, "starter: the event has no 'digest'",
                 id="starter rerelease without digest"),
    pytest.param("starter", {"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": "2"},
                 "starter: 'attempt' must be int, not str", id="starter rerelease with a mistyped attempt"),
    pytest.param("lock", ["acquire", "dev"], "lock: the event must be a JSON object, not list", id="lock given a list"),
]


@pytest.fixture
def refusing(ledger: Any, starter: Starter, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every handler of this file imported against the same moto account, with a lock already held."""
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    ledger.put_item(Item={"pk": "lock#dev", "holder": OTHER_RELEASE_ID, "environment": "dev", "acquired_at": 1,
                          "expires_at": FAR_FUTURE})
    return {name: import_handler(name) for name in ("lock", "record", "normalize")} | {"starter": starter.app}


@pytest.mark.parametrize(("name", "event", "message"), REFUSED)
def test_an_event_the_handler_does_not_accept_is_refused_and_changes_nothing(
    refusing: dict[str, Any], ledger: Any, starter: Starter, name: str, event: Any, message: str
) -> None:
    before = sorted(ledger.scan()["Items"], key=lambda i: i["pk"])
    # WHEN the handler gets an event no state of the release sends
    with pytest.raises(InvalidRequest) as info:
        refusing[name].handler(event, Context())
    # THEN it is refused, named
    assert str(info.value) == message
    # AND the ledger is exactly as it was (the held lock is still held), and no release started
    assert sorted(ledger.scan()["Items"], key=lambda i: i["pk"]) == before
    assert starter.executions() == []
