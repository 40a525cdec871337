"""Who may sign a release: trusted keys, the trust policy, and checking one signature with one key.

A `TrustPolicy` is a set of `TrustedKey`s (public keys: ECDSA P-256/384/521, RSA >= 2048, Ed25519,
each named by the hex SHA-256 of its DER SubjectPublicKeyInfo) and, optionally, a `KeylessVerifier`
(`podrelease.verify.keyless.FulcioVerifier`) that vouches for the key in a Fulcio certificate. Every
format verifier (`podrelease.verify.envelopes`) asks `candidate_keys` which keys may have made a
signature and checks it with `verifies`; that is the one place keyless signatures slot in.
An empty or unreadable policy is a PolicyError, never an allow.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from podrelease.core.errors import PolicyError, SignatureInvalid

_MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_EC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}



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
    artifact of a message signature), and for a DSSE signature `pae_sha256`, the hex SHA-256 of its
    pre-authentication encoding (what a Rekor v2 hashedrekord entry names). It checks the
    certificate chain, the log entry (and that the entry is about this signature, certificate and
    content), a verified signing time and the identity, and returns the certificate's key, or
    raises SignatureInvalid. The signature itself is then checked by the same code as key-based
    signatures.

    `check_bundle` is given a whole sigstore bundle with certificate material first, so that a
    complete bundle verifier (sigstore-python) can check it end to end; it raises SignatureInvalid
    or MalformedSignature, or returns None."""

    def signing_key(
        self,
        verification_material: Mapping[str, Any],
        signature: bytes,
        *,
        signed_sha256: str,
        pae_sha256: str | None = None,
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


def public_keys_pem(keys: Sequence[TrustedKey]) -> str:
    """The keys as concatenated PEM (what `TrustPolicy.from_pem` reads back)."""
    return "".join(k.pem() for k in keys)


# --- one signature, one key ----------------------------------------------------------------------


def verifies(key: TrustedKey, signature: bytes, message: bytes, *, prehashed_sha256: bool = False) -> bool:
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
    if not verifies(key, signature, message):
        msg = f"the signature does not verify with key {key.key_id[:16]}"
        raise SignatureInvalid(msg)



def candidate_keys(
    policy: TrustPolicy,
    material: Mapping[str, Any],
    signature: bytes,
    *,
    keyless_material: bool,
    signed_sha256: str,
    pae_sha256: str | None = None,
) -> tuple[TrustedKey, ...]:
    """The keys that may have made `signature`: the policy's keys, plus, for certificate-based
    material and a configured keyless verifier, the certificate's key once it is vouched for
    (`signed_sha256`: see `KeylessVerifier`)."""
    keys = policy.keys
    if keyless_material and policy.keyless is not None:
        vouch = policy.keyless.signing_key
        key = (
            vouch(material, signature, signed_sha256=signed_sha256, pae_sha256=pae_sha256)
            if pae_sha256 is not None
            else vouch(material, signature, signed_sha256=signed_sha256)
        )
        keys = (*keys, key)
    return keys


def no_key_reason(policy: TrustPolicy, *, keyless_material: bool) -> str:
    if keyless_material and policy.keyless is None:
        return (
            "keyless (certificate) signature, and the trust policy has no keyless verifier; "
            f"it does not verify with any of the {len(policy.keys)} trusted key(s)"
        )
    return f"does not verify with any of the {len(policy.keys)} trusted key(s)"

