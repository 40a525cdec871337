"""Deploying by digest through CodeDeploy (`podrelease.release.lambda_target`) against moto in process, and the
traffic hooks' HTTP checks (`podrelease.release.hooks`).

GIVEN an image-package podinfo function (version 1 behind the `live` alias) and a Lambda CodeDeploy
application WHEN a release is deployed THEN the function runs the release's digest, a new version
exists and exactly one deployment carries the release in its description and AppSpec, all read
back from moto. Deployment status and abort are read from moto's CodeDeploy state. The hooks'
`call` is driven by a small fake Lambda client that answers like the Lambda Web Adapter does.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.codedeploy.models import codedeploy_backends
from samtranslator.yaml_helper import yaml_parse

from podrelease.core.errors import ConfigurationError, DeploymentFailed
from podrelease.release import hooks, podinfo
from podrelease.release.lambda_target import (
    ALIAS,
    UPDATE_POLL_SECONDS,
    UPDATE_WAIT_SECONDS,
    UPDATING,
    LambdaTarget,
    abort,
    appspec_versions,
    describe,
    parse_description,
    resume,
    start,
    status,
)
from tests.conftest import FAKE_CREDENTIALS, ROOT
from tests.lambda_updates import LambdaUpdates

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/podinfo"
OLD_DIGEST = "sha256:" + "a" * 64
DIGEST = "sha256:" + "5e" * 32
RELEASE_ID = "podinfo-5e5e5e5e5e5e-0123456789abcdef"
RELEASE = {"id": RELEASE_ID, "digest": DIGEST, "image_uri": f"{REPO_URI}@{DIGEST}"}
TARGET = LambdaTarget(
    environment="dev",
    function_name="podinfo-dev",
    application="podinfo",
    deployment_group="podinfo-dev",
    pre_traffic_hook="release-pre-traffic",
    post_traffic_hook="release-post-traffic",
)


@dataclass
class World:
    lambda_client: Any
    codedeploy: Any

    def deployments(self) -> list[str]:
        return self.codedeploy.list_deployments(applicationName=TARGET.application, deploymentGroupName=TARGET.deployment_group)[
            "deployments"
        ]

    def set_status(self, deployment_id: str, state: str, info: str = "") -> None:
        """moto has no deployment engine: move a deployment along as CodeDeploy would."""
        deployment = codedeploy_backends[ACCOUNT][REGION].deployments[deployment_id]
        deployment.status = state
        deployment.additional_deployment_status_info = info


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="podinfo",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        lam.create_function(
            FunctionName=TARGET.function_name,
            Role=role,
            PackageType="Image",
            Code={"ImageUri": f"{REPO_URI}@{OLD_DIGEST}"},
        )
        version = lam.publish_version(FunctionName=TARGET.function_name)["Version"]
        assert version == "1"
        lam.create_alias(FunctionName=TARGET.function_name, Name=ALIAS, FunctionVersion="1")
        codedeploy = boto3.client("codedeploy", region_name=REGION)
        codedeploy.create_application(applicationName=TARGET.application, computePlatform="Lambda")
        codedeploy.create_deployment_group(
            applicationName=TARGET.application,
            deploymentGroupName=TARGET.deployment_group,
            deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes",
            serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/codedeploy",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )
        yield World(lam, codedeploy)


# --- start ------------------------------------------------------------------------------------------


def test_start_deploys_the_release_digest_as_a_new_version_through_codedeploy(world: World) -> None:
    # WHEN the release is deployed to dev
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    # THEN the function's code is the release's image, by digest
    code = world.lambda_client.get_function(FunctionName=TARGET.function_name)["Code"]
    assert code["ImageUri"] == f"{REPO_URI}@{DIGEST}"
    # AND a version 2 was published and a deployment shifts the alias from 1 to 2
    versions = world.lambda_client.list_versions_by_function(FunctionName=TARGET.function_name)["Versions"]
    assert sorted(v["Version"] for v in versions) == ["$LATEST", "1", "2"]
    assert out == {
        "id": out["id"],
        "status": "InProgress",
        "environment": "dev",
        "function": TARGET.function_name,
        "previous_version": "1",
        "version": "2",
    }
    assert world.deployments() == [out["id"]]
    info = world.codedeploy.get_deployment(deploymentId=out["id"])["deploymentInfo"]
    assert parse_description(info["description"]) == {"release": RELEASE_ID, "digest": DIGEST, "env": "dev"}
    content = info["revision"]["appSpecContent"]["content"]
    assert appspec_versions(content) == {"function": TARGET.function_name, "current": "1", "target": "2"}
    spec = json.loads(content)
    assert spec["Resources"][0]["podinfo"]["Properties"]["Alias"] == ALIAS
    assert spec["Hooks"] == [{"BeforeAllowTraffic": "release-pre-traffic"}, {"AfterAllowTraffic": "release-post-traffic"}]
    # AND the alias itself is left for CodeDeploy to shift
    assert world.lambda_client.get_alias(FunctionName=TARGET.function_name, Name=ALIAS)["FunctionVersion"] == "1"


@pytest.mark.parametrize(
    "image_uri",
    [f"{REPO_URI}:latest", f"{REPO_URI}:6.7.0", f"{REPO_URI}@{OLD_DIGEST}", f"{REPO_URI}@sha256:{DIGEST}"],
    ids=["tag latest", "version tag", "another digest", "digest not at the end"],
)
def test_start_refuses_anything_but_the_release_digest(world: World, image_uri: str) -> None:
    # WHEN asked to deploy a URI that is not repo@<the release's digest>
    with pytest.raises(DeploymentFailed) as info:
        start(world.lambda_client, world.codedeploy, TARGET, RELEASE | {"image_uri": image_uri})
    # THEN it refuses, and nothing changed: same code, no new version, no deployment
    assert str(info.value) == f"refusing to deploy {image_uri!r}: a release deploys by digest only"
    assert world.lambda_client.get_function(FunctionName=TARGET.function_name)["Code"]["ImageUri"] == f"{REPO_URI}@{OLD_DIGEST}"
    versions = world.lambda_client.list_versions_by_function(FunctionName=TARGET.function_name)["Versions"]
    assert sorted(v["Version"] for v in versions) == ["$LATEST", "1"]
    assert world.deployments() == []


def test_start_twice_for_the_same_release_adopts_the_deployment_in_flight(world: World) -> None:
    first = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    # WHEN the task is retried while the deployment runs
    world.set_status(first["id"], "InProgress")
    again = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    # THEN it adopts that deployment and creates nothing
    assert again == {"id": first["id"], "status": "InProgress", "environment": "dev", "adopted": True}
    assert world.deployments() == [first["id"]]
    versions = world.lambda_client.list_versions_by_function(FunctionName=TARGET.function_name)["Versions"]
    assert sorted(v["Version"] for v in versions) == ["$LATEST", "1", "2"]


def test_another_release_does_not_adopt_a_deployment_it_did_not_start(world: World) -> None:
    first = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(first["id"], "Succeeded")
    world.lambda_client.update_alias(FunctionName=TARGET.function_name, Name=ALIAS, FunctionVersion="2")
    other_digest = "sha256:" + "c4" * 32
    other = {"id": "podinfo-c4c4c4c4c4c4-fedcba9876543210", "digest": other_digest, "image_uri": f"{REPO_URI}@{other_digest}"}
    out = start(world.lambda_client, world.codedeploy, TARGET, other)
    assert "adopted" not in out
    assert (out["previous_version"], out["version"]) == ("2", "3")
    assert len(world.deployments()) == 2


def test_from_env_names_the_missing_variable() -> None:
    env = {"DEV_FUNCTION_NAME": "f", "CODEDEPLOY_APPLICATION": "a", "PRE_TRAFFIC_HOOK": "p", "POST_TRAFFIC_HOOK": "q"}
    with pytest.raises(ConfigurationError, match="DEV_DEPLOYMENT_GROUP is not set for the dev target"):
        LambdaTarget.from_env("dev", env)
    assert LambdaTarget.from_env("dev", env | {"DEV_DEPLOYMENT_GROUP": "g"}) == LambdaTarget("dev", "f", "a", "g", "p", "q")


def test_describe_and_parse_description_round_trip() -> None:
    text = describe(RELEASE_ID, DIGEST, "prod")
    assert text == f"podinfo release={RELEASE_ID} digest={DIGEST} env=prod"
    assert parse_description(text) == {"release": RELEASE_ID, "digest": DIGEST, "env": "prod"}
    assert parse_description("a deployment someone started by hand") == {}
    assert parse_description("") == {}


# --- Lambda applying the image: bounded waits, repeated calls, conflicts ---------------------------------


class Clock:
    """Time for the in-function wait: `sleep` moves it on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def updates(world: World, monkeypatch: pytest.MonkeyPatch) -> LambdaUpdates:
    return LambdaUpdates(monkeypatch)


def function_state(world: World) -> tuple[str, str, str]:
    """(image, LastUpdateStatus, LastModified) of the function's $LATEST, as Lambda reports them."""
    reply = world.lambda_client.get_function(FunctionName=TARGET.function_name)
    configuration = reply["Configuration"]
    return reply["Code"]["ImageUri"], configuration["LastUpdateStatus"], configuration["LastModified"]


def versions(world: World) -> list[str]:
    return sorted(v["Version"] for v in world.lambda_client.list_versions_by_function(FunctionName=TARGET.function_name)["Versions"])


UPDATING_DEV = {"id": None, "status": UPDATING, "environment": "dev", "function": TARGET.function_name, "release": RELEASE_ID,
                "digest": DIGEST, "image": RELEASE["image_uri"], "previous_version": "1"}


def test_an_update_still_running_after_the_bounded_wait_is_handed_back_as_updating(world: World, updates: LambdaUpdates) -> None:
    updates.hold = True
    clock = Clock()
    # WHEN Lambda is still applying the image after the whole in-function wait
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, sleep=clock.sleep, clock=clock)
    # THEN the call ends after exactly UPDATE_WAIT_SECONDS, saying so, with nothing published or started
    assert out == UPDATING_DEV
    assert clock.slept == UPDATE_WAIT_SECONDS
    assert function_state(world)[:2] == (RELEASE["image_uri"], "InProgress")
    assert versions(world) == ["$LATEST", "1"]
    assert world.deployments() == []


def test_the_deploy_function_outlives_its_longest_wait() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    timeout = template["Resources"]["DeployFunction"]["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
    # the wait (never overslept: see the test above) and a minute for the API calls around it (alias, CodeDeploy, the fleet)
    assert timeout >= UPDATE_WAIT_SECONDS + 60, (timeout, UPDATE_WAIT_SECONDS)
    assert UPDATE_POLL_SECONDS < UPDATE_WAIT_SECONDS


def test_a_repeated_call_during_the_update_neither_fails_nor_starts_another(world: World, updates: LambdaUpdates) -> None:
    updates.hold = True
    first = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    assert first == UPDATING_DEV
    image, last, started_at = function_state(world)
    assert (image, last) == (RELEASE["image_uri"], "InProgress")
    # WHEN the state machine retries DeployDev (its Lambda call timed out) and polls (CheckDev) meanwhile
    again = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    polled = resume(world.lambda_client, world.codedeploy, TARGET, first, wait_seconds=0)
    # THEN both say "still updating", and the update in progress is still the first one
    assert again == polled == UPDATING_DEV
    assert function_state(world) == (RELEASE["image_uri"], "InProgress", started_at)
    assert versions(world) == ["$LATEST", "1"]
    assert world.deployments() == []
    # AND once Lambda is done, the next poll publishes version 2 and starts the one deployment
    updates.finish(TARGET.function_name)
    done = resume(world.lambda_client, world.codedeploy, TARGET, polled, wait_seconds=0)
    assert done == {"id": done["id"], "status": "InProgress", "environment": "dev", "function": TARGET.function_name,
                    "previous_version": "1", "version": "2"}
    assert world.deployments() == [done["id"]]
    assert function_state(world)[2] == started_at  # no second update, ever


def test_a_retry_after_the_update_finished_does_not_update_the_code_again(world: World, updates: LambdaUpdates) -> None:
    updates.hold = True
    start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    updates.finish(TARGET.function_name)
    applied_at = function_state(world)[2]
    # WHEN DeployDev is retried after the image was applied (before a version was published)
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    # THEN the code is left as it is and the release carries on from there
    assert function_state(world) == (RELEASE["image_uri"], "Successful", applied_at)
    assert (out["status"], out["version"]) == ("InProgress", "2")
    assert world.deployments() == [out["id"]]


def test_a_conflicting_update_is_waited_for_then_the_release_image_applied(world: World, updates: LambdaUpdates) -> None:
    # GIVEN someone else's update lands between the release's look at the function and its own update
    updates.conflict_next = True
    clock = Clock()
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0, sleep=clock.sleep, clock=clock)
    # THEN ResourceConflictException means "in progress, check again", not a failed release
    assert out == UPDATING_DEV
    assert function_state(world)[0] == f"{REPO_URI}@{OLD_DIGEST}"
    # AND the next poll applies the release's image and goes on to the deployment
    done = resume(world.lambda_client, world.codedeploy, TARGET, out, sleep=clock.sleep, clock=clock)
    assert function_state(world)[:2] == (RELEASE["image_uri"], "Successful")
    assert (done["status"], done["previous_version"], done["version"]) == ("InProgress", "1", "2")
    assert world.deployments() == [done["id"]]


def test_another_image_being_applied_is_waited_for(world: World, updates: LambdaUpdates) -> None:
    # GIVEN an update to another image is in progress (a stack deploy, a person)
    updates.hold = True
    other = f"{REPO_URI}@sha256:{'c4' * 32}"
    world.lambda_client.update_function_code(FunctionName=TARGET.function_name, ImageUri=other)
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    assert out == UPDATING_DEV
    assert function_state(world)[:2] == (other, "InProgress")
    # WHEN it is done, the release's own update starts on the next poll, and its deployment on the one after
    updates.finish(TARGET.function_name)
    assert resume(world.lambda_client, world.codedeploy, TARGET, out, wait_seconds=0) == UPDATING_DEV
    assert function_state(world)[:2] == (RELEASE["image_uri"], "InProgress")
    updates.finish(TARGET.function_name)
    done = resume(world.lambda_client, world.codedeploy, TARGET, out, wait_seconds=0)
    assert (done["status"], done["version"]) == ("InProgress", "2")


def test_a_failed_update_is_a_named_failure(world: World, updates: LambdaUpdates) -> None:
    updates.hold = True
    out = start(world.lambda_client, world.codedeploy, TARGET, RELEASE, wait_seconds=0)
    updates.fail(TARGET.function_name, "ImageAccessDenied", "Lambda does not have permission to access the ECR image.")
    with pytest.raises(DeploymentFailed) as error:
        resume(world.lambda_client, world.codedeploy, TARGET, out, wait_seconds=0)
    assert str(error.value) == (f"Lambda could not update {TARGET.function_name} to {RELEASE['image_uri']} (ImageAccessDenied): "
                                "Lambda does not have permission to access the ECR image.")
    assert versions(world) == ["$LATEST", "1"]
    assert world.deployments() == []


# --- status -----------------------------------------------------------------------------------------


def test_status_reports_a_deployment_in_progress_with_its_overview(world: World) -> None:
    deployment = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(deployment["id"], "InProgress")
    codedeploy_backends[ACCOUNT][REGION].deployments[deployment["id"]].deployment_overview["InProgress"] = 1
    out = status(world.codedeploy, deployment)
    assert out == deployment | {"status": "InProgress", "overview": {"InProgress": 1}}


def test_status_reports_success(world: World) -> None:
    deployment = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(deployment["id"], "Succeeded")
    assert status(world.codedeploy, deployment)["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("state", "info", "expected"),
    [
        ("Failed", "", "failed: ERROR: no reason given"),
        ("Failed", "the AfterAllowTraffic hook failed", "failed: ERROR: the AfterAllowTraffic hook failed"),
        ("Stopped", "stopped by the release", "stopped: ERROR: stopped by the release"),
    ],
    ids=["failed", "failed with a reason", "stopped"],
)
def test_status_of_a_failed_or_stopped_deployment_is_deployment_failed(
    world: World, state: str, info: str, expected: str
) -> None:
    deployment = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(deployment["id"], state, info)
    with pytest.raises(DeploymentFailed) as error:
        status(world.codedeploy, deployment)
    assert str(error.value) == f"dev deployment {deployment['id']} {expected}"


def test_status_without_a_deployment_id_returns_it_unchanged(world: World) -> None:
    already = {"id": None, "status": "Succeeded", "environment": "dev", "note": "already live"}
    assert status(world.codedeploy, already) == already


# --- abort ------------------------------------------------------------------------------------------


class StoppingCodeDeploy:
    """moto's CodeDeploy client plus StopDeployment (which moto lacks): marks the deployment Stopped."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_deployment(self, **kwargs: Any) -> Any:
        return self.client.get_deployment(**kwargs)

    def stop_deployment(self, *, deploymentId: str, autoRollbackEnabled: bool) -> dict[str, Any]:
        assert autoRollbackEnabled is True
        codedeploy_backends[ACCOUNT][REGION].deployments[deploymentId].status = "Stopped"
        return {"status": "Pending"}


def test_abort_with_nothing_in_flight_stops_nothing(world: World) -> None:
    assert abort(world.codedeploy, []) == []
    assert abort(world.codedeploy, [{"id": None, "status": "Succeeded"}, {"environment": "dev"}]) == []


def test_abort_stops_only_deployments_still_in_flight(world: World) -> None:
    # GIVEN one finished deployment and one still running
    done = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(done["id"], "Succeeded")
    world.lambda_client.update_alias(FunctionName=TARGET.function_name, Name=ALIAS, FunctionVersion="2")
    other_digest = "sha256:" + "c4" * 32
    running = start(
        world.lambda_client,
        world.codedeploy,
        TARGET,
        {"id": "podinfo-c4c4c4c4c4c4-fedcba9876543210", "digest": other_digest, "image_uri": f"{REPO_URI}@{other_digest}"},
    )
    world.set_status(running["id"], "InProgress")
    client = StoppingCodeDeploy(world.codedeploy)
    # WHEN the release aborts
    stopped = abort(client, [done, running, {"id": None}])
    # THEN only the running one was stopped, and the finished one is untouched
    assert stopped == [running["id"]]
    assert world.codedeploy.get_deployment(deploymentId=running["id"])["deploymentInfo"]["status"] == "Stopped"
    assert world.codedeploy.get_deployment(deploymentId=done["id"])["deploymentInfo"]["status"] == "Succeeded"
    # AND aborting again stops nothing more
    assert abort(client, [done, running]) == []


class CompletingCodeDeploy(StoppingCodeDeploy):
    """The deployment completes (Succeeded) between abort's GetDeployment and its StopDeployment:
    CodeDeploy then refuses the stop with DeploymentAlreadyCompletedException."""

    def stop_deployment(self, *, deploymentId: str, autoRollbackEnabled: bool) -> dict[str, Any]:
        codedeploy_backends[ACCOUNT][REGION].deployments[deploymentId].status = "Succeeded"
        raise ClientError({"Error": {"Code": "DeploymentAlreadyCompletedException", "Message": "already completed"}},
                          "StopDeployment")


def test_abort_undoes_a_deployment_that_completed_while_it_was_being_stopped(world: World) -> None:
    # GIVEN a deployment in flight that shifts live to its version and completes just as abort stops it
    running = start(world.lambda_client, world.codedeploy, TARGET, RELEASE)
    world.set_status(running["id"], "InProgress")
    world.lambda_client.update_alias(FunctionName=TARGET.function_name, Name=ALIAS, FunctionVersion=str(running["version"]))
    # WHEN the release aborts
    undone = abort(CompletingCodeDeploy(world.codedeploy), [running], world.lambda_client)
    # THEN live is back on the previous version, as for any deployment that had succeeded
    assert world.lambda_client.get_alias(FunctionName=TARGET.function_name, Name=ALIAS)["FunctionVersion"] == str(
        running["previous_version"])
    assert undone == [f"{TARGET.function_name}:{ALIAS} back to version {running['previous_version']}"]


# --- traffic hooks: the HTTP checks -------------------------------------------------------------------


def test_a_podinfo_request_is_a_function_url_event_carrying_its_headers() -> None:
    event = podinfo.request("/readyz", headers={"X-Correlation-Id": RELEASE_ID})
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/readyz"
    assert event["rawQueryString"] == ""
    assert event["headers"]["x-correlation-id"] == RELEASE_ID
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["http"]["path"] == "/readyz"
    assert event["isBase64Encoded"] is False
    assert json.loads(json.dumps(event)) == event
    # AND the receiving side reads back what was sent; a body that is not UTF-8 travels base64
    binary = podinfo.request("/token", "POST", body=b"\xff\x00", query="a=1&b=")
    assert (binary["isBase64Encoded"], binary["queryStringParameters"]) == (True, {"a": "1", "b": ""})
    assert podinfo.parse_request(binary) == podinfo.Incoming("POST", "/token", {}, b"\xff\x00")


class FakeLambda:
    """Answers `invoke` with one canned reply, and keeps what it was asked."""

    def __init__(self, payload: bytes, function_error: str | None = None) -> None:
        self.payload = payload
        self.function_error = function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        reply: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            reply["FunctionError"] = self.function_error
        return reply


def http_reply(code: int, body: Any, *, base64_body: bool = False) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body)
    if base64_body:
        text = base64.b64encode(text.encode()).decode()
    return json.dumps({"statusCode": code, "headers": {}, "body": text, "isBase64Encoded": base64_body}).encode()


CALLS: list[tuple[str, str, bytes, str | None, dict[str, Any]]] = [
    ("healthy", "/healthz", http_reply(200, {"status": "OK"}), None, {"ok": True, "status": 200, "detail": '{"status": "OK"}'}),
    ("not ready", "/readyz", http_reply(503, "not ready"), None, {"ok": False, "status": 503, "detail": "not ready"}),
    (
        "version",
        "/version",
        http_reply(200, {"version": "6.7.0", "commit": "abc", "extra": "x"}),
        None,
        {"ok": True, "status": 200, "detail": '{"version": "6.7.0", "commit": "abc"}'},
    ),
    (
        "version base64",
        "/version",
        http_reply(200, {"version": "6.7.0", "commit": "abc"}, base64_body=True),
        None,
        {"ok": True, "status": 200, "detail": '{"version": "6.7.0", "commit": "abc"}'},
    ),
    (
        "version without version",
        "/version",
        http_reply(200, {"commit": "abc"}),
        None,
        {"ok": False, "status": 200, "detail": "no version field"},
    ),
    (
        "version not JSON",
        "/version",
        http_reply(200, "<html>6.7.0</html>"),
        None,
        {"ok": False, "status": 200, "detail": "/version did not answer JSON"},
    ),
    (
        "function error",
        "/healthz",
        b'{"errorMessage": "boom"}',
        "Unhandled",
        {"ok": False, "status": None, "detail": 'function error: b\'{"errorMessage": "boom"}\''},
    ),
    (
        "reply not JSON",
        "/healthz",
        b"Internal Server Error",
        None,
        {"ok": False, "status": None, "detail": "the adapter's reply is not an HTTP response"},
    ),
    (
        "reply not an object",
        "/healthz",
        b"[200]",
        None,
        {"ok": False, "status": None, "detail": "the adapter's reply is not an HTTP response"},
    ),
    ("no status code", "/healthz", b'{"body": "hi"}', None, {"ok": False, "status": 0, "detail": "hi"}),
]


@pytest.mark.parametrize(
    ("path", "payload", "function_error", "expected"),
    [(p, b, f, x) for _, p, b, f, x in CALLS],
    ids=[c for c, *_ in CALLS],
)
def test_call_interprets_the_adapter_reply(
    path: str, payload: bytes, function_error: str | None, expected: dict[str, Any]
) -> None:
    fake = FakeLambda(payload, function_error)
    # WHEN a hook checks `path` on version 2
    out = hooks.call(fake, TARGET.function_name, "2", path, RELEASE_ID)
    # THEN the verdict is exactly as expected
    assert out == {"path": path} | expected
    # AND it asked the right version, with a GET for that path carrying the release id
    [sent] = fake.calls
    assert (sent["FunctionName"], sent["Qualifier"]) == (TARGET.function_name, "2")
    request = json.loads(sent["Payload"])
    assert (request["rawPath"], request["headers"]["x-correlation-id"]) == (path, RELEASE_ID)
