"""The release's callback waits through the local runtime: the deploy stage and the locks.

GIVEN the local runtime (the shipped template and ASL, CodeDeploy events through EventBridge, one-time
schedules through EventBridge Scheduler)
WHEN releases deploy, lose their events, queue for a lock, or arrive older than what runs
THEN each ends as the release semantics say, and its history shows it waited without polling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.runtime import WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name
from tests.statemachine.conftest import (
    history,
    ledger_item,
    live_image,
    module_runtime,
    wait_for,
    wait_for_state,
)
from tests.statemachine.test_release_paths import _approve, _push_signed

pytestmark = pytest.mark.statemachine


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    yield from module_runtime(tmp_path_factory.mktemp("callbacks"), approval_timeout=60)


def entered(env: LocalRuntime, name: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history(env, name) if "stateEnteredEventDetails" in e]


def deployed_releases(env: LocalRuntime, group: str) -> list[str]:
    cd = env.client("codedeploy")
    app = env.stack.outputs["CodeDeployApplication"]
    return [cd.get_deployment(deploymentId=d)["deploymentInfo"]["description"]
            for d in cd.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]]


def _queued(env: LocalRuntime, name: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        waiters = ledger_item(env, "queue#dev").get("waiters", {}).get("L", [])
        if any(w["M"]["release"]["S"] == name for w in waiters):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never queued for the dev lock")


def _start(env: LocalRuntime, name: str, digest: str, pushed: str, **extra: Any) -> None:
    event = {"version": "0", "id": name, "detail-type": "ECR Image Action", "source": "aws.ecr",
             "account": env.stack.outputs["ReleaseStateMachineArn"].split(":")[4], "region": "us-east-1", "time": pushed,
             "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": WORKLOAD_REPOSITORY, "image-digest": digest}}
    env.client("stepfunctions").start_execution(stateMachineArn=env.stack.outputs["ReleaseStateMachineArn"], name=name,
                                               input=json.dumps(event | extra))


def test_the_deploy_stage_waits_on_callbacks_not_a_poll_loop(env: LocalRuntime) -> None:
    digest = _push_signed(env, "7.0.1")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "RequestApproval", timeout=180)
    states = entered(env, name)
    # THEN the dev deployment (canary and fleet) was one wait, answered by its events and schedules
    # (DevWindowOpen?: dev has no deploy window in this policy, one Choice and on)
    assert states == ["Normalize", "Rollback?", "AcquireDevLock", "Verify", "DevWindowOpen?", "DeployDev", "DevDeployed?",
                      "WatchDev", "DevDeployed?", "ReleaseDevLock", "RequestApproval"]
    assert live_image(env, "dev").endswith(digest)
    assert env.emulation.scheduler.fired > 0  # the fleet's steps came from one-time schedules
    assert _approve(env, name, "reject") == 200
    assert wait_for(env, name)["error"] == "ApprovalRejected"


def test_lost_events_and_schedules_still_end_the_release_through_the_backstop(env: LocalRuntime) -> None:
    normalize = env.stack.functions["NormalizeFunction"]
    saved = dict(normalize.environment)
    normalize.environment["WATCH_BACKSTOP_SECONDS"] = "5"
    env.emulation.runtime.stop()  # execution environments start afresh, with that environment
    env.emulation.codedeploy.drop_state_change_events = True
    env.emulation.scheduler.drop_due_schedules = True
    try:
        digest = _push_signed(env, "7.0.2")
        name = execution_name(WORKLOAD_REPOSITORY, digest)
        wait_for_state(env, name, "RequestApproval", timeout=240)
        states = entered(env, name)
        assert "CheckDev" in states  # the backstop's status check ended the wait
        assert states[states.index("RequestApproval") - 1] == "ReleaseDevLock"
        assert live_image(env, "dev").endswith(digest)
        assert any("lost (test)" in text for _, source, _, text in env.emulation.timeline.entries if source == "eventbridge")
        assert _approve(env, name, "reject") == 200
        assert wait_for(env, name)["error"] == "ApprovalRejected"
    finally:
        env.emulation.codedeploy.drop_state_change_events = False
        env.emulation.scheduler.drop_due_schedules = False
        normalize.environment.clear()
        normalize.environment.update(saved)
        env.emulation.runtime.stop()


def test_waiters_queue_a_newer_push_supersedes_and_the_hand_off_resumes_the_next(env: LocalRuntime) -> None:
    # GIVEN the dev lock is held (as by a secret rotation, or a release in flight)
    table = env.client("dynamodb")
    ledger = env.stack.outputs["LedgerTableName"]
    table.put_item(TableName=ledger, Item={"pk": {"S": "lock#dev"}, "holder": {"S": "maintenance"},
                                            "expires_at": {"N": str(int(time.time()) + 3600)}})
    older = _push_signed(env, "7.0.3")
    b = execution_name(WORKLOAD_REPOSITORY, older)
    _queued(env, b)
    # WHEN a newer digest of the repository arrives while the older one waits
    newer = _push_signed(env, "7.0.4")
    c = execution_name(WORKLOAD_REPOSITORY, newer)
    # THEN the older release ends Superseded and deploys nothing; the newer one waits in its place
    execution = wait_for(env, b)
    assert execution["error"] == "Superseded"
    assert c in execution["cause"]
    _queued(env, c)
    assert not any(f"release={b}" in d for d in deployed_releases(env, "dev"))
    assert ledger_item(env, f"release#{b}")["error"]["S"] == "Superseded"
    # WHEN the holder lets go through the lock function, THEN the lock is handed to the newer release
    lock = env.client("lambda").invoke(FunctionName=env.stack.physical["LockFunction"], Payload=json.dumps(
        {"action": "release", "environment": "dev", "release": {"id": "maintenance", "repository": "-", "digest": "-"}}).encode())
    assert json.loads(lock["Payload"].read())["released"] is True
    wait_for_state(env, c, "RequestApproval", timeout=180)
    states = entered(env, c)
    assert states.count("AcquireDevLock") == 1  # it waited without a transition, then was resumed
    assert live_image(env, "dev").endswith(newer)
    assert _approve(env, c, "reject") == 200
    assert wait_for(env, c)["error"] == "ApprovalRejected"


def test_an_older_digest_never_replaces_a_newer_one_unless_a_person_asks(env: LocalRuntime) -> None:
    # GIVEN dev runs a newly pushed digest
    digest = _push_signed(env, "7.0.5")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "RequestApproval", timeout=180)
    assert _approve(env, name, "reject") == 200
    wait_for(env, name)
    assert live_image(env, "dev").endswith(digest)
    older = env.stack.parameters["BootstrapImageUri"].rsplit("@", 1)[1]  # signed, pushed before it
    # WHEN the push event of the older digest arrives late
    _start(env, "late-older-push", older, "2020-01-01T00:00:00Z")
    execution = wait_for(env, "late-older-push")
    # THEN it ends Superseded, deploys nothing, and dev still runs the newer digest
    assert execution["error"] == "Superseded"
    assert "older digest" in execution["cause"]
    assert "Verify" not in entered(env, "late-older-push")
    assert live_image(env, "dev").endswith(digest)
    # WHEN a person asks for that digest as a rollback, THEN it deploys
    _start(env, "rollback-older", older, "2020-01-01T00:00:00Z", rollback={"environment": "dev", "requested_by": "test"})
    wait_for_state(env, "rollback-older", "RequestApproval", timeout=180)
    assert live_image(env, "dev").endswith(older)
    assert _approve(env, "rollback-older", "reject") == 200
    assert wait_for(env, "rollback-older")["error"] == "ApprovalRejected"
