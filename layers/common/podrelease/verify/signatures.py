"""The signature gate: cosign signatures of one exact image digest, verified with trusted keys.

`verify_image` judges every candidate signature attached to the digest, in both of cosign's layouts
(`podrelease.verify.attachments` reads them: the legacy `sha256-<hex>.sig` tag and sigstore bundles
as OCI 1.1 referrers), each with the verifier of its format (`podrelease.verify.envelopes`) under
the release's `TrustPolicy` (`podrelease.verify.trust_policy`). One accepted signature passes the
gate; the others are listed as refusals. A bundle referrer whose (unauthenticated) predicate is not
cosign's image signature predicate is an attestation, listed as ignored evidence (the SBOM gate,
`podrelease.verify.sbom`, reads those).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from podrelease.core.errors import (
    DigestMismatch,
    MalformedSignature,
    PolicyError,
    RegistryError,
    SignatureInvalid,
    SignatureMissing,
    VerificationFailed,
)
from podrelease.core.obs import get_logger
from podrelease.verify.attachments import COSIGN_SIGN_PREDICATE, Attachment, read_attachments
from podrelease.verify.envelopes import SignatureEvidence, bundle_predicate_type, verify_bundle, verify_legacy_layer
from podrelease.verify.registry import OCI_INDEX, Registry, require_digest
from podrelease.verify.trust_policy import TrustPolicy

logger = get_logger(__name__)

#: When nothing verified, the most informative reason wins, in this order.
_REFUSAL_PRIORITY: tuple[type[VerificationFailed], ...] = (DigestMismatch, SignatureInvalid, MalformedSignature)


@dataclass(frozen=True)
class Verification:
    """A passed verification of repository@digest, with every signature examined."""

    repository: str
    digest: str
    signatures: tuple[SignatureEvidence, ...]
    refusals: tuple[dict[str, Any], ...] = ()
    ignored: tuple[dict[str, Any], ...] = ()

    @property
    def evidence(self) -> dict[str, Any]:
        return {
            "verified": True,
            "repository": self.repository,
            "digest": self.digest,
            "signatures": [s.to_dict() for s in self.signatures],
            "refusals": list(self.refusals),
            "ignored": list(self.ignored),
        }


@dataclass
class _Judged:
    accepted: list[SignatureEvidence] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    refused: list[VerificationFailed] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, error: VerificationFailed, source: str, manifest: str | None) -> None:
        self.refused.append(error)
        entry = {"source": source, "error": error.name, "reason": str(error)[:300]}
        if manifest:
            entry["signature_manifest"] = manifest
        self.refusals.append(entry)


def _judge(candidate: Attachment, policy: TrustPolicy, digest: str, judged: _Judged) -> None:
    """Verify one candidate: accepted, refused (with its reason), or ignored (an attestation)."""
    if candidate.error is not None:
        judged.refuse(candidate.error, candidate.source, candidate.manifest)
        return
    content = candidate.content or b""
    try:
        if not candidate.is_referrer:
            evidence = verify_legacy_layer(candidate.media_type, content, candidate.annotations, policy, digest)
        else:
            predicate = bundle_predicate_type(content)  # unauthenticated: only sorts attestations out
            if predicate is not None and predicate != COSIGN_SIGN_PREDICATE:
                judged.ignored.append(
                    {"referrer": candidate.manifest, "artifactType": candidate.media_type, "predicateType": predicate[:200]}
                )
                return
            evidence = verify_bundle(content, policy, digest)
    except (DigestMismatch, SignatureInvalid, MalformedSignature) as exc:
        judged.refuse(exc, candidate.source, candidate.manifest)
    else:
        judged.accepted.append(
            dataclasses.replace(evidence, signature_manifest=candidate.manifest, source=candidate.source)
        )


def verify_image(registry: Registry, repository: str, digest: str, policy: TrustPolicy) -> Verification:
    """Verify that repository@digest carries at least one signature, for this digest, by a key the
    policy trusts. Returns the evidence, or raises the most informative named refusal:
    SignatureMissing (nothing signature-like attached), DigestMismatch (a valid signature for
    another digest), SignatureInvalid (signatures, none by a trusted key), MalformedSignature
    (only unreadable ones). RegistryError (transient; also: no such image) and PolicyError pass
    through unchanged.
    The refusal's evidence (the same JSON-able shape) is on the error as `.evidence`.
    """
    if not isinstance(policy, TrustPolicy):
        msg = "no trust policy was given"
        raise PolicyError(msg)
    require_digest(digest)
    image = registry.get_manifest(repository, digest)
    if image is None:
        msg = f"{repository}@{digest} is not in the registry: there is no image whose signature to check"
        raise RegistryError(msg)
    if image.media_type == OCI_INDEX:
        logger.info("verifying a multi-platform index by its own digest", extra={"digest": digest})

    attached = read_attachments(registry, repository, digest, "signature")
    found = _Judged()
    for other in attached.passed_over:
        entry = {"referrer": other.manifest, "artifactType": other.artifact_type}
        if other.predicate_type is not None:
            entry["predicateType"] = other.predicate_type
        found.ignored.append(entry)
    for candidate in attached.candidates:
        _judge(candidate, policy, digest, found)

    if found.accepted:
        verification = Verification(
            repository=repository,
            digest=digest,
            signatures=tuple(found.accepted),
            refusals=tuple(found.refusals),
            ignored=tuple(found.ignored),
        )
        logger.info(
            "signature verified",
            extra={
                "digest": digest,
                "key_ids": sorted({s.key_id for s in found.accepted}),
                "refused": len(found.refusals),
            },
        )
        return verification

    error: VerificationFailed
    if not found.refused:
        note = f" ({len(found.ignored)} other artifacts attached, none a signature)" if found.ignored else ""
        error = SignatureMissing(f"no cosign signature is attached to {repository}@{digest}{note}")
    else:
        kind = next(k for k in _REFUSAL_PRIORITY if any(isinstance(e, k) for e in found.refused))
        first = next(e for e in found.refused if isinstance(e, kind))
        error = kind(
            f"{len(found.refused)} signature(s) attached to {repository}@{digest}, none accepted; "
            f"{kind.__name__}: {str(first)[:300]}"
        )
    # Optional context for the ledger and the approval page (errors.py's classes carry no fields).
    error.evidence = {  # type: ignore[attr-defined]
        "verified": False,
        "repository": repository,
        "digest": digest,
        "error": error.name,
        "signatures": [],
        "refusals": found.refusals,
        "ignored": found.ignored,
    }
    logger.warning("signature refused", extra={"digest": digest, "error": error.name, "refusals": found.refusals})
    raise error

