"""Signature gate: the cosign signature of this exact digest, before anything is deployed."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease import config
from podrelease.cosign import TrustPolicy
from podrelease.gate import verify_with_grace
from podrelease.obs import bind_release, get_logger, release_id_of
from podrelease.oci import EcrRegistry

logger = get_logger()
registry = EcrRegistry(boto3.client("ecr"))
POLICY = TrustPolicy.from_pem(config.require("COSIGN_PUBLIC_KEYS"))
GRACE_SECONDS = config.integer("SIGNATURE_WAIT_SECONDS", 60)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event))
    release = event["release"]
    verification = verify_with_grace(registry, release["repository"], release["digest"], POLICY, GRACE_SECONDS)
    evidence: dict[str, Any] = verification.evidence
    logger.info("signature verified", extra={"evidence": evidence})
    return evidence
