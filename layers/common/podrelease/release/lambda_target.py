"""Deploying podinfo's Lambda target by digest through a CodeDeploy canary.

`start` points the environment's function at `repo@sha256:...` (never a tag), publishes a version
and starts a CodeDeploy deployment that shifts the `live` alias under the deployment group's canary
configuration, with BeforeAllowTraffic/AfterAllowTraffic hooks and alarm-driven rollback. `status`
reads the deployment; a rollback or failure is a DeploymentFailed carrying CodeDeploy's reason.
`abort` stops whatever this release still has in flight (CodeDeploy rolls it back).

Lambda applies an image update over seconds to minutes. `start` waits for it at most
UPDATE_WAIT_SECONDS, well inside the deploy function's timeout; an update still running by then is
handed back as status `Updating`, and the state machine's poll loop calls `resume` until the code is
in place, then the version is published and the deployment started. Every call is safe to repeat: an
update of the release's image already in progress (or any other update) is waited for, never
started again, and a ResourceConflictException (someone else's update got there first) means the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core.errors import ConfigurationError, DeploymentFailed

ALIAS = "live"
TERMINAL_OK = "Succeeded"
TERMINAL_FAILED = frozenset({"Failed", "Stopped"})
#: The status of a release whose image Lambda is still applying to the function (see `resume`).
UPDATING = "Updating"
#: The longest one call waits for Lambda to apply a code update. The deploy function's Timeout in
#: template.yaml must leave room above it for the API calls around the wait (tests check both).
UPDATE_WAIT_SECONDS = 45.0
UPDATE_POLL_SECONDS = 3.0
#: The configuration a fast rollback deploys with: all traffic at once, both hooks still run (it overrides the group's canary).
ALL_AT_ONCE = "CodeDeployDefault.LambdaAllAtOnce"
_DESCRIPTION_RE = re.compile(r"release=(?P<release>[A-Za-z0-9_-]+) digest=(?P<digest>sha256:[0-9a-f]{64}) env=(?P<env>\w+)")


@dataclass(frozen=True)
class LambdaTarget:
    """One environment's podinfo function and the CodeDeploy group that shifts its alias."""

    environment: str
    function_name: str
    application: str
    deployment_group: str
    pre_traffic_hook: str
    post_traffic_hook: str

    @classmethod
    def from_env(cls, environment: str, env: dict[str, str]) -> LambdaTarget:
        prefix = environment.upper()
        try:
            return cls(
                environment=environment,
                function_name=env[f"{prefix}_FUNCTION_NAME"],
                application=env["CODEDEPLOY_APPLICATION"],
                deployment_group=env[f"{prefix}_DEPLOYMENT_GROUP"],
                pre_traffic_hook=env["PRE_TRAFFIC_HOOK"],
                post_traffic_hook=env["POST_TRAFFIC_HOOK"],
            )
        except KeyError as exc:
            msg = f"environment variable {exc.args[0]} is not set for the {environment} target"
            raise ConfigurationError(msg) from exc


def describe(release_id: str, digest: str, environment: str) -> str:
    """The deployment description: human readable, and parsed back by the traffic hooks."""
    return f"podinfo release={release_id} digest={digest} env={environment}"


def parse_description(description: str) -> dict[str, str]:
    match = _DESCRIPTION_RE.search(description or "")
    return match.groupdict() if match else {}


def appspec(target: LambdaTarget, current_version: str, target_version: str) -> str:
    spec = {
        "version": 0.0,
        "Resources": [
            {
                "podinfo": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": target.function_name,
                        "Alias": ALIAS,
                        "CurrentVersion": current_version,
                        "TargetVersion": target_version,
                    },
                }
            }
        ],
        "Hooks": [{"BeforeAllowTraffic": target.pre_traffic_hook}, {"AfterAllowTraffic": target.post_traffic_hook}],
    }
    return json.dumps(spec, separators=(",", ":"))


def appspec_versions(content: str) -> dict[str, str]:
    """Function name, current and target version from a Lambda AppSpec (as written by `appspec`)."""
    spec = json.loads(content)
    props = next(iter(spec["Resources"][0].values()))["Properties"]
    return {"function": props["Name"], "current": str(props["CurrentVersion"]), "target": str(props["TargetVersion"])}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _code_update(lambda_client: Any, function_name: str, image_uri: str, *, retry_failed: bool) -> str:
    """Where the function stands with `image_uri`: "Successful" once it runs it, "InProgress" while an
    update is being applied (this release's or anyone else's: nothing is started over it). Starts the
    update when the function runs another image and nothing is in flight. A failed update of this image
    is a DeploymentFailed, unless `retry_failed` (a fresh start) asks for one more try."""
    reply = lambda_client.get_function(FunctionName=function_name)
    configuration = reply.get("Configuration") or {}
    last = configuration.get("LastUpdateStatus", "Successful")
    if last == "InProgress":
        return "InProgress"
    if (reply.get("Code") or {}).get("ImageUri") == image_uri:
        if last != "Failed":
            return "Successful"
        if not retry_failed:
            reason = configuration.get("LastUpdateStatusReason") or "no reason given"
            code = configuration.get("LastUpdateStatusReasonCode") or "Failed"
            msg = f"Lambda could not update {function_name} to {image_uri} ({code}): {reason}"
            raise DeploymentFailed(msg)
    try:
        lambda_client.update_function_code(FunctionName=function_name, ImageUri=image_uri)
    except ClientError as exc:
        if _error_code(exc) != "ResourceConflictException":
            raise
    return "InProgress"


def _in_flight_for(codedeploy: Any, target: LambdaTarget, release_id: str) -> str | None:
    listing = codedeploy.list_deployments(
        applicationName=target.application,
        deploymentGroupName=target.deployment_group,
        includeOnlyStatuses=["Created", "Queued", "InProgress", "Baking", "Ready"],
    )
    for deployment_id in listing.get("deployments", []):
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if parse_description(info.get("description", "")).get("release") == release_id:
            return str(deployment_id)
    return None


def start(lambda_client: Any, codedeploy: Any, target: LambdaTarget, release: dict[str, Any], *,
          wait_seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Start (or find, on a retry) the canary deployment of `release` to `target`; status `Updating`
    when Lambda is still applying the image after `wait_seconds` (then `resume` it)."""
    release_id, digest, image_uri = release["id"], release["digest"], release["image_uri"]
    if "@sha256:" not in image_uri or not image_uri.endswith("@" + digest):
        msg = f"refusing to deploy {image_uri!r}: a release deploys by digest only"
        raise DeploymentFailed(msg)
    existing = _in_flight_for(codedeploy, target, release_id)
    if existing:
        return {"id": existing, "status": "InProgress", "environment": target.environment, "adopted": True}
    current_version = str(lambda_client.get_alias(FunctionName=target.function_name, Name=ALIAS)["FunctionVersion"])
    pending = {"id": None, "status": UPDATING, "environment": target.environment, "function": target.function_name,
               "release": release_id, "digest": digest, "image": image_uri, "previous_version": current_version}
    if release.get("config"):  # a fast rollback: the deployment overrides the group's canary (ALL_AT_ONCE)
        pending["config"] = str(release["config"])
    return _advance(lambda_client, codedeploy, target, pending, wait_seconds, sleep, clock, retry_failed=True)


def resume(lambda_client: Any, codedeploy: Any, target: LambdaTarget, pending: dict[str, Any], *,
           wait_seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Carry on a start that handed back `Updating`: the same answers as `start`."""
    existing = _in_flight_for(codedeploy, target, pending["release"])
    if existing:
        return {"id": existing, "status": "InProgress", "environment": target.environment, "adopted": True}
    return _advance(lambda_client, codedeploy, target, pending, wait_seconds, sleep, clock, retry_failed=False)


def _advance(lambda_client: Any, codedeploy: Any, target: LambdaTarget, pending: dict[str, Any], wait_seconds: float | None,
             sleep: Callable[[float], None], clock: Callable[[], float], *, retry_failed: bool) -> dict[str, Any]:
    deadline = clock() + (UPDATE_WAIT_SECONDS if wait_seconds is None else wait_seconds)
    while _code_update(lambda_client, target.function_name, pending["image"], retry_failed=retry_failed) != "Successful":
        retry_failed = False
        remaining = deadline - clock()
        if remaining <= 0:
            return pending | {"status": UPDATING}
        sleep(min(UPDATE_POLL_SECONDS, remaining))
    return _publish_and_deploy(lambda_client, codedeploy, target, pending)


def _publish_and_deploy(lambda_client: Any, codedeploy: Any, target: LambdaTarget, pending: dict[str, Any]) -> dict[str, Any]:
    release_id, digest, current_version = pending["release"], pending["digest"], str(pending["previous_version"])
    try:
        published = lambda_client.publish_version(
            FunctionName=target.function_name, Description=f"release {release_id} {digest}"[:256]
        )
    except ClientError as exc:
        if _error_code(exc) != "ResourceConflictException":
            raise
        return pending | {"status": UPDATING}  # an update started since the check: publish once it is done
    target_version = str(published["Version"])
    if target_version == current_version:
        return {
            "id": None,
            "status": TERMINAL_OK,
            "environment": target.environment,
            "version": target_version,
            "note": f"{digest} is already live on {target.function_name}",
        }
    content = appspec(target, current_version, target_version)
    try:
        deployment_id = codedeploy.create_deployment(
            applicationName=target.application,
            deploymentGroupName=target.deployment_group,
            revision={
                "revisionType": "AppSpecContent",
                "appSpecContent": {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()},
            },
            description=describe(release_id, digest, target.environment),
            **({"deploymentConfigName": pending["config"]} if pending.get("config") else {}),
        )["deploymentId"]
    except ClientError as exc:
        msg = f"CodeDeploy refused the {target.environment} deployment ({_error_code(exc)}): {exc}"
        raise DeploymentFailed(msg) from exc
    return {
        "id": deployment_id,
        "status": "InProgress",
        "environment": target.environment,
        "function": target.function_name,
        "previous_version": current_version,
        "version": target_version,
        **({"config": pending["config"]} if pending.get("config") else {}),
    }


def status(codedeploy: Any, deployment: dict[str, Any]) -> dict[str, Any]:
    """The deployment's state; raises DeploymentFailed (with CodeDeploy's reason) on rollback or failure."""
    if not deployment.get("id"):
        return deployment
    info = codedeploy.get_deployment(deploymentId=deployment["id"])["deploymentInfo"]
    state = info.get("status", "Unknown")
    if state in TERMINAL_FAILED:
        error = info.get("errorInformation") or {}
        rollback = info.get("rollbackInfo") or {}
        reason = error.get("message") or info.get("additionalDeploymentStatusInfo") or "no reason given"
        rolled = " and was rolled back" if rollback.get("rollbackDeploymentId") or rollback.get("rollbackMessage") else ""
        msg = (
            f"{deployment.get('environment', '?')} deployment {deployment['id']} {state.lower()}{rolled}: "
            f"{error.get('code', 'ERROR')}: {reason}"
        )
        raise DeploymentFailed(msg)
    overview = info.get("deploymentOverview") or {}
    return {**deployment, "status": state, "overview": {k: v for k, v in overview.items() if v}}


def abort(codedeploy: Any, deployments: list[dict[str, Any]], lambda_client: Any = None) -> list[str]:
    """Undo this release's Lambda deployments: stop those still in flight (CodeDeploy rolls them
    back), and point the alias back at the previous version for those that already succeeded (the
    release failed elsewhere, e.g. on the environment's other target). One that completes between
    the status read and the stop (CodeDeploy refuses the stop: DeploymentAlreadyCompletedException)
    is undone as a finished one. Returns what was undone."""
    undone = []

    def point_back(deployment: dict[str, Any]) -> None:
        if lambda_client is None or not deployment.get("previous_version"):
            return
        function, previous = deployment["function"], str(deployment["previous_version"])
        alias = lambda_client.get_alias(FunctionName=function, Name=ALIAS)
        if str(alias["FunctionVersion"]) == str(deployment.get("version")):
            lambda_client.update_alias(FunctionName=function, Name=ALIAS, FunctionVersion=previous, RoutingConfig={})
            undone.append(f"{function}:{ALIAS} back to version {previous}")

    for deployment in deployments:
        deployment_id = deployment.get("id")
        if not deployment_id:
            continue
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        status = info.get("status")
        if status == TERMINAL_OK:
            point_back(deployment)
            continue
        if status in TERMINAL_FAILED:
            continue
        try:
            codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DeploymentAlreadyCompletedException":
                raise
            # It completed between the two calls: a success is undone like any finished one.
            if codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"].get("status") == TERMINAL_OK:
                point_back(deployment)
            continue
        undone.append(str(deployment_id))
    return undone
