"""cosign's signed formats, each verified as a signature of one exact image digest.

- **Simple signing** (a legacy `.sig` layer): a JSON payload that names the digest it signs in
  `critical.image.docker-manifest-digest` and says `critical.type: cosign container image
  signature`, with its base64 signature in the layer's `dev.cosignproject.cosign/signature`
  annotation (`verify_simple_signing`, `verify_legacy_layer`).
- **Sigstore bundles** (v0.1-v0.3, cosign v3's referrers). What cosign v3 writes, as read in its
  source (sigstore/cosign `cmd/cosign/cli/sign/sign.go`, `signDigestBundle`;
  `cmd/cosign/cli/signcommon/common.go`; `pkg/oci/remote/write.go`, `WriteAttestationNewBundleFormat`
  and `WriteReferrer`) and its spec (`specs/BUNDLE_SPEC.md`): `cosign sign` builds an in-toto
  Statement v1 (`_type` `https://in-toto.io/Statement/v1`) with one subject whose `digest` is
  `{"sha256": "<hex of the image digest>"}`, `predicateType` `https://sigstore.dev/cosign/sign/v1`
  and an empty predicate, and signs it as a DSSE envelope with `payloadType`
  `application/vnd.in-toto+json`; the bundle's `dsseEnvelope` carries it. With a key, the
  verification material is `publicKey` (a hint only); keyless it is a Fulcio `certificate`.
  `cosign attest` stores attestations (SBOM, provenance) the same way, so a DSSE bundle is an image
  signature only with predicate `https://sigstore.dev/cosign/sign/v1`. A `messageSignature`
  bundle (a signature over the artifact bytes, i.e. over the manifest's SHA-256) is accepted too,
  when its signature verifies for this digest (`verify_bundle`, `verify_dsse`,
  `verify_message_signature`).

What is verified: the signature with a key the policy trusts (`podrelease.verify.trust_policy`), and
that the signed content is about this exact digest. Order everywhere: structure
(MalformedSignature), then the signature (SignatureInvalid), then what the signed content says
(MalformedSignature for a wrong type, DigestMismatch for another image). Transparency-log entries
and timestamps are the keyless verifier's business (`podrelease.verify.keyless`); key-based trust
does not need them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podrelease.core.errors import DigestMismatch, MalformedSignature, SignatureInvalid
from podrelease.verify.attachments import (
    BUNDLE_MEDIA_TYPES,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    MAX_ATTACHMENT_BYTES,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE,
)
from podrelease.verify.decoding import base64_bytes, json_object
from podrelease.verify.registry import require_digest
from podrelease.verify.trust_policy import TrustedKey, TrustPolicy, candidate_keys, no_key_reason, verifies

SIMPLESIGNING_TYPE = "cosign container image signature"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})

#: Largest simple-signing payload or bundle read (bytes).
MAX_SIGNATURE_BYTES = MAX_ATTACHMENT_BYTES

#: Most signatures inside one DSSE envelope.
MAX_DSSE_SIGNATURES = 8
#: Most subjects in one in-toto statement.
MAX_SUBJECTS = 256
#: A DER ECDSA P-521 signature is under 140 bytes and RSA-8192 is 1 KiB: 8 KiB is a loose bound.
MAX_RAW_SIGNATURE_BYTES = 8192


@dataclass(frozen=True)
class SignatureEvidence:
    """One signature that counted: what it was, who signed it, what it says."""

    kind: str  # "simple-signing" | "bundle-message-signature" | "bundle-dsse"
    key_id: str
    digest: str
    docker_reference: str | None = None
    predicate_type: str | None = None
    bundle_media_type: str | None = None
    signature_manifest: str | None = None
    source: str | None = None
    #: Keyless only: who the certificate names and the log evidence (see `TrustedKey.signer`).
    signer: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "key_id": self.key_id, "digest": self.digest}
        for name in ("docker_reference", "predicate_type", "bundle_media_type", "signature_manifest", "source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.signer is not None:
            out["signer"] = dict(self.signer)
        return out



@dataclass(frozen=True)
class DsseResult:
    """A DSSE envelope whose signature verified: the key, and the (now authenticated) payload."""

    key: TrustedKey
    payload_type: str
    payload: bytes



def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature actually signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)



def _expected_hex(expected_digest: str) -> str:
    try:
        return require_digest(expected_digest)[len("sha256:") :]
    except MalformedSignature as exc:
        msg = f"the digest to verify, {str(expected_digest)[:80]!r}, is not sha256:<64 hex>"
        raise DigestMismatch(msg) from exc



def is_certificate_material(material: Mapping[str, Any]) -> bool:
    """Keyless material: a bundle's certificate (or chain), or a legacy layer's certificate annotation."""
    return any(k in material for k in ("certificate", "x509CertificateChain", CERTIFICATE_ANNOTATION))


def statement_subjects(statement: Mapping[str, Any]) -> list[str]:
    """The lowercase hex sha256 digests an in-toto statement's subjects name."""
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


# --- legacy simple signing ----------------------------------------------------------------------


def verify_simple_signing(
    payload: bytes,
    signature_b64: str,
    policy: TrustPolicy,
    expected_digest: str,
    *,
    annotations: Mapping[str, Any] | None = None,
) -> SignatureEvidence:
    """Verify one cosign simple-signing payload and its base64 signature for `expected_digest`.

    Order: structure (MalformedSignature), then the signature with a trusted key (SignatureInvalid),
    then what the signed payload says (MalformedSignature for a wrong type, DigestMismatch for
    another image). `annotations` are the layer's (a certificate there marks a keyless signature).
    """
    expected_hex = _expected_hex(expected_digest)
    if len(payload) > MAX_SIGNATURE_BYTES:
        msg = f"simple-signing payload of {len(payload)} bytes exceeds the {MAX_SIGNATURE_BYTES}-byte limit"
        raise MalformedSignature(msg)
    signature = base64_bytes(signature_b64, "the signature annotation", MAX_RAW_SIGNATURE_BYTES)
    body = json_object(payload, "the simple-signing payload", limit=MAX_SIGNATURE_BYTES)
    critical = body.get("critical")
    if not isinstance(critical, dict):
        msg = "the simple-signing payload has no 'critical' object"
        raise MalformedSignature(msg)

    material = dict(annotations or {})
    keyless_material = CERTIFICATE_ANNOTATION in material
    keys = candidate_keys(
        policy,
        material,
        signature,
        keyless_material=keyless_material,
        signed_sha256=hashlib.sha256(payload).hexdigest(),
    )
    signer = next((k for k in keys if verifies(k, signature, payload)), None)
    if signer is None:
        msg = "simple-signing signature " + no_key_reason(policy, keyless_material=keyless_material)
        raise SignatureInvalid(msg)

    if critical.get("type") != SIMPLESIGNING_TYPE:
        msg = f"signed payload has type {str(critical.get('type'))[:80]!r}, not {SIMPLESIGNING_TYPE!r}"
        raise MalformedSignature(msg)
    image = critical.get("image")
    signed_digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(signed_digest, str):
        msg = "signed payload has no critical.image.docker-manifest-digest"
        raise MalformedSignature(msg)
    if signed_digest != "sha256:" + expected_hex:
        msg = f"valid signature by key {signer.key_id[:16]} is for {signed_digest[:80]}, not {expected_digest}"
        raise DigestMismatch(msg)
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    return SignatureEvidence(
        kind="simple-signing",
        key_id=signer.key_id,
        digest=expected_digest,
        docker_reference=reference if isinstance(reference, str) else None,
        signer=signer.signer,
    )


def verify_legacy_layer(
    media_type: str,
    payload: bytes,
    annotations: Mapping[str, Any],
    policy: TrustPolicy,
    expected_digest: str,
) -> SignatureEvidence:
    """One layer of a `.sig` manifest: it must be a simple-signing payload carrying its signature."""
    if media_type != SIMPLESIGNING_MEDIA_TYPE:
        msg = f"signature layer has media type {str(media_type)[:80]!r}, not {SIMPLESIGNING_MEDIA_TYPE}"
        raise MalformedSignature(msg)
    signature_b64 = annotations.get(SIGNATURE_ANNOTATION)
    if not isinstance(signature_b64, str):
        msg = f"signature layer has no {SIGNATURE_ANNOTATION} annotation"
        raise MalformedSignature(msg)
    return verify_simple_signing(payload, signature_b64, policy, expected_digest, annotations=annotations)


# --- sigstore bundles ---------------------------------------------------------------------------


def verify_dsse(envelope: Any, policy: TrustPolicy, *, material: Mapping[str, Any] | None = None) -> DsseResult:
    """Check a DSSE envelope's signature over PAE(payloadType, payload) with a trusted key.

    Says nothing about what the payload means: callers check that (see `verify_bundle`)."""
    if not isinstance(envelope, Mapping):
        msg = "dsseEnvelope is not an object"
        raise MalformedSignature(msg)
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type or len(payload_type) > 256:
        msg = "dsseEnvelope has no valid payloadType"
        raise MalformedSignature(msg)
    payload = base64_bytes(envelope.get("payload"), "dsseEnvelope.payload", MAX_SIGNATURE_BYTES)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        msg = "dsseEnvelope has no signatures"
        raise MalformedSignature(msg)
    if len(signatures) > MAX_DSSE_SIGNATURES:
        msg = f"dsseEnvelope has {len(signatures)} signatures, more than the {MAX_DSSE_SIGNATURES} read"
        raise MalformedSignature(msg)
    raw_signatures = [
        base64_bytes(s.get("sig") if isinstance(s, Mapping) else None, "dsseEnvelope signature", MAX_RAW_SIGNATURE_BYTES)
        for s in signatures
    ]
    pae = dsse_pae(payload_type, payload)
    keyless_material = material is not None and is_certificate_material(material)
    for raw in raw_signatures:
        keys = candidate_keys(
            policy,
            material or {},
            raw,
            keyless_material=keyless_material,
            signed_sha256=hashlib.sha256(payload).hexdigest(),
            pae_sha256=hashlib.sha256(pae).hexdigest(),
        )
        signer = next((k for k in keys if verifies(k, raw, pae)), None)
        if signer is not None:
            return DsseResult(key=signer, payload_type=payload_type, payload=payload)
    msg = "DSSE signature " + no_key_reason(policy, keyless_material=keyless_material)
    raise SignatureInvalid(msg)


def verify_message_signature(
    message_signature: Any,
    policy: TrustPolicy,
    expected_digest: str,
    *,
    material: Mapping[str, Any] | None = None,
) -> TrustedKey:
    """Check a bundle's `messageSignature` (a signature over the artifact, so over its SHA-256).

    The signature must verify over `expected_digest` (the artifact is the image manifest); the
    bundle's `messageDigest` is only a hint, but a hint that disagrees is refused (DigestMismatch),
    as is a valid signature over the hinted digest when that is another artifact.
    """
    expected = bytes.fromhex(_expected_hex(expected_digest))
    if not isinstance(message_signature, Mapping):
        msg = "messageSignature is not an object"
        raise MalformedSignature(msg)
    signature = base64_bytes(message_signature.get("signature"), "messageSignature.signature", MAX_RAW_SIGNATURE_BYTES)
    hinted: bytes | None = None
    message_digest = message_signature.get("messageDigest")
    if message_digest is not None:
        if not isinstance(message_digest, Mapping) or message_digest.get("algorithm") != "SHA2_256":
            msg = "messageSignature.messageDigest is not a SHA2_256 digest"
            raise MalformedSignature(msg)
        hinted = base64_bytes(message_digest.get("digest"), "messageDigest.digest", 64)
        if len(hinted) != len(expected):
            msg = "messageSignature.messageDigest is not 32 bytes"
            raise MalformedSignature(msg)
    keyless_material = material is not None and is_certificate_material(material)
    keys = candidate_keys(
        policy, material or {}, signature, keyless_material=keyless_material, signed_sha256=expected.hex()
    )
    signer = next((k for k in keys if verifies(k, signature, expected, prehashed_sha256=True)), None)
    if signer is not None:
        if hinted is not None and hinted != expected:
            msg = f"messageDigest sha256:{hinted.hex()} disagrees with {expected_digest}, which the signature covers"
            raise DigestMismatch(msg)
        return signer
    if hinted is not None and hinted != expected:
        other = next((k for k in keys if verifies(k, signature, hinted, prehashed_sha256=True)), None)
        if other is not None:
            msg = (
                f"valid message signature by key {other.key_id[:16]} is for sha256:{hinted.hex()}, "
                f"not {expected_digest}"
            )
            raise DigestMismatch(msg)
    msg = "message signature " + no_key_reason(policy, keyless_material=keyless_material)
    raise SignatureInvalid(msg)



def bundle_object(bundle_json: bytes) -> dict[str, Any]:
    """A sigstore bundle v0.1-v0.3 as a JSON object (its content not yet checked)."""
    bundle = json_object(bundle_json, "the sigstore bundle", limit=MAX_SIGNATURE_BYTES)
    media_type = bundle.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        msg = f"bundle media type {str(media_type)[:80]!r} is not a sigstore bundle v0.1-v0.3"
        raise MalformedSignature(msg)
    return bundle


def parse_bundle(bundle_json: bytes) -> dict[str, Any]:
    """A bundle with verification material and exactly one of messageSignature and dsseEnvelope."""
    bundle = bundle_object(bundle_json)
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict) or not ("publicKey" in material or is_certificate_material(material)):
        msg = "bundle has no verificationMaterial with a publicKey or certificate"
        raise MalformedSignature(msg)
    has_message = "messageSignature" in bundle
    has_dsse = "dsseEnvelope" in bundle
    if has_message == has_dsse:
        msg = "bundle must hold exactly one of messageSignature and dsseEnvelope"
        raise MalformedSignature(msg)
    return bundle


def in_toto_statement(payload_type: str, payload: bytes, *, check_type: bool = True) -> dict[str, Any]:
    """A DSSE payload as an in-toto statement (MalformedSignature when it is not one).

    `check_type=False` skips the statement's `_type`: for sorting candidates by their (not yet
    verified) predicate before verifying."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        msg = f"DSSE payload type {str(payload_type)[:80]!r} is not {INTOTO_PAYLOAD_TYPE} (an in-toto statement)"
        raise MalformedSignature(msg)
    statement = json_object(payload, "the in-toto statement", limit=MAX_SIGNATURE_BYTES)
    if check_type and statement.get("_type") not in INTOTO_STATEMENT_TYPES:
        msg = f"in-toto statement type {str(statement.get('_type'))[:80]!r} is not accepted"
        raise MalformedSignature(msg)
    return statement


def unverified_statement(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto statement of a DSSE envelope read WITHOUT verifying it: only to decide what a
    candidate is before verifying it (MalformedSignature when unreadable)."""
    payload = base64_bytes(envelope.get("payload"), "dsseEnvelope.payload", MAX_SIGNATURE_BYTES)
    return in_toto_statement(str(envelope.get("payloadType")), payload, check_type=False)


def bundle_predicate_type(bundle_json: bytes) -> str | None:
    """The (unauthenticated) in-toto predicate type of a DSSE bundle, for sorting signatures from
    attestations before verifying; None for message signatures and anything unreadable."""
    try:
        envelope = parse_bundle(bundle_json).get("dsseEnvelope")
        if not isinstance(envelope, dict):
            return None
        predicate = unverified_statement(envelope).get("predicateType")
    except MalformedSignature:
        return None
    return predicate if isinstance(predicate, str) else None


def verify_bundle(
    bundle_json: bytes,
    policy: TrustPolicy,
    expected_digest: str,
    *,
    predicate_type: str | None = COSIGN_SIGN_PREDICATE,
) -> SignatureEvidence:
    """Verify one sigstore bundle (v0.1-v0.3) as a signature of the image `expected_digest`.

    - `messageSignature`: see `verify_message_signature`.
    - `dsseEnvelope`: the DSSE signature must verify (`verify_dsse`); the payload must be an in-toto
      Statement (`application/vnd.in-toto+json`) with predicate `predicate_type` (by default
      `https://sigstore.dev/cosign/sign/v1`, cosign v3's image signature; None accepts any, for
      verifying a bundle over an arbitrary artifact) and a subject whose `digest.sha256` is this one.
    - certificate material: the policy's keyless verifier checks the whole bundle first
      (`KeylessVerifier.check_bundle`), then the same path as above runs with the certificate's key.
    """
    expected_hex = _expected_hex(expected_digest)
    bundle = parse_bundle(bundle_json)
    material: dict[str, Any] = bundle["verificationMaterial"]
    media_type = str(bundle["mediaType"])
    if policy.keyless is not None and is_certificate_material(material):
        policy.keyless.check_bundle(bundle_json, expected_digest)
    if "messageSignature" in bundle:
        signer = verify_message_signature(bundle["messageSignature"], policy, expected_digest, material=material)
        return SignatureEvidence(
            kind="bundle-message-signature",
            key_id=signer.key_id,
            digest=expected_digest,
            bundle_media_type=media_type,
            signer=signer.signer,
        )

    result = verify_dsse(bundle["dsseEnvelope"], policy, material=material)
    statement = in_toto_statement(result.payload_type, result.payload)
    signed_predicate = statement.get("predicateType")
    if predicate_type is not None and signed_predicate != predicate_type:
        msg = (
            f"statement predicate {str(signed_predicate)[:80]!r} is an attestation, "
            f"not an image signature ({predicate_type})"
        )
        raise MalformedSignature(msg)
    signed = statement_subjects(statement)
    if expected_hex not in signed:
        shown = ", ".join(f"sha256:{d[:64]}" for d in signed[:3]) or "no sha256 digest"
        msg = f"valid DSSE signature by key {result.key.key_id[:16]} is for {shown}, not {expected_digest}"
        raise DigestMismatch(msg)
    return SignatureEvidence(
        kind="bundle-dsse",
        key_id=result.key.key_id,
        digest=expected_digest,
        predicate_type=str(signed_predicate),
        bundle_media_type=media_type,
        signer=result.key.signer,
    )
