"""The SBOM gate: a signed SBOM attestation whose subject is this exact image digest.

An SBOM attestation is an in-toto Statement (payload type `application/vnd.in-toto+json`) in a DSSE
envelope, with predicate type SPDX (`https://spdx.dev/Document`) or CycloneDX
(`https://cyclonedx.org/bom`) and the SBOM document itself as the predicate. cosign stores them in
two places, and both are read:

1. **Legacy `.att` tag** (cosign v1/v2, and v3 with `--new-bundle-format=false`). As read in
   sigstore/cosign: `specs/ATTESTATION_SPEC.md` (an attestation is an OCI image manifest; each
   attestation is one layer of media type `application/vnd.dsse.envelope.v1+json`, the DSSE
   envelope JSON being the layer's blob); `cmd/cosign/cli/attest/attest.go` (`cosign attest` wraps
   the signer with `dsse.WrapSigner(sv, types.IntotoPayloadType)`, adds the layer annotation
   `predicateType: <predicate URI>`, and for keyless the certificate annotations
   `dev.sigstore.cosign/certificate` and `dev.sigstore.cosign/chain`);
   `pkg/oci/static/signature.go` (`NewAttestation` is a signature layer with an *empty*
   `dev.cosignproject.cosign/signature` annotation: the signature lives inside the envelope); and
   the tag suffix `.att` (`AttestationTagSuffix`), so the tag is `sha256-<hex>.att`.
2. **Sigstore bundle referrers** (cosign v3's default): a bundle v0.3 with a `dsseEnvelope`, in an
   OCI 1.1 referrer manifest of `artifactType` `application/vnd.dev.sigstore.bundle.v0.3+json`
   with the annotation `dev.sigstore.bundle.predicateType` (see `podrelease.verify.envelopes`'s docstring).

Both are read by `podrelease.verify.attachments`; this module only judges what it finds.

Rules (stricter than "find one good one"):

- An envelope is **used** when it is an SBOM attestation for this digest: its statement's
  predicate is SPDX or CycloneDX (or its annotation announces one) and its subjects include this
  digest. Every used envelope must verify under the environment's signers (`verify_dsse`, the same
  code as the signature gate) and be a well-formed SBOM statement; **one failing used envelope
  fails the gate** (`SbomInvalid`), even beside a good one.
- An envelope that cannot be read at all (corrupt JSON, oversized, not base64) is used unless its
  annotation announces a non-SBOM predicate: unreadable, it cannot be told apart from a damaged
  SBOM, so it fails closed (`SbomInvalid`).
- An SBOM attestation whose subject is **another digest counts for nothing**: it is listed in the
  evidence (`other_digests`) and neither passes nor fails the gate. With nothing else attached
  that is `SbomMissing`, whose message names the other digest. (Chosen over `SbomInvalid`: an
  attestation about another image says nothing, good or bad, about this one.)
- Other predicates (provenance, vulnerability reports, cosign image signatures) are ignored here;
  the signature gate reads signatures.

Evidence per counted SBOM: format (`spdx` | `cyclonedx`), predicate type, the SBOM document's own
digest (`sha256:` of its canonical JSON, keys sorted, no whitespace, UTF-8; of its UTF-8 text when
the predicate is a string such as SPDX tag-value), the signer's key id (and identity, when the
keyless verifier's key carries one), where it was found, and the SBOM's spec version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from podrelease.core.errors import (
    DigestMismatch,
    MalformedSignature,
    PolicyError,
    SbomInvalid,
    SbomMissing,
    SignatureInvalid,
    VerificationFailed,
)
from podrelease.core.obs import get_logger
from podrelease.verify.attachments import (
    DSSE_ENVELOPE_MEDIA_TYPE,
    Attachment,
    read_attachments,
)
from podrelease.verify.decoding import json_object
from podrelease.verify.envelopes import (
    MAX_SIGNATURE_BYTES,
    DsseResult,
    bundle_object,
    in_toto_statement,
    is_certificate_material,
    statement_subjects,
    unverified_statement,
    verify_dsse,
)
from podrelease.verify.registry import Registry, require_digest
from podrelease.verify.trust_policy import TrustPolicy

logger = get_logger(__name__)

SPDX_PREDICATE = "https://spdx.dev/Document"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
SBOM_PREDICATES: Mapping[str, str] = {SPDX_PREDICATE: "spdx", CYCLONEDX_PREDICATE: "cyclonedx"}


@dataclass(frozen=True)
class SbomEvidence:
    """One SBOM attestation that counted."""

    format: str
    predicate_type: str
    sbom_digest: str
    key_id: str
    source: str
    attestation_manifest: str
    signer_identity: str | None = None
    spec_version: str | None = None
    signer: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "predicate_type": self.predicate_type,
            "sbom_digest": self.sbom_digest,
            "key_id": self.key_id,
            "source": self.source,
            "attestation_manifest": self.attestation_manifest,
        }
        if self.signer_identity is not None:
            out["signer_identity"] = self.signer_identity
        if self.spec_version is not None:
            out["spec_version"] = self.spec_version
        if self.signer is not None:
            out["signer"] = dict(self.signer)
        return out


@dataclass(frozen=True)
class SbomVerification:
    """A passed SBOM gate: every used envelope verified, at least one counted."""

    repository: str
    digest: str
    sboms: tuple[SbomEvidence, ...]
    other_digests: tuple[dict[str, Any], ...] = ()
    ignored: tuple[dict[str, Any], ...] = ()

    @property
    def evidence(self) -> dict[str, Any]:
        return {
            "verified": True,
            "digest": self.digest,
            "sboms": [s.to_dict() for s in self.sboms],
            "other_digests": list(self.other_digests),
            "ignored": list(self.ignored),
        }


@dataclass
class Candidate:
    """An attestation envelope found attached to the image, not yet trusted."""

    source: str
    manifest: str
    envelope: Mapping[str, Any] | None = None
    material: Mapping[str, Any] = field(default_factory=dict)
    announced: str | None = None
    error: VerificationFailed | None = None
    bundle_json: bytes | None = None

    def where(self) -> dict[str, Any]:
        return {"source": self.source, "attestation_manifest": self.manifest}


# --- what each attached candidate is -------------------------------------------------------------


def attestation_candidate(
    attachment: Attachment, ignored: list[dict[str, Any]], predicates: Collection[str] = SBOM_PREDICATES.keys()
) -> Candidate | None:
    """The envelope (and its verification material) of one attached attestation; None when it is
    not an attestation at all (listed in `ignored`, or an image signature, the signature gate's).
    `predicates`: the predicate types the caller judges (an announced one with the wrong layout
    is a malformed candidate rather than something to ignore)."""
    where = attachment.source if attachment.layer is None else f"{attachment.source}#{attachment.layer}"
    candidate = Candidate(source=where, manifest=attachment.manifest, announced=attachment.announced)
    if attachment.error is not None:
        candidate.error = attachment.error
        return candidate
    if attachment.is_referrer:
        return _referrer_candidate(attachment, candidate, predicates)
    if attachment.media_type != DSSE_ENVELOPE_MEDIA_TYPE:
        if attachment.announced in predicates:
            candidate.error = MalformedSignature(
                f"layer announces {attachment.announced} but has media type {attachment.media_type[:80]!r}, "
                f"not {DSSE_ENVELOPE_MEDIA_TYPE}"
            )
            return candidate
        ignored.append({**candidate.where(), "mediaType": attachment.media_type[:120]})
        return None
    candidate.material = dict(attachment.annotations)
    try:
        candidate.envelope = json_object(attachment.content or b"", "the DSSE envelope", limit=MAX_SIGNATURE_BYTES)
    except MalformedSignature as exc:
        candidate.error = exc
    return candidate


def _referrer_candidate(attachment: Attachment, candidate: Candidate, predicates: Collection[str]) -> Candidate | None:
    candidate.bundle_json = attachment.content or b""
    try:
        bundle = bundle_object(candidate.bundle_json)
    except MalformedSignature as exc:
        candidate.error = exc
        return candidate
    if "messageSignature" in bundle and "dsseEnvelope" not in bundle:
        if attachment.announced in predicates:
            candidate.error = MalformedSignature(
                f"bundle announces {str(attachment.announced)[:80]} but holds a message signature, not a DSSE statement"
            )
            return candidate
        return None  # a message signature is an image signature, not an attestation
    material = bundle.get("verificationMaterial")
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(material, dict) or not isinstance(envelope, dict):
        candidate.error = MalformedSignature("bundle has no verificationMaterial or no dsseEnvelope object")
    else:
        candidate.envelope, candidate.material = envelope, material
    return candidate


# --- judging it ---------------------------------------------------------------------------------


def peek(candidate: Candidate) -> tuple[str | None, list[str]]:
    """The statement's predicate type and subject digests, read WITHOUT verifying: only to decide
    whether the envelope is used. (None, []) when unreadable."""
    if candidate.error is not None or candidate.envelope is None:
        return None, []
    try:
        statement = unverified_statement(candidate.envelope)
        predicate = statement.get("predicateType")
        return (predicate if isinstance(predicate, str) else None), statement_subjects(statement)
    except MalformedSignature:
        return None, []


def _canonical_digest(predicate: Any) -> str:
    if isinstance(predicate, str):
        data = predicate.encode()
    else:
        data = json.dumps(predicate, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_document(fmt: str, predicate: Any) -> str | None:
    """The SBOM's spec version, after checking the predicate looks like the announced format."""
    if fmt == "spdx":
        if isinstance(predicate, dict) and isinstance(predicate.get("spdxVersion"), str):
            version = predicate["spdxVersion"]
            if version.startswith("SPDX-"):
                return str(version)[:40]
        if isinstance(predicate, str) and predicate.lstrip().startswith("SPDXVersion:"):
            return predicate.lstrip().splitlines()[0].partition(":")[2].strip()[:40]
        msg = "the SPDX predicate is not an SPDX document (no spdxVersion 'SPDX-x.y')"
        raise MalformedSignature(msg)
    if isinstance(predicate, dict) and predicate.get("bomFormat") == "CycloneDX":
        spec = predicate.get("specVersion")
        return str(spec)[:40] if spec is not None else None
    msg = "the CycloneDX predicate is not a CycloneDX BOM (bomFormat is not 'CycloneDX')"
    raise MalformedSignature(msg)


def signer_of(key: object) -> tuple[str | None, dict[str, Any] | None]:
    """(identity, signer details) of a key a keyless verifier vouched for; (None, None) for keys."""
    signer = getattr(key, "signer", None)
    if not isinstance(signer, Mapping):
        return None, None
    identity = signer.get("identity")
    details = {k: signer[k] for k in ("identity", "issuer", "signed_at", "log_index") if k in signer}
    return (str(identity) if identity is not None else None), details


def verified_statement(
    candidate: Candidate, policy: TrustPolicy, digest: str, predicates: Collection[str], what: str
) -> tuple[dict[str, Any], DsseResult]:
    """The signed in-toto statement of a used candidate, after its signature verified under
    `policy`, its predicate is one of `predicates` (`what` names them in refusals: "SBOM") and
    what was announced, and its subjects include `digest`. Raises SignatureInvalid, MalformedSignature or DigestMismatch."""
    if candidate.error is not None:
        raise candidate.error
    if candidate.envelope is None:  # pragma: no cover - every candidate has one or the other
        msg = "attestation has no envelope"
        raise MalformedSignature(msg)
    if candidate.bundle_json is not None and policy.keyless is not None and is_certificate_material(candidate.material):
        # A whole keyless bundle is first checked end to end by the keyless verifier, as the
        # signature gate does for signature bundles (absent on verifiers without that hook).
        check_bundle = getattr(policy.keyless, "check_bundle", None)
        if callable(check_bundle):
            check_bundle(candidate.bundle_json, digest)
    result = verify_dsse(candidate.envelope, policy, material=candidate.material)
    # From here on, only the authenticated payload is read.
    statement = in_toto_statement(result.payload_type, result.payload)
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or predicate_type not in predicates:
        msg = f"statement predicate {str(predicate_type)[:80]!r} is not an {what} predicate ({', '.join(sorted(predicates))})"
        raise MalformedSignature(msg)
    if candidate.announced is not None and candidate.announced != predicate_type:
        msg = f"the attestation announces {candidate.announced[:80]!r} but its signed statement says {predicate_type!r}"
        raise MalformedSignature(msg)
    expected_hex = digest.removeprefix("sha256:")
    signed = statement_subjects(statement)
    if expected_hex not in signed:
        msg = f"valid {what} attestation by key {result.key.key_id[:16]} is not about {digest}"
        raise DigestMismatch(msg)
    return statement, result


def _verify_used(candidate: Candidate, policy: TrustPolicy, digest: str) -> SbomEvidence:
    statement, result = verified_statement(candidate, policy, digest, SBOM_PREDICATES.keys(), "SBOM")
    predicate_type = str(statement["predicateType"])
    fmt = SBOM_PREDICATES[predicate_type]
    predicate = statement.get("predicate")
    spec_version = _check_document(fmt, predicate)
    identity, signer = signer_of(result.key)
    return SbomEvidence(
        format=fmt,
        predicate_type=predicate_type,
        sbom_digest=_canonical_digest(predicate),
        key_id=result.key.key_id,
        source=candidate.source,
        attestation_manifest=candidate.manifest,
        signer_identity=identity,
        spec_version=spec_version,
        signer=signer,
    )


def _sort_candidates(
    candidates: list[Candidate], digest: str, ignored: list[dict[str, Any]]
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """The candidates the gate must verify, and SBOMs attached for another digest; the rest (not an
    SBOM) go to `ignored`."""
    expected_hex = digest.removeprefix("sha256:")
    used: list[Candidate] = []
    other_digests: list[dict[str, Any]] = []
    for candidate in candidates:
        predicate, subjects = peek(candidate)
        announced = candidate.announced
        if predicate is None:
            # Unreadable: used unless announced as something other than an SBOM.
            if announced is not None and announced not in SBOM_PREDICATES:
                ignored.append({**candidate.where(), "predicateType": announced[:200]})
            else:
                used.append(candidate)
        elif predicate not in SBOM_PREDICATES and announced not in SBOM_PREDICATES:
            ignored.append({**candidate.where(), "predicateType": predicate[:200]})
        elif predicate in SBOM_PREDICATES and expected_hex not in subjects:
            shown = ", ".join(f"sha256:{s[:64]}" for s in subjects[:3]) or "no sha256 digest"
            other_digests.append({**candidate.where(), "predicateType": predicate, "subjects": shown})
        else:
            used.append(candidate)
    return used, other_digests


def verify_sbom(registry: Registry, repository: str, digest: str, policy: TrustPolicy) -> SbomVerification:
    """Require a signed SBOM attestation for repository@digest (see the module docstring).

    Raises SbomInvalid (a used envelope failed), SbomMissing (none for this digest), PolicyError
    (no policy); RegistryError passes through (transient). The refusal's evidence is on the error
    as `.evidence`.
    """
    if not isinstance(policy, TrustPolicy):
        msg = "no trust policy was given"
        raise PolicyError(msg)
    require_digest(digest)
    ignored: list[dict[str, Any]] = []
    try:
        attached = read_attachments(registry, repository, digest, "attestation")
    except MalformedSignature as exc:  # more attached than is read
        raise _refusal(SbomInvalid(str(exc)), repository, digest, [], [], ignored) from exc
    # Not a bundle (e.g. a bare SPDX/CycloneDX file pushed with oras: unsigned, so it counts for
    # nothing), or a bundle announced as an image signature: the signature gate's business.
    ignored.extend(
        {"source": "referrer", "attestation_manifest": other.manifest, "artifactType": other.artifact_type}
        for other in attached.passed_over
        if other.predicate_type is None
    )
    candidates = [c for c in (attestation_candidate(a, ignored) for a in attached.candidates) if c is not None]

    used, other_digests = _sort_candidates(candidates, digest, ignored)

    accepted: list[SbomEvidence] = []
    refusals: list[dict[str, Any]] = []
    first_failure: VerificationFailed | None = None
    for candidate in used:
        try:
            accepted.append(_verify_used(candidate, policy, digest))
        except (SignatureInvalid, MalformedSignature, DigestMismatch) as exc:
            first_failure = first_failure or exc
            refusals.append({**candidate.where(), "error": exc.name, "reason": str(exc)[:300]})

    if first_failure is not None:
        msg = (
            f"{len(refusals)} of {len(used)} SBOM attestation(s) for {repository}@{digest} failed "
            f"(every one used must verify); {first_failure.name}: {str(first_failure)[:300]}"
        )
        raise _refusal(SbomInvalid(msg), repository, digest, refusals, other_digests, ignored)
    if not accepted:
        note = ""
        if other_digests:
            note = (
                f"; {len(other_digests)} SBOM attestation(s) attached are for another digest "
                f"({other_digests[0]['subjects']}) and count for nothing"
            )
        elif ignored:
            note = f" ({len(ignored)} other artifact(s) attached, none an SBOM attestation)"
        msg = f"the policy requires an SBOM attestation and none signed for {repository}@{digest} is attached{note}"
        raise _refusal(SbomMissing(msg), repository, digest, refusals, other_digests, ignored)

    verification = SbomVerification(
        repository=repository,
        digest=digest,
        sboms=tuple(accepted),
        other_digests=tuple(other_digests),
        ignored=tuple(ignored),
    )
    logger.info(
        "SBOM attestation verified",
        extra={"digest": digest, "sboms": [(s.format, s.sbom_digest) for s in accepted]},
    )
    return verification


def _refusal(
    error: VerificationFailed,
    repository: str,
    digest: str,
    refusals: list[dict[str, Any]],
    other_digests: list[dict[str, Any]],
    ignored: list[dict[str, Any]],
) -> VerificationFailed:
    error.evidence = {  # type: ignore[attr-defined]
        "verified": False,
        "repository": repository,
        "digest": digest,
        "error": error.name,
        "sbom": {"sboms": [], "refusals": refusals, "other_digests": other_digests, "ignored": ignored},
    }
    logger.warning("SBOM attestation refused", extra={"digest": digest, "error": error.name, "refusals": refusals})
    return error
