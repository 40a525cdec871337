"""First state: validate the ECR push event into the release facts every later state uses."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger
from podrelease.release.start import normalize

logger = get_logger()
WATCHED = config.csv("WATCHED_REPOSITORIES")
SETTINGS = {
    "poll_seconds": config.integer("DEPLOY_POLL_SECONDS", 30),
    "approval_timeout_seconds": config.integer("APPROVAL_TIMEOUT_SECONDS", 86400),
}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, event.get("execution_name"))
    result = normalize(event.get("event"), event["execution"], event["execution_name"], WATCHED, SETTINGS)
    logger.info("release normalized", extra={"release": result["release"]})
    return result
