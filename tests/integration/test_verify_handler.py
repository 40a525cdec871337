"""The verify handler (the Verify state) against moto with `local.emulation` (see handler_world.py):
the evidence it returns for a signed image, and the named error that stops the release otherwise."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from local import signing
from local.images import Pushed
from podrelease.core.errors import ConfigurationError, PolicyError, RegistryError, SignatureInvalid, SignatureMissing
from podrelease.verify.policy import keys_document
from tests.conftest import import_handler
from tests.integration.handler_world import REGION, REGISTRY, REPOSITORY, Context, Registry, release_of


def key_id_of(public_pem: str) -> str:
    """The key id cosign evidence uses: hex SHA-256 of the public key's DER SubjectPublicKeyInfo."""
    der = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass
class Gate:
    registry: Registry
    app: Any
    key: Any
    key_id: str
    image: Pushed

    def verify(self) -> dict[str, Any]:
        return dict(self.app.handler({"release": release_of(self.image.digest)}, Context()))


POLICY_PARAMETER = "/podrel/release-policy"


def use_policy(monkeypatch: pytest.MonkeyPatch, document: str) -> None:
    """The release policy in its SSM parameter, as `make deploy POLICY=...` leaves it."""
    if document:
        boto3.client("ssm", region_name=REGION).put_parameter(Name=POLICY_PARAMETER, Value=document, Type="String", Overwrite=True)
    monkeypatch.setenv("RELEASE_POLICY_PARAMETER", POLICY_PARAMETER if document else "")
    monkeypatch.delenv("BUILD_IDENTITY", raising=False)


def keys_only(keys: str) -> str:
    """A policy document whose signers are `keys` exactly as given (keys_document would refuse bad ones)."""
    section = {"signers": {"keys": [keys]}}
    return json.dumps({"version": 1, "environments": {"dev": section, "prod": section}})


@pytest.fixture
def gate(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Gate:
    registry.emulation.start_registry()  # blobs and the OCI /v2/ API, on loopback
    key, public_pem = signing.generate_key()
    use_policy(monkeypatch, keys_document(public_pem))
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", "0")
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    return Gate(registry, import_handler("verify"), key, key_id_of(public_pem), image)


def test_verify_accepts_a_legacy_sig_tag_signature_and_names_the_key(gate: Gate) -> None:
    # GIVEN the image and its cosign `.sig` signature by the trusted key
    signature = gate.registry.pusher.sign_legacy(gate.key, gate.image)
    # WHEN the Verify state runs
    evidence = gate.verify()
    # THEN the evidence names the digest, the key and the signature manifest that counted
    assert evidence == {
        "verified": True,
        "repository": REPOSITORY,
        "digest": gate.image.digest,
        "signatures": [
            {
                "kind": "simple-signing",
                "key_id": gate.key_id,
                "digest": gate.image.digest,
                "docker_reference": f"{REGISTRY}/{REPOSITORY}",
                "signature_manifest": signature.digest,
                "source": f"tag:sha256-{gate.image.digest[7:]}.sig",
            }
        ],
        "refusals": [],
        "ignored": [],
    }


def test_verify_accepts_a_sigstore_bundle_referrer_and_names_the_key(gate: Gate) -> None:
    # GIVEN the image and a cosign v3 bundle attached as an OCI 1.1 referrer (no `.sig` tag)
    bundle = gate.registry.pusher.sign_bundle(gate.key, gate.image)
    evidence = gate.verify()
    assert evidence == {
        "verified": True,
        "repository": REPOSITORY,
        "digest": gate.image.digest,
        "signatures": [
            {
                "kind": "bundle-dsse",
                "key_id": gate.key_id,
                "digest": gate.image.digest,
                "predicate_type": "https://sigstore.dev/cosign/sign/v1",
                "bundle_media_type": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "signature_manifest": bundle.digest,
                "source": "referrer",
            }
        ],
        "refusals": [],
        "ignored": [],
    }


INVALID = (
    "1 signature(s) attached to podinfo@{digest}, none accepted; "
    "SignatureInvalid: simple-signing signature does not verify with any of the 1 trusted key(s)"
)


@pytest.mark.parametrize(
    ("sign", "error", "message"),
    [
        ("", SignatureMissing, "no cosign signature is attached to podinfo@{digest}"),
        ("tampered", SignatureInvalid, INVALID),
        ("untrusted", SignatureInvalid, INVALID),
    ],
    ids=["unsigned", "tampered payload", "signed by an untrusted key"],
)
def test_verify_refuses_with_a_named_error(gate: Gate, sign: str, error: type[Exception], message: str) -> None:
    # GIVEN the image unsigned (SIGNATURE_WAIT_SECONDS=0: no grace), or signed wrongly
    if sign == "tampered":
        gate.registry.pusher.sign_legacy(gate.key, gate.image, tamper=True)
    elif sign == "untrusted":
        gate.registry.pusher.sign_legacy(signing.generate_key()[0], gate.image)
    # WHEN the Verify state runs THEN it fails with the error name the state machine sees
    with pytest.raises(error) as info:
        gate.verify()
    assert type(info.value) is error
    assert str(info.value) == message.format(digest=gate.image.digest)


def test_verify_waits_up_to_signature_wait_seconds_for_a_signature_pushed_just_after_the_image(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the template's grace period, and the build pushing the signature a moment after the image
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", "5")
    app = import_handler("verify")
    late = threading.Timer(0.3, gate.registry.pusher.sign_legacy, args=(gate.key, gate.image))
    late.start()
    try:
        # WHEN the Verify state runs before the signature has landed
        evidence = app.handler({"release": release_of(gate.image.digest)}, Context())
    finally:
        late.join()
    # THEN it waited for the signature instead of refusing the image as unsigned
    assert [(s["kind"], s["key_id"]) for s in evidence["signatures"]] == [("simple-signing", gate.key_id)]


def test_verify_of_a_digest_that_is_not_in_the_registry_is_a_transient_registry_error(gate: Gate) -> None:
    missing = "sha256:" + "0d" * 32
    with pytest.raises(RegistryError) as info:
        gate.app.handler({"release": release_of(missing)}, Context())
    assert str(info.value) == f"{REPOSITORY}@{missing} is not in the registry: there is no image whose signature to check"


GOOD_KEYS = signing.generate_key()[1]


@pytest.mark.parametrize(
    ("keys", "wait", "error", "message"),
    [
        ("not a key at all", "0", PolicyError, "release policy environments.dev.signers.keys[0]: the trusted key set contains no PEM public key"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
            "0",
            PolicyError,
            "release policy environments.dev.signers.keys[0]: PEM block 1 is a 'PRIVATE KEY', not a PUBLIC KEY",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
            "0",
            PolicyError,
            "release policy environments.dev.signers.keys[0]: PEM public key 1 cannot be parsed",
        ),
        (GOOD_KEYS + "trailing junk", "0", PolicyError, "release policy environments.dev.signers.keys[0]: the trusted key set has text outside its PEM blocks (damaged file?)"),
        (
            "",
            "0",
            ConfigurationError,
            "no release policy: deploy with ReleasePolicyParameter (an SSM parameter holding the policy document) "
            "or with GitHubOrg and GitHubRepo (the default policy trusts their build workflow)",
        ),
        (GOOD_KEYS, "soon", ConfigurationError, "environment variable SIGNATURE_WAIT_SECONDS must be an integer, got 'soon'"),
    ],
    ids=["garbage", "private key", "corrupt public key", "text after the key", "no policy", "wait not a number"],
)
def test_verify_with_an_unusable_policy_or_setting_stops_with_a_named_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, keys: str, wait: str, error: type[Exception], message: str
) -> None:
    use_policy(monkeypatch, keys_only(keys) if keys else "")
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", wait)
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    with pytest.raises(error) as info:
        import_handler("verify").handler({"release": release_of(image.digest)}, Context())
    assert type(info.value) is error
    assert str(info.value) == message
