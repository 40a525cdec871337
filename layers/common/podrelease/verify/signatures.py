"""The signature gate: cosign signatures of one exact image digest, verified with trusted keys.

Two places hold cosign image signatures, and `verify_image` reads both:

1. **Legacy** (cosign v1/v2, and v3 with `--new-bundle-format=false`): the tag `sha256-<hex>.sig` in
   the image's repository is an OCI manifest whose layers are simple-signing payloads
   (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its base64 signature in the
   `dev.cosignproject.cosign/signature` annotation. The payload names the digest it signs in
   `critical.image.docker-manifest-digest` and says `critical.type: cosign container image signature`.
2. **Sigstore bundles as OCI 1.1 referrers** (cosign v3's default). What cosign v3 writes, as read in
   its source (sigstore/cosign `cmd/cosign/cli/sign/sign.go`, `signDigestBundle`;
   `cmd/cosign/cli/signcommon/common.go`; `pkg/oci/remote/write.go`, `WriteAttestationNewBundleFormat`
   and `WriteReferrer`) and its spec (`specs/BUNDLE_SPEC.md`):
   - `cosign sign` builds an in-toto Statement v1 (`_type` `https://in-toto.io/Statement/v1`) with one
     subject whose `digest` is `{"sha256": "<hex of the image digest>"}`, `predicateType`
     `https://sigstore.dev/cosign/sign/v1` and an empty predicate, and signs it as a DSSE envelope
     with `payloadType` `application/vnd.in-toto+json`; the result is a bundle
     (`application/vnd.dev.sigstore.bundle.v0.3+json`) whose `dsseEnvelope` carries it. With a key,
     the verification material is `publicKey` (a hint only); keyless it is a Fulcio `certificate`.
   - The bundle JSON is a blob; a manifest (`artifactType` = the bundle media type, config = the
     empty descriptor, one layer of the bundle media type titled `sha256-<hex>.sigstore.json`,
     `subject` = the image) refers to the image; its annotations include
     `dev.sigstore.bundle.content: dsse-envelope` and `dev.sigstore.bundle.predicateType`.
   - Registries without the referrers API get the OCI referrers tag schema (`sha256-<hex>` tagging
     an index of the referrers).
   - `cosign attest` stores attestations (SBOM, provenance) the same way, with the same
     `artifactType`; only the predicate type tells a signature from an attestation. So a DSSE bundle
     counts as an image signature here only with predicate `https://sigstore.dev/cosign/sign/v1`;
     other predicates are listed as ignored evidence (the SBOM gate reads them).
   A `messageSignature` bundle (a signature over the artifact bytes, i.e. over the manifest's
   SHA-256) is accepted too, when its signature verifies for this digest.

What is verified here: the signature with a trusted public key, and that the signed content is
about this exact digest. What is not (yet): transparency-log entries (SET, inclusion proofs) and
RFC 3161 timestamps, which key-based trust does not need; keyless (Fulcio certificate) signatures,
which arrive with a `KeylessVerifier` (a later issue) through `TrustPolicy.keyless`: every verifier
below asks `_candidate_keys` which keys may have signed, and that is the one place it slots in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

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
from podrelease.verify.registry import (
    MAX_BLOB_BYTES,
    OCI_INDEX,
    Manifest,
    Registry,
    referrers_tag,
    require_digest,
)

logger = get_logger(__name__)

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
SIMPLESIGNING_TYPE = "cosign container image signature"

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_TYPES = frozenset(
    {
        BUNDLE_MEDIA_TYPE,
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Largest simple-signing payload or bundle read (bytes).
MAX_SIGNATURE_BYTES = MAX_BLOB_BYTES
#: Most signatures (legacy layers + bundle referrers) examined for one image.
MAX_SIGNATURES = 32
#: Most signatures inside one DSSE envelope.
MAX_DSSE_SIGNATURES = 8
#: Most subjects in one in-toto statement.
MAX_SUBJECTS = 256
#: A DER ECDSA P-521 signature is under 140 bytes and RSA-8192 is 1 KiB: 8 KiB is a loose bound.
MAX_RAW_SIGNATURE_BYTES = 8192
_MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_EC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


# --- trust policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    """A trusted public key; `key_id` is the hex SHA-256 of its DER SubjectPublicKeyInfo."""

    key: PublicKey = field(compare=False, repr=False)
    key_id: str
    #: Set for a key vouched for by a certificate (keyless): identity, issuer, log entry.
    signer: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_public_key(cls, key: object) -> TrustedKey:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name not in _EC_HASHES:
                msg = f"ECDSA curve {key.curve.name} is not accepted (P-256, P-384, P-521 are)"
                raise PolicyError(msg)
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < _MIN_RSA_BITS:
                msg = f"RSA key of {key.key_size} bits is too short (at least {_MIN_RSA_BITS})"
                raise PolicyError(msg)
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            msg = f"public key type {type(key).__name__} is not accepted (ECDSA, RSA, Ed25519 are)"
            raise PolicyError(msg)
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key=key, key_id=hashlib.sha256(der).hexdigest())

    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


class KeylessVerifier(Protocol):
    """Keyless (Fulcio certificate) verification, implemented by `podrelease.verify.keyless.FulcioVerifier`
    (pinned trusted root, identity and issuer policy, transparency-log evidence).

    `signing_key` is given a signature's verification material (a bundle's `verificationMaterial`,
    or a legacy layer's annotations), the raw signature, and `signed_sha256`: the hex SHA-256 of
    what the transparency-log entry must name (the simple-signing payload, the DSSE payload, or the
    artifact of a message signature). It checks the certificate chain, the log entry (and that the
    entry is about this signature, certificate and content) and the identity, and returns the
    certificate's key, or raises SignatureInvalid. The signature itself is then checked by the same
    code as key-based signatures.

    `check_bundle` is given a whole sigstore bundle with certificate material first, so that a
    complete bundle verifier (sigstore-python) can check it end to end; it raises SignatureInvalid
    or MalformedSignature, or returns None."""

    def signing_key(
        self, verification_material: Mapping[str, Any], signature: bytes, *, signed_sha256: str
    ) -> TrustedKey: ...

    def check_bundle(self, bundle_json: bytes, expected_digest: str) -> None: ...


@dataclass(frozen=True)
class TrustPolicy:
    """Who may sign a release. An empty or unreadable policy is a PolicyError, never an allow."""

    keys: tuple[TrustedKey, ...]
    keyless: KeylessVerifier | None = None

    def __post_init__(self) -> None:
        if not self.keys and self.keyless is None:
            msg = "the trust policy has no keys and no keyless verifier: nothing could ever be allowed"
            raise PolicyError(msg)

    @classmethod
    def from_pem(cls, text: str | bytes) -> TrustPolicy:
        """One or more concatenated PEM public keys (`-----BEGIN PUBLIC KEY-----`)."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        if len(data) > 1024 * 1024:
            msg = "the trusted key set is larger than 1 MiB"
            raise PolicyError(msg)
        blocks = list(_PEM_BLOCK.finditer(data))
        if not blocks:
            msg = "the trusted key set contains no PEM public key"
            raise PolicyError(msg)
        # Anything but whitespace between or around the blocks means a damaged file: refuse it.
        leftover = _PEM_BLOCK.sub(b"", data).strip()
        if leftover:
            msg = "the trusted key set has text outside its PEM blocks (damaged file?)"
            raise PolicyError(msg)
        keys: list[TrustedKey] = []
        for number, block in enumerate(blocks, start=1):
            if block.group(1) != b"PUBLIC KEY":
                msg = f"PEM block {number} is a {block.group(1).decode()!r}, not a PUBLIC KEY"
                raise PolicyError(msg)
            try:
                key = serialization.load_pem_public_key(block.group(0))
            except (ValueError, UnsupportedAlgorithm) as exc:
                msg = f"PEM public key {number} cannot be parsed"
                raise PolicyError(msg) from exc
            trusted = TrustedKey.from_public_key(key)
            if trusted.key_id not in {k.key_id for k in keys}:
                keys.append(trusted)
        return cls(keys=tuple(keys))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)


# --- evidence -----------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class DsseResult:
    """A DSSE envelope whose signature verified: the key, and the (now authenticated) payload."""

    key: TrustedKey
    payload_type: str
    payload: bytes


# --- primitives ---------------------------------------------------------------------------------


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value:
        msg = f"{what} is missing or not a string"
        raise MalformedSignature(msg)
    if len(value) > limit * 4 // 3 + 4:
        msg = f"{what} is longer than {limit} bytes"
        raise MalformedSignature(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # some producers use the URL-safe alphabet
            return base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError) as exc:
            msg = f"{what} is not base64"
            raise MalformedSignature(msg) from exc


def _json(raw: bytes, what: str) -> dict[str, Any]:
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


def _verifies(key: TrustedKey, signature: bytes, message: bytes, *, prehashed_sha256: bool = False) -> bool:
    """True when `signature` is `key`'s signature over `message` (or over the SHA-256 digest
    `message`, when prehashed). ECDSA hashes with its curve's hash (cosign: SHA-256 for P-256),
    RSA with SHA-256 (PKCS#1 v1.5 or PSS), Ed25519 signs the message itself."""
    k = key.key
    try:
        if isinstance(k, ec.EllipticCurvePublicKey):
            algorithm: hashes.HashAlgorithm | Prehashed = (
                Prehashed(hashes.SHA256()) if prehashed_sha256 else _EC_HASHES[k.curve.name]()
            )
            k.verify(signature, message, ec.ECDSA(algorithm))
        elif isinstance(k, rsa.RSAPublicKey):
            rsa_hash: hashes.HashAlgorithm | Prehashed = (
                Prehashed(hashes.SHA256()) if prehashed_sha256 else hashes.SHA256()
            )
            try:
                k.verify(signature, message, padding.PKCS1v15(), rsa_hash)
            except InvalidSignature:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                k.verify(signature, message, pss, rsa_hash)
        else:
            if prehashed_sha256:
                return False  # Ed25519 signs messages, not digests
            k.verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_signature(key: TrustedKey, signature: bytes, message: bytes) -> None:
    """Raise SignatureInvalid unless `signature` is `key`'s signature over `message`."""
    if not _verifies(key, signature, message):
        msg = f"the signature does not verify with key {key.key_id[:16]}"
        raise SignatureInvalid(msg)


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature actually signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _candidate_keys(
    policy: TrustPolicy,
    material: Mapping[str, Any],
    signature: bytes,
    *,
    keyless_material: bool,
    signed_sha256: str,
) -> tuple[TrustedKey, ...]:
    """The keys that may have made `signature`: the policy's keys, plus, for certificate-based
    material and a configured keyless verifier, the certificate's key once it is vouched for
    (`signed_sha256`: see `KeylessVerifier`)."""
    keys = policy.keys
    if keyless_material and policy.keyless is not None:
        keys = (*keys, policy.keyless.signing_key(material, signature, signed_sha256=signed_sha256))
    return keys


def _no_key_reason(policy: TrustPolicy, *, keyless_material: bool) -> str:
    if keyless_material and policy.keyless is None:
        return (
            "keyless (certificate) signature, and the trust policy has no keyless verifier; "
            f"it does not verify with any of the {len(policy.keys)} trusted key(s)"
        )
    return f"does not verify with any of the {len(policy.keys)} trusted key(s)"


def _expected_hex(expected_digest: str) -> str:
    try:
        return require_digest(expected_digest)[len("sha256:") :]
    except MalformedSignature as exc:
        msg = f"the digest to verify, {str(expected_digest)[:80]!r}, is not sha256:<64 hex>"
        raise DigestMismatch(msg) from exc


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
    signature = _b64(signature_b64, "the signature annotation", MAX_RAW_SIGNATURE_BYTES)
    body = _json(payload, "the simple-signing payload")
    critical = body.get("critical")
    if not isinstance(critical, dict):
        msg = "the simple-signing payload has no 'critical' object"
        raise MalformedSignature(msg)

    material = dict(annotations or {})
    keyless_material = CERTIFICATE_ANNOTATION in material
    keys = _candidate_keys(
        policy,
        material,
        signature,
        keyless_material=keyless_material,
        signed_sha256=hashlib.sha256(payload).hexdigest(),
    )
    signer = next((k for k in keys if _verifies(k, signature, payload)), None)
    if signer is None:
        msg = "simple-signing signature " + _no_key_reason(policy, keyless_material=keyless_material)
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
    payload = _b64(envelope.get("payload"), "dsseEnvelope.payload", MAX_SIGNATURE_BYTES)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        msg = "dsseEnvelope has no signatures"
        raise MalformedSignature(msg)
    if len(signatures) > MAX_DSSE_SIGNATURES:
        msg = f"dsseEnvelope has {len(signatures)} signatures, more than the {MAX_DSSE_SIGNATURES} read"
        raise MalformedSignature(msg)
    raw_signatures = [
        _b64(s.get("sig") if isinstance(s, Mapping) else None, "dsseEnvelope signature", MAX_RAW_SIGNATURE_BYTES)
        for s in signatures
    ]
    pae = dsse_pae(payload_type, payload)
    keyless_material = material is not None and _is_certificate_material(material)
    for raw in raw_signatures:
        keys = _candidate_keys(
            policy,
            material or {},
            raw,
            keyless_material=keyless_material,
            signed_sha256=hashlib.sha256(payload).hexdigest(),
        )
        signer = next((k for k in keys if _verifies(k, raw, pae)), None)
        if signer is not None:
            return DsseResult(key=signer, payload_type=payload_type, payload=payload)
    msg = "DSSE signature " + _no_key_reason(policy, keyless_material=keyless_material)
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
    signature = _b64(message_signature.get("signature"), "messageSignature.signature", MAX_RAW_SIGNATURE_BYTES)
    hinted: bytes | None = None
    message_digest = message_signature.get("messageDigest")
    if message_digest is not None:
        if not isinstance(message_digest, Mapping) or message_digest.get("algorithm") != "SHA2_256":
            msg = "messageSignature.messageDigest is not a SHA2_256 digest"
            raise MalformedSignature(msg)
        hinted = _b64(message_digest.get("digest"), "messageDigest.digest", 64)
        if len(hinted) != len(expected):
            msg = "messageSignature.messageDigest is not 32 bytes"
            raise MalformedSignature(msg)
    keyless_material = material is not None and _is_certificate_material(material)
    keys = _candidate_keys(
        policy, material or {}, signature, keyless_material=keyless_material, signed_sha256=expected.hex()
    )
    signer = next((k for k in keys if _verifies(k, signature, expected, prehashed_sha256=True)), None)
    if signer is not None:
        if hinted is not None and hinted != expected:
            msg = f"messageDigest sha256:{hinted.hex()} disagrees with {expected_digest}, which the signature covers"
            raise DigestMismatch(msg)
        return signer
    if hinted is not None and hinted != expected:
        other = next((k for k in keys if _verifies(k, signature, hinted, prehashed_sha256=True)), None)
        if other is not None:
            msg = (
                f"valid message signature by key {other.key_id[:16]} is for sha256:{hinted.hex()}, "
                f"not {expected_digest}"
            )
            raise DigestMismatch(msg)
    msg = "message signature " + _no_key_reason(policy, keyless_material=keyless_material)
    raise SignatureInvalid(msg)


def _is_certificate_material(material: Mapping[str, Any]) -> bool:
    return any(k in material for k in ("certificate", "x509CertificateChain", CERTIFICATE_ANNOTATION))


def _parse_bundle(bundle_json: bytes) -> dict[str, Any]:
    bundle = _json(bundle_json, "the sigstore bundle")
    media_type = bundle.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        msg = f"bundle media type {str(media_type)[:80]!r} is not a sigstore bundle v0.1-v0.3"
        raise MalformedSignature(msg)
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict) or not ("publicKey" in material or _is_certificate_material(material)):
        msg = "bundle has no verificationMaterial with a publicKey or certificate"
        raise MalformedSignature(msg)
    has_message = "messageSignature" in bundle
    has_dsse = "dsseEnvelope" in bundle
    if has_message == has_dsse:
        msg = "bundle must hold exactly one of messageSignature and dsseEnvelope"
        raise MalformedSignature(msg)
    return bundle


def _statement_predicate(payload: bytes) -> str | None:
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    predicate = statement.get("predicateType") if isinstance(statement, dict) else None
    return predicate if isinstance(predicate, str) else None


def bundle_predicate_type(bundle_json: bytes) -> str | None:
    """The (unauthenticated) in-toto predicate type of a DSSE bundle, for sorting signatures from
    attestations before verifying; None for message signatures and anything unreadable."""
    try:
        bundle = _parse_bundle(bundle_json)
        envelope = bundle.get("dsseEnvelope")
        if not isinstance(envelope, dict) or envelope.get("payloadType") != INTOTO_PAYLOAD_TYPE:
            return None
        return _statement_predicate(_b64(envelope.get("payload"), "payload", MAX_SIGNATURE_BYTES))
    except MalformedSignature:
        return None


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
    bundle = _parse_bundle(bundle_json)
    material: dict[str, Any] = bundle["verificationMaterial"]
    media_type = str(bundle["mediaType"])
    if policy.keyless is not None and _is_certificate_material(material):
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
    if result.payload_type != INTOTO_PAYLOAD_TYPE:
        msg = f"DSSE payload type {result.payload_type[:80]!r} is not an in-toto statement ({INTOTO_PAYLOAD_TYPE})"
        raise MalformedSignature(msg)
    statement = _json(result.payload, "the in-toto statement")
    if statement.get("_type") not in INTOTO_STATEMENT_TYPES:
        msg = f"in-toto statement type {str(statement.get('_type'))[:80]!r} is not accepted"
        raise MalformedSignature(msg)
    signed_predicate = statement.get("predicateType")
    if predicate_type is not None and signed_predicate != predicate_type:
        msg = (
            f"statement predicate {str(signed_predicate)[:80]!r} is an attestation, "
            f"not an image signature ({predicate_type})"
        )
        raise MalformedSignature(msg)
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects or len(subjects) > MAX_SUBJECTS:
        msg = "in-toto statement has no subjects (or too many)"
        raise MalformedSignature(msg)
    signed: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        value = digests.get("sha256") if isinstance(digests, dict) else None
        if isinstance(value, str):
            signed.append(value.lower())
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


# --- the gate -----------------------------------------------------------------------------------

#: When nothing verified, the most informative reason wins, in this order.
_REFUSAL_PRIORITY: tuple[type[VerificationFailed], ...] = (DigestMismatch, SignatureInvalid, MalformedSignature)


@dataclass
class _Collector:
    accepted: list[SignatureEvidence] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    refused: list[VerificationFailed] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    examined: int = 0

    def count(self) -> None:
        self.examined += 1
        if self.examined > MAX_SIGNATURES:
            msg = f"more than {MAX_SIGNATURES} signatures are attached; refusing to read them all"
            raise MalformedSignature(msg)

    def refuse(self, error: VerificationFailed, source: str, manifest: str | None) -> None:
        self.refused.append(error)
        entry = {"source": source, "error": error.name, "reason": str(error)[:300]}
        if manifest:
            entry["signature_manifest"] = manifest
        self.refusals.append(entry)


def _layers(manifest: Manifest) -> list[dict[str, Any]]:
    body = manifest.json()
    layers = body.get("layers")
    if not isinstance(layers, list):
        msg = f"signature manifest {manifest.digest} has no layers list"
        raise MalformedSignature(msg)
    return [layer if isinstance(layer, dict) else {} for layer in layers]


def _layer_blob(registry: Registry, repository: str, layer: Mapping[str, Any]) -> bytes:
    digest = layer.get("digest")
    size = layer.get("size")
    if not isinstance(digest, str):
        msg = "signature layer has no digest"
        raise MalformedSignature(msg)
    if isinstance(size, int) and size > MAX_SIGNATURE_BYTES:
        msg = f"signature layer declares {size} bytes, over the {MAX_SIGNATURE_BYTES}-byte limit"
        raise MalformedSignature(msg)
    return registry.get_blob(repository, require_digest(digest), max_bytes=MAX_SIGNATURE_BYTES)


def _legacy(registry: Registry, repository: str, digest: str, policy: TrustPolicy, found: _Collector) -> None:
    tag = referrers_tag(digest) + ".sig"
    source = f"tag:{tag}"
    manifest = registry.get_manifest(repository, tag)
    if manifest is None:
        return
    try:
        layers = _layers(manifest)
    except MalformedSignature as exc:
        found.count()
        found.refuse(exc, source, manifest.digest)
        return
    for layer in layers:
        found.count()
        try:
            payload = _layer_blob(registry, repository, layer)
            annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
            evidence = verify_legacy_layer(str(layer.get("mediaType", "")), payload, annotations or {}, policy, digest)
        except (DigestMismatch, SignatureInvalid, MalformedSignature) as exc:
            found.refuse(exc, source, manifest.digest)
        else:
            found.accepted.append(_with_origin(evidence, manifest.digest, source))


def _referrers(registry: Registry, repository: str, digest: str, policy: TrustPolicy, found: _Collector) -> None:
    for descriptor in registry.list_referrers(repository, digest):
        artifact_type = descriptor.get("artifactType")
        referrer = str(descriptor.get("digest"))
        annotations = descriptor.get("annotations") if isinstance(descriptor.get("annotations"), dict) else {}
        announced = (annotations or {}).get(BUNDLE_PREDICATE_ANNOTATION)
        if artifact_type not in BUNDLE_MEDIA_TYPES:
            found.ignored.append({"referrer": referrer, "artifactType": str(artifact_type)[:120]})
            continue
        if isinstance(announced, str) and announced != COSIGN_SIGN_PREDICATE:
            found.ignored.append(
                {"referrer": referrer, "artifactType": artifact_type, "predicateType": announced[:200]}
            )
            continue
        source = "referrer"
        try:
            bundle_json = _referrer_bundle(registry, repository, digest, referrer)
        except MalformedSignature as exc:
            found.count()
            found.refuse(exc, source, referrer)
            continue
        predicate = bundle_predicate_type(bundle_json)
        if predicate is not None and predicate != COSIGN_SIGN_PREDICATE:
            found.ignored.append(
                {"referrer": referrer, "artifactType": artifact_type, "predicateType": predicate[:200]}
            )
            continue
        found.count()
        try:
            evidence = verify_bundle(bundle_json, policy, digest)
        except (DigestMismatch, SignatureInvalid, MalformedSignature) as exc:
            found.refuse(exc, source, referrer)
        else:
            found.accepted.append(_with_origin(evidence, referrer, source))


def _referrer_bundle(registry: Registry, repository: str, digest: str, referrer: str) -> bytes:
    manifest = registry.get_manifest(repository, require_digest(referrer))
    if manifest is None:
        msg = f"referrer {referrer} is listed but its manifest is missing"
        raise MalformedSignature(msg)
    body = manifest.json()
    subject = body.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        msg = f"referrer {referrer} does not name {digest} as its subject"
        raise MalformedSignature(msg)
    layers = _layers(manifest)
    bundles = [layer for layer in layers if layer.get("mediaType") in BUNDLE_MEDIA_TYPES]
    if len(bundles) != 1:
        msg = f"referrer {referrer} has {len(bundles)} bundle layers, expected exactly one"
        raise MalformedSignature(msg)
    return _layer_blob(registry, repository, bundles[0])


def _with_origin(evidence: SignatureEvidence, manifest: str, source: str) -> SignatureEvidence:
    return SignatureEvidence(
        kind=evidence.kind,
        key_id=evidence.key_id,
        digest=evidence.digest,
        docker_reference=evidence.docker_reference,
        predicate_type=evidence.predicate_type,
        bundle_media_type=evidence.bundle_media_type,
        signature_manifest=manifest,
        source=source,
        signer=evidence.signer,
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

    found = _Collector()
    _legacy(registry, repository, digest, policy, found)
    _referrers(registry, repository, digest, policy, found)

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


def public_keys_pem(keys: Sequence[TrustedKey]) -> str:
    """The keys as concatenated PEM (what `TrustPolicy.from_pem` reads back)."""
    return "".join(k.pem() for k in keys)
