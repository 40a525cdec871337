"""The local runtime runs what `sam build` ships, as Lambda runs it, under each function's own role:
a function whose role loses a grant it needs fails its call with AccessDenied, as on AWS; and traced
as Lambda traces it (`Tracing: Active`): a trace header per invocation, segments to an X-Ray daemon.
(A broken build: test_broken_build.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from local.demo import approval_link, decide
from local.runtime import APPROVERS, WORKLOAD_REPOSITORY, LocalRuntime
from local.template import BUILD_DIR
from podrelease.release.events import execution_name
from tests.statemachine.conftest import module_runtime, wait_for, wait_for_state

pytestmark = pytest.mark.statemachine


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    yield from module_runtime(tmp_path_factory.mktemp("local"), approval_timeout=60)


def test_the_functions_import_the_package_from_the_layer_not_the_source_tree(env: LocalRuntime) -> None:
    # GIVEN the running functions WHEN one reports where the shared package came from
    function = env.stack.functions["NormalizeFunction"]
    # THEN its task root is the build's folder and its only layer the build's CommonLayer folder
    assert function.code_dir == BUILD_DIR / "NormalizeFunction"
    assert function.layers == [BUILD_DIR / "CommonLayer"]
    assert (BUILD_DIR / "CommonLayer" / "python" / "podrelease" / "__init__.py").is_file()
    assert not (BUILD_DIR / "NormalizeFunction" / "podrelease").exists()


# The functions of a happy release whose handlers bind its id to their trace (the verify and approval
# functions do it as well once they run under the tracer).
TRACED = ("StarterFunction", "NormalizeFunction", "LockFunction", "DeployFunction", "WatchFunction", "PreTrafficHookFunction",
          "PostTrafficHookFunction", "PromoteFunction", "RecordFunction")


def test_a_release_leaves_its_id_on_the_traces_of_the_functions_it_ran(env: LocalRuntime) -> None:
    # GIVEN a signed push, released all the way to prod
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.3")
    env.pusher.sign_legacy(env.signing_key, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    wait_for_state(env, name, "RequestApproval")
    link = approval_link(env, APPROVERS[0], name, timeout=60)
    assert link is not None
    assert decide(link, "approve")[0] == 200
    assert wait_for(env, name)["status"] == "SUCCEEDED"
    # WHEN the X-Ray daemon's segments are read (each invocation is a trace: the function's segment,
    # and the subsegments its X-Ray SDK sent under it)
    assert env.xray is not None
    expected = {env.stack.functions[logical].name for logical in TRACED}
    deadline = time.time() + 10
    while True:
        functions = {s["id"]: s for s in env.xray.segments() if s.get("origin") == "AWS::Lambda::Function"}
        annotated = env.xray.annotated("release_id", name)
        traced = {functions[s["parent_id"]]["name"] for s in annotated if s.get("parent_id") in functions}
        if expected <= traced or time.time() > deadline:
            break
        time.sleep(0.2)
    # THEN every one of those functions traced its handler with the release id as an annotation,
    # in the trace Lambda gave that invocation
    assert sorted(expected - traced) == []
    assert {s["name"] for s in annotated} == {"## handler"}
    assert all(s["trace_id"] == functions[s["parent_id"]]["trace_id"] for s in annotated if s.get("parent_id") in functions)
    assert env.xray.malformed == 0


def test_a_role_that_loses_a_grant_fails_the_call_as_aws_would(env: LocalRuntime) -> None:
    # GIVEN the approval page's role without states:SendTaskSuccess (a grant it needs)
    iam = env.client("iam")
    role = env.client("lambda").get_function(FunctionName=env.stack.functions["ApprovalPageFunction"].name)["Configuration"]["Role"]
    role_name = role.rsplit("/", 1)[1]
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    originals = {name: iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"] for name in names}
    removed = 0
    for name, document in originals.items():
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "states:SendTaskSuccess" in actions:
                statement["Action"] = [a for a in actions if a != "states:SendTaskSuccess"]
                removed += 1
        iam.put_role_policy(RoleName=role_name, PolicyName=name, PolicyDocument=json.dumps(document))
    assert removed == 1
    # AND a release waiting for approval
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.2")
    env.pusher.sign_legacy(env.signing_key, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    wait_for_state(env, name, "RequestApproval")
    release = _release_id(env, image.digest)
    link = approval_link(env, APPROVERS[0], release)
    assert link is not None
    # WHEN the approver presses Approve
    status, page = decide(link, "approve")
    # THEN the decision is recorded but not delivered: Step Functions refused the page's call
    assert status == 500, page
    assert "AccessDenied" in page
    item = _ledger_item(env, release)
    assert item["callback"]["S"] == "failed"
    assert item["callback_error"]["S"].startswith("AccessDenied")
    # AND the release is still waiting (nothing was approved behind the refusal)
    execution = env.client("stepfunctions").describe_execution(executionArn=_execution_arn(env, name))
    assert execution["status"] == "RUNNING"
    env.client("stepfunctions").stop_execution(executionArn=_execution_arn(env, name))


def _release_id(env: LocalRuntime, digest: str) -> str:
    deadline = time.time() + 120
    while time.time() < deadline:
        for message in list(env.emulation.outbox.messages):
            if digest[:19] in message["subject"] or digest in message["body"]:
                return str(message["subject"].rsplit("[", 1)[1].rstrip("]"))
        time.sleep(0.2)
    raise AssertionError(f"no approval email for {digest}")


def _ledger_item(env: LocalRuntime, release_id: str) -> dict[str, dict[str, str]]:
    table = env.stack.outputs["LedgerTableName"]
    items = env.client("dynamodb").scan(TableName=table)["Items"]
    return next(item for item in items if item.get("release_id", {}).get("S") == release_id and "callback" in item)


def _execution_arn(env: LocalRuntime, name: str) -> str:
    return env.stack.outputs["ReleaseStateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + name
