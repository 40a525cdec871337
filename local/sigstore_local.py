"""A LOCAL sigstore instance for the demo and tests: never deployed, never trusted in production.

It stands in for Fulcio and Rekor so the `keyless` demo scenario can sign like cosign v3 in a
GitHub workflow, with no network:

- a CA like Fulcio's (a self-signed root and an intermediate, ECDSA P-384) that issues ten-minute
  code-signing certificates for an OIDC identity (SAN URI or email; issuer in Fulcio's extensions
  1.3.6.1.4.1.57264.1.1 and .1.8);
- a log like Rekor v1 (an ECDSA P-256 key, an append-only Merkle tree in memory) that returns, for
  each entry, a signed entry timestamp (SET) and an inclusion proof with a signed checkpoint;
- a log like Rekor v2 (an Ed25519 key, a tree of its own) whose entries (`hashedrekord` 0.0.2, a
  DSSE envelope logged over its PAE) carry no integrated time and no SET, only an inclusion proof
  with a signed checkpoint; the signing time then comes from
- a timestamp authority (`local.timestamp_local`), whose certificate chains to a TSA root named in
  the trusted root's `timestampAuthorities`;
- `trusted_root_json()`: a sigstore `trusted_root.json` naming the CA, both logs and the TSA.

`keyless_bundle` signs an image digest as cosign v3 does (`cosign sign`, new bundle format): a DSSE
envelope over the in-toto statement with predicate `https://sigstore.dev/cosign/sign/v1`, logged as
a `dsse` 0.0.1 entry (or, with `rekor_v2=True`, as cosign v3 does when its signing config names a
Rekor v2 log: a `hashedrekord` 0.0.2 entry over the PAE plus an RFC 3161 timestamp over the
signature), in a v0.3 bundle with the certificate; `keyless_referrer_artifact` wraps it in
the OCI 1.1 referrer manifest (`local.signing.bundle_referrer_manifest`).

The certificates carry no SCT (there is no CT log here), so sigstore-python's verifier, which
requires one, is not used for this root: `podrelease.verify.keyless.FulcioVerifier` checks it with its own
code (`use_sigstore` is off for a root without CT logs). The production path keeps sigstore-python
and the pinned public-good root.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from local.rekor_entries import KINDS, entry_body
from local.signing import bundle_referrer_manifest, cosign_sign_statement
from local.timestamp_local import LocalTimestampAuthority
from podrelease.verify.attachments import BUNDLE_MEDIA_TYPE
from podrelease.verify.certificates import GITHUB_ACTIONS_ISSUER, OID_ISSUER_V1, OID_ISSUER_V2, Identity
from podrelease.verify.envelopes import INTOTO_PAYLOAD_TYPE, dsse_pae
from podrelease.verify.keyless import FulcioVerifier
from podrelease.verify.trusted_root import SigstoreTrustRoot

#: The identity the demo's build workflow signs with.
BUILD_IDENTITY = "https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main"
CERT_LIFETIME = timedelta(minutes=10)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _der_utf8(text: str) -> bytes:
    body = text.encode()
    if len(body) < 0x80:
        return bytes([0x0C, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + body


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "podrelease.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    start: datetime,
    path_length: int | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA384())


@dataclass
class LocalSigstore:
    """A local Fulcio-like CA and Rekor-like log (keys in memory)."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    log_key: ec.EllipticCurvePrivateKey
    origin: str
    leaves: list[bytes] = field(default_factory=list)
    #: The Rekor v2 log and the timestamp authority (made by `create`).
    log2_key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    leaves2: list[bytes] = field(default_factory=list)
    tsa: LocalTimestampAuthority | None = None
    #: The TSA's `validFor` in the trusted root (its certificates are valid for longer, from 30 days back).
    tsa_valid_from: datetime | None = None
    tsa_valid_until: datetime | None = None

    @classmethod
    def create(cls, *, now: datetime | None = None, name: str = "podrelease-local") -> LocalSigstore:
        start = (now or datetime.now(UTC)) - timedelta(days=1)
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = _ca_certificate(f"{name}-root", root_key, None, root_key, start, 1)
        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        intermediate = _ca_certificate(f"{name}-intermediate", intermediate_key, root, root_key, start, 0)
        log_key = ec.generate_private_key(ec.SECP256R1())
        tsa = LocalTimestampAuthority.create(start=start - timedelta(days=29), name=name)
        return cls(root_key, root, intermediate_key, intermediate, log_key, origin=f"{name}-rekor", tsa=tsa,
                   tsa_valid_from=start)

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.log_key.public_key())).digest()

    @property
    def origin2(self) -> str:
        return f"{self.origin}-v2"

    @property
    def log2_id(self) -> bytes:
        """A Rekor v2 log's ID: its signed-note key hash (name, newline, 0x01 for Ed25519, the raw key)."""
        raw = self.log2_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(self.origin2.encode() + b"\n\x01" + raw).digest()

    def _timestamp_authorities(self) -> list[dict[str, Any]]:
        if self.tsa is None or self.tsa_valid_from is None:
            return []
        valid_for = {"start": self.tsa_valid_from.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.tsa_valid_until is not None:
            valid_for["end"] = self.tsa_valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")
        return [
            {
                "subject": {"organization": "podrelease.local", "commonName": f"{self.origin}-tsa"},
                "uri": "http://127.0.0.1/local-tsa",
                "certChain": {"certificates": [{"rawBytes": _b64(der)} for der in self.tsa.chain_der()]},
                "validFor": valid_for,
            }
        ]

    # -- trusted root --

    def trusted_root(self) -> dict[str, Any]:
        since = self.root.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": "http://127.0.0.1/local-rekor",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(_spki(self.log_key.public_key())),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": since},
                    },
                    "logId": {"keyId": _b64(self.log_id)},
                },
                {
                    "baseUrl": "http://127.0.0.1/local-rekor-v2",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(
                            self.log2_key.public_key().public_bytes(
                                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                            )
                        ),
                        "keyDetails": "PKIX_ED25519",
                        "validFor": {"start": since},
                    },
                    "logId": {"keyId": _b64(self.log2_id)},
                },
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "podrelease.local", "commonName": self.origin},
                    "uri": "http://127.0.0.1/local-fulcio",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in (self.intermediate, self.root)
                        ]
                    },
                    "validFor": {"start": since},
                }
            ],
            "ctlogs": [],
            "timestampAuthorities": self._timestamp_authorities(),
        }

    def trusted_root_json(self) -> bytes:
        return json.dumps(self.trusted_root(), indent=2).encode()

    def trust_root(self) -> SigstoreTrustRoot:
        return SigstoreTrustRoot.from_json(self.trusted_root_json())

    def write_trusted_root(self, path: str | Path) -> Path:
        """Write trusted_root.json (for SIGSTORE_TRUSTED_ROOT in the local runtime)."""
        target = Path(path)
        target.write_bytes(self.trusted_root_json())
        return target

    def verifier(self, identities: list[Identity] | None = None) -> FulcioVerifier:
        """A FulcioVerifier for this root (default identity: the demo build workflow)."""
        rules = identities or [Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=BUILD_IDENTITY)]
        return FulcioVerifier(root=self.trust_root(), identities=tuple(rules), use_sigstore=False)

    # -- Fulcio --

    def issue(
        self, identity: str, issuer: str, *, not_before: datetime | None = None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A fresh P-256 key and a ten-minute code-signing certificate for (identity, issuer)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(seconds=5)
        san: x509.GeneralName = (
            x509.RFC822Name(identity) if "@" in identity and "://" not in identity else x509.UniformResourceIdentifier(identity)
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + CERT_LIFETIME)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, _der_utf8(issuer)), critical=False)
            .sign(self.intermediate_key, hashes.SHA384())
        )
        return key, certificate

    # -- Rekor --

    def _tree_root(self, leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return leaves[0]
        split = 1 << ((len(leaves) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + self._tree_root(leaves[:split]) + self._tree_root(leaves[split:])).digest()

    def _path(self, index: int, leaves: list[bytes]) -> list[bytes]:
        if len(leaves) == 1:
            return []
        split = 1 << ((len(leaves) - 1).bit_length() - 1)
        if index < split:
            return [*self._path(index, leaves[:split]), self._tree_root(leaves[split:])]
        return [*self._path(index - split, leaves[split:]), self._tree_root(leaves[:split])]

    def _checkpoint(self, size: int, root: bytes) -> str:
        body = f"{self.origin}\n{size}\n{_b64(root)}\n"
        signature = self.log_key.sign(body.encode(), ec.ECDSA(hashes.SHA256()))
        hint = hashlib.sha256(_spki(self.log_key.public_key())).digest()[:4]
        return f"{body}\n\u2014 {self.origin} {_b64(hint + signature)}\n"

    def log(self, body: bytes, kind: str, *, integrated_time: int | None = None, version: str = "0.0.1") -> dict[str, Any]:
        """Append `body` and return its bundle `tlogEntries` item (SET + inclusion proof)."""
        self.leaves.append(hashlib.sha256(b"\x00" + body).digest())
        index = len(self.leaves) - 1
        when = integrated_time if integrated_time is not None else int(datetime.now(UTC).timestamp())
        promise = {"body": _b64(body), "integratedTime": when, "logID": self.log_id.hex(), "logIndex": index}
        set_signature = self.log_key.sign(
            json.dumps(promise, sort_keys=True, separators=(",", ":")).encode(), ec.ECDSA(hashes.SHA256())
        )
        root = self._tree_root(self.leaves)
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": version},
            "integratedTime": str(when),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_signature)},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(len(self.leaves)),
                "hashes": [_b64(h) for h in self._path(index, self.leaves)],
                "checkpoint": {"envelope": self._checkpoint(len(self.leaves), root)},
            },
            "canonicalizedBody": _b64(body),
        }

    def log_v2(self, body: bytes, kind: str = "hashedrekord", version: str = "0.0.2") -> dict[str, Any]:
        """Append `body` to the Rekor v2 log: a `tlogEntries` item with an inclusion proof and a
        checkpoint signed with the Ed25519 log key; no integrated time, no SET."""
        self.leaves2.append(hashlib.sha256(b"\x00" + body).digest())
        index, size = len(self.leaves2) - 1, len(self.leaves2)
        root = self._tree_root(self.leaves2)
        note = f"{self.origin2}\n{size}\n{_b64(root)}\n"
        line = _b64(self.log2_id[:4] + self.log2_key.sign(note.encode()))
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log2_id)},
            "kindVersion": {"kind": kind, "version": version},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in self._path(index, self.leaves2)],
                "checkpoint": {"envelope": f"{note}\n\u2014 {self.origin2} {line}\n"},
            },
            "canonicalizedBody": _b64(body),
        }

    def timestamp(self, signature: bytes, *, at: datetime | None = None) -> str:
        """A base64 RFC 3161 timestamp over `signature` from the local TSA."""
        if self.tsa is None:
            msg = "this local sigstore has no timestamp authority"
            raise ValueError(msg)
        return _b64(self.tsa.timestamp(signature, at=at))

    # -- cosign sign (keyless, v3 bundle) --

    def keyless_bundle(
        self,
        digest: str,
        *,
        identity: str = BUILD_IDENTITY,
        issuer: str = GITHUB_ACTIONS_ISSUER,
        statement: bytes | None = None,
        certificate_authority: LocalSigstore | None = None,
        integrated_time: int | None = None,
        rekor_v2: bool = False,
        entry: tuple[str, str] | None = None,
        timestamped: bool | None = None,
        timestamp_at: datetime | None = None,
        timestamp_over: bytes | None = None,
    ) -> bytes:
        """A v0.3 bundle: DSSE over cosign's sign statement for `digest`, certificate for
        (identity, issuer) from `certificate_authority` (default: this instance), logged here:
        a `dsse` 0.0.1 entry in the Rekor v1 log, or with `rekor_v2` a `hashedrekord` 0.0.2 entry over
        the PAE in the Rekor v2 log; `entry` names another (kind, version) of
        `local.rekor_entries.KINDS` (its log follows). `timestamped` (default: a Rekor v2 entry) adds
        an RFC 3161 timestamp over the signature (or over `timestamp_over`), at `timestamp_at`
        (default now)."""
        key, certificate = (certificate_authority or self).issue(identity, issuer)
        payload = statement if statement is not None else cosign_sign_statement(digest)
        signature = key.sign(dsse_pae(INTOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": _b64(payload),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        }
        kind, version = entry or (("hashedrekord", "0.0.2") if rekor_v2 else ("dsse", "0.0.1"))
        body = entry_body(kind, version, envelope, payload, signature, certificate)
        in_v2 = KINDS[(kind, version)] == "v2"
        logged = self.log_v2(body, kind, version) if in_v2 else self.log(body, kind, integrated_time=integrated_time, version=version)
        material: dict[str, Any] = {
            "certificate": {"rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))},
            "tlogEntries": [logged],
        }
        if in_v2 if timestamped is None else timestamped:
            stamp = self.timestamp(timestamp_over if timestamp_over is not None else signature, at=timestamp_at)
            material["timestampVerificationData"] = {"rfc3161Timestamps": [{"signedTimestamp": stamp}]}
        return _compact({"mediaType": BUNDLE_MEDIA_TYPE, "verificationMaterial": material, "dsseEnvelope": envelope})

    def keyless_referrer_artifact(
        self, digest: str, subject_descriptor: dict[str, Any], **options: Any
    ) -> tuple[bytes, dict[str, bytes]]:
        """The referrer manifest and blobs of a keyless cosign v3 signature of `digest` (like
        `local.signing.bundle_referrer_artifact`); `options` go to `keyless_bundle`."""
        return bundle_referrer_manifest(self.keyless_bundle(digest, **options), subject_descriptor)
