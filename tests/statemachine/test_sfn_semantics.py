"""Step Functions semantics as AWS has them (local/sfn_aws.py), and what the shipped release does about them.

Each rule is shown on a tiny state machine created on the local runtime (tasks that wait for a
token send it to an SQS queue the test reads), then on the release itself where the rule changes
what a release does: a result over 256 KiB inside the dev lock window, a stop while the release
waits for approval (and the approval page afterwards), a task failure that carries no cause.

GIVEN the local runtime (moto's ASL engine with the AWS rules of local/sfn_aws.py)
WHEN a state machine hits the rule
THEN the execution ends as it would in an AWS account, and the release leaves no lock behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from local.demo import approval_link, decide
from local.runtime import ACCOUNT, APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name
from tests.statemachine.conftest import execution_arn, history, ledger_item, live_image, wait_for, wait_for_state

pytestmark = pytest.mark.statemachine

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-semantics"
OVER_256_KIB = "x" * (256 * 1024 + 1)


# --- helpers: tiny state machines ----------------------------------------------------------------
def _role(env: LocalRuntime) -> None:
    """The tiny state machines' role: they send to SQS (the local AWS checks it, as AWS does)."""
    iam = env.client("iam")
    name = ROLE.rsplit("/", 1)[1]
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=name, PolicyName="send", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": f"arn:aws:sqs:*:{ACCOUNT}:semantics-*"}]}))


def _start(env: LocalRuntime, name: str, states: dict[str, Any], start_at: str, payload: Any = None) -> str:
    _role(env)
    sfn = env.client("stepfunctions")
    machine = sfn.create_state_machine(name=f"semantics-{name}", roleArn=ROLE,
                                       definition=json.dumps({"StartAt": start_at, "States": states}))["stateMachineArn"]
    return str(sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload or {}))["executionArn"])


def _ended(env: LocalRuntime, arn: str, timeout: float = 90) -> dict[str, Any]:
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            return dict(execution)
        time.sleep(0.1)
    raise AssertionError(f"{arn} still RUNNING after {timeout}s")


def _events(env: LocalRuntime, arn: str) -> list[dict[str, Any]]:
    return list(env.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"])


def _entered(events: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def _history_final(env: LocalRuntime, arn: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The history once the execution's last event is written (ExecutionSucceeded/Failed/Aborted/TimedOut)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = _events(env, arn)
        if events and events[-1]["type"].startswith("Execution") and events[-1]["type"] != "ExecutionStarted":
            return events
        time.sleep(0.1)
    raise AssertionError(f"{arn} wrote no final history event in {timeout}s")


def _queue(env: LocalRuntime, name: str) -> str:
    return str(env.client("sqs").create_queue(QueueName=f"semantics-{name}")["QueueUrl"])


def _token(env: LocalRuntime, queue: str, timeout: float = 60) -> str:
    """The task token a `sqs:sendMessage.waitForTaskToken` state sent (its message body)."""
    sqs = env.client("sqs")
    deadline = time.time() + timeout
    while time.time() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            return str(messages[0]["Body"])
    raise AssertionError(f"no task token arrived on {queue} in {timeout}s")


def _wait_for_token(queue: str, timeout_seconds: int, catch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody.$": "$$.Task.Token"},
        "TimeoutSeconds": timeout_seconds, "End": True,
    }
    if catch:
        state |= {"Catch": catch}
        state.pop("End")
        state["Next"] = "Answered"
    return state


CAUGHT = {"Caught": {"Type": "Pass", "End": True}, "Other": {"Type": "Pass", "End": True}}


def _error_code(call: Any) -> str:
    try:
        call()
    except Exception as exc:  # botocore ClientError
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))
    return "accepted"


# --- rule 1: States.ALL does not catch States.Runtime ----------------------------------------------
@pytest.mark.parametrize("catches", [["States.ALL"], ["States.Runtime"]], ids=["States.ALL", "by-name"])
def test_states_runtime_is_neither_retried_nor_caught(env: LocalRuntime, catches: list[str]) -> None:
    queue = _queue(env, f"runtime-{catches[0].replace('.', '-')}")
    task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": queue, "MessageBody.$": "$.missing"},  # a path that selects nothing
            "Retry": [{"ErrorEquals": catches, "IntervalSeconds": 1, "MaxAttempts": 3}],
            "Catch": [{"ErrorEquals": catches, "ResultPath": "$.error", "Next": "Caught"}], "End": True}
    arn = _start(env, f"runtime-{catches[0].replace('.', '-')}", {"Send": task, **CAUGHT}, "Send")
    execution = _ended(env, arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Runtime"
    assert "$.missing" in execution["cause"]
    events = _history_final(env, arn)
    assert _entered(events) == ["Send"]  # the Catch never ran
    assert sum(e["type"] == "TaskFailed" for e in events) == 1  # nor did a retry


# --- rule 5 (and 1): States.DataLimitExceeded, caught only by name ---------------------------------
@pytest.mark.parametrize(("catch", "status", "entered"), [
    ([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Other"}], "FAILED", ["Send"]),
    ([{"ErrorEquals": ["States.DataLimitExceeded"], "ResultPath": "$.error", "Next": "Caught"},
      {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Other"}], "SUCCEEDED", ["Send", "Caught"]),
], ids=["States.ALL", "by-name"])
def test_an_input_over_256_kib_after_parameters_is_caught_only_by_name(
        env: LocalRuntime, catch: list[dict[str, Any]], status: str, entered: list[str]) -> None:
    name = f"datalimit-{len(catch)}"
    queue = _queue(env, name)
    task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": queue, "MessageBody": OVER_256_KIB}, "Catch": catch, "End": True}
    arn = _start(env, name, {"Send": task, **CAUGHT}, "Send")
    execution = _ended(env, arn)
    assert execution["status"] == status
    assert _entered(_history_final(env, arn)) == entered
    if status == "FAILED":
        assert execution["error"] == "States.DataLimitExceeded"
    else:
        assert json.loads(execution["output"])["error"]["Error"] == "States.DataLimitExceeded"
    sent = env.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert sent["ApproximateNumberOfMessages"] == "0"  # the task never ran


def test_a_state_output_over_256_kib_fails_the_execution(env: LocalRuntime) -> None:
    arn = _start(env, "big-output", {"Big": {"Type": "Pass", "Result": OVER_256_KIB, "End": True}}, "Big")
    execution = _ended(env, arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.DataLimitExceeded"


# --- rule 4: a Fail state's ErrorPath / CausePath must select a string ----------------------------
@pytest.mark.parametrize(("payload", "error", "cause_has"), [
    ({"e": "Broken", "c": "a text cause"}, "Broken", "a text cause"),
    ({"e": "Broken", "c": {"nested": "object"}}, "States.Runtime", "CausePath '$.c'"),
    ({"e": "Broken", "c": 42}, "States.Runtime", "CausePath '$.c'"),
    ({"e": "Broken", "c": None}, "States.Runtime", "CausePath '$.c'"),
    ({"e": 7, "c": "a text cause"}, "States.Runtime", "ErrorPath '$.e'"),
    ({"e": "Broken"}, "States.Runtime", "$.c"),
], ids=["string", "object", "number", "null", "error-number", "missing"])
def test_fail_state_paths_must_select_a_string(env: LocalRuntime, request: pytest.FixtureRequest, payload: dict[str, Any],
                                               error: str, cause_has: str) -> None:
    name = f"fail-{request.node.callspec.id}"
    arn = _start(env, name, {"Stop": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}}, "Stop", payload)
    execution = _ended(env, arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == error
    assert isinstance(execution["cause"], str)
    assert cause_has in execution["cause"]


# --- rules 2 and 3: StopExecution, and answers to a task that no longer waits ---------------------
def test_stop_execution_ends_a_task_token_wait_at_once(env: LocalRuntime) -> None:
    queue = _queue(env, "stop-wait")
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
    arn = _start(env, "stop-wait", {"Wait": _wait_for_token(queue, 600, catch), "Answered": {"Type": "Pass", "End": True},
                                    **CAUGHT}, "Wait")
    token = _token(env, queue)
    sfn = env.client("stepfunctions")
    assert _error_code(lambda: sfn.send_task_heartbeat(taskToken=token)) == "accepted"  # waiting, no HeartbeatSeconds

    sfn.stop_execution(executionArn=arn, error="OperatorStopped", cause="stopped by the test")
    execution = sfn.describe_execution(executionArn=arn)  # no polling: ABORTED when StopExecution returns

    assert execution["status"] == "ABORTED"
    assert (execution["error"], execution["cause"]) == ("OperatorStopped", "stopped by the test")
    events = _history_final(env, arn)
    assert events[-1]["type"] == "ExecutionAborted"
    assert _entered(events) == ["Wait"]  # no Catch, no Next
    assert not {e["type"] for e in events} & {"TaskTimedOut", "TaskFailed", "TaskSucceeded"}
    for answer in (lambda: sfn.send_task_success(taskToken=token, output="{}"),
                   lambda: sfn.send_task_failure(taskToken=token, error="Late", cause="too late"),
                   lambda: sfn.send_task_heartbeat(taskToken=token)):
        assert _error_code(answer) == "TaskTimedOut"
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"


def test_a_task_that_was_answered_or_timed_out_is_closed(env: LocalRuntime) -> None:
    sfn = env.client("stepfunctions")
    # answered: the first answer wins, every later one is TaskTimedOut
    answered_queue = _queue(env, "answered")
    answered = _start(env, "answered", {"Wait": _wait_for_token(answered_queue, 600)}, "Wait")
    token = _token(env, answered_queue)
    assert _error_code(lambda: sfn.send_task_success(taskToken=token, output="not json")) == "InvalidOutput"
    assert _error_code(lambda: sfn.send_task_success(taskToken=token, output='{"first": true}')) == "accepted"
    assert _error_code(lambda: sfn.send_task_success(taskToken=token, output='{"second": true}')) == "TaskTimedOut"
    assert _error_code(lambda: sfn.send_task_failure(taskToken=token, error="Late")) == "TaskTimedOut"
    execution = _ended(env, answered)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"first": True}
    # timed out: the state's TimeoutSeconds passed, the execution went on through its Catch
    timed_queue = _queue(env, "timed-out")
    catch = [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Caught"}]
    timed = _start(env, "timed-out", {"Wait": _wait_for_token(timed_queue, 1, catch), "Answered": {"Type": "Pass", "End": True},
                                      **CAUGHT}, "Wait")
    late = _token(env, timed_queue)
    assert _ended(env, timed)["status"] == "SUCCEEDED"
    assert _entered(_history_final(env, timed)) == ["Wait", "Caught"]
    assert _error_code(lambda: sfn.send_task_success(taskToken=late, output="{}")) == "TaskTimedOut"
    # a token no execution issued
    assert _error_code(lambda: sfn.send_task_success(taskToken="no-such-token", output="{}")) == "InvalidToken"


def test_stop_execution_ends_a_retry_back_off_at_once(env: LocalRuntime) -> None:
    missing_queue = f"{env.endpoint}/{ACCOUNT}/semantics-no-such-queue"
    task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": missing_queue, "MessageBody": "x"},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 600, "MaxAttempts": 2}], "End": True}
    arn = _start(env, "stop-retry", {"Send": task}, "Send")
    deadline = time.time() + 60
    while time.time() < deadline and not any(e["type"] == "TaskFailed" for e in _events(env, arn)):
        time.sleep(0.1)
    assert any(e["type"] == "TaskFailed" for e in _events(env, arn)), "the first attempt never failed"
    sfn = env.client("stepfunctions")

    sfn.stop_execution(executionArn=arn)

    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    events = _history_final(env, arn)
    assert events[-1]["type"] == "ExecutionAborted"
    assert sum(e["type"] == "TaskScheduled" for e in events) == 1  # the back-off ended without a retry


# --- the release ---------------------------------------------------------------------------------
def _push_signed(env: LocalRuntime, version: str) -> str:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version)
    env.pusher.sign_legacy(env.signing_key, image)
    return image.digest


def _prod_digests(env: LocalRuntime) -> set[str]:
    return {d["imageDigest"] for d in env.client("ecr").describe_images(repositoryName=PROD_REPOSITORY)["imageDetails"]}


def _outcome_mails(env: LocalRuntime, name: str) -> list[dict[str, Any]]:
    return [m for m in env.emulation.outbox.messages if m["to"] == "releases@example.com" and name in m["subject"]]


def test_release_catchers_and_fail_states_follow_the_aws_rules() -> None:
    """Static: every Catch ends with a lone States.ALL, preceded by a catcher naming States.DataLimitExceeded
    (States.ALL does not match it) that goes to the same place; every Fail state's CausePath is reached
    only through a Choice that sends a missing or non-string cause elsewhere."""
    states = json.loads((Path(__file__).resolve().parents[2] / "statemachines" / "release.asl.json").read_text())["States"]
    for name, state in states.items():
        catch = state.get("Catch")
        if not catch:
            continue
        last, before = catch[-1], catch[-2] if len(catch) > 1 else {}
        assert last["ErrorEquals"] == ["States.ALL"], name
        assert all("States.ALL" not in c["ErrorEquals"] for c in catch[:-1]), name
        assert before.get("ErrorEquals") == ["States.DataLimitExceeded"], f"{name}: no catcher names States.DataLimitExceeded"
        assert (before["Next"], before.get("ResultPath")) == (last["Next"], last.get("ResultPath")), name
    for name, state in states.items():
        if state["Type"] != "Fail" or "CausePath" not in state:
            continue
        path = state["CausePath"]
        into = {source: s for source, s in states.items()
                if name in {s.get("Next"), s.get("Default"), *(c.get("Next") for c in s.get("Choices", []) + s.get("Catch", []))}}
        assert into, name
        for source, choice in into.items():
            assert choice["Type"] == "Choice", f"{source} goes to {name} without checking {path}"
            rules = choice["Choices"]
            absent = next(i for i, r in enumerate(rules) if r.get("Variable") == path and r.get("IsPresent") is False)
            is_string = next(i for i, r in enumerate(rules) if r.get("Variable") == path and r.get("IsString") is True)
            assert absent < is_string, f"{source}: IsString on {path} before the IsPresent rule"
            assert rules[absent]["Next"] != name
            assert rules[is_string]["Next"] == name
            assert choice["Default"] != name


def test_release_with_a_verify_result_over_256_kib_runs_its_failure_path(env: LocalRuntime, tmp_path: Path) -> None:
    """On AWS a task result over 256 KiB is States.DataLimitExceeded, which States.ALL does not catch: without
    the named catcher the release would fail inside the dev lock window with the lock held, no record and
    no email. Verify's code is replaced for this test by one whose result is 300 KiB."""
    dev_before = live_image(env, "dev")
    verify = env.stack.functions["VerifyFunction"]
    saved = verify.code_dir
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return {'verified': True, 'padding': 'x' * 300_000}\n")
    verify.code_dir = tmp_path
    env.emulation.runtime.stop()  # execution environments start afresh, with that code
    try:
        digest = _push_signed(env, "7.1.0")
        name = execution_name(WORKLOAD_REPOSITORY, digest)
        execution = wait_for(env, name)
    finally:
        verify.code_dir = saved
        env.emulation.runtime.stop()
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.DataLimitExceeded"
    assert not ledger_item(env, "lock#dev"), "the dev lock is still held"
    entered = [e["stateEnteredEventDetails"]["name"] for e in history(env, name) if "stateEnteredEventDetails" in e]
    assert entered[-5:] == ["RecordFailure", "Abort", "NotifyFailure", "CauseIsText?", "ReleaseFailed"]
    assert "DeployDev" not in entered
    record = ledger_item(env, f"release#{name}")
    assert (record["outcome"]["S"], record["error"]["S"], record["stopped_at"]["S"]) == ("FAILED", "States.DataLimitExceeded", "verify")
    assert len(_outcome_mails(env, name)) == 1
    assert live_image(env, "dev") == dev_before


def test_release_stopped_while_waiting_for_approval(env: LocalRuntime) -> None:
    """StopExecution while the release waits for approval: ABORTED at once, nothing after RequestApproval
    runs, no lock is held, and the approval link then says the release is no longer waiting (410), not 500."""
    digest = _push_signed(env, "7.1.1")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "RequestApproval")
    link = approval_link(env, APPROVERS[0], name, timeout=60)
    assert link is not None, "no approval email arrived"
    sfn = env.client("stepfunctions")

    sfn.stop_execution(executionArn=execution_arn(env, name), error="OperatorStopped", cause="stopped by the test")

    assert sfn.describe_execution(executionArn=execution_arn(env, name))["status"] == "ABORTED"
    events = _history_final(env, execution_arn(env, name))
    assert events[-1]["type"] == "ExecutionAborted"
    assert _entered(events)[-1] == "RequestApproval"
    assert not ledger_item(env, "lock#dev")
    assert not ledger_item(env, "lock#prod")
    # and the status-change rule's cleanup withdraws its approval
    deadline = time.time() + 120
    while ledger_item(env, f"cleanup#{name}").get("status", {}).get("S") != "done" and time.time() < deadline:
        time.sleep(0.2)
    assert ledger_item(env, f"approval#{name}")["status"]["S"] == "withdrawn"
    # WHEN an approver presses Approve afterwards
    status, page = decide(link, "approve")
    # THEN the page says the release is withdrawn, and nothing reaches prod
    assert status == 410
    assert "withdrawn" in page
    assert digest not in _prod_digests(env)
    assert sfn.describe_execution(executionArn=execution_arn(env, name))["status"] == "ABORTED"


def test_release_whose_task_failed_without_a_cause_ends_with_its_own_error(env: LocalRuntime) -> None:
    """A task failure without a cause (SendTaskFailure with an error only, as an operator may send): the
    Catch's error output has no string Cause, so ReleaseFailed's CausePath would select nothing and the
    release would end as States.Runtime. The release checks the cause first and keeps its own error."""
    digest = _push_signed(env, "7.1.2")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "RequestApproval")
    assert approval_link(env, APPROVERS[0], name, timeout=60) is not None
    token = ledger_item(env, f"approval#{name}")["task_token"]["S"]

    env.client("stepfunctions").send_task_failure(taskToken=token, error="ApprovalWithdrawn")

    execution = wait_for(env, name)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ApprovalWithdrawn"
    assert execution["cause"].startswith("the error came without a cause")
    entered = [e["stateEnteredEventDetails"]["name"] for e in history(env, name) if "stateEnteredEventDetails" in e]
    assert entered[-5:] == ["RecordFailure", "Abort", "NotifyFailure", "CauseIsText?", "ReleaseFailedWithoutCause"]
    assert not ledger_item(env, "lock#dev")
    assert not ledger_item(env, "lock#prod")
    assert ledger_item(env, f"release#{name}")["error"]["S"] == "ApprovalWithdrawn"
    assert len(_outcome_mails(env, name)) == 1
    assert digest not in _prod_digests(env)
