"""Deploy a digest to one environment: its podinfo function through a CodeDeploy canary and, when
the stack has one, its EC2 fleet blue/green (podrelease.release.fleet), side by side.

Actions: `start` (update code by digest, publish, start the deployment; start the fleet's idle
colour; `Updating` while Lambda still applies the image), `status` (carry on an `Updating` start,
poll CodeDeploy and advance the fleet; raises DeploymentFailed on rollback; `Succeeded` once both
targets are), `abort` (failure path: in the environment the release
was deploying, stop in-flight deployments (CodeDeploy rolls them back), point a finished alias back,
move fleet traffic back; then release its locks).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, release_id_of
from podrelease.release import fleet
from podrelease.release import lambda_target as deploy
from podrelease.release.ledger import Ledger

logger = get_logger()
lambda_client = boto3.client("lambda")
codedeploy = boto3.client("codedeploy")
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))
ENVIRONMENTS = ("dev", "prod")
TARGETS = {env: deploy.LambdaTarget.from_env(env, dict(os.environ)) for env in ENVIRONMENTS}
REPOSITORIES = {"prod": config.require("PROD_REPOSITORY")}
_MINUTE = float(config.optional("CANARY_MINUTE_SECONDS", "60"))
FLEETS = {env: fleet.FleetTarget.from_env(env, os.environ.get(f"FLEET_{env.upper()}", ""), _MINUTE) for env in ENVIRONMENTS}
_fleet_clients: dict[str, Any] = {}


def _fleet(environment: str) -> fleet.Fleet | None:
    target = FLEETS[environment]
    if target is None:
        return None
    if not _fleet_clients:
        _fleet_clients.update(elb=boto3.client("elbv2"), asg=boto3.client("autoscaling"), cw=boto3.client("cloudwatch"))
    return fleet.Fleet(_fleet_clients["elb"], _fleet_clients["asg"], _fleet_clients["cw"], target)


def _image_uri(release: dict[str, Any], environment: str) -> str:
    repository = REPOSITORIES.get(environment, release["repository"])
    registry = f"{release['account']}.dkr.ecr.{release['region']}.amazonaws.com"
    return f"{registry}/{repository}@{release['digest']}"


def _combined(result: dict[str, Any]) -> dict[str, Any]:
    """`status` is Succeeded only when the Lambda target and the fleet (if any) both are."""
    if "fleet" not in result:
        return result
    done = result["lambda_status"] == deploy.TERMINAL_OK and result["fleet"]["phase"] == "Succeeded"
    return result | {"status": deploy.TERMINAL_OK if done else "InProgress"}


def _start(release: dict[str, Any], environment: str) -> dict[str, Any]:
    image_uri = _image_uri(release, environment)
    result = deploy.start(lambda_client, codedeploy, TARGETS[environment], release | {"image_uri": image_uri})
    controller = _fleet(environment)
    if controller is not None:
        state = controller.start(release["id"], release["digest"], image_uri)
        result = result | {"lambda_status": result["status"], "fleet": state}
    return _combined(result)


def _status(environment: str, deployment: dict[str, Any]) -> dict[str, Any]:
    fleet_state = deployment.get("fleet")
    lambda_part = {k: v for k, v in deployment.items() if k not in ("fleet", "lambda_status")}
    lambda_part["status"] = deployment.get("lambda_status", deployment.get("status"))
    if lambda_part["status"] == deploy.UPDATING:  # Lambda was still applying the image: carry on the start
        lambda_part = deploy.resume(lambda_client, codedeploy, TARGETS[environment], lambda_part)
    elif lambda_part["status"] != deploy.TERMINAL_OK:
        lambda_part = deploy.status(codedeploy, lambda_part)
    controller = _fleet(environment)
    if fleet_state is None or controller is None:
        return lambda_part
    lambda_done = lambda_part["status"] == deploy.TERMINAL_OK
    advanced = controller.advance(fleet_state, retire=lambda_done)
    return _combined(lambda_part | {"lambda_status": lambda_part["status"], "fleet": advanced})


def _abort(state: dict[str, Any]) -> dict[str, Any]:
    release_id = release_id_of(state) or ""
    bind_release(logger, release_id)
    in_flight = {env: state[env]["deployment"] for env in ENVIRONMENTS
                 if isinstance(state.get(env), dict) and isinstance(state[env].get("deployment"), dict)}
    # The environment(s) this release still holds were being deployed when it failed: everything
    # there is undone, finished targets included. An environment it already let go of (dev, once
    # its canary passed) keeps the release: a rejected promotion does not roll dev back.
    holding = {env for env in ENVIRONMENTS if release_id and ledger.lock_holder(env) == release_id}
    stopped: list[str] = []
    for env, deployment in in_flight.items():
        stopped += deploy.abort(codedeploy, [deployment], lambda_client if env in holding else None)
        controller = _fleet(env)
        if controller is not None and env in holding and isinstance(deployment.get("fleet"), dict):
            undone = controller.abort(deployment["fleet"])
            if undone:
                stopped.append(undone)
    released = [env for env in ENVIRONMENTS if release_id and ledger.release_lock(env, release_id)]
    logger.warning("release aborted", extra={"stopped": stopped, "locks_released": released})
    return {"stopped": stopped, "locks_released": released}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event["action"]
    if action == "abort":
        return _abort(event.get("state") or {})
    release = event["release"]
    bind_release(logger, release["id"])
    environment = event["environment"]
    if action == "start":
        result = _start(release, environment)
        logger.info("deployment started", extra={"deployment": result})
        return result
    result = _status(environment, event["deployment"])
    logger.info("deployment status", extra={"deployment": result})
    return result
