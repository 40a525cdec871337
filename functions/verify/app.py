"""Release gate: the environment's policy (signature, SBOM attestation, scan) for this exact digest.

Event: `{"release": {...}, "environment": "dev" | "prod"}` (the Verify and VerifyProd states). The
policy is read once per execution environment, on its first release: the document in the SSM
parameter RELEASE_POLICY_PARAMETER names (Powertools parameters), or the default that trusts the
build workflow's keyless identity (BUILD_IDENTITY); see `podrelease.verify.policy.load_policy`. A policy
that cannot be read or parsed is a PolicyError (or ConfigurationError): the release stops, named.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, release_id_of
from podrelease.verify.policy import ReleasePolicy, enforce, load_policy
from podrelease.verify.registry import EcrRegistry

logger = get_logger()
ecr = boto3.client("ecr")
registry = EcrRegistry(ecr)
GRACE_SECONDS = config.integer("SIGNATURE_WAIT_SECONDS", 60)


def _read_parameter(name: str) -> str:
    return str(parameters.get_parameter(name, force_fetch=True))


@functools.cache
def policy() -> ReleasePolicy:
    """Once per execution environment (a failed read is not cached: the next release tries again)."""
    return load_policy(os.environ, _read_parameter)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event))
    release = event["release"]
    # The state machine always names the environment; an event without one (an older execution,
    # a hand-run test) is checked under dev's policy, the one that runs first.
    environment = policy().environment(event.get("environment", "dev"))
    evidence = enforce(registry, ecr, release["repository"], release["digest"], environment, GRACE_SECONDS)
    logger.info("release gate passed", extra={"environment": environment.name, "policy": policy().source, "evidence": evidence})
    return evidence
