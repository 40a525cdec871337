"""First state: validate the ECR push event into the release facts every later state uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.actions import Actions
from podrelease.release.normalize import normalize

logger = get_logger()
tracer = get_tracer()
WATCHED = config.csv("WATCHED_REPOSITORIES")
SETTINGS = {
    "poll_seconds": config.integer("DEPLOY_POLL_SECONDS", 30),
    "approval_timeout_seconds": config.integer("APPROVAL_TIMEOUT_SECONDS", 86400),
    # The backstops of the two callback waits: a lost deployment event, a lock whose holder vanished.
    "watch_backstop_seconds": config.integer("WATCH_BACKSTOP_SECONDS", 900),
    "lock_wait_seconds": config.integer("LOCK_WAIT_SECONDS", 900),
}
actions = Actions(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))  # blocked digests (DigestBlocked)


@dataclass(frozen=True)
class NormalizeRequest:
    push: Any  # the execution's input, checked by `normalize` (its refusals are the ASL's named errors)
    execution: str
    execution_name: str  # the release id

    @classmethod
    def parse(cls, event: Any) -> NormalizeRequest:
        body = edge.mapping(event, "normalize")
        execution, name = (edge.field(body, key, str, "normalize") for key in ("execution", "execution_name"))
        return cls(body.get("event"), execution, name)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = NormalizeRequest.parse(event)
    bind_release(logger, request.execution_name, tracer)
    result = normalize(request.push, request.execution, request.execution_name, WATCHED, SETTINGS, actions.refuse_if_blocked)
    logger.info("release normalized", extra={"release": result["release"]})
    return result
