"""Deploy a digest to one environment's podinfo function through a CodeDeploy canary.

Actions: `start` (update code by digest, publish, start the deployment), `status` (poll; raises
DeploymentFailed on rollback), `abort` (failure path: stop this release's in-flight deployments,
which rolls them back, and release its locks).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease import config, deploy
from podrelease.ledger import Ledger
from podrelease.obs import bind_release, get_logger, release_id_of

logger = get_logger()
lambda_client = boto3.client("lambda")
codedeploy = boto3.client("codedeploy")
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))
TARGETS = {env: deploy.LambdaTarget.from_env(env, dict(os.environ)) for env in ("dev", "prod")}
REPOSITORIES = {"prod": config.require("PROD_REPOSITORY")}


def _image_uri(release: dict[str, Any], environment: str) -> str:
    repository = REPOSITORIES.get(environment, release["repository"])
    registry = f"{release['account']}.dkr.ecr.{release['region']}.amazonaws.com"
    return f"{registry}/{repository}@{release['digest']}"


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event["action"]
    if action == "abort":
        state = event.get("state") or {}
        release_id = release_id_of(state) or ""
        bind_release(logger, release_id)
        in_flight = [state[env]["deployment"] for env in ("dev", "prod") if isinstance(state.get(env), dict)]
        stopped = deploy.abort(codedeploy, in_flight)
        released = [env for env in ("dev", "prod") if release_id and ledger.release_lock(env, release_id)]
        logger.warning("release aborted", extra={"stopped": stopped, "locks_released": released})
        return {"stopped": stopped, "locks_released": released}

    release = event["release"]
    bind_release(logger, release["id"])
    environment = event["environment"]
    if action == "start":
        target_release = release | {"image_uri": _image_uri(release, environment)}
        result = deploy.start(lambda_client, codedeploy, TARGETS[environment], target_release)
        logger.info("deployment started", extra={"deployment": result})
        return result
    result = deploy.status(codedeploy, event["deployment"])
    logger.info("deployment status", extra={"deployment": result})
    return result
