"""Watch a deployment without polling from the execution: `watch` keeps the task token, a CodeDeploy
state-change event or a one-time schedule moves it on (`tick`), `check` is the backstop; see
`podrelease.release.watch`."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.ledger import Ledger
from podrelease.release.rollout import Rollout
from podrelease.release.watch import Timer, Watcher, WatchRequest

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
rollout = Rollout.from_env(os.environ, boto3.client("lambda"), boto3.client("codedeploy"), Ledger(table),
                           lambda: (boto3.client("elbv2"), boto3.client("autoscaling"), boto3.client("cloudwatch")))
TICK_SECONDS = config.integer("TICK_SECONDS", 30)
watcher = Watcher(table, rollout, boto3.client("stepfunctions"), boto3.client("scheduler"), None)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = WatchRequest.parse(event, rollout)
    watcher.timer = watcher.timer or Timer.for_function(context.invoked_function_arn, TICK_SECONDS)
    if request.release_id:
        bind_release(logger, request.release_id, tracer)
    result = watcher.run(request)
    logger.info("watch step", extra={"action": request.action, "environment": request.environment, "result": result})
    return result
