"""Keyless cosign verification: Fulcio certificates, a pinned trusted root, identity policy.

A keyless signature is made with a short-lived key whose certificate Fulcio issued for an OIDC
identity (a person's email, a CI workflow's URI), and logged in Rekor. It is trusted when, and only
when, all of these hold (`FulcioVerifier.signing_key`):

1. **Signing time.** The transparency-log entry's `integratedTime`, authenticated by the log's
   signed entry timestamp (SET, the "inclusion promise"), made with a log key from the trusted root.
   An inclusion proof with a signed checkpoint is checked too when present (bundles v0.2+ carry
   one), but a proof alone does not authenticate a time: without a SET the signature is refused.
2. **Log entry binding.** The entry body (hashedrekord 0.0.1 or dsse 0.0.1) names this signature,
   this certificate and the SHA-256 of what was signed, so an entry for something else counts for
   nothing.
3. **Certificate chain.** The certificate chains to a Fulcio CA of the trusted root (issuer name and
   signature, each CA a CA, every certificate and the CA's `validFor` covering the signing time), has
   key usage digitalSignature and extended key usage codeSigning. Fulcio certificates live ten
   minutes, so "valid" means valid *at the signing time*, never now.
4. **Identity.** One of the policy's `Identity` rules matches: the OIDC issuer (Fulcio extension
   1.3.6.1.4.1.57264.1.8, or the older .1.1) exactly, and a certificate SAN (email, URI or Fulcio
   other name) exactly or by a fully-matched regular expression.

Where the material comes from:

- **Legacy `.sig` layers** (cosign's keyless format before bundles): the layer annotations
  `dev.sigstore.cosign/certificate` (PEM), `dev.sigstore.cosign/chain` (PEM; ignored: only the
  trusted root's CAs are trusted) and `dev.sigstore.cosign/bundle` (JSON `{"SignedEntryTimestamp",
  "Payload": {"body", "integratedTime", "logIndex", "logID"}}`). The SET is the log key's ECDSA
  signature over the canonical JSON (sorted keys, no whitespace) of `Payload`.
- **Sigstore bundles** (v0.1-v0.3): `verificationMaterial.certificate` (or the first certificate of
  `x509CertificateChain`) and `tlogEntries[0]` (`inclusionPromise.signedEntryTimestamp`,
  `inclusionProof` with its `checkpoint`, `canonicalizedBody`).

For bundles, `check_bundle` additionally runs sigstore-python's `Verifier` over the whole bundle
with the same pinned root and identity rules (it also checks the certificate's SCT against the CT
logs of the root); sigstore is imported there, only then, because its import costs hundreds of
milliseconds of cold start. A root without CT logs (the local demo instance) skips that step; the
checks above still run.

The trusted root is a sigstore `trusted_root.json` shipped with the function
(`podrelease/verify/trust/trusted_root.json`, see the README beside it); it is never fetched here.

KMS: `kms_trusted_key` turns an AWS KMS asymmetric signing key (`GetPublicKey`) into a TrustedKey.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from podrelease.core.errors import MalformedSignature, PolicyError, SignatureInvalid
from podrelease.verify.kms import kms_trusted_key
from podrelease.verify.signatures import (
    CERTIFICATE_ANNOTATION,
    MAX_RAW_SIGNATURE_BYTES,
    TrustedKey,
    TrustPolicy,
    check_signature,
)

#: The trusted root shipped with the function (sigstore public-good production instance).
PRODUCTION_TRUSTED_ROOT = Path(__file__).parent / "trust" / "trusted_root.json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"

BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

MAX_TRUSTED_ROOT_BYTES = 1024 * 1024
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_LOG_BODY_BYTES = 64 * 1024
MAX_PROOF_HASHES = 64


# --- the trusted root ----------------------------------------------------------------------------


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        msg = f"{what} is not a timestamp"
        raise PolicyError(msg)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        msg = f"{what} {value[:40]!r} is not an RFC 3339 timestamp"
        raise PolicyError(msg) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Validity:
    """A `validFor` range; `end` None means open-ended."""

    start: datetime
    end: datetime | None = None

    @classmethod
    def parse(cls, value: Any, what: str) -> Validity:
        if not isinstance(value, Mapping) or "start" not in value:
            msg = f"{what} has no validFor.start"
            raise PolicyError(msg)
        end = value.get("end")
        return cls(start=_time(value["start"], what), end=_time(end, what) if end is not None else None)

    def covers(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True)
class LogKey:
    """A transparency log (Rekor) or CT log key: `log_id` is the hex SHA-256 of its DER SPKI."""

    log_id: str
    key: TrustedKey = field(repr=False)
    validity: Validity
    base_url: str = ""


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA: its chain, issuing certificate first and the self-signed root last."""

    chain: tuple[x509.Certificate, ...] = field(repr=False)
    validity: Validity
    uri: str = ""


def _der_public_key(raw: bytes, what: str) -> TrustedKey:
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm) as exc:
        msg = f"{what}: the public key cannot be parsed"
        raise PolicyError(msg) from exc
    return TrustedKey.from_public_key(key)


def _b64_field(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        msg = f"{what} is missing"
        raise PolicyError(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is not base64"
        raise PolicyError(msg) from exc


def _log_keys(entries: Any, what: str) -> tuple[LogKey, ...]:
    if not isinstance(entries, list):
        return ()
    keys = []
    for number, entry in enumerate(entries):
        label = f"{what}[{number}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("publicKey"), Mapping):
            msg = f"{label} has no publicKey"
            raise PolicyError(msg)
        public = entry["publicKey"]
        key = _der_public_key(_b64_field(public.get("rawBytes"), f"{label}.publicKey.rawBytes"), label)
        keys.append(
            LogKey(
                log_id=key.key_id,
                key=key,
                validity=Validity.parse(public.get("validFor"), label),
                base_url=str(entry.get("baseUrl", "")),
            )
        )
    return tuple(keys)


@dataclass(frozen=True)
class SigstoreTrustRoot:
    """The parts of a sigstore `trusted_root.json` keyless verification needs, parsed with
    `cryptography`. `raw` keeps the document for sigstore-python (`check_bundle`)."""

    certificate_authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[LogKey, ...]
    ctlogs: tuple[LogKey, ...] = ()
    raw: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.certificate_authorities:
            msg = "the trusted root names no certificate authority: no keyless signature could verify"
            raise PolicyError(msg)
        if not self.tlogs:
            msg = "the trusted root names no transparency log: no keyless signature could verify"
            raise PolicyError(msg)

    @classmethod
    def from_json(cls, raw: bytes) -> SigstoreTrustRoot:
        if len(raw) > MAX_TRUSTED_ROOT_BYTES:
            msg = "the trusted root is larger than 1 MiB"
            raise PolicyError(msg)
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = "the trusted root is not valid JSON"
            raise PolicyError(msg) from exc
        if not isinstance(doc, dict) or doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
            msg = f"the trusted root is not a {TRUSTED_ROOT_MEDIA_TYPE} document"
            raise PolicyError(msg)
        authorities = []
        for number, ca in enumerate(doc.get("certificateAuthorities") or []):
            label = f"certificateAuthorities[{number}]"
            certificates = (ca.get("certChain") or {}).get("certificates") if isinstance(ca, dict) else None
            if not isinstance(certificates, list) or not certificates:
                msg = f"{label} has no certificate chain"
                raise PolicyError(msg)
            chain = []
            for entry in certificates:
                der = _b64_field(entry.get("rawBytes") if isinstance(entry, dict) else None, f"{label} certificate")
                try:
                    chain.append(x509.load_der_x509_certificate(der))
                except ValueError as exc:
                    msg = f"{label}: a certificate cannot be parsed"
                    raise PolicyError(msg) from exc
            authorities.append(
                CertificateAuthority(
                    chain=tuple(chain), validity=Validity.parse(ca.get("validFor"), label), uri=str(ca.get("uri", ""))
                )
            )
        return cls(
            certificate_authorities=tuple(authorities),
            tlogs=_log_keys(doc.get("tlogs"), "tlogs"),
            ctlogs=_log_keys(doc.get("ctlogs"), "ctlogs"),
            raw=bytes(raw),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SigstoreTrustRoot:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            msg = f"the trusted root {str(path)[:200]} cannot be read"
            raise PolicyError(msg) from exc
        return cls.from_json(raw)

    @classmethod
    def production(cls) -> SigstoreTrustRoot:
        """The pinned public-good root shipped with the function (never fetched)."""
        return cls.from_file(PRODUCTION_TRUSTED_ROOT)

    @classmethod
    def from_pems(
        cls, certificate_authorities: Sequence[bytes], rekor_keys: Sequence[bytes], *, since: datetime | None = None
    ) -> SigstoreTrustRoot:
        """A root from PEM files: each CA a PEM chain (issuing certificate first), each Rekor key a
        PEM public key, all valid from `since` (default: the epoch). No CT logs, so no
        sigstore-python step."""
        start = since or datetime(1970, 1, 1, tzinfo=UTC)
        authorities = []
        for pem in certificate_authorities:
            try:
                chain = tuple(x509.load_pem_x509_certificates(pem))
            except ValueError as exc:
                msg = "a CA certificate PEM cannot be parsed"
                raise PolicyError(msg) from exc
            authorities.append(CertificateAuthority(chain=chain, validity=Validity(start)))
        tlogs = []
        for pem in rekor_keys:
            try:
                key = TrustedKey.from_public_key(serialization.load_pem_public_key(pem))
            except (ValueError, UnsupportedAlgorithm) as exc:
                msg = "a Rekor public key PEM cannot be parsed"
                raise PolicyError(msg) from exc
            tlogs.append(LogKey(log_id=key.key_id, key=key, validity=Validity(start)))
        return cls(certificate_authorities=tuple(authorities), tlogs=tuple(tlogs))

    def tlog(self, log_id: str) -> LogKey | None:
        return next((log for log in self.tlogs if log.log_id == log_id), None)


# --- identity policy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who may sign: an OIDC issuer (exact) and a certificate SAN, exact (`subject`) or a regular
    expression that must match the whole SAN (`subject_regex`). Exactly one of the two."""

    issuer: str
    subject: str | None = None
    subject_regex: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer or not isinstance(self.issuer, str):
            msg = "a keyless identity needs its OIDC issuer"
            raise PolicyError(msg)
        if (self.subject is None) == (self.subject_regex is None):
            msg = "a keyless identity needs exactly one of subject (exact) and subject_regex"
            raise PolicyError(msg)
        if self.subject_regex is not None:
            try:
                re.compile(self.subject_regex)
            except re.error as exc:
                msg = f"keyless identity pattern {self.subject_regex[:80]!r} is not a valid regular expression"
                raise PolicyError(msg) from exc

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Identity:
        """`{"issuer": ..., "subject": ...}` or `{"issuer": ..., "subject_regex": ...}`."""
        if not isinstance(value, Mapping):
            msg = "a keyless identity must be an object with issuer and subject or subject_regex"
            raise PolicyError(msg)
        unknown = set(value) - {"issuer", "subject", "subject_regex"}
        if unknown:
            msg = f"keyless identity has unknown fields: {', '.join(sorted(unknown))}"
            raise PolicyError(msg)
        return cls(issuer=value.get("issuer", ""), subject=value.get("subject"), subject_regex=value.get("subject_regex"))

    def matches(self, sans: Iterable[str], issuer: str | None) -> bool:
        if issuer != self.issuer:
            return False
        if self.subject is not None:
            return self.subject in sans
        pattern = re.compile(self.subject_regex or "")
        return any(pattern.fullmatch(san) for san in sans)

    def describe(self) -> str:
        subject = self.subject if self.subject is not None else f"/{self.subject_regex}/"
        return f"{subject} from {self.issuer}"


def certificate_sans(certificate: x509.Certificate) -> list[str]:
    """The SAN values an identity can match: emails, URIs, and Fulcio's UTF-8 other names."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = [*san.get_values_for_type(x509.RFC822Name), *san.get_values_for_type(x509.UniformResourceIdentifier)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_OTHERNAME_SAN:
            text = _der_utf8(other.value)
            if text is not None:
                values.append(text)
    return values


def _der_utf8(der: bytes) -> str | None:
    """The text of a DER UTF8String (tag 12), short or long length form."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    body = der[offset : offset + length]
    if len(body) != length:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


def certificate_issuer(certificate: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded: extension .1.8 (DER UTF8String) or the older .1.1 (raw)."""
    extensions = certificate.extensions
    try:
        value = extensions.get_extension_for_oid(OID_ISSUER_V2).value
        if isinstance(value, x509.UnrecognizedExtension):
            return _der_utf8(value.value)
    except x509.ExtensionNotFound:
        pass
    try:
        value = extensions.get_extension_for_oid(OID_ISSUER_V1).value
        if isinstance(value, x509.UnrecognizedExtension):
            return value.value.decode()
    except (x509.ExtensionNotFound, UnicodeDecodeError):
        pass
    return None


# --- transparency log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """A transparency-log entry as either format carries it (unverified until `verify_log_entry`)."""

    body: bytes
    integrated_time: int
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


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value or len(value) > limit * 4 // 3 + 4:
        msg = f"{what} is missing, not a string, or too long"
        raise MalformedSignature(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is not base64"
        raise MalformedSignature(msg) from exc


def legacy_log_entry(annotation: Any) -> LogEntry:
    """The log entry of a legacy layer's `dev.sigstore.cosign/bundle` annotation."""
    if not isinstance(annotation, str) or len(annotation) > MAX_LOG_BODY_BYTES * 2:
        msg = f"{BUNDLE_ANNOTATION} is missing or too long"
        raise MalformedSignature(msg)
    try:
        doc = json.loads(annotation)
    except ValueError as exc:
        msg = f"{BUNDLE_ANNOTATION} is not JSON"
        raise MalformedSignature(msg) from exc
    payload = doc.get("Payload") if isinstance(doc, dict) else None
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
        integrated_time=_int(entry.get("integratedTime"), "integratedTime"),
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
    hint = hashlib.sha256(
        log.key.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()[:4]
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw[:4] != hint:
            continue
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


def verify_log_entry(entry: LogEntry, root: SigstoreTrustRoot) -> datetime:
    """Authenticate the entry with the trusted root's log key; returns its integrated time.

    The SET is required (it is what authenticates integratedTime); an inclusion proof, when
    present, must verify as well."""
    log = root.tlog(entry.log_id)
    if log is None:
        msg = f"the log entry is from log {entry.log_id[:16]}, which the trusted root does not name"
        raise SignatureInvalid(msg)
    when = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
    if not log.validity.covers(when):
        msg = f"log {entry.log_id[:16]} was not trusted at the entry's time {when.isoformat()}"
        raise SignatureInvalid(msg)
    if entry.set_signature is None:
        msg = "the log entry has no signed entry timestamp (SET): the signing time is not authenticated"
        raise SignatureInvalid(msg)
    try:
        check_signature(log.key, entry.set_signature, entry.canonical_payload())
    except SignatureInvalid as exc:
        msg = f"the log entry's signed entry timestamp does not verify with log {entry.log_id[:16]}"
        raise SignatureInvalid(msg) from exc
    if entry.inclusion_proof is not None:
        verify_inclusion_proof(entry, log)
    return when


def _same_certificate(pem_b64: Any, certificate: x509.Certificate) -> bool:
    try:
        logged = x509.load_pem_x509_certificate(base64.b64decode(str(pem_b64), validate=True))
    except (binascii.Error, ValueError):
        return False
    return logged == certificate


def check_entry_binding(body: bytes, certificate: x509.Certificate, signature: bytes, signed_sha256: str) -> None:
    """The entry must be about this signature, this certificate and this content (hashedrekord or
    dsse 0.0.1); anything else is refused."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        msg = "the log entry body is not JSON"
        raise MalformedSignature(msg) from exc
    if not isinstance(doc, dict):
        msg = "the log entry body is not a JSON object"
        raise MalformedSignature(msg)
    kind, version, spec = doc.get("kind"), doc.get("apiVersion"), doc.get("spec")
    if not isinstance(spec, dict):
        msg = "the log entry body has no spec"
        raise MalformedSignature(msg)
    signature_b64 = base64.b64encode(signature).decode()
    if (kind, version) == ("hashedrekord", "0.0.1"):
        logged_signature = spec.get("signature") or {}
        logged_hash = (spec.get("data") or {}).get("hash") or {}
        same = (
            logged_signature.get("content") == signature_b64
            and _same_certificate((logged_signature.get("publicKey") or {}).get("content"), certificate)
            and logged_hash.get("algorithm") == "sha256"
            and logged_hash.get("value") == signed_sha256
        )
    elif (kind, version) == ("dsse", "0.0.1"):
        payload_hash = spec.get("payloadHash") or {}
        signatures = spec.get("signatures") or []
        same = (
            payload_hash.get("algorithm") == "sha256"
            and payload_hash.get("value") == signed_sha256
            and isinstance(signatures, list)
            and any(
                isinstance(s, dict) and s.get("signature") == signature_b64 and _same_certificate(s.get("verifier"), certificate)
                for s in signatures
            )
        )
    else:
        msg = f"log entry kind {str(kind)[:40]} {str(version)[:20]} is not supported (hashedrekord or dsse 0.0.1)"
        raise MalformedSignature(msg)
    if not same:
        msg = "the log entry is about another signature, certificate or content"
        raise SignatureInvalid(msg)


# --- certificates --------------------------------------------------------------------------------


def _valid_at(certificate: x509.Certificate, when: datetime) -> bool:
    return certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def verify_chain(certificate: x509.Certificate, root: SigstoreTrustRoot, when: datetime) -> CertificateAuthority:
    """The leaf must be valid at `when` and chain, through one of the root's CAs, to its self-signed
    anchor, every certificate valid at `when`, the CA itself trusted at `when`."""
    if not _valid_at(certificate, when):
        msg = (
            f"the certificate was not valid at the signing time {when.isoformat()} "
            f"(valid {certificate.not_valid_before_utc.isoformat()} to {certificate.not_valid_after_utc.isoformat()})"
        )
        raise SignatureInvalid(msg)
    for ca in root.certificate_authorities:
        if not ca.validity.covers(when):
            continue
        child, ok = certificate, True
        for parent in ca.chain:
            if not (_issued_by(child, parent) and _is_ca(parent) and _valid_at(parent, when)):
                ok = False
                break
            child = parent
        if ok and _issued_by(child, child):
            return ca
    msg = f"the certificate does not chain to a certificate authority trusted at {when.isoformat()}"
    raise SignatureInvalid(msg)


def check_code_signing(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        msg = "the certificate lacks key usage or extended key usage"
        raise SignatureInvalid(msg) from exc
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        msg = "the certificate is not for code signing (digitalSignature + codeSigning)"
        raise SignatureInvalid(msg)


def _load_certificate(data: bytes, *, pem: bool) -> x509.Certificate:
    if len(data) > MAX_CERTIFICATE_BYTES:
        msg = "the signing certificate is larger than 16 KiB"
        raise MalformedSignature(msg)
    try:
        return x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        msg = "the signing certificate cannot be parsed"
        raise MalformedSignature(msg) from exc


def material_certificate_and_entries(material: Mapping[str, Any]) -> tuple[x509.Certificate, list[LogEntry]]:
    """The leaf certificate and log entries of a bundle's verificationMaterial or legacy annotations."""
    if CERTIFICATE_ANNOTATION in material:
        pem = material[CERTIFICATE_ANNOTATION]
        if not isinstance(pem, str):
            msg = f"{CERTIFICATE_ANNOTATION} is not a string"
            raise MalformedSignature(msg)
        certificate = _load_certificate(pem.encode(), pem=True)
        if BUNDLE_ANNOTATION not in material:
            return certificate, []
        return certificate, [legacy_log_entry(material[BUNDLE_ANNOTATION])]
    raw: Any = None
    if isinstance(material.get("certificate"), Mapping):
        raw = material["certificate"].get("rawBytes")
    elif isinstance(material.get("x509CertificateChain"), Mapping):
        chain = material["x509CertificateChain"].get("certificates")
        if isinstance(chain, list) and chain and isinstance(chain[0], Mapping):
            raw = chain[0].get("rawBytes")
    certificate = _load_certificate(_b64(raw, "the bundle certificate", MAX_CERTIFICATE_BYTES), pem=False)
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list):
        msg = "tlogEntries is not a list"
        raise MalformedSignature(msg)
    return certificate, [bundle_log_entry(e) for e in entries[:4]]


# --- the verifier --------------------------------------------------------------------------------


@dataclass
class FulcioVerifier:
    """`podrelease.verify.signatures.KeylessVerifier` for Fulcio certificates under a pinned trusted root.

    `use_sigstore`: run sigstore-python over whole bundles too (`check_bundle`); by default on
    when the root has CT logs (sigstore-python verifies the certificate's SCT with them)."""

    root: SigstoreTrustRoot
    identities: tuple[Identity, ...]
    use_sigstore: bool | None = None
    _sigstore: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.identities = tuple(self.identities)
        if not self.identities:
            msg = "a keyless policy needs at least one identity (issuer + subject): nothing could be allowed"
            raise PolicyError(msg)
        if self.use_sigstore is None:
            self.use_sigstore = bool(self.root.ctlogs) and bool(self.root.raw)

    def _identity(self, certificate: x509.Certificate) -> tuple[str, str]:
        sans = certificate_sans(certificate)
        issuer = certificate_issuer(certificate)
        for rule in self.identities:
            if rule.matches(sans, issuer):
                subject = next(s for s in sans if rule.matches([s], issuer))
                return subject, issuer or ""
        allowed = "; ".join(rule.describe() for rule in self.identities[:4])
        msg = (
            f"certificate identity {', '.join(sans)[:200] or '(none)'} from issuer {issuer or '(none)'} "
            f"is not allowed by the policy ({allowed})"
        )
        raise SignatureInvalid(msg)

    def signing_key(self, verification_material: Mapping[str, Any], signature: bytes, *, signed_sha256: str) -> TrustedKey:
        certificate, entries = material_certificate_and_entries(verification_material)
        if not entries:
            msg = "keyless signature without transparency-log evidence (no Rekor entry): refused"
            raise SignatureInvalid(msg)
        entry = entries[0]
        check_entry_binding(entry.body, certificate, signature, signed_sha256)
        when = verify_log_entry(entry, self.root)
        verify_chain(certificate, self.root, when)
        check_code_signing(certificate)
        subject, issuer = self._identity(certificate)
        key = TrustedKey.from_public_key(certificate.public_key())
        return TrustedKey(
            key=key.key,
            key_id=key.key_id,
            signer={
                "identity": subject,
                "issuer": issuer,
                "signed_at": when.isoformat(),
                "log_index": entry.log_index,
                "log_id": entry.log_id,
                "certificate_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
            },
        )

    # -- sigstore-python, for whole bundles --

    def _sigstore_verifier(self) -> Any:
        if self._sigstore is None:
            from sigstore.models import TrustedRoot  # noqa: PLC0415 - lazy: costly import, keyless only
            from sigstore.verify import Verifier  # noqa: PLC0415
            from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootMessage  # noqa: PLC0415

            self._sigstore = Verifier(trusted_root=TrustedRoot(TrustedRootMessage.from_json(self.root.raw)))
        return self._sigstore

    def check_bundle(self, bundle_json: bytes, expected_digest: str) -> None:
        if not self.use_sigstore:
            return
        from sigstore.errors import Error as SigstoreError  # noqa: PLC0415 - lazy
        from sigstore.hashes import Hashed  # noqa: PLC0415
        from sigstore.models import Bundle  # noqa: PLC0415
        from sigstore_models.common.v1 import HashAlgorithm  # noqa: PLC0415

        verifier = self._sigstore_verifier()
        try:
            bundle = Bundle.from_json(bundle_json)
        except (SigstoreError, ValueError) as exc:
            msg = f"sigstore-python cannot read the bundle: {str(exc)[:200]}"
            raise MalformedSignature(msg) from exc
        policy = _SigstorePolicy(self)
        try:
            if bundle._dsse_envelope is not None:  # noqa: SLF001 - no public accessor in sigstore 4.x
                verifier.verify_dsse(bundle, policy)
            else:
                digest = bytes.fromhex(expected_digest.removeprefix("sha256:"))
                verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, policy)
        except (SigstoreError, ValueError) as exc:
            if isinstance(exc.__cause__, SignatureInvalid):
                raise exc.__cause__ from exc
            msg = f"sigstore-python refused the bundle: {str(exc)[:300]}"
            raise SignatureInvalid(msg) from exc


class _SigstorePolicy:
    """Our identity rules as a sigstore-python `VerificationPolicy` (one set of rules, two engines)."""

    def __init__(self, verifier: FulcioVerifier) -> None:
        self._verifier = verifier

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError  # noqa: PLC0415 - lazy

        try:
            self._verifier._identity(cert)  # noqa: SLF001 - same module
        except SignatureInvalid as exc:
            raise VerificationError(str(exc)) from exc


# --- policy construction -------------------------------------------------------------------------


def keyless_policy(
    identities: Sequence[Identity | Mapping[str, Any]],
    *,
    root: SigstoreTrustRoot | None = None,
    keys: Sequence[TrustedKey] = (),
    use_sigstore: bool | None = None,
) -> TrustPolicy:
    """A TrustPolicy accepting keyless signatures by `identities` under `root` (default: the pinned
    production root), plus any `keys`."""
    rules = tuple(i if isinstance(i, Identity) else Identity.from_dict(i) for i in identities)
    verifier = FulcioVerifier(root=root or SigstoreTrustRoot.production(), identities=rules, use_sigstore=use_sigstore)
    return TrustPolicy(keys=tuple(keys), keyless=verifier)


#: Environment variable naming a trusted_root.json to use instead of the pinned production root
#: (the local demo's sigstore instance); set by the template or the local runtime, never by events.
TRUSTED_ROOT_ENV = "SIGSTORE_TRUSTED_ROOT"


def verifier_for(identities: Sequence[Any], *, root: SigstoreTrustRoot | None = None) -> FulcioVerifier:
    """The keyless verifier for `podrelease.verify.policy`'s keyless identities (objects with `issuer`,
    `identity`, `identity_regex`), or `Identity` values. The root: `root`, else the file named by
    SIGSTORE_TRUSTED_ROOT, else the pinned production root."""
    rules: list[Identity] = []
    for item in identities:
        if isinstance(item, Identity):
            rules.append(item)
        else:
            rules.append(
                Identity(
                    issuer=getattr(item, "issuer", ""),
                    subject=getattr(item, "identity", None),
                    subject_regex=getattr(item, "identity_regex", None),
                )
            )
    if root is None:
        path = os.environ.get(TRUSTED_ROOT_ENV, "").strip()
        root = SigstoreTrustRoot.from_file(path) if path else SigstoreTrustRoot.production()
    return FulcioVerifier(root=root, identities=tuple(rules))


def github_workflow_identity(repository: str, workflow: str = "build.yml", ref: str = "refs/heads/main") -> Identity:
    """The identity a GitHub Actions workflow signs with (Fulcio SAN of a workflow run)."""
    return Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=f"https://github.com/{repository}/.github/workflows/{workflow}@{ref}")


# --- AWS KMS ---------------------------------------------------------------------------------------


def kms_policy(kms_client: Any, key_ids: Sequence[str], *, keyless: FulcioVerifier | None = None) -> TrustPolicy:
    """A TrustPolicy of KMS keys (and optionally a keyless verifier)."""
    keys = tuple(kms_trusted_key(kms_client, key_id) for key_id in key_ids)
    return TrustPolicy(keys=keys, keyless=keyless)


__all__ = [
    "GITHUB_ACTIONS_ISSUER",
    "PRODUCTION_TRUSTED_ROOT",
    "FulcioVerifier",
    "Identity",
    "SigstoreTrustRoot",
    "github_workflow_identity",
    "keyless_policy",
    "kms_policy",
    "kms_trusted_key",
    "verifier_for",
]
