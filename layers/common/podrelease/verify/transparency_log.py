"""Transparency-log (Rekor) evidence of a keyless signature: the signing time, and what was logged.

1. **Signing time.** Rekor v1: the entry's `integratedTime`, authenticated by the log's signed entry
   timestamp (SET, the "inclusion promise"), made with a log key from the trusted root. Rekor v2
   entries have neither: the time comes from an RFC 3161 timestamp (`podrelease.verify.timestamp`),
   and the entry itself is authenticated by its inclusion proof and the log's signed checkpoint.
   An entry with neither a SET nor an inclusion proof is refused; an inclusion proof present is
   always checked.
2. **Entry binding.** The entry body names this signature, this certificate and the digest of what
   was signed, so an entry for something else counts for nothing. Kinds: `hashedrekord` 0.0.1 and
   0.0.2 (the SHA-256 of the artifact, or, for a DSSE envelope logged by Rekor v2, of the envelope's
   PAE), `dsse` 0.0.1 and 0.0.2 (the payload's SHA-256 and the envelope's signatures), `intoto`
   0.0.2 (the payload's SHA-256; signatures stored base64 twice, verifier a base64 PEM).

Checkpoints are signed notes (`origin`, tree size, root hash, then signature lines); the log's
line is found by its key hint and verified with the trusted root's key (ECDSA or Ed25519). Other
lines, such as witness cosignatures, are read as well-formed signature lines but not trusted: the
trusted root names no witness keys.

Entries come from a legacy layer's `dev.sigstore.cosign/bundle` annotation (JSON
`{"SignedEntryTimestamp", "Payload": {"body", "integratedTime", "logIndex", "logID"}}`; the SET is the
log key's ECDSA signature over the canonical JSON, sorted keys and no whitespace, of `Payload`) or a
bundle's `tlogEntries[i]` (`inclusionPromise.signedEntryTimestamp`, `inclusionProof` with its
`checkpoint`, `canonicalizedBody`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from podrelease.core.errors import MalformedSignature, SignatureInvalid
from podrelease.verify.decoding import base64_bytes, json_object
from podrelease.verify.envelopes import MAX_RAW_SIGNATURE_BYTES
from podrelease.verify.trust_policy import check_signature
from podrelease.verify.trusted_root import LogKey, SigstoreTrustRoot

BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
MAX_LOG_BODY_BYTES = 64 * 1024
MAX_PROOF_HASHES = 64

#: Log fields are standard base64 only.
_b64 = partial(base64_bytes, urlsafe=False)


@dataclass(frozen=True)
class LogEntry:
    """A transparency-log entry as either format carries it (unverified until `verify_log_entry`)."""

    body: bytes
    integrated_time: int | None
    log_index: int
    log_id: str
    set_signature: bytes | None
    inclusion_proof: Mapping[str, Any] | None = None

    def canonical_payload(self) -> bytes:
        """What the SET signs: canonical JSON of body (base64), integratedTime, logID, logIndex."""
        payload = {
            "body": base64.b64encode(self.body).decode(),
            "integratedTime": self.integrated_time,
            "logID": self.log_id,
            "logIndex": self.log_index,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _optional_time(value: Any) -> int | None:
    """integratedTime: absent (proto3 JSON omits a zero) or zero means none (Rekor v2)."""
    if value is None:
        return None
    when = _int(value, "integratedTime")
    return when or None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        msg = f"{what} is not an integer"
        raise MalformedSignature(msg)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    msg = f"{what} is not an integer"
    raise MalformedSignature(msg)



def legacy_log_entry(annotation: Any) -> LogEntry:
    """The log entry of a legacy layer's `dev.sigstore.cosign/bundle` annotation."""
    if not isinstance(annotation, str) or len(annotation) > MAX_LOG_BODY_BYTES * 2:
        msg = f"{BUNDLE_ANNOTATION} is missing or too long"
        raise MalformedSignature(msg)
    doc = json_object(annotation, BUNDLE_ANNOTATION)
    payload = doc.get("Payload")
    if not isinstance(payload, dict):
        msg = f"{BUNDLE_ANNOTATION} has no Payload"
        raise MalformedSignature(msg)
    log_id = payload.get("logID")
    if not isinstance(log_id, str) or not re.fullmatch(r"[0-9a-f]{64}", log_id):
        msg = f"{BUNDLE_ANNOTATION} logID is not a hex SHA-256"
        raise MalformedSignature(msg)
    return LogEntry(
        body=_b64(payload.get("body"), "log entry body", MAX_LOG_BODY_BYTES),
        integrated_time=_int(payload.get("integratedTime"), "integratedTime"),
        log_index=_int(payload.get("logIndex"), "logIndex"),
        log_id=log_id,
        set_signature=_b64(doc.get("SignedEntryTimestamp"), "SignedEntryTimestamp", MAX_RAW_SIGNATURE_BYTES),
    )


def bundle_log_entry(entry: Any) -> LogEntry:
    """A bundle's `tlogEntries[i]` as a LogEntry."""
    if not isinstance(entry, Mapping):
        msg = "tlog entry is not an object"
        raise MalformedSignature(msg)
    log_id = _b64((entry.get("logId") or {}).get("keyId"), "tlog entry logId.keyId", 64)
    promise = entry.get("inclusionPromise")
    set_signature = None
    if isinstance(promise, Mapping):
        set_signature = _b64(promise.get("signedEntryTimestamp"), "signedEntryTimestamp", MAX_RAW_SIGNATURE_BYTES)
    proof = entry.get("inclusionProof")
    return LogEntry(
        body=_b64(entry.get("canonicalizedBody"), "tlog entry canonicalizedBody", MAX_LOG_BODY_BYTES),
        integrated_time=_optional_time(entry.get("integratedTime")),
        log_index=_int(entry.get("logIndex"), "logIndex"),
        log_id=log_id.hex(),
        set_signature=set_signature,
        inclusion_proof=proof if isinstance(proof, Mapping) else None,
    )


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an inclusion proof leads to (raises on a bad proof)."""
    if not 0 <= index < size:
        msg = f"inclusion proof index {index} is outside a tree of size {size}"
        raise SignatureInvalid(msg)
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            msg = "inclusion proof is longer than the tree is deep"
            raise SignatureInvalid(msg)
        if fn & 1 or fn == sn:
            node = _node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = _node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        msg = "inclusion proof is shorter than the tree is deep"
        raise SignatureInvalid(msg)
    return node


def verify_checkpoint(note: str, log: LogKey) -> tuple[int, bytes]:
    """Verify a signed note checkpoint with the log's key; returns (tree size, root hash).

    Format (transparency-dev signed note): `origin\\nsize\\nbase64(root)\\n[extra lines]\\n\\n` then
    signature lines `— name base64(4-byte key hint || signature)`; the signature covers the text
    before the blank line, newline included."""
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        msg = "checkpoint has no signature block"
        raise MalformedSignature(msg)
    body = (text + "\n").encode()
    lines = text.split("\n")
    if len(lines) < 3:
        msg = "checkpoint has fewer than three lines"
        raise MalformedSignature(msg)
    size = _int(lines[1], "checkpoint tree size")
    root = _b64(lines[2], "checkpoint root hash", 64)
    hints = {
        hashlib.sha256(
            log.key.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).digest()[:4],
        bytes.fromhex(log.declared_id)[:4] if log.declared_id else b"",
    }
    signed_lines: list[bytes] = []
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            msg = "checkpoint has a malformed signature line"
            raise MalformedSignature(msg)
        try:
            signed_lines.append(base64.b64decode(parts[2], validate=True))
        except (binascii.Error, ValueError) as exc:
            msg = "checkpoint has a signature line that is not base64"
            raise MalformedSignature(msg) from exc
    for raw in signed_lines:
        if len(raw) < 5 or raw[:4] not in hints:
            continue  # another signer's line (a witness cosignature): not trusted here
        try:
            check_signature(log.key, raw[4:], body)
        except SignatureInvalid:
            continue
        return size, root
    msg = f"checkpoint is not signed by log {log.log_id[:16]}"
    raise SignatureInvalid(msg)


def verify_inclusion_proof(entry: LogEntry, log: LogKey) -> None:
    proof = entry.inclusion_proof or {}
    index = _int(proof.get("logIndex"), "inclusionProof.logIndex")
    size = _int(proof.get("treeSize"), "inclusionProof.treeSize")
    root = _b64(proof.get("rootHash"), "inclusionProof.rootHash", 64)
    hashes = proof.get("hashes") or []
    if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
        msg = "inclusionProof.hashes is not a list (or too long)"
        raise MalformedSignature(msg)
    path = [_b64(h, "inclusionProof hash", 64) for h in hashes]
    computed = merkle_root_from_proof(_leaf_hash(entry.body), index, size, path)
    if computed != root:
        msg = "inclusion proof does not lead to its root hash"
        raise SignatureInvalid(msg)
    checkpoint = (proof.get("checkpoint") or {}).get("envelope")
    if not isinstance(checkpoint, str):
        msg = "inclusion proof has no signed checkpoint"
        raise MalformedSignature(msg)
    signed_size, signed_root = verify_checkpoint(checkpoint, log)
    if (signed_size, signed_root) != (size, root):
        msg = "signed checkpoint disagrees with the inclusion proof's tree"
        raise SignatureInvalid(msg)


def verify_log_entry(entry: LogEntry, root: SigstoreTrustRoot, other_times: Sequence[datetime] = ()) -> datetime | None:
    """Authenticate the entry with the trusted root's log key; returns its integrated time when a
    SET vouches for one (Rekor v1), else None (Rekor v2: the caller's `other_times`, verified
    timestamps, are then the times the log must have been trusted at).

    A SET must verify when present (an integratedTime without one is refused); an inclusion proof
    must verify when present, and is required when there is no SET."""
    log = root.tlog(entry.log_id)
    if log is None:
        msg = f"the log entry is from log {entry.log_id[:16]}, which the trusted root does not name"
        raise SignatureInvalid(msg)
    when: datetime | None = None
    if entry.set_signature is not None:
        if entry.integrated_time is None:
            msg = "the log entry has a signed entry timestamp but no integratedTime"
            raise MalformedSignature(msg)
        when = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
        try:
            check_signature(log.key, entry.set_signature, entry.canonical_payload())
        except SignatureInvalid as exc:
            msg = f"the log entry's signed entry timestamp does not verify with log {entry.log_id[:16]}"
            raise SignatureInvalid(msg) from exc
    elif entry.inclusion_proof is None:
        msg = "the log entry has neither a signed entry timestamp (SET) nor an inclusion proof: it is not authenticated"
        raise SignatureInvalid(msg)
    for moment in [when] if when is not None else other_times:
        if not log.validity.covers(moment):
            msg = f"log {entry.log_id[:16]} was not trusted at the entry's time {moment.isoformat()}"
            raise SignatureInvalid(msg)
    if entry.inclusion_proof is not None:
        verify_inclusion_proof(entry, log)
    return when


def _same_certificate(pem_b64: Any, certificate: x509.Certificate) -> bool:
    try:
        logged = x509.load_pem_x509_certificate(base64.b64decode(str(pem_b64), validate=True))
    except (binascii.Error, ValueError):
        return False
    return logged == certificate


def _same_der_certificate(verifier: Any, certificate: x509.Certificate) -> bool:
    """A Rekor v2 `verifier`: `{"x509Certificate": {"rawBytes": base64 DER}, "keyDetails": ...}`."""
    raw = (verifier.get("x509Certificate") or {}).get("rawBytes") if isinstance(verifier, Mapping) else None
    try:
        logged = x509.load_der_x509_certificate(base64.b64decode(str(raw), validate=True))
    except (binascii.Error, ValueError):
        return False
    return logged == certificate


def _b64_of_hex(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def _intoto_signature(entry: Any, signature_b64: str, certificate: x509.Certificate) -> bool:
    """intoto 0.0.2 stores each signature base64 twice and its verifier as a base64 PEM."""
    if not isinstance(entry, Mapping):
        return False
    try:
        sig = base64.b64decode(str(entry.get("sig")), validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    return sig == signature_b64 and _same_certificate(entry.get("publicKey"), certificate)


def _binds(
    kind: Any, version: Any, spec: Mapping[str, Any], certificate: x509.Certificate, signature_b64: str, digests: _Digests
) -> bool:
    if (kind, version) == ("hashedrekord", "0.0.1"):
        logged_signature = spec.get("signature") or {}
        logged_hash = (spec.get("data") or {}).get("hash") or {}
        return (
            digests.hashed is not None
            and logged_signature.get("content") == signature_b64
            and _same_certificate((logged_signature.get("publicKey") or {}).get("content"), certificate)
            and logged_hash.get("algorithm") == "sha256"
            and logged_hash.get("value") == digests.hashed
        )
    if (kind, version) == ("hashedrekord", "0.0.2"):
        inner = spec.get("hashedRekordV002") or {}
        data, logged_signature = inner.get("data") or {}, inner.get("signature") or {}
        return (
            digests.hashed is not None
            and data.get("algorithm") == "SHA2_256"
            and data.get("digest") == _b64_of_hex(digests.hashed)
            and logged_signature.get("content") == signature_b64
            and _same_der_certificate(logged_signature.get("verifier"), certificate)
        )
    if (kind, version) == ("dsse", "0.0.1"):
        payload_hash, signatures = spec.get("payloadHash") or {}, spec.get("signatures") or []
        return (
            payload_hash.get("algorithm") == "sha256"
            and payload_hash.get("value") == digests.payload
            and isinstance(signatures, list)
            and any(
                isinstance(s, dict) and s.get("signature") == signature_b64 and _same_certificate(s.get("verifier"), certificate)
                for s in signatures
            )
        )
    if (kind, version) == ("dsse", "0.0.2"):
        inner = spec.get("dsseV002") or {}
        payload_hash, signatures = inner.get("payloadHash") or {}, inner.get("signatures") or []
        return (
            payload_hash.get("algorithm") == "SHA2_256"
            and payload_hash.get("digest") == _b64_of_hex(digests.payload)
            and isinstance(signatures, list)
            and any(
                isinstance(s, dict)
                and s.get("content") == signature_b64
                and _same_der_certificate(s.get("verifier"), certificate)
                for s in signatures
            )
        )
    if (kind, version) == ("intoto", "0.0.2"):
        content = spec.get("content") or {}
        payload_hash = content.get("payloadHash") or {}
        signatures = (content.get("envelope") or {}).get("signatures") or []
        return (
            payload_hash.get("algorithm") == "sha256"
            and payload_hash.get("value") == digests.payload
            and isinstance(signatures, list)
            and any(_intoto_signature(s, signature_b64, certificate) for s in signatures)
        )
    msg = (
        f"log entry kind {str(kind)[:40]} {str(version)[:20]} is not supported "
        "(hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2, intoto 0.0.2)"
    )
    raise MalformedSignature(msg)


@dataclass(frozen=True)
class _Digests:
    """Hex SHA-256 digests an entry may name: `payload` (what was signed: a simple-signing payload,
    a DSSE payload, or the artifact of a message signature) and `hashed` (what a hashedrekord entry
    names: the artifact, or for a DSSE envelope its PAE; None where hashedrekord does not apply)."""

    payload: str
    hashed: str | None


def check_entry_binding(
    body: bytes,
    certificate: x509.Certificate,
    signature: bytes,
    signed_sha256: str,
    *,
    pae_sha256: str | None = None,
) -> None:
    """The entry must be about this signature, this certificate and this content; anything else is
    refused. `pae_sha256`: for a DSSE signature, the SHA-256 of its PAE (what a Rekor v2 hashedrekord
    entry of a DSSE envelope names); a DSSE signature is never bound by a hashedrekord entry over
    its payload alone."""
    doc = json_object(body, "the log entry body", limit=MAX_LOG_BODY_BYTES)
    kind, version, spec = doc.get("kind"), doc.get("apiVersion"), doc.get("spec")
    if not isinstance(spec, dict):
        msg = "the log entry body has no spec"
        raise MalformedSignature(msg)
    digests = _Digests(payload=signed_sha256, hashed=pae_sha256 if pae_sha256 is not None else signed_sha256)
    try:
        same = _binds(kind, version, spec, certificate, base64.b64encode(signature).decode(), digests)
    except (AttributeError, TypeError, ValueError) as exc:  # a field of the wrong shape
        if isinstance(exc, MalformedSignature):
            raise
        msg = f"the log entry body ({str(kind)[:40]} {str(version)[:20]}) has a field of the wrong type"
        raise MalformedSignature(msg) from exc
    if not same:
        msg = "the log entry is about another signature, certificate or content"
        raise SignatureInvalid(msg)
