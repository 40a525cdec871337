"""The sigstore trusted root keyless verification runs under: Fulcio CAs, transparency-log keys and
RFC 3161 timestamp authorities.

The root is a sigstore `trusted_root.json` shipped with the function
(`podrelease/verify/trust/trusted_root.json`, see the README beside it; refreshed by
`scripts/refresh-trusted-root.py`); it is never fetched at verification time. `from_pems` builds one
from PEM files (the local demo's sigstore instance). Each CA, log key and timestamp authority is
trusted only within its `validFor` range, both ends included (a missing end is open); a root that
cannot be read, or names no CA or no log, is a PolicyError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from podrelease.core.errors import MalformedSignature, PolicyError
from podrelease.verify.decoding import base64_bytes, json_object
from podrelease.verify.trust_policy import TrustedKey

#: The trusted root shipped with the function (sigstore public-good production instance).
PRODUCTION_TRUSTED_ROOT = Path(__file__).parent / "trust" / "trusted_root.json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024


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
    #: The root's own `logId.keyId` (hex) when it differs from `log_id`: Rekor v2 logs (Ed25519
    #: keys) are named by their signed-note key hash, not by the SPKI's SHA-256.
    declared_id: str = ""

    def named(self, log_id: str) -> bool:
        return log_id in (self.log_id, self.declared_id)


@dataclass(frozen=True)
class TimestampAuthority:
    """An RFC 3161 timestamp authority: its chain, signing (leaf) certificate first, root last."""

    chain: tuple[x509.Certificate, ...] = field(repr=False)
    validity: Validity
    uri: str = ""


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
    """A base64 field of the root; unreadable, it is the root that is wrong: a PolicyError."""
    try:
        return base64_bytes(value, what, MAX_TRUSTED_ROOT_BYTES, urlsafe=False)
    except MalformedSignature as exc:
        raise PolicyError(str(exc)) from exc


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
        declared = (entry.get("logId") or {}).get("keyId") if isinstance(entry.get("logId"), Mapping) else None
        keys.append(
            LogKey(
                log_id=key.key_id,
                key=key,
                validity=Validity.parse(public.get("validFor"), label),
                base_url=str(entry.get("baseUrl", "")),
                declared_id=_b64_field(declared, f"{label}.logId.keyId").hex() if declared is not None else "",
            )
        )
    return tuple(keys)


def _certificate_chain(value: Any, label: str) -> tuple[x509.Certificate, ...]:
    certificates = (value.get("certChain") or {}).get("certificates") if isinstance(value, Mapping) else None
    if not isinstance(certificates, list) or not certificates:
        msg = f"{label} has no certificate chain"
        raise PolicyError(msg)
    chain = []
    for entry in certificates:
        der = _b64_field(entry.get("rawBytes") if isinstance(entry, Mapping) else None, f"{label} certificate")
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            msg = f"{label}: a certificate cannot be parsed"
            raise PolicyError(msg) from exc
    return tuple(chain)


def _timestamp_authorities(entries: Any) -> tuple[TimestampAuthority, ...]:
    if not isinstance(entries, list):
        return ()
    return tuple(
        TimestampAuthority(
            chain=_certificate_chain(tsa, f"timestampAuthorities[{number}]"),
            validity=Validity.parse(tsa.get("validFor") if isinstance(tsa, Mapping) else None, f"timestampAuthorities[{number}]"),
            uri=str(tsa.get("uri", "")) if isinstance(tsa, Mapping) else "",
        )
        for number, tsa in enumerate(entries)
    )


@dataclass(frozen=True)
class SigstoreTrustRoot:
    """The parts of a sigstore `trusted_root.json` keyless verification needs, parsed with
    `cryptography`. `raw` keeps the document for sigstore-python (`check_bundle`)."""

    certificate_authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[LogKey, ...]
    ctlogs: tuple[LogKey, ...] = ()
    timestamp_authorities: tuple[TimestampAuthority, ...] = ()
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
        try:
            doc = json_object(raw, "the trusted root", limit=MAX_TRUSTED_ROOT_BYTES)
        except MalformedSignature as exc:  # unreadable, it is the root that is wrong
            raise PolicyError(str(exc)) from exc
        if doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
            msg = f"the trusted root is not a {TRUSTED_ROOT_MEDIA_TYPE} document"
            raise PolicyError(msg)
        authorities = []
        for number, ca in enumerate(doc.get("certificateAuthorities") or []):
            label = f"certificateAuthorities[{number}]"
            chain = _certificate_chain(ca, label)
            authorities.append(
                CertificateAuthority(chain=chain, validity=Validity.parse(ca.get("validFor"), label), uri=str(ca.get("uri", "")))
            )
        return cls(
            certificate_authorities=tuple(authorities),
            tlogs=_log_keys(doc.get("tlogs"), "tlogs"),
            ctlogs=_log_keys(doc.get("ctlogs"), "ctlogs"),
            timestamp_authorities=_timestamp_authorities(doc.get("timestampAuthorities")),
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
        return next((log for log in self.tlogs if log.named(log_id)), None)

