"""Fulcio signing certificates: who a certificate names, and whether it chains to a trusted CA.

A keyless signature's certificate is trusted when it chains to a Fulcio CA of the trusted root
(issuer name and signature, each CA a CA, every certificate and the CA's `validFor` covering the
signing time), has key usage digitalSignature and extended key usage codeSigning, and one of the
policy's `Identity` rules matches: the OIDC issuer (Fulcio extension 1.3.6.1.4.1.57264.1.8, or the
older .1.1) exactly, and a certificate SAN (email, URI or Fulcio other name) exactly or by a
fully-matched regular expression. Fulcio certificates live ten minutes, so "valid" means valid at
the signing time the transparency log authenticated (`podrelease.verify.transparency_log`), never now.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from podrelease.core.errors import MalformedSignature, PolicyError, SignatureInvalid
from podrelease.verify.trusted_root import CertificateAuthority, SigstoreTrustRoot

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

MAX_CERTIFICATE_BYTES = 16 * 1024


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


def load_certificate(data: bytes, *, pem: bool) -> x509.Certificate:
    if len(data) > MAX_CERTIFICATE_BYTES:
        msg = "the signing certificate is larger than 16 KiB"
        raise MalformedSignature(msg)
    try:
        return x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        msg = "the signing certificate cannot be parsed"
        raise MalformedSignature(msg) from exc



def github_workflow_identity(repository: str, workflow: str = "build.yml", ref: str = "refs/heads/main") -> Identity:
    """The identity a GitHub Actions workflow signs with (Fulcio SAN of a workflow run)."""
    return Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=f"https://github.com/{repository}/.github/workflows/{workflow}@{ref}")
