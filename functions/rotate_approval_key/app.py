"""Secrets Manager rotation function of the approval-link signing key (see podrelease.rotation.approval_key).

Event: {"SecretId": arn, "ClientRequestToken": version id, "Step": createSecret|setSecret|testSecret|finishSecret}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from podrelease.approval.request import DEFAULT_TTL_SECONDS
from podrelease.core import config
from podrelease.core.obs import get_logger, get_tracer
from podrelease.rotation.approval_key import rotate

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
tracer = get_tracer()
ttl_seconds = config.integer("APPROVAL_TTL_SECONDS", DEFAULT_TTL_SECONDS)
secretsmanager = boto3.client("secretsmanager")


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    logger.info("rotation step", extra={"step": event.get("Step"), "version": event.get("ClientRequestToken")})
    rotate(secretsmanager, event, ttl_seconds=ttl_seconds)
