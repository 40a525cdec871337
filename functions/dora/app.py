"""EventBridge schedule target: the DORA metrics of the last DORA_WINDOW_DAYS, computed from the
ledger's release records and published with Powertools Metrics (EMF) for the releases dashboard;
see `podrelease.release.dora`."""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.obs import get_logger, get_tracer
from podrelease.release.dora import publish_from_ledger

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
WINDOW_DAYS = config.integer("DORA_WINDOW_DAYS", 30)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    edge.mapping(event, "dora")  # the schedule's event; nothing in it is read
    figures = publish_from_ledger(table, time.time(), WINDOW_DAYS)
    logger.info("dora metrics published", extra={"dora": figures})
    return figures
