"""Per-environment ordered lock: `acquire` takes it or queues the release's task token in push order
(a newer push of the repository supersedes older waiters); `release` hands it to the next waiter.
See `podrelease.release.lockqueue`."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.lockqueue import LockQueue, LockRequest

logger = get_logger()
tracer = get_tracer()
locks = LockQueue(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")), boto3.client("stepfunctions"),
                  config.integer("LOCK_LEASE_SECONDS", 7200))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = LockRequest.parse(event)
    bind_release(logger, request.release["id"], tracer)
    if request.action == "acquire":
        result = locks.acquire(request.environment, request.release, request.task_token)
    else:
        result = {"environment": request.environment, "released": locks.release(request.environment, request.release["id"])}
    logger.info("lock step", extra={"action": request.action, "environment": request.environment, "lock": result})
    return result
