"""Signing keys kept in AWS KMS: the release policy can name them instead of pasting PEM keys.

Only the public half is read (`GetPublicKey`); it becomes an ordinary `TrustedKey`, so signatures
made with the KMS key (for example `cosign sign --key awskms:///alias/podinfo-release`) are checked
by the same code as every other key-based signature.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from podrelease.core.errors import PolicyError
from podrelease.verify.trust_policy import TrustedKey

# A key id, key ARN, alias name or alias ARN, as KMS accepts them in GetPublicKey.
KMS_KEY_RE = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|mrk-[0-9a-f]{32}"
    r"|alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250}))$"
)


def kms_trusted_key(kms_client: Any, key_id: str) -> TrustedKey:
    """The public key of an AWS KMS asymmetric signing key (`GetPublicKey`), as a TrustedKey.

    Refused (PolicyError) unless the key is for SIGN_VERIFY; the key type limits of TrustedKey
    apply (ECC_NIST_P256/P384/P521, RSA >= 2048)."""
    if not KMS_KEY_RE.match(key_id):
        msg = f"{key_id[:120]!r} is not a KMS key id, key ARN or alias"
        raise PolicyError(msg)
    try:
        reply = kms_client.get_public_key(KeyId=key_id)
    except (ClientError, BotoCoreError) as exc:
        msg = f"cannot read the public key of KMS key {key_id[:120]}: {type(exc).__name__}"
        raise PolicyError(msg) from exc
    if reply.get("KeyUsage") != "SIGN_VERIFY":
        msg = f"KMS key {key_id[:120]} is not a signing key (KeyUsage {reply.get('KeyUsage')})"
        raise PolicyError(msg)
    der = reply.get("PublicKey")
    if not isinstance(der, bytes | bytearray):
        msg = f"KMS key {key_id[:120]} returned no public key"
        raise PolicyError(msg)
    try:
        key = serialization.load_der_public_key(bytes(der))
    except (ValueError, UnsupportedAlgorithm) as exc:
        msg = f"KMS key {key_id[:120]}: the public key cannot be parsed"
        raise PolicyError(msg) from exc
    return TrustedKey.from_public_key(key)


def default_resolver(key_id: str) -> TrustedKey:
    """Resolve with a KMS client of the function's own region (built on first use only)."""
    global _client  # noqa: PLW0603 - one client per process, created only when a policy names KMS keys
    if _client is None:
        import boto3  # noqa: PLC0415 - not needed at all by key-only policies

        _client = boto3.client("kms")
    return kms_trusted_key(_client, key_id)


_client: Any = None
