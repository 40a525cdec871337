"""EventBridge target: an ECR push becomes a release (at most once per repository and digest)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger
from podrelease.release.start import start_release

logger = get_logger()
sfn = boto3.client("stepfunctions")
STATE_MACHINE_ARN = config.require("STATE_MACHINE_ARN")
WATCHED = config.csv("WATCHED_REPOSITORIES")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_release(sfn, STATE_MACHINE_ARN, event, WATCHED)
    bind_release(logger, result.get("name"))  # the execution name is the release id
    logger.info("release start", extra={"result": result})
    return result
