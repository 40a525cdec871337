"""The record handler (the release's last state) against moto (see handler_world.py): the release
item it leaves in the ledger and the notification it composes, for each outcome."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from podrelease.release.ledger import RELEASE_RETENTION_SECONDS
from tests.conftest import import_handler
from tests.integration.handler_world import (
    DIGEST,
    RELEASE,
    RELEASE_ID,
    REPOSITORY,
    STATE_MACHINE_ARN,
    Context,
    item,
    push_event,
)


@pytest.fixture
def record(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STATE_MACHINE_ARN", STATE_MACHINE_ARN)
    return import_handler("record")


VERIFIED = {"verified": True, "repository": REPOSITORY, "digest": DIGEST, "signatures": [], "refusals": [], "ignored": []}
DEV_FAILED = {
    "Error": "DeploymentFailed",
    "Cause": json.dumps(
        {
            "errorMessage": "dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503",
            "errorType": "DeploymentFailed",
            "stackTrace": [],
        }
    ),
}
SUCCEEDED_DEPLOYMENT = {"id": "d-1", "status": "Succeeded", "environment": "dev"}

RECORD_CASES = [
    pytest.param(
        "FAILED",
        {
            "release": RELEASE,
            "locks": {"dev": {"holder": RELEASE_ID}},
            "evidence": VERIFIED,
            "dev": {"deployment": {"id": "d-ABC", "status": "InProgress"}},
            "error": DEV_FAILED,
        },
        RELEASE_ID,
        {
            "outcome": "FAILED",
            "release_id": RELEASE_ID,
            "repository": REPOSITORY,
            "digest": DIGEST,
            "tag": RELEASE["tag"],
            "stages_done": ["verify"],
            "stopped_at": "deploy dev",
            "error": "DeploymentFailed",
            "cause": "dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503",
            "pushed_at": RELEASE["time"],
            "evidence": VERIFIED,
        },
        f"podinfo sha256:7e7e7e7e7e7e failed [{RELEASE_ID}]",
        f"Release {RELEASE_ID} failed.\n"
        f"Image: podinfo@{DIGEST}\n"
        "Stages completed: verify\n"
        "Stopped at: deploy dev\n"
        "Reason: DeploymentFailed: dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503\n"
        "Nothing from this release is left serving traffic: in-flight deployments were rolled back.\n"
        f"Correlation id: {RELEASE_ID}",
        id="failed in dev",
    ),
    pytest.param(
        "REJECTED",
        push_event(repository="other-service")
        | {"error": {"Error": "ForeignEvent", "Cause": "repository 'other-service' is not watched"}},
        "rejected-0123456789abcdef",
        {
            "outcome": "REJECTED",
            "release_id": "rejected-0123456789abcdef",
            "repository": None,
            "digest": None,
            "stages_done": [],
            "stopped_at": "normalize",
            "error": "ForeignEvent",
            "cause": "repository 'other-service' is not watched",
        },
        "podinfo unknown digest refused [rejected-0123456789abcdef]",
        "Release rejected-0123456789abcdef refused.\n"
        "Image: ?@unknown digest\n"
        "Stages completed: none\n"
        "Stopped at: normalize\n"
        "Reason: ForeignEvent: repository 'other-service' is not watched\n"
        "Nothing was deployed: the event was refused before any stage ran.\n"
        "Correlation id: rejected-0123456789abcdef",
        id="refused event",
    ),
    pytest.param(
        "SUCCEEDED",
        {
            "release": RELEASE,
            "evidence": VERIFIED,
            "dev": {"deployment": SUCCEEDED_DEPLOYMENT},
            "approval": {"decision": "approve"},
            "promotion": {"digest": DIGEST},
            "prod": {"deployment": SUCCEEDED_DEPLOYMENT | {"environment": "prod"}},
        },
        RELEASE_ID,
        {
            "outcome": "SUCCEEDED",
            "release_id": RELEASE_ID,
            "repository": REPOSITORY,
            "digest": DIGEST,
            "tag": RELEASE["tag"],  # prod's tag beside its digest (live#prod)
            "stages_done": ["verify", "deploy dev", "approval", "promote", "deploy prod"],
            "stopped_at": None,
            "error": None,
            "cause": None,
            "pushed_at": RELEASE["time"],
            "evidence": VERIFIED,
        },
        f"podinfo sha256:7e7e7e7e7e7e released to prod [{RELEASE_ID}]",
        f"Release {RELEASE_ID} released to prod.\n"
        f"Image: podinfo@{DIGEST}\n"
        "Stages completed: verify, deploy dev, approval, promote, deploy prod\n"
        f"Correlation id: {RELEASE_ID}",
        id="released",
    ),
]


@pytest.mark.parametrize(("outcome", "state", "name", "expected", "subject", "message"), RECORD_CASES)
def test_record_writes_the_release_item_and_composes_the_notification(
    record: Any, ledger: Any, outcome: str, state: dict[str, Any], name: str, expected: dict[str, Any], subject: str, message: str
) -> None:
    # WHEN the Record state runs with the whole execution state
    reply = record.handler({"outcome": outcome, "state": state, "execution_name": name}, Context())
    # THEN the reply carries the record and the exact notification the Notify state publishes
    assert reply == {"record": expected, "subject": subject, "message": message}
    # AND the ledger holds the release's item, kept for the retention period
    stored = item(ledger, f"release#{expected['release_id']}")
    assert stored is not None
    assert stored == expected | {
        "pk": f"release#{expected['release_id']}",
        "recorded_at": stored["recorded_at"],
        "expires_at": stored["recorded_at"] + RELEASE_RETENTION_SECONDS,
    }
    assert abs(int(stored["recorded_at"]) - time.time()) < 60


def test_record_twice_leaves_one_item(record: Any, ledger: Any) -> None:
    event = {"outcome": "FAILED", "state": {"release": RELEASE, "error": DEV_FAILED}, "execution_name": RELEASE_ID}
    first = record.handler(event, Context())
    again = record.handler(event, Context())
    assert first == again
    items = ledger.scan()["Items"]
    assert [i["pk"] for i in items] == [f"release#{RELEASE_ID}"]
