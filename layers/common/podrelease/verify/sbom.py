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
   with the annotation `dev.sigstore.bundle.predicateType` (see `podrelease.verify.signatures`'s docstring).

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

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
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
from podrelease.verify.registry import Registry, referrers_tag, require_digest
from podrelease.verify.signatures import (
    BUNDLE_MEDIA_TYPES,
    BUNDLE_PREDICATE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    INTOTO_PAYLOAD_TYPE,
    INTOTO_STATEMENT_TYPES,
    MAX_SIGNATURE_BYTES,
    MAX_SUBJECTS,
    TrustPolicy,
    verify_dsse,
)

logger = get_logger(__name__)

DSSE_ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
ATTESTATION_TAG_SUFFIX = ".att"
#: The layer annotation `cosign attest` writes on each `.att` layer.
LEGACY_PREDICATE_ANNOTATION = "predicateType"
SPDX_PREDICATE = "https://spdx.dev/Document"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
SBOM_PREDICATES: Mapping[str, str] = {SPDX_PREDICATE: "spdx", CYCLONEDX_PREDICATE: "cyclonedx"}
#: Most attestations (`.att` layers + attestation referrers) examined for one image.
MAX_ATTESTATIONS = 32


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
class _Candidate:
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


# --- reading what is attached -------------------------------------------------------------------


def _decode_b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        msg = f"{what} is missing or not a string"
        raise MalformedSignature(msg)
    if len(value) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
        msg = f"{what} is longer than {MAX_SIGNATURE_BYTES} bytes"
        raise MalformedSignature(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError) as exc:
            msg = f"{what} is not base64"
            raise MalformedSignature(msg) from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    if len(raw) > MAX_SIGNATURE_BYTES:
        msg = f"{what} of {len(raw)} bytes exceeds the {MAX_SIGNATURE_BYTES}-byte limit"
        raise MalformedSignature(msg)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        msg = f"{what} is not valid JSON"
        raise MalformedSignature(msg) from exc
    if not isinstance(value, dict):
        msg = f"{what} is not a JSON object"
        raise MalformedSignature(msg)
    return value


def _layer_blob(registry: Registry, repository: str, layer: Mapping[str, Any], what: str) -> bytes:
    digest = layer.get("digest")
    size = layer.get("size")
    if not isinstance(digest, str):
        msg = f"{what} has no digest"
        raise MalformedSignature(msg)
    if isinstance(size, int) and size > MAX_SIGNATURE_BYTES:
        msg = f"{what} declares {size} bytes, over the {MAX_SIGNATURE_BYTES}-byte limit"
        raise MalformedSignature(msg)
    return registry.get_blob(repository, require_digest(digest), max_bytes=MAX_SIGNATURE_BYTES)


def _layers(body: Mapping[str, Any], what: str) -> list[Mapping[str, Any]]:
    layers = body.get("layers")
    if not isinstance(layers, list):
        msg = f"{what} has no layers list"
        raise MalformedSignature(msg)
    return [layer if isinstance(layer, dict) else {} for layer in layers]


def _legacy_candidates(registry: Registry, repository: str, digest: str, ignored: list[dict[str, Any]]) -> list[_Candidate]:
    tag = referrers_tag(digest) + ATTESTATION_TAG_SUFFIX
    source = f"tag:{tag}"
    manifest = registry.get_manifest(repository, tag)
    if manifest is None:
        return []
    try:
        layers = _layers(manifest.json(), f"attestation manifest {manifest.digest}")
    except MalformedSignature as exc:
        return [_Candidate(source=source, manifest=manifest.digest, error=exc)]
    found: list[_Candidate] = []
    for number, layer in enumerate(layers, start=1):
        annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        announced = (annotations or {}).get(LEGACY_PREDICATE_ANNOTATION)
        announced = announced if isinstance(announced, str) else None
        candidate = _Candidate(
            source=f"{source}#{number}", manifest=manifest.digest, material=dict(annotations or {}), announced=announced
        )
        media_type = layer.get("mediaType")
        if media_type != DSSE_ENVELOPE_MEDIA_TYPE:
            if announced in SBOM_PREDICATES:
                candidate.error = MalformedSignature(
                    f"layer announces {announced} but has media type {str(media_type)[:80]!r}, not {DSSE_ENVELOPE_MEDIA_TYPE}"
                )
                found.append(candidate)
            else:
                ignored.append({**candidate.where(), "mediaType": str(media_type)[:120]})
            continue
        try:
            blob = _layer_blob(registry, repository, layer, f"attestation layer {number}")
            candidate.envelope = _json_object(blob, "the DSSE envelope")
        except MalformedSignature as exc:
            candidate.error = exc
        found.append(candidate)
    return found


def _referrer_candidates(registry: Registry, repository: str, digest: str, ignored: list[dict[str, Any]]) -> list[_Candidate]:
    found: list[_Candidate] = []
    for descriptor in registry.list_referrers(repository, digest):
        referrer = str(descriptor.get("digest"))
        artifact_type = descriptor.get("artifactType")
        annotations = descriptor.get("annotations") if isinstance(descriptor.get("annotations"), dict) else {}
        announced = (annotations or {}).get(BUNDLE_PREDICATE_ANNOTATION)
        announced = announced if isinstance(announced, str) else None
        if artifact_type not in BUNDLE_MEDIA_TYPES:
            # e.g. a bare SPDX/CycloneDX file pushed with oras: unsigned, so it counts for nothing.
            ignored.append({"source": "referrer", "attestation_manifest": referrer, "artifactType": str(artifact_type)[:120]})
            continue
        if announced == COSIGN_SIGN_PREDICATE:
            continue  # an image signature: the signature gate's business
        candidate = _Candidate(source="referrer", manifest=referrer, announced=announced)
        try:
            candidate.bundle_json = _referrer_bundle_json(registry, repository, digest, referrer)
            bundle = _bundle_object(candidate.bundle_json)
        except MalformedSignature as exc:
            candidate.error = exc
            found.append(candidate)
            continue
        if "messageSignature" in bundle and "dsseEnvelope" not in bundle:
            if announced in SBOM_PREDICATES:
                candidate.error = MalformedSignature(
                    "bundle announces an SBOM but holds a message signature, not a DSSE statement"
                )
                found.append(candidate)
            continue  # a message signature is an image signature, not an attestation
        material = bundle.get("verificationMaterial")
        envelope = bundle.get("dsseEnvelope")
        if not isinstance(material, dict) or not isinstance(envelope, dict):
            candidate.error = MalformedSignature("bundle has no verificationMaterial or no dsseEnvelope object")
        else:
            candidate.envelope, candidate.material = envelope, material
        found.append(candidate)
    return found


def _bundle_object(bundle_json: bytes) -> dict[str, Any]:
    bundle = _json_object(bundle_json, "the sigstore bundle")
    if bundle.get("mediaType") not in BUNDLE_MEDIA_TYPES:
        msg = f"bundle media type {str(bundle.get('mediaType'))[:80]!r} is not a sigstore bundle v0.1-v0.3"
        raise MalformedSignature(msg)
    return bundle


def _referrer_bundle_json(registry: Registry, repository: str, digest: str, referrer: str) -> bytes:
    manifest = registry.get_manifest(repository, require_digest(referrer))
    if manifest is None:
        msg = f"referrer {referrer} is listed but its manifest is missing"
        raise MalformedSignature(msg)
    body = manifest.json()
    subject = body.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        msg = f"referrer {referrer} does not name {digest} as its subject"
        raise MalformedSignature(msg)
    bundles = [layer for layer in _layers(body, f"referrer {referrer}") if layer.get("mediaType") in BUNDLE_MEDIA_TYPES]
    if len(bundles) != 1:
        msg = f"referrer {referrer} has {len(bundles)} bundle layers, expected exactly one"
        raise MalformedSignature(msg)
    return _layer_blob(registry, repository, bundles[0], f"referrer {referrer}")


# --- judging it ---------------------------------------------------------------------------------


def _statement_of(envelope: Mapping[str, Any]) -> dict[str, Any]:
    if envelope.get("payloadType") != INTOTO_PAYLOAD_TYPE:
        msg = f"DSSE payload type {str(envelope.get('payloadType'))[:80]!r} is not {INTOTO_PAYLOAD_TYPE}"
        raise MalformedSignature(msg)
    return _json_object(_decode_b64(envelope.get("payload"), "dsseEnvelope.payload"), "the in-toto statement")


def _subject_hexes(statement: Mapping[str, Any]) -> list[str]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects or len(subjects) > MAX_SUBJECTS:
        msg = "in-toto statement has no subjects (or too many)"
        raise MalformedSignature(msg)
    found: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        value = digests.get("sha256") if isinstance(digests, dict) else None
        if isinstance(value, str):
            found.append(value.lower())
    return found


def _peek(candidate: _Candidate) -> tuple[str | None, list[str]]:
    """The statement's predicate type and subject digests, read WITHOUT verifying: only to decide
    whether the envelope is used. (None, []) when unreadable."""
    if candidate.error is not None or candidate.envelope is None:
        return None, []
    try:
        statement = _statement_of(candidate.envelope)
        predicate = statement.get("predicateType")
        return (predicate if isinstance(predicate, str) else None), _subject_hexes(statement)
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


def _certificate_material(material: Mapping[str, Any]) -> bool:
    return any(k in material for k in ("certificate", "x509CertificateChain", CERTIFICATE_ANNOTATION))


def _signer_of(key: object) -> tuple[str | None, dict[str, Any] | None]:
    """(identity, signer details) of a key a keyless verifier vouched for; (None, None) for keys."""
    signer = getattr(key, "signer", None)
    if not isinstance(signer, Mapping):
        return None, None
    identity = signer.get("identity")
    details = {k: signer[k] for k in ("identity", "issuer", "signed_at", "log_index") if k in signer}
    return (str(identity) if identity is not None else None), details


def _verify_used(candidate: _Candidate, policy: TrustPolicy, digest: str) -> SbomEvidence:
    if candidate.error is not None:
        raise candidate.error
    if candidate.envelope is None:  # pragma: no cover - every candidate has one or the other
        msg = "attestation has no envelope"
        raise MalformedSignature(msg)
    if candidate.bundle_json is not None and policy.keyless is not None and _certificate_material(candidate.material):
        # A whole keyless bundle is first checked end to end by the keyless verifier, as the
        # signature gate does for signature bundles (absent on verifiers without that hook).
        check_bundle = getattr(policy.keyless, "check_bundle", None)
        if callable(check_bundle):
            check_bundle(candidate.bundle_json, digest)
    result = verify_dsse(candidate.envelope, policy, material=candidate.material)
    # From here on, only the authenticated payload is read.
    statement = _statement_of({"payloadType": result.payload_type, "payload": base64.b64encode(result.payload).decode()})
    if statement.get("_type") not in INTOTO_STATEMENT_TYPES:
        msg = f"in-toto statement type {str(statement.get('_type'))[:80]!r} is not accepted"
        raise MalformedSignature(msg)
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or predicate_type not in SBOM_PREDICATES:
        msg = f"statement predicate {str(predicate_type)[:80]!r} is not an SBOM (SPDX or CycloneDX)"
        raise MalformedSignature(msg)
    if candidate.announced is not None and candidate.announced != predicate_type:
        msg = f"the attestation announces {candidate.announced[:80]!r} but its signed statement says {predicate_type!r}"
        raise MalformedSignature(msg)
    expected_hex = digest.removeprefix("sha256:")
    signed = _subject_hexes(statement)
    if expected_hex not in signed:
        msg = f"valid SBOM attestation by key {result.key.key_id[:16]} is not about {digest}"
        raise DigestMismatch(msg)
    fmt = SBOM_PREDICATES[predicate_type]
    predicate = statement.get("predicate")
    spec_version = _check_document(fmt, predicate)
    identity, signer = _signer_of(result.key)
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
    candidates = [
        *_legacy_candidates(registry, repository, digest, ignored),
        *_referrer_candidates(registry, repository, digest, ignored),
    ]
    if len(candidates) > MAX_ATTESTATIONS:
        msg = f"more than {MAX_ATTESTATIONS} attestations are attached to {repository}@{digest}; refusing to read them all"
        raise _refusal(SbomInvalid(msg), repository, digest, [], [], ignored)

    expected_hex = digest.removeprefix("sha256:")
    used: list[_Candidate] = []
    other_digests: list[dict[str, Any]] = []
    for candidate in candidates:
        predicate, subjects = _peek(candidate)
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
