"""Per-environment lock: one release in flight per environment (LockBusy makes the next one wait)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, release_id_of
from podrelease.release.ledger import Ledger

logger = get_logger()
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))
LEASE_SECONDS = config.integer("LOCK_LEASE_SECONDS", 7200)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    release_id = release_id_of(event) or ""
    bind_release(logger, release_id)
    environment = event["environment"]
    if event["action"] == "acquire":
        lock = ledger.acquire_lock(environment, release_id, LEASE_SECONDS)
        logger.info("lock acquired", extra={"environment": environment})
        return lock
    released = ledger.release_lock(environment, release_id)
    logger.info("lock released", extra={"environment": environment, "held": released})
    return {"environment": environment, "released": released}
