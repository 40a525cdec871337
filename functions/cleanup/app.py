"""EventBridge target: a release execution that ended ABORTED, TIMED_OUT or FAILED without its record
gets the failure path's cleanup (undo, approval links withdrawn, record, email), exactly once."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.approval.store import ApprovalStore
from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.cleanup import Cleanup, Ending
from podrelease.release.ledger import Ledger

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
cleanup = Cleanup(
    sfn=boto3.client("stepfunctions"),
    lambda_client=boto3.client("lambda"),
    sns=boto3.client("sns"),
    ledger=Ledger(table),
    withdraw=ApprovalStore(table).withdraw,
    deploy_function=config.require("DEPLOY_FUNCTION"),
    notify_topic_arn=config.require("NOTIFY_TOPIC_ARN"),
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ending = Ending.parse(event)
    bind_release(logger, ending.name, tracer)
    result = cleanup.run(ending)
    (logger.error if result["cleaned"] else logger.info)("release ending", extra={"status": ending.status, "result": result})
    return result
