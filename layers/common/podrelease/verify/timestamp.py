"""RFC 3161 timestamps: a signing time vouched for by a timestamp authority (TSA) of the trusted root.

Rekor v2 entries carry no integrated time and no signed entry timestamp, so a keyless signature
logged there gets its signing time from a TSA: the bundle's
`verificationMaterial.timestampVerificationData.rfc3161Timestamps[].signedTimestamp` (a DER
TimeStampResp), or a legacy layer's `dev.sigstore.cosign/rfc3161timestamp` annotation (JSON
`{"SignedRFC3161Timestamp": base64}`). A timestamp counts when, and only when:

1. its message imprint is the hash of *this* signature's bytes (a timestamp over another
   signature says nothing about this one);
2. its token is signed by a TSA of the trusted root: the signer certificate is the authority's
   leaf, chains to the authority's root, is valid at the timestamp's time and has the critical
   timeStamping extended key usage (rfc3161-client, the library sigstore-python uses, checks the
   CMS signature and the chain);
3. the timestamp's time lies inside the authority's `validFor`, both ends included.

Any timestamp in the material that fails is refused with its reason (SignatureInvalid), never
skipped: a bundle is not accepted on the strength of its other evidence while carrying a bad
timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from podrelease.core.errors import MalformedSignature, SignatureInvalid
from podrelease.verify.decoding import base64_bytes, json_object
from podrelease.verify.trusted_root import SigstoreTrustRoot, TimestampAuthority

#: Legacy layers' timestamp annotation (cosign `--timestamp-server-url` with the old format).
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"
#: Most timestamps read from one signature's material.
MAX_TIMESTAMPS = 4
MAX_TIMESTAMP_BYTES = 16 * 1024

_HASHES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}


def material_timestamps(material: Mapping[str, Any]) -> list[bytes]:
    """The DER timestamp responses of a bundle's verificationMaterial or a legacy layer's annotations."""
    raw: list[Any] = []
    if TIMESTAMP_ANNOTATION in material:
        doc = json_object(str(material[TIMESTAMP_ANNOTATION]), TIMESTAMP_ANNOTATION, limit=MAX_TIMESTAMP_BYTES * 2)
        raw = [doc.get("SignedRFC3161Timestamp")]
    data = material.get("timestampVerificationData")
    if isinstance(data, Mapping):
        stamps = data.get("rfc3161Timestamps") or []
        if not isinstance(stamps, list):
            msg = "timestampVerificationData.rfc3161Timestamps is not a list"
            raise MalformedSignature(msg)
        raw += [s.get("signedTimestamp") if isinstance(s, Mapping) else None for s in stamps]
    if len(raw) > MAX_TIMESTAMPS:
        msg = f"{len(raw)} timestamps, more than the {MAX_TIMESTAMPS} read"
        raise MalformedSignature(msg)
    tokens = [base64_bytes(value, "an RFC 3161 timestamp", MAX_TIMESTAMP_BYTES, urlsafe=False) for value in raw]
    if len(set(tokens)) != len(tokens):
        msg = "the same RFC 3161 timestamp is given twice"
        raise MalformedSignature(msg)
    return tokens


def _decode(token: bytes) -> Any:
    from rfc3161_client import decode_timestamp_response  # noqa: PLC0415 - lazy: keyless only

    try:
        return decode_timestamp_response(token)
    except (ValueError, TypeError) as exc:
        msg = "an RFC 3161 timestamp cannot be read (not a DER TimeStampResp)"
        raise MalformedSignature(msg) from exc


def timestamp_time(token: bytes) -> datetime:
    """The time a timestamp claims, NOT verified (for reports and for sorting only)."""
    when: datetime = _decode(token).tst_info.gen_time
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _imprint_matches(response: Any, signature: bytes) -> bool:
    import hashlib  # noqa: PLC0415

    imprint = response.tst_info.message_imprint
    name = _HASHES.get(imprint.hash_algorithm.dotted_string)
    return name is not None and hashlib.new(name, signature).digest() == imprint.message


def _signed_by(response: Any, authority: TimestampAuthority, signature: bytes) -> bool:
    from rfc3161_client import VerificationError, VerifierBuilder  # noqa: PLC0415 - lazy

    chain = authority.chain
    builder = VerifierBuilder().tsa_certificate(chain[0]).add_root_certificate(chain[-1])
    for certificate in chain[1:-1]:
        builder = builder.add_intermediate_certificate(certificate)
    try:
        return bool(builder.build().verify_message(response, signature))
    except (VerificationError, ValueError):
        return False


def verify_timestamp(token: bytes, signature: bytes, root: SigstoreTrustRoot) -> datetime:
    """The time `token` vouches for `signature`, checked as the module says; SignatureInvalid naming
    the failed rule otherwise."""
    response = _decode(token)
    if not _imprint_matches(response, signature):
        msg = "the RFC 3161 timestamp is over another signature (its message imprint is not this signature's hash)"
        raise SignatureInvalid(msg)
    when = timestamp_time(token)
    if not root.timestamp_authorities:
        msg = "the signature carries an RFC 3161 timestamp, and the trusted root names no timestamp authority"
        raise SignatureInvalid(msg)
    signers = [tsa for tsa in root.timestamp_authorities if _signed_by(response, tsa, signature)]
    if not signers:
        msg = "the RFC 3161 timestamp is not signed by a timestamp authority of the trusted root"
        raise SignatureInvalid(msg)
    if not any(tsa.validity.covers(when) for tsa in signers):
        spans = "; ".join(
            f"{tsa.validity.start.isoformat()} to {tsa.validity.end.isoformat() if tsa.validity.end else 'open'}"
            for tsa in signers[:2]
        )
        msg = f"the RFC 3161 timestamp's time {when.isoformat()} is outside its timestamp authority's validity ({spans})"
        raise SignatureInvalid(msg)
    return when


def verified_timestamps(tokens: Sequence[bytes], signature: bytes, root: SigstoreTrustRoot) -> list[datetime]:
    """Every timestamp verified (`verify_timestamp`), or the first refusal raised."""
    return [verify_timestamp(token, signature, root) for token in tokens]
