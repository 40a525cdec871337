"""Verify / VerifyProd Task: {"release": {"id", "repository", "digest", ...}, "environment": "dev" | "prod"}
-> the evidence of the environment's release policy for this exact digest, or its named refusal."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, get_tracer, release_id_of
from podrelease.verify.policy import ReleasePolicy, load_policy
from podrelease.verify.registry import EcrRegistry
from podrelease.verify.release_gate import GateRequest, gate_release, read_policy_parameter

logger = get_logger()
tracer = get_tracer()
ecr = boto3.client("ecr")
registry = EcrRegistry(ecr)
GRACE_SECONDS = config.integer("SIGNATURE_WAIT_SECONDS", 60)


@functools.cache  # once per execution environment; a failed read is not cached, the next release retries
def policy() -> ReleasePolicy:
    return load_policy(os.environ, read_policy_parameter)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event), tracer)
    request = GateRequest.parse(event)
    return gate_release(
        registry, ecr, policy(), request.repository, request.digest, request.environment, grace_seconds=GRACE_SECONDS,
        scan_repository=request.scan_repository, check_window=request.check_window, forecast_for=request.forecast,
    )
