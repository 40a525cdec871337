"""A LOCAL RFC 3161 timestamp authority for the demo and tests: never deployed, never trusted in production.

It stands in for sigstore's timestamp authority (`timestamp.sigstore.dev`) beside the local
Fulcio and Rekor of `local.sigstore_local`: a self-signed TSA root and a leaf certificate with the
critical timeStamping extended key usage (ECDSA P-256), and `timestamp(message)`, a DER
TimeStampResp (RFC 3161) whose token is a CMS SignedData (RFC 5652) over a TSTInfo with the
SHA-256 message imprint of `message` (a signature's bytes, as sigstore clients timestamp them),
signed attributes contentType, messageDigest and signingCertificateV2 (RFC 5035).

There is no ASN.1 library among the project's dependencies, so the few DER types a response needs
are written out below (definite lengths, SET OF sorted as DER requires).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- DER ------------------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        rest, chunk = part >> 7, [part & 0x7F]
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _time(when: datetime) -> bytes:
    return _tlv(0x18, when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode())


def _explicit(number: int, body: bytes) -> bytes:
    return _tlv(0xA0 | number, body)


SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SIGNED_DATA = "1.2.840.113549.1.7.2"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
#: The TSA policy the local authority states (an arbitrary private OID).
LOCAL_POLICY = "1.3.6.1.4.1.57264.99.1"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "podrelease.local"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey,
    start: datetime, *, ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class LocalTimestampAuthority:
    """A TSA root and signing certificate (keys in memory); `timestamp` answers like a TSA."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, *, start: datetime, name: str = "podrelease-local") -> LocalTimestampAuthority:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _certificate(f"{name}-tsa-root", root_key, None, root_key, start, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(root_key, root, key, _certificate(f"{name}-tsa", key, root, root_key, start, ca=False))

    def chain_der(self) -> list[bytes]:
        """The chain as the trusted root lists it: signing certificate first, root last."""
        return [c.public_bytes(serialization.Encoding.DER) for c in (self.certificate, self.root)]

    def timestamp(self, message: bytes, *, at: datetime | None = None) -> bytes:
        """A DER TimeStampResp (status granted) over SHA-256(`message`), at `at` (default now)."""
        when = (at or datetime.now(UTC)).replace(microsecond=0)
        tst_info = _seq(
            _int(1),
            _oid(LOCAL_POLICY),
            _seq(_seq(_oid(SHA256)), _octets(hashlib.sha256(message).digest())),
            _int(secrets.randbits(63)),
            _time(when),
        )
        leaf_der = self.certificate.public_bytes(serialization.Encoding.DER)
        attributes = [
            _seq(_oid(CONTENT_TYPE), _set(_oid(TST_INFO))),
            _seq(_oid(MESSAGE_DIGEST), _set(_octets(hashlib.sha256(tst_info).digest()))),
            _seq(_oid(SIGNING_CERTIFICATE_V2), _set(_seq(_seq(_seq(_octets(hashlib.sha256(leaf_der).digest())))))),
        ]
        signed_attributes = _set(*attributes)  # signed as a SET; carried as [0] IMPLICIT
        signature = self.key.sign(signed_attributes, ec.ECDSA(hashes.SHA256()))
        issuer = self.certificate.issuer.public_bytes()
        signer_info = _seq(
            _int(1),
            _seq(issuer, _int(self.certificate.serial_number)),
            _seq(_oid(SHA256)),
            b"\xa0" + signed_attributes[1:],
            _seq(_oid(ECDSA_SHA256)),
            _octets(signature),
        )
        signed_data = _seq(
            _int(3),
            _set(_seq(_oid(SHA256))),
            _seq(_oid(TST_INFO), _explicit(0, _octets(tst_info))),
            _tlv(0xA0, leaf_der),
            _set(signer_info),
        )
        token = _seq(_oid(SIGNED_DATA), _explicit(0, signed_data))
        return _seq(_seq(_int(0)), token)
