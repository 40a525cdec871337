"""The Verify and VerifyProd states: one release's exact digest under its environment's policy.

The policy is the document in the SSM parameter RELEASE_POLICY_PARAMETER names (read with
`read_policy_parameter`, Powertools parameters), or the default that trusts the build workflow's
keyless identity (BUILD_IDENTITY); see `podrelease.verify.policy.load_policy`. A policy that cannot
be read or parsed is a PolicyError (or ConfigurationError): the release stops, named.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities import parameters

from podrelease.core import edge
from podrelease.core.obs import get_logger
from podrelease.verify.gate import enforce
from podrelease.verify.policy import ReleasePolicy
from podrelease.verify.registry import Registry
from podrelease.verify.windows import Clock, decide, forecast, utc_now

logger = get_logger(__name__)

#: The state machine always names the environment; an event without one (an older execution, a
#: hand-run test) is checked under dev's policy, the one that runs first.
DEFAULT_ENVIRONMENT = "dev"


@dataclass(frozen=True)
class GateRequest:
    """The verify function's event: the release's repository and digest, and the environment;
    `scan_repository` (optional) is where the scan result is read: the VerifyPromoted state reads
    signatures and attestations from the prod repository after promotion, the scan from the
    workload repository that scanned the image on push. `check_window`: the environment's deploy
    window is checked now (the states before a deploy ask; VerifyPromoted does not); `forecast`:
    another environment whose window the evidence forecasts (dev's gate forecasts prod's, for the
    approval page)."""

    repository: str
    digest: str
    environment: str
    scan_repository: str | None = None
    check_window: bool = False
    forecast: str | None = None

    @classmethod
    def parse(cls, event: Any) -> GateRequest:
        release = edge.field(edge.mapping(event, "verify"), "release", dict, "verify")
        return cls(
            repository=edge.field(release, "repository", str, "verify.release"),
            digest=edge.field(release, "digest", str, "verify.release"),
            environment=edge.field(event, "environment", str, "verify", default=DEFAULT_ENVIRONMENT),
            scan_repository=edge.field(event, "scan_repository", str, "verify", default="") or None,
            check_window=edge.field(event, "check_window", bool, "verify", default=False),
            forecast=edge.field(event, "forecast_window", str, "verify", default="") or None,
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
    check_window: bool = False,
    forecast_for: str | None = None,
    clock: Clock = utc_now,
) -> dict[str, Any]:
    """Everything `environment` requires of repository@digest (`podrelease.verify.gate.enforce`):
    the combined evidence, or the first refusal, a named VerificationFailed. With `check_window`,
    the environment's deploy window first (`podrelease.verify.windows.decide`: OutsideDeployWindow
    before anything is read) and its decision in the evidence's `window`; with `forecast_for`, that
    environment's window as of now in `window_ahead`."""
    section = policy.environment(environment)
    now: dt.datetime = clock()
    window = decide(section.window, environment, now) if check_window else None
    evidence = enforce(registry, ecr_client, repository, digest, section, grace_seconds, scan_repository=scan_repository)
    if window is not None:
        evidence["window"] = window
    if forecast_for is not None:
        ahead = policy.environment(forecast_for).window
        evidence["window_ahead"] = {"environment": forecast_for, **forecast(ahead, forecast_for, now)}
    logger.info("release gate passed", extra={"environment": section.name, "policy": policy.source, "evidence": evidence})
    return evidence
