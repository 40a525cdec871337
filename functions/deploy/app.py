"""Deploy a digest to one environment, its Lambda target and its fleet side by side: `start`,
`status` (the poll loop) and `abort` (the failure path); see `podrelease.release.rollout`."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.ledger import Ledger
from podrelease.release.lockqueue import LockQueue
from podrelease.release.rollout import Request, Rollout

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
rollout = Rollout.from_env(os.environ, boto3.client("lambda"), boto3.client("codedeploy"), Ledger(table),
                           lambda: (boto3.client("elbv2"), boto3.client("autoscaling"), boto3.client("cloudwatch")))
# Abort lets go of the release's locks and hands each to the next waiter in the queue.
rollout.release_lock = LockQueue(table, boto3.client("stepfunctions"), config.integer("LOCK_LEASE_SECONDS", 7200)).release


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.parse(event)
    bind_release(logger, request.release_id, tracer)
    result = rollout.run(request)
    if request.action == "abort":
        logger.warning("release aborted", extra=result)
    else:
        logger.info("deployment step", extra={"action": request.action, "deployment": result})
    return result
