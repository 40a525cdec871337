"""EventBridge schedule target: synthetic checks of every environment's live podinfo endpoints;
`ProbeFailures` per environment is the metric of its prober alarm."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core import metrics as names
from podrelease.core.obs import get_logger, get_tracer
from podrelease.release.probe import Prober

logger = get_logger()
tracer = get_tracer()
ENVIRONMENTS = ("dev", "prod")
prober = Prober(
    lambda_client=boto3.client("lambda"),
    functions={e: config.require(f"PODINFO_{e.upper()}_FUNCTION") for e in ENVIRONMENTS},
    fleets={e: config.optional(f"FLEET_{e.upper()}_URL") for e in ENVIRONMENTS},
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    edge.mapping(event, "prober")  # the schedule's event; nothing in it is read
    results = prober.run()
    for result in results:
        names.count(names.PROBE_FAILURES, "environment", result["environment"], amount=len(result["failed"]))
        names.seconds(names.PROBE_LATENCY, result["seconds"], "environment", result["environment"])
        (logger.error if result["failed"] else logger.info)("probe", extra={"probe": result})
    return {"failed": {r["environment"]: r["failed"] for r in results}}
