"""Per-environment lock: one release in flight per environment (LockBusy makes the next one wait)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.ledger import Ledger

logger = get_logger()
tracer = get_tracer()
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))
LEASE_SECONDS = config.integer("LOCK_LEASE_SECONDS", 7200)


@dataclass(frozen=True)
class LockRequest:
    action: str  # acquire | release
    environment: str
    release_id: str

    @classmethod
    def parse(cls, event: Any) -> LockRequest:
        body = edge.mapping(event, "lock")
        release = edge.field(body, "release", dict, "lock")
        return cls(edge.action(body, ("acquire", "release"), "lock"), edge.field(body, "environment", str, "lock"),
                   edge.field(release, "id", str, "lock: release"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = LockRequest.parse(event)
    bind_release(logger, request.release_id, tracer)
    result = ledger.lock(request.action, request.environment, request.release_id, LEASE_SECONDS)
    logger.info("lock step", extra={"action": request.action, "environment": request.environment, "lock": result})
    return result
