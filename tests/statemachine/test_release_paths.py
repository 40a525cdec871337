"""Every path of statemachines/release.asl.json, run by moto's ASL engine with the project's handlers.

GIVEN the local runtime (the real template and ASL in moto, the local extensions)
WHEN an image is pushed (or an event delivered)
THEN the release ends in the defined state, and the AWS state left behind says so.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from moto.cloudwatch.models import cloudwatch_backends

from local import signing
from local.demo import approval_link, decide
from local.demo_report import fleet_problems, fleet_view
from local.runtime import APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name, fallback_execution_name
from podrelease.verify.gate import enforce
from podrelease.verify.policy import EnvironmentPolicy
from podrelease.verify.provenance import ProvenanceRequirement
from podrelease.verify.registry import EcrRegistry
from podrelease.verify.trust_policy import TrustPolicy
from tests.statemachine.conftest import execution_arn, history, ledger_item, live_image, wait_for, wait_for_state

pytestmark = pytest.mark.statemachine


def _push_signed(env: LocalRuntime, version: str, fault: str = "") -> str:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version, fault=fault)
    env.pusher.sign_legacy(env.signing_key, image)
    return image.digest


def _approve(env: LocalRuntime, name: str, decision: str = "approve") -> int:
    link = approval_link(env, APPROVERS[0], name, timeout=60)
    assert link is not None, "no approval email arrived"
    status, _ = decide(link, decision)
    return status


def _deployment_done(env: LocalRuntime, group: str, release: str, timeout: float = 60) -> str:
    """The status of `release`'s CodeDeploy deployment in `group` once it is no longer in flight."""
    cd = env.client("codedeploy")
    app = env.stack.outputs["CodeDeployApplication"]
    deadline = time.time() + timeout
    status = "none"
    while time.time() < deadline:
        infos = [cd.get_deployment(deploymentId=d)["deploymentInfo"]
                 for d in cd.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]]
        status = next((i["status"] for i in infos if f"release={release}" in i.get("description", "")), "none")
        if status in {"Stopped", "Failed", "Succeeded"}:
            return status
        time.sleep(0.2)
    return status


def _prod_digests(env: LocalRuntime) -> set[str]:
    return {d["imageDigest"] for d in env.client("ecr").describe_images(repositoryName=PROD_REPOSITORY)["imageDetails"]}


def test_happy_path_promotes_the_same_digest_to_prod(env: LocalRuntime) -> None:
    digest = _push_signed(env, "6.9.2")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "RequestApproval")
    assert _approve(env, name) == 200
    execution = wait_for(env, name)
    assert execution["status"] == "SUCCEEDED"
    # THEN both live aliases run exactly this digest, and prod runs it from the prod repository
    assert live_image(env, "dev").endswith(f"/{WORKLOAD_REPOSITORY}@{digest}")
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{digest}")
    assert digest in _prod_digests(env)
    src = env.client("ecr").batch_get_image(repositoryName=WORKLOAD_REPOSITORY, imageIds=[{"imageDigest": digest}])["images"][0]
    dst = env.client("ecr").batch_get_image(repositoryName=PROD_REPOSITORY, imageIds=[{"imageDigest": digest}])["images"][0]
    assert src["imageManifest"] == dst["imageManifest"]
    record = ledger_item(env, f"release#{name}")
    assert record["outcome"]["S"] == "SUCCEEDED"
    assert record["approved_by"]["S"] == APPROVERS[0]  # who let it into prod outlives the approval record
    assert not ledger_item(env, "lock#dev")
    assert not ledger_item(env, "lock#prod")
    # the correlation id is in the CodeDeploy deployment descriptions and the outcome email
    cd = env.client("codedeploy")
    app = env.stack.outputs["CodeDeployApplication"]
    described = [cd.get_deployment(deploymentId=d)["deploymentInfo"]["description"]
                 for group in ("dev", "prod")
                 for d in cd.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]]
    assert sum(f"release={name}" in d for d in described) == 2
    outcome_mails = [m for m in env.emulation.outbox.messages if m["to"] == "releases@example.com" and name in m["subject"]]
    assert len(outcome_mails) == 1
    assert "released to prod" in outcome_mails[0]["subject"]
    # the approval email said what dev's bake measured (the emulation publishes the data points it
    # evaluates; the approval request read them back from CloudWatch) ...
    asked = [m["body"] for m in env.emulation.outbox.messages if m["to"] == APPROVERS[0] and "?t=" in m["body"] and name in m["body"]]
    assert len(asked) == 1
    for line in (r"Candidate:\s+sha256:\w{12} 6\.9\.2 ", r"ok\s+Dev canary:\s+succeeded: ", r"ok\s+Dev hooks:\s+BeforeAllowTraffic succeeded",
                 r"ok\s+Dev alarms:\s+quiet: none of ", r"Dev traffic:\s+\d+ invocations, \d+ errors \(\d+\.\d+%\), p99 [\d.]+ ms",
                 r"ok\s+Dev fleet:\s+succeeded on \w+: ", r"ok\s+Fleet checks:\s+pre-traffic 3/3 passed, post-traffic 3/3 passed",
                 r"ok\s+Fleet alarms:\s+quiet", r"Fleet traffic:\s+\d+ requests, \d+ errors"):
        assert re.search(line, asked[0]), f"{line} not in:\n{asked[0]}"
    # ... and the outcome email carries the same summary, with the decision
    assert "What was approved (the approval page's summary):" in outcome_mails[0]["body"]
    assert re.search(r"Votes:\s+approve\w* by " + re.escape(APPROVERS[0]), outcome_mails[0]["body"]), outcome_mails[0]["body"]
    assert re.search(r"ok\s+Dev alarms:\s+quiet", outcome_mails[0]["body"])
    # and both fleets serve it from their live colour, the other colour scaled to zero
    assert fleet_problems(env, "dev", digest, should_run=True) == []
    assert fleet_problems(env, "prod", digest, should_run=True) == []
    prod_fleet = fleet_view(env, "prod")
    live = max(prod_fleet["weights"], key=prod_fleet["weights"].get)
    assert prod_fleet[live]["image"].endswith(f"/{PROD_REPOSITORY}@{digest}")


def _public_pem(key: object) -> str:
    from cryptography.hazmat.primitives import serialization

    public = key.public_key()  # type: ignore[attr-defined]
    return str(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


class _ProdOnly(EcrRegistry):
    """The gate's ECR reader, refusing to read any repository but prod's."""

    def get_manifest(self, repository: str, reference: str) -> object:  # type: ignore[override]
        assert repository == PROD_REPOSITORY, f"read {repository}"
        return super().get_manifest(repository, reference)

    def get_blob(self, repository: str, digest: str, max_bytes: int = 4 * 1024 * 1024) -> bytes:
        assert repository == PROD_REPOSITORY, f"read {repository}"
        return super().get_blob(repository, digest, max_bytes)

    def list_referrers(self, repository: str, digest: str) -> list[dict[str, object]]:
        assert repository == PROD_REPOSITORY, f"read {repository}"
        return super().list_referrers(repository, digest)


def test_after_the_happy_release_prod_verifies_from_the_prod_repository_alone(env: LocalRuntime) -> None:
    # GIVEN an image signed (legacy .sig and a bundle referrer) with its SBOM and provenance attested
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.13")
    env.pusher.sign_legacy(env.signing_key, image)
    env.pusher.sign_bundle(env.signing_key, image)
    env.pusher.attest_sbom(env.signing_key, image, layout="legacy")
    env.pusher.attest_provenance(env.signing_key, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    # WHEN its release is approved and ends
    wait_for_state(env, name, "RequestApproval")
    assert _approve(env, name) == 200
    execution = wait_for(env, name)
    assert execution["status"] == "SUCCEEDED"
    # THEN the release's prod evidence was read from the prod repository (VerifyPromoted)
    events = [e for e in history(env, name) if e["type"] == "TaskStateExited"]
    promoted = [json.loads(e["stateExitedEventDetails"]["output"]) for e in events
                if e["stateExitedEventDetails"]["name"] == "VerifyPromoted"]
    assert len(promoted) == 1
    assert promoted[0]["evidence_prod"]["repository"] == PROD_REPOSITORY
    # AND the gate, reading only the prod repository, verifies both signatures, the SBOM and the provenance
    policy = EnvironmentPolicy(
        name="prod", trust=TrustPolicy.from_pem(_public_pem(env.signing_key)), require_sbom=True,
        provenance=ProvenanceRequirement(builder="https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main",
                                         repository="https://github.com/acme/podinfo", ref="refs/heads/main"))
    ecr = env.client("ecr")
    evidence = enforce(_ProdOnly(ecr), ecr, PROD_REPOSITORY, image.digest, policy, 0)
    assert len(evidence["signatures"]) == 2
    assert [s["source"] for s in evidence["sbom"]["sboms"]] == [f"tag:sha256-{image.digest[7:]}.att#1"]
    assert evidence["provenance"]["commit"] == signing.DEMO_COMMIT


@pytest.mark.parametrize(
    ("detail_change", "expected_error"),
    [
        ({"image-digest": None}, "MalformedEvent"),          # tag-only event: no digest
        ({"image-digest": "sha256:1234"}, "MalformedEvent"),  # not a sha256 digest
        ({"action-type": "DELETE"}, "ForeignEvent"),
        ({"filler": "x" * 40000}, "EventTooLarge"),
    ],
)
def test_bad_events_fail_fast_and_deploy_nothing(env: LocalRuntime, detail_change: dict[str, object], expected_error: str) -> None:
    dev_before, prod_before = live_image(env, "dev"), live_image(env, "prod")
    detail = {"result": "SUCCESS", "repository-name": WORKLOAD_REPOSITORY, "image-digest": "sha256:" + "c" * 64,
              "action-type": "PUSH", "image-tag": "bad"}
    detail.update(detail_change)
    detail = {k: v for k, v in detail.items() if v is not None}
    event = {"version": "0", "id": f"evt-{expected_error}-{len(str(detail_change))}", "detail-type": "ECR Image Action",
             "source": "aws.ecr", "account": "123456789012", "region": "us-east-1", "time": "2026-11-26T00:00:00Z",
             "resources": [], "detail": detail}
    # the rule's pattern matches only PUSH/SUCCESS of the watched repository: others never reach the starter
    delivered = env.emulation.events.deliver(event)
    if detail.get("action-type") != "PUSH":
        assert delivered == 0
        return
    assert delivered == 1
    name = fallback_execution_name(event)
    execution = wait_for(env, name)
    assert execution["status"] == "FAILED"
    assert execution["error"] == expected_error
    entered = [e["stateEnteredEventDetails"]["name"] for e in history(env, name) if "stateEnteredEventDetails" in e]
    assert entered == ["Normalize", "RecordRejected", "NotifyFailure", "CauseIsText?", "ReleaseFailed"]
    assert ledger_item(env, f"release#{name}")["outcome"]["S"] == "REJECTED"
    assert (live_image(env, "dev"), live_image(env, "prod")) == (dev_before, prod_before)


def test_artifact_pushes_start_no_release(env: LocalRuntime) -> None:
    sfn = env.client("stepfunctions")
    arn = env.stack.outputs["ReleaseStateMachineArn"]
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.3")
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    wait_for_state(env, name, "Verify")
    before = len(sfn.list_executions(stateMachineArn=arn)["executions"])
    env.pusher.sign_legacy(env.signing_key, image)  # a `.sig` tag push
    env.pusher.sign_bundle(env.signing_key, image)  # an OCI referrer push
    time.sleep(2)
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == before
    _approve(env, name, "reject")
    assert wait_for(env, name)["error"] == "ApprovalRejected"


def test_second_release_waits_for_the_dev_lock(env: LocalRuntime) -> None:
    first = _push_signed(env, "6.9.4")
    second = _push_signed(env, "6.9.5")
    a, b = execution_name(WORKLOAD_REPOSITORY, first), execution_name(WORKLOAD_REPOSITORY, second)
    wait_for_state(env, a, "RequestApproval")
    wait_for_state(env, b, "RequestApproval", timeout=120)
    # the second release waited in the lock's queue (one AcquireDevLock, no retries) and was handed the lock
    acquires = [e for e in history(env, b) if e.get("stateEnteredEventDetails", {}).get("name") == "AcquireDevLock"]
    assert len(acquires) == 1
    assert not [e for e in history(env, b) if e["type"] == "TaskFailed"]
    # THEN the two dev deployments never overlapped
    cd = env.client("codedeploy")
    infos = [cd.get_deployment(deploymentId=d)["deploymentInfo"]
             for d in cd.list_deployments(applicationName=env.stack.outputs["CodeDeployApplication"], deploymentGroupName="dev")["deployments"]]
    mine = sorted((i for i in infos if f"release={a}" in i["description"] or f"release={b}" in i["description"]),
                  key=lambda i: i["createTime"])
    assert len(mine) == 2
    assert mine[0]["completeTime"] <= mine[1]["createTime"]
    # the second release reached approval after the first: it superseded it
    assert wait_for(env, a)["error"] == "ApprovalSuperseded"
    _approve(env, b, "reject")
    assert wait_for(env, b)["error"] == "ApprovalRejected"


def test_rerelease_after_a_failure_is_deliberate(env: LocalRuntime) -> None:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.6")
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    assert wait_for(env, name)["error"] == "SignatureMissing"
    # a duplicate delivery of the same push starts nothing new
    env.pusher.put(WORKLOAD_REPOSITORY, image.manifest, [], tag="6.9.6-again")
    time.sleep(2)
    assert wait_for(env, name)["error"] == "SignatureMissing"
    # WHEN the signature is pushed and a re-release (attempt 2) is asked of the starter
    env.pusher.sign_legacy(env.signing_key, image)
    reply = env.client("lambda").invoke(
        FunctionName=env.stack.outputs["StarterFunctionName"],
        Payload=json.dumps({"action": "rerelease", "repository": WORKLOAD_REPOSITORY, "digest": image.digest, "attempt": 2}).encode(),
    )
    started = json.loads(reply["Payload"].read())
    assert started["started"] is True
    assert started["name"] == f"{name}-a2"
    wait_for_state(env, f"{name}-a2", "RequestApproval")
    _approve(env, f"{name}-a2", "reject")
    assert wait_for(env, f"{name}-a2")["error"] == "ApprovalRejected"
    assert live_image(env, "dev").endswith(image.digest)


def test_wrong_key_refused_before_anything_is_deployed(env: LocalRuntime) -> None:
    dev_before = live_image(env, "dev")
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.7")
    other, _ = signing.generate_key()
    env.pusher.sign_legacy(other, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    execution = wait_for(env, name)
    assert execution["error"] == "SignatureInvalid"
    assert live_image(env, "dev") == dev_before
    assert not ledger_item(env, "lock#dev")


def test_fleet_alarm_rolls_back_both_targets(env: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """An alarm on the EC2 fleet alone (the Lambda canary is healthy) fails the release, and the
    Abort path rolls back the Lambda target too: nothing half-deployed keeps serving."""
    dev_before = live_image(env, "dev")
    alarm = env.stack.physical["FleetDevErrorsAlarm"]
    fleet = env.emulation.fleet
    shifted = fleet.on_listener_changed
    raised: list[str] = []

    def alarm_at_the_first_step(listener_arn: str) -> None:
        # The alarm goes off inside the listener change that opens the 10 % step, before the
        # controller's next step reads it: no window between the test's poll and the bake's end.
        shifted(listener_arn)
        lb = next(lb for lb in fleet.elbv2.load_balancers.values() if listener_arn in lb.listeners)
        groups = (lb.listeners[listener_arn].default_actions[0].data.get("ForwardConfig") or {}).get("TargetGroups", [])
        if alarm in fleet._alarms_of(lb) and sorted(int(g.get("Weight", 0)) for g in groups) == [10, 90] and not raised:
            raised.append(listener_arn)
            cloudwatch_backends[fleet.account][fleet.region].set_alarm_state(
                alarm, "operator test: 5xx on the new colour", "{}", "ALARM")

    monkeypatch.setattr(fleet, "on_listener_changed", alarm_at_the_first_step)
    digest = _push_signed(env, "6.9.8")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    execution = wait_for(env, name)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "DeploymentFailed"
    assert "fleet canary at 10%" in execution["cause"]
    assert "operator test" in execution["cause"]
    # THEN the fleet is whole on the old colour, the new one is gone, and the Lambda alias is back too
    # (Abort stops the CodeDeploy deployment; as on AWS, its rollback finishes after StopDeployment returns)
    assert fleet_problems(env, "dev", digest, should_run=False) == []
    assert _deployment_done(env, "dev", name) in {"Stopped", "Failed", "Succeeded"}
    assert live_image(env, "dev") == dev_before
    assert not ledger_item(env, "lock#dev")


def test_a_newer_release_supersedes_one_waiting_for_approval(env: LocalRuntime) -> None:
    older = _push_signed(env, "6.9.9")
    a = execution_name(WORKLOAD_REPOSITORY, older)
    wait_for_state(env, a, "RequestApproval")
    link_a = approval_link(env, APPROVERS[0], a, timeout=60)
    assert link_a is not None
    # WHEN a newer image is pushed, passes dev and asks for approval while the older one still waits
    newer = _push_signed(env, "6.9.10")
    b = execution_name(WORKLOAD_REPOSITORY, newer)
    wait_for_state(env, b, "RequestApproval")
    # THEN the older release ends as superseded, naming the newer one
    execution = wait_for(env, a)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ApprovalSuperseded"
    assert b in ledger_item(env, f"release#{a}")["cause"]["S"]
    # AND its link now says so, and approving it changes nothing
    status, page = decide(link_a, "approve")
    assert status == 410
    assert f"superseded by release {b}" in page
    assert older not in _prod_digests(env)
    # AND dev runs the newer digest, whose own approval is still open
    assert live_image(env, "dev").endswith(newer)
    assert env.client("stepfunctions").describe_execution(executionArn=execution_arn(env, b))["status"] == "RUNNING"
    outcome = [m for m in env.emulation.outbox.messages if m["to"] == "releases@example.com" and a in m["subject"]]
    assert "dev now runs the newer release that superseded this one" in outcome[0]["body"]
    _approve(env, b, "reject")
    assert wait_for(env, b)["error"] == "ApprovalRejected"


def test_a_failed_release_whose_record_cannot_be_written_still_emails_its_outcome(env: LocalRuntime) -> None:
    record = env.stack.functions["RecordFunction"]
    saved = dict(record.environment)
    record.environment["LEDGER_TABLE"] = "no-such-ledger"  # every write of the record fails
    env.emulation.runtime.stop()  # execution environments start afresh, with that environment
    try:
        image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.11")  # unsigned: fails at Verify
        name = execution_name(WORKLOAD_REPOSITORY, image.digest)
        execution = wait_for(env, name)
    finally:
        record.environment.clear()
        record.environment.update(saved)
        env.emulation.runtime.stop()
    # THEN the release still fails with its own error, and NotifyEmail still hears of it
    assert execution["status"] == "FAILED"
    assert execution["error"] == "SignatureMissing"
    mails = [m for m in env.emulation.outbox.messages if m["to"] == "releases@example.com" and f"Release {name} failed" in m["body"]]
    assert len(mails) == 1
    assert mails[0]["subject"] == "podinfo release failed (its record could not be written)"
    assert "failed with SignatureMissing" in mails[0]["body"]
    assert not ledger_item(env, f"release#{name}")
    assert not ledger_item(env, "lock#dev")


def test_dashboards_cover_releases_both_targets_and_every_alarm(env: LocalRuntime) -> None:
    cw = env.client("cloudwatch")
    bodies = {d["DashboardName"]: json.loads(cw.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"])
              for d in cw.list_dashboards()["DashboardEntries"]}
    assert sorted(bodies) == ["podrel-fleet", "podrel-releases"]
    text = json.dumps(bodies)
    # every alarm the stack creates is on a dashboard's alarm widget
    alarm_widgets = [a for body in bodies.values() for w in body["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]]
    alarms = [a["AlarmArn"] for a in cw.describe_alarms()["MetricAlarms"]]
    assert alarms
    assert sorted(alarms) == sorted(alarm_widgets)
    # the release state machine, both podinfo aliases and both colours of both fleets are graphed
    assert env.stack.outputs["ReleaseStateMachineArn"] in text
    for environment in ("Dev", "Prod"):
        assert f"{env.stack.outputs[f'Podinfo{environment}FunctionName']}:live" in text
        for colour in ("Blue", "Green"):
            assert env.stack.attributes[f"Fleet{environment}{colour}"]["TargetGroupFullName"] in text


def test_no_secret_or_token_reaches_a_log_line(env: LocalRuntime) -> None:
    """Runs last in this module: scans every function's log of every release above."""
    secret_arn = env.stack.physical["ApprovalSigningKey"]
    signing_key = json.loads(env.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])["key"]
    table = env.stack.outputs["LedgerTableName"]
    items = env.client("dynamodb").scan(TableName=table)["Items"]
    task_tokens = [item["task_token"]["S"] for item in items if "task_token" in item]
    links = [m["body"] for m in env.emulation.outbox.messages if "?t=" in m["body"]]
    approval_tokens = [body.split("?t=", 1)[1].split()[0] for body in links]
    assert task_tokens, "no approval was requested above: the scan would prove nothing"
    assert approval_tokens
    secrets = [signing_key, *task_tokens, *approval_tokens]
    logs = sorted((env.work_dir / "logs").glob("*.log"))
    assert len(logs) >= 8
    for path in logs:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{path.name} contains a secret or token"


def test_every_release_log_line_carries_the_correlation_id(env: LocalRuntime) -> None:
    for name in ("normalize", "lock", "verify", "deploy", "promote", "record", "approval-request"):
        lines = [json.loads(line) for line in (env.work_dir / "logs" / f"podrel-{name}.log").read_text().splitlines()
                 if line.startswith("{")]
        lines = [line for line in lines if "_aws" not in line]  # EMF metric documents (Powertools Metrics), not log lines
        assert lines, f"{name} logged nothing"
        missing = [line["message"] for line in lines if not line.get("correlation_id")]
        assert not missing, f"{name} lines without correlation id: {missing[:3]}"
