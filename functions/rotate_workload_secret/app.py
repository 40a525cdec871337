"""Rotation of the workload secret (podinfo's JWT signing secret), the four Secrets Manager steps.

Secrets Manager invokes this with {"Step", "SecretId", "ClientRequestToken"}; SecretId may be the
secret's ARN or its name. See `podrelease.rotation.workload_secret` for what each step does.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import SecretsManagerEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import get_logger, get_tracer
from podrelease.release.ledger import Ledger
from podrelease.rotation.workload_secret import RotationStep, rotator_from_env

logger = get_logger()
tracer = get_tracer()
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))
rotator = rotator_from_env(os.environ, boto3.client("secretsmanager"), boto3.client("lambda"), ledger,
                           boto3.client("stepfunctions"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=SecretsManagerEvent)
def handler(event: SecretsManagerEvent, context: LambdaContext) -> dict[str, Any]:
    request = RotationStep.of(event)
    logger.append_keys(rotation_step=request.step, rotation_version=request.token)
    tracer.put_annotation("rotation_step", request.step)
    logger.info("rotation step started", extra={"secret_id": request.secret_id})
    result = rotator.rotate(request.step, request.secret_id, request.token)
    logger.info("rotation step done", extra={"result": result["state"], "environment": result["environment"]})
    return result
