"""Release gate: the environment's policy (signature, SBOM attestation, scan) for this exact digest.

Event: `{"release": {...}, "environment": "dev" | "prod"}` (the Verify and VerifyProd states). The
policy comes from RELEASE_POLICY (a JSON document, see `podrelease.policy`) or, when that is blank,
the COSIGN_PUBLIC_KEYS shorthand (both environments accept those keys; no SBOM, no scan). A policy
that cannot be parsed fails the function at cold start: no release passes an unreadable policy.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease import config
from podrelease.obs import bind_release, get_logger, release_id_of
from podrelease.oci import EcrRegistry
from podrelease.policy import enforce, load_policy

logger = get_logger()
ecr = boto3.client("ecr")
registry = EcrRegistry(ecr)
POLICY = load_policy(os.environ)
GRACE_SECONDS = config.integer("SIGNATURE_WAIT_SECONDS", 60)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event))
    release = event["release"]
    # The state machine always names the environment; an event without one (an older execution,
    # a hand-run test) is checked under dev's policy, the one that runs first.
    environment = POLICY.environment(event.get("environment", "dev"))
    evidence = enforce(registry, ecr, release["repository"], release["digest"], environment, GRACE_SECONDS)
    logger.info("release gate passed", extra={"environment": environment.name, "evidence": evidence})
    return evidence
