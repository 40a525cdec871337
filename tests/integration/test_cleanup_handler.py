"""The cleanup handler (the target of the rule on the release state machine's status-change events)
against moto (see handler_world.py): what an execution that ended without its failure path leaves
behind once cleaned up: the record, the withdrawn approval, one email; and what it leaves alone.

moto runs no execution here, so the history is empty and the undo is the deploy function's `abort`
with an empty state; the undo itself (CodeDeploy, the fleet, the locks) runs on the local runtime in
the `stopped` demo scenario. The deploy function is the one thing stood in for: `DeployFunction`
answers `abort` as the real one does (what it stopped, which locks it released) or fails.
"""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from podrelease.approval.store import ApprovalStore
from podrelease.release.cleanup import CleanupFailed
from podrelease.release.ledger import Ledger
from tests.conftest import import_handler
from tests.integration.handler_world import ACCOUNT, EXECUTION_ARN, REGION, RELEASE_ID, STATE_MACHINE_ARN, Context, Starter, item

TOPIC = "podrel-notify"


class DeployFunction:
    """The deploy function's `abort`: releases the release's locks, as the real one does, or fails."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.fail = ledger, False
        self.aborts: list[Any] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:
        body = json.loads(Payload)
        self.aborts.append(body)
        if self.fail:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorType": "DeploymentFailed"}')}
        released = [env for env in ("dev", "prod") if self.ledger.release_lock(env, RELEASE_ID)]
        return {"Payload": io.BytesIO(json.dumps({"stopped": [], "locks_released": released}).encode())}


def ending(status: str = "ABORTED", **detail: Any) -> dict[str, Any]:
    return {"version": "0", "id": "e-1", "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
            "account": ACCOUNT, "region": REGION, "time": "2026-11-27T15:00:00Z", "resources": [EXECUTION_ARN],
            "detail": {"executionArn": EXECUTION_ARN, "stateMachineArn": STATE_MACHINE_ARN, "name": RELEASE_ID,
                       "status": status, "startDate": 1, "stopDate": 2, "input": "{}", "output": None,
                       "error": None, "cause": None} | detail}


@pytest.fixture
def world(starter: Starter, ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    starter.sfn.start_execution(stateMachineArn=STATE_MACHINE_ARN, name=RELEASE_ID, input="{}")
    topic = boto3.client("sns", region_name=REGION).create_topic(Name=TOPIC)["TopicArn"]
    monkeypatch.setenv("DEPLOY_FUNCTION", "podrel-deploy")
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", topic)
    app = import_handler("cleanup")
    deploy = DeployFunction(Ledger(ledger))
    object.__setattr__(app.cleanup, "lambda_client", deploy)
    app.deploy, app.topic = deploy, topic
    return app


def emails(app: Any) -> list[tuple[str, str]]:
    return [(n[2], n[1]) for n in sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[app.topic].sent_notifications]


def pending_approval(table: Any) -> None:
    ApprovalStore(table).create({"release_id": RELEASE_ID, "execution_arn": EXECUTION_ARN, "digest": "sha256:" + "7e" * 32,
                                 "status": "pending", "created_at": 1, "expires_at": 4102444800})


@pytest.mark.parametrize(("status", "error"), [("ABORTED", "ReleaseStopped"), ("TIMED_OUT", "ReleaseTimedOut")])
def test_a_stopped_or_timed_out_release_is_undone_withdrawn_recorded_and_notified_once(
        world: Any, ledger: Any, status: str, error: str) -> None:
    # GIVEN a release holding dev and waiting for its approval
    Ledger(ledger).acquire_lock("dev", RELEASE_ID, 7200)
    pending_approval(ledger)
    # WHEN its execution ends without its failure path
    reply = world.handler(ending(status), Context())
    # THEN the failure path's undo ran (the lock is free), the approval's links refuse, it is recorded, one email
    assert reply["cleaned"] is True
    assert reply["undone"] == {"stopped": [], "locks_released": ["dev"]}
    assert world.deploy.aborts == [{"action": "abort", "state": {}}]
    assert item(ledger, "lock#dev") is None
    approval = ApprovalStore(ledger).get(RELEASE_ID)
    assert approval is not None
    assert (approval["status"], approval["decided_by"]) == ("withdrawn", f"the release ended {status}")
    record = item(ledger, f"release#{RELEASE_ID}")
    assert record is not None
    assert (record["outcome"], record["error"], record["ending"]) == ("FAILED", error, status)
    sent = emails(world)
    assert len(sent) == 1
    assert sent[0][0] == f"podinfo unknown digest failed [{RELEASE_ID}]"
    assert f"Reason: {error}:" in sent[0][1]
    # AND the same event again (EventBridge delivers at least once) changes nothing and sends nothing
    again = world.handler(ending(status), Context())
    assert (again["cleaned"], again["reason"]) == (False, "already cleaned up")
    assert len(emails(world)) == 1
    assert len(world.deploy.aborts) == 1


def test_a_failed_release_that_recorded_itself_is_left_alone(world: Any, ledger: Any) -> None:
    Ledger(ledger).record_release(RELEASE_ID, {"outcome": "FAILED", "error": "DeploymentFailed"})
    reply = world.handler(ending("FAILED", error="DeploymentFailed"), Context())
    assert reply == {"release_id": RELEASE_ID, "cleaned": False, "reason": "the failure path recorded it"}
    assert world.deploy.aborts == []
    assert emails(world) == []
    assert item(ledger, f"release#{RELEASE_ID}")["error"] == "DeploymentFailed"


def test_a_failure_states_all_could_not_catch_keeps_its_own_error(world: Any, ledger: Any) -> None:
    reply = world.handler(ending("FAILED", error="States.Runtime", cause="an ErrorPath selected an object"), Context())
    assert reply["error"] == "States.Runtime"
    record = item(ledger, f"release#{RELEASE_ID}")
    assert (record["error"], record["cause"], record["ending"]) == ("States.Runtime", "an ErrorPath selected an object", "FAILED")


def test_an_undo_that_fails_is_not_marked_done_and_the_retry_finishes_it(world: Any, ledger: Any) -> None:
    world.deploy.fail = True
    # WHEN the deploy function's abort fails THEN the handler fails (EventBridge retries it), nothing is sent
    with pytest.raises(CleanupFailed):
        world.handler(ending(), Context())
    assert emails(world) == []
    assert item(ledger, f"cleanup#{RELEASE_ID}")["status"] == "cleaning"
    # AND the retry does the whole cleanup
    world.deploy.fail = False
    assert world.handler(ending(), Context())["cleaned"] is True
    assert len(emails(world)) == 1
    assert item(ledger, f"release#{RELEASE_ID}")["error"] == "ReleaseStopped"


@pytest.mark.parametrize("event", [
    {"source": "aws.ecr", "detail-type": "ECR Image Action", "detail": {}},
    ending() | {"detail": {"status": "ABORTED"}},
], ids=["another event", "no execution in the detail"])
def test_an_event_that_is_no_execution_ending_is_a_named_refusal(world: Any, event: dict[str, Any]) -> None:
    from podrelease.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        world.handler(event, Context())
    assert world.deploy.aborts == []
