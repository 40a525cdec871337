"""EventBridge target: an ECR push becomes a release (at most once per repository and digest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.metrics import RELEASES_STARTED, metrics
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.actions import Actions
from podrelease.release.start import start_release

logger = get_logger()
tracer = get_tracer()
sfn = boto3.client("stepfunctions")
STATE_MACHINE_ARN = config.require("STATE_MACHINE_ARN")
WATCHED = config.csv("WATCHED_REPOSITORIES")
actions = Actions(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))  # a blocked digest pushed again


@dataclass(frozen=True)
class StartRequest:
    """An EventBridge event as it is (one that is no release is refused, named, by the first state),
    or an operator's `{"action": "rerelease", "repository", "digest", "attempt"}`."""

    event: Any

    @classmethod
    def parse(cls, event: Any) -> StartRequest:
        if isinstance(event, dict) and "action" in event:
            edge.action(event, ("rerelease",), "starter")
            for name, kind in (("repository", str), ("digest", str)):
                edge.field(event, name, kind, "starter")
            edge.field(event, "attempt", int, "starter", default=2)
        return cls(event)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_release(sfn, STATE_MACHINE_ARN, StartRequest.parse(event).event, WATCHED, actions.is_blocked)
    bind_release(logger, result.get("name"), tracer)  # the execution name is the release id
    metrics.add_metric(name=RELEASES_STARTED, unit="Count", value=1 if result.get("started") else 0)
    logger.info("release start", extra={"result": result})
    return result
