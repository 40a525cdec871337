"""The Verify and VerifyProd states: one release's exact digest under its environment's policy.

The policy is the document in the SSM parameter RELEASE_POLICY_PARAMETER names (read with
`read_policy_parameter`, Powertools parameters), or the default that trusts the build workflow's
keyless identity (BUILD_IDENTITY); see `podrelease.verify.policy.load_policy`. A policy that cannot
be read or parsed is a PolicyError (or ConfigurationError): the release stops, named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities import parameters

from podrelease.core import edge
from podrelease.core.obs import get_logger
from podrelease.verify.gate import enforce
from podrelease.verify.policy import ReleasePolicy
from podrelease.verify.registry import Registry

logger = get_logger(__name__)

#: The state machine always names the environment; an event without one (an older execution, a
#: hand-run test) is checked under dev's policy, the one that runs first.
DEFAULT_ENVIRONMENT = "dev"


@dataclass(frozen=True)
class GateRequest:
    """The verify function's event: the release's repository and digest, and the environment;
    `scan_repository` (optional) is where the scan result is read: the VerifyPromoted state reads
    signatures and attestations from the prod repository after promotion, the scan from the
    workload repository that scanned the image on push."""

    repository: str
    digest: str
    environment: str
    scan_repository: str | None = None

    @classmethod
    def parse(cls, event: Any) -> GateRequest:
        release = edge.field(edge.mapping(event, "verify"), "release", dict, "verify")
        return cls(
            repository=edge.field(release, "repository", str, "verify.release"),
            digest=edge.field(release, "digest", str, "verify.release"),
            environment=edge.field(event, "environment", str, "verify", default=DEFAULT_ENVIRONMENT),
            scan_repository=edge.field(event, "scan_repository", str, "verify", default="") or None,
        )


def read_policy_parameter(name: str) -> str:
    """The policy document in the SSM parameter `name` (`name:version` pins a version), read now."""
    return str(parameters.get_parameter(name, force_fetch=True))


def gate_release(
    registry: Registry,
    ecr_client: Any,
    policy: ReleasePolicy,
    repository: str,
    digest: str,
    environment: str,
    *,
    grace_seconds: float,
    scan_repository: str | None = None,
) -> dict[str, Any]:
    """Everything `environment` requires of repository@digest (`podrelease.verify.gate.enforce`):
    the combined evidence, or the first refusal, a named VerificationFailed."""
    section = policy.environment(environment)
    evidence = enforce(registry, ecr_client, repository, digest, section, grace_seconds, scan_repository=scan_repository)
    logger.info("release gate passed", extra={"environment": section.name, "policy": policy.source, "evidence": evidence})
    return evidence
