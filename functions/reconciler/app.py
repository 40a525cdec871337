"""EventBridge schedule target: pushes whose event was lost, and the starter's dead letters, become
releases (exactly once: the starter's rule and execution name); the oldest waiting approval's age."""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.approval.store import ApprovalStore
from podrelease.core import config, edge, metrics
from podrelease.core.obs import get_logger, get_tracer
from podrelease.release.ledger import Ledger
from podrelease.release.reconcile import DEFAULT_LOOKBACK_SECONDS, Reconciler

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
approvals = ApprovalStore(table)
reconciler = Reconciler(
    ecr=boto3.client("ecr"),
    sfn=boto3.client("stepfunctions"),
    sqs=boto3.client("sqs"),
    ledger=Ledger(table),
    state_machine_arn=config.require("STATE_MACHINE_ARN"),
    watched=config.csv("WATCHED_REPOSITORIES"),
    dead_letter_queue_url=config.require("DEAD_LETTER_QUEUE_URL"),
    lookback_seconds=config.integer("RECONCILE_LOOKBACK_SECONDS", DEFAULT_LOOKBACK_SECONDS),
    skip_digests=frozenset({config.require("BOOTSTRAP_IMAGE_URI").rpartition("@")[2]}),
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    edge.mapping(event, "reconciler")  # the schedule's event; nothing in it is read
    now = time.time()
    report = reconciler.run(now).to_dict()
    metrics.count(metrics.RECONCILER_STARTED, amount=len(report["started"]))
    metrics.count(metrics.DEAD_LETTERS_REDRIVEN, amount=len(report["redriven"]))
    waiting = [now - since for repository in reconciler.watched if (since := approvals.pending_since(repository)) is not None]
    metrics.hours(metrics.APPROVAL_PENDING_HOURS, max(waiting, default=0.0) / 3600)
    (logger.warning if report["started"] else logger.info)("reconciled", extra={"report": report})
    return report
