"""Release policies that name AWS KMS signing keys (`signers.kms`).

GIVEN a KMS asymmetric signing key (moto in process) and an image signed with it through KMS
WHEN the policy names the key
THEN the gate accepts the signature, and every kind of bad KMS entry is a PolicyError naming it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import PolicyError, SignatureInvalid
from podrelease.verify.kms import kms_trusted_key
from podrelease.verify.policy import parse_policy
from podrelease.verify.signatures import verify_image
from tests.conftest import FAKE_CREDENTIALS

REPO = "podinfo"


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def _signing_key(kms: Any, alias: str = "alias/podinfo-release") -> str:
    key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return str(key_id)


def _policy(entries: list[Any], kms: Any) -> str:
    section = {"signers": {"kms": entries}, "require_sbom": False}
    return json.dumps({"version": 1, "environments": {"dev": section, "prod": section}})


def _image_signed_by_kms(kms: Any, key_id: str) -> tuple[MemoryRegistry, str]:
    registry = MemoryRegistry()
    digest = registry.put_manifest(REPO, b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}')
    payload = signing.simple_signing_payload(f"registry.example/{REPO}", digest)
    signature = kms.sign(KeyId=key_id, Message=payload, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    manifest, blobs = signing.legacy_signature_manifest([(payload, base64.b64encode(signature).decode())])
    signing.publish_legacy(registry, REPO, digest, (manifest, blobs))
    return registry, digest


def test_a_signature_made_with_the_kms_key_is_accepted(kms: Any) -> None:
    key_id = _signing_key(kms)
    registry, digest = _image_signed_by_kms(kms, key_id)
    policy = parse_policy(_policy(["alias/podinfo-release"], kms), kms_resolver=lambda k: kms_trusted_key(kms, k))
    verification = verify_image(registry, REPO, digest, policy.environment("prod").trust)
    assert [s["key_id"] for s in verification.evidence["signatures"]] == [policy.environment("prod").trust.key_ids[0]]


def test_a_signature_by_another_kms_key_is_refused(kms: Any) -> None:
    signer = _signing_key(kms, "alias/someone-else")
    trusted = _signing_key(kms)
    registry, digest = _image_signed_by_kms(kms, signer)
    policy = parse_policy(_policy([trusted], kms), kms_resolver=lambda k: kms_trusted_key(kms, k))
    with pytest.raises(SignatureInvalid):
        verify_image(registry, REPO, digest, policy.environment("dev").trust)


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        (["alias/missing"], "environments.dev.signers.kms[0]: cannot read the public key of KMS key alias/missing"),
        (["not a key"], "environments.dev.signers.kms[0]: 'not a key' is not a KMS key id, key ARN or alias"),
        ([42], "environments.dev.signers.kms[0]: must be a KMS key id, key ARN or alias string, not"),
        (["alias/podinfo-release", "alias/podinfo-release"], "environments.dev.signers.kms[1]: repeats key"),
        (["alias/encryption"], "is not a signing key (KeyUsage ENCRYPT_DECRYPT)"),
    ],
)
def test_bad_kms_entries_are_named(kms: Any, entries: list[Any], fragment: str) -> None:
    _signing_key(kms)
    encryption = kms.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/encryption", TargetKeyId=encryption)
    with pytest.raises(PolicyError) as refused:
        parse_policy(_policy(entries, kms), kms_resolver=lambda k: kms_trusted_key(kms, k))
    assert fragment in str(refused.value)


def test_kms_signers_without_a_kms_client_are_refused(kms: Any) -> None:
    with pytest.raises(PolicyError, match="KMS signers configured but no KMS client is available"):
        parse_policy(_policy(["alias/podinfo-release"], kms))
