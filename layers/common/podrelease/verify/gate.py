"""The gate as the release runs it: everything an environment's policy requires, with its waits.

A build pushes the image first, its signature right after (cosign needs the image's digest), and
its attestations (SBOM, provenance) later still: syft reads the whole image and every attestation
is a round trip to Fulcio and the transparency log. So the release may reach the gate before they
land. Two waits, both counted from the gate's start:

- the signature's grace (`grace_seconds`, the stack's SignatureWaitSeconds): only
  `SignatureMissing` is waited for;
- the attestations' wait (the environment's `attestation_wait_seconds`; absent, the signature's
  grace): only `SbomMissing` and `ProvenanceMissing` are waited for.

Every other refusal is final at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from podrelease.core.errors import ProvenanceMissing, SbomMissing, SignatureMissing, VerificationFailed
from podrelease.verify.provenance import verify_provenance
from podrelease.verify.registry import Registry
from podrelease.verify.sbom import verify_sbom
from podrelease.verify.scan import check_scan
from podrelease.verify.signatures import Verification, verify_image
from podrelease.verify.trust_policy import TrustPolicy

if TYPE_CHECKING:
    from podrelease.verify.policy import EnvironmentPolicy

_MAX_DELAY = 10.0
T = TypeVar("T")


def _waiting(
    check: Callable[[], T],
    missing: type[VerificationFailed],
    deadline: float,
    sleep: Callable[[float], Any],
    clock: Callable[[], float],
) -> T:
    """`check()`, retried with backoff while it raises `missing` and `deadline` is ahead."""
    delay = 1.0
    while True:
        try:
            return check()
        except missing:
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY)


def verify_with_grace(
    registry: Registry,
    repository: str,
    digest: str,
    policy: TrustPolicy,
    grace_seconds: float,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Verification:
    """The signature gate, waiting up to `grace_seconds` for a signature that is not there yet."""
    deadline = clock() + grace_seconds
    return _waiting(lambda: verify_image(registry, repository, digest, policy), SignatureMissing, deadline, sleep, clock)


def enforce(
    registry: Registry,
    ecr_client: Any,
    repository: str,
    digest: str,
    policy: EnvironmentPolicy,
    grace_seconds: float,
    *,
    attestation_wait: float | None = None,
    scan_repository: str | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run every check `policy` requires for repository@digest, in order: signature, SBOM (if
    required), provenance (if required), scan (if configured); return the combined evidence: the
    signature gate's, plus `sbom`, `provenance` and `scan`. Raises the first refusal (each a
    VerificationFailed subclass with a name). `attestation_wait` overrides the policy's wait (the
    command line passes 0); `scan_repository` is where the scan result is read (default:
    `repository`)."""
    started = clock()
    evidence: dict[str, Any] = verify_with_grace(
        registry, repository, digest, policy.trust, grace_seconds, sleep=sleep, clock=clock
    ).evidence
    if attestation_wait is None:
        attestation_wait = grace_seconds if policy.attestation_wait_seconds is None else policy.attestation_wait_seconds
    deadline = started + attestation_wait
    if policy.require_sbom:
        evidence["sbom"] = _waiting(
            lambda: verify_sbom(registry, repository, digest, policy.trust).evidence, SbomMissing, deadline, sleep, clock
        )
    required = policy.provenance
    if required is not None:
        evidence["provenance"] = _waiting(
            lambda: verify_provenance(registry, repository, digest, policy.trust, required).evidence,
            ProvenanceMissing, deadline, sleep, clock,
        )
    if policy.scan is not None:
        evidence["scan"] = check_scan(ecr_client, scan_repository or repository, digest, policy.scan, sleep=sleep, clock=clock)
    return evidence
