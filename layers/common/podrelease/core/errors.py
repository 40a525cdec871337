"""Named errors.

Each error's class name is what Step Functions sees as the `Error` of a failed Task (Lambda reports
the exception's type as `errorType`), so the state machine, the ledger and the person reading the
timeline all see the same name. Every message says what happened and, where it helps, what to do.
"""

from __future__ import annotations


class ReleaseError(Exception):
    """Base class: a release stopped for a reason that has a name."""

    #: True when retrying the same step may succeed (the state machine retries these).
    transient = False

    @property
    def name(self) -> str:
        return type(self).__name__


# --- the event that started the release -------------------------------------------------------
class MalformedEvent(ReleaseError):
    """The event is not a well-formed ECR image push (missing or invalid fields)."""


class InvalidRequest(ReleaseError):
    """A handler was called with an event it does not accept: an unknown action, a missing or
    mistyped field. The state machine and the functions' callers are the project's own, so this is
    a defect in the caller (the ASL or a test), named at the edge instead of a KeyError deeper in."""


class ForeignEvent(ReleaseError):
    """The event is well formed but not one this release control plane acts on."""


class EventTooLarge(ReleaseError):
    """The event is larger than any real ECR push event; it is refused unread."""


class DigestBlocked(ReleaseError):
    """An operator blocked this digest (`podrelease block`): no release of it starts until someone
    unblocks it (`podrelease unblock`); both are recorded in the ledger with who did it."""


# --- locks --------------------------------------------------------------------------------------
class LockBusy(ReleaseError):
    """Another release holds the environment's lock; the state machine waits and retries."""

    transient = True


# --- the signature gate -------------------------------------------------------------------------
class VerificationFailed(ReleaseError):
    """Base class of every refusal by the signature gate."""


class SignatureMissing(VerificationFailed):
    """No cosign signature was found for this digest."""


class SignatureInvalid(VerificationFailed):
    """A signature was found but does not verify with any trusted key."""


class DigestMismatch(VerificationFailed):
    """The signature is valid but was made for another image digest."""


class MalformedSignature(VerificationFailed):
    """A signature artifact exists but cannot be parsed (corrupt, oversized or wrong type)."""


class PolicyError(VerificationFailed):
    """The verification policy (keys, settings) is missing or cannot be parsed: never an allow."""


class SbomMissing(VerificationFailed):
    """The policy requires an SBOM attestation and none signed for this digest is attached
    (attestations for other digests count for nothing)."""


class SbomInvalid(VerificationFailed):
    """An SBOM attestation for this digest is attached but fails: its envelope does not verify
    with the environment's signers, or it cannot be read. One bad envelope fails the gate even
    when another one is good."""


class ProvenanceMissing(VerificationFailed):
    """The policy requires signed SLSA provenance and none signed for this digest is attached."""


class ProvenanceInvalid(VerificationFailed):
    """A provenance attestation for this digest is attached but fails: its envelope does not
    verify with the environment's signers, or it cannot be read as SLSA provenance v1."""


class ProvenanceMismatch(VerificationFailed):
    """Signed provenance for this digest names another builder, source repository or ref than the
    policy expects (or another builder than the certificate that signed it)."""


class ScanBlocked(VerificationFailed):
    """The image's ECR scan has findings at or above the policy's blocking severity."""


class ScanUnavailable(VerificationFailed):
    """The policy sets a scan threshold but there is no usable scan result for this digest (no
    scan, scan failed, or still in progress when the policy says not to wait any longer)."""


class RegistryError(ReleaseError):
    """The registry could not be read; usually transient."""

    transient = True


class PolicyUnavailable(ReleaseError):
    """The release policy's parameter could not be read for a reason that passes (throttling, a
    network error, an SSM fault): the state machine retries; a missing or forbidden parameter is a
    PolicyError instead."""

    transient = True


# --- deployment ---------------------------------------------------------------------------------
class DeploymentFailed(ReleaseError):
    """The deployment did not reach its target (rolled back, stopped or failed to start)."""


class LockLost(ReleaseError):
    """The release no longer holds the environment's lock when its deployment had just started: it
    was stopped or aborted meanwhile (or its lease ran out and another release took the environment).
    What it started there was undone at once; nothing of it stays live."""


class Superseded(ReleaseError):
    """A newer push of the same repository took (or waits for) the environment: this release deploys
    nothing, so the environment never moves back to an older digest unless a rollback asks for it."""


class OutsideDeployWindow(ReleaseError):
    """The environment's change window (or a freeze) keeps it closed longer than the release policy's
    max wait: the release deploys nothing there. Re-release when the window is near, or widen it."""


class HookCheckFailed(ReleaseError):
    """A traffic hook found the new version unhealthy."""


# --- approval -----------------------------------------------------------------------------------
class ApprovalRejected(ReleaseError):
    """A person rejected the release on the approval page."""


class ApprovalSuperseded(ReleaseError):
    """A newer release of the same repository reached approval: this one will not be promoted."""


class TokenInvalid(ReleaseError):
    """An approval link's token is forged, corrupt or bound to something else."""


class TokenExpired(ReleaseError):
    """An approval link's token is past its expiry."""


class AlreadyDecided(ReleaseError):
    """The release was already approved or rejected; a second decision changes nothing."""


class PromotionFailed(ReleaseError):
    """The image could not be copied to the prod repository by digest."""


class ConfigurationError(ReleaseError):
    """A function's environment is missing a setting it needs."""


# --- workload secret rotation (podrelease.rotation.workload_secret) -------------------------------------------------
class RotationError(ReleaseError):
    """Base class: a rotation step stopped; AWSCURRENT is left as it was."""


class SecretNotFound(RotationError):
    """The secret named by SecretId does not exist (or is not one this function rotates)."""


class RotationTokenUnknown(RotationError):
    """The ClientRequestToken is not a version of the secret, or not one staged AWSPENDING."""


class SecretKmsAccessDenied(RotationError):
    """Secrets Manager could not use the secret's KMS key for this role (key policy or IAM grant)."""


class SetSecretFailed(RotationError):
    """setSecret stopped part-way: some of the service's versions accept the pending value, others not."""


class SecretTestFailed(RotationError):
    """testSecret: the service does not accept a request authenticated with the pending value."""


class RotationTooSoon(RotationError):
    """The current key is younger than the grace it must keep (approval links still rely on it)."""


class RotationBusy(RotationError):
    """The environment's lock is held (a release deploying, or another rotation): this rotation waits."""

    transient = True
