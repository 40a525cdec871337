"""The verify handler under a RELEASE_POLICY document: the event's environment picks the section.

The handler module is imported afresh with its environment (as Lambda does at cold start); its
module-scope registry and ECR client are then pointed at a MemoryRegistry and a fake scan API, so
what is asserted is the handler's reply or its named error for exact registry content.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local import signing
from podrelease.errors import ConfigurationError, PolicyError, SbomMissing, ScanUnavailable
from podrelease.oci import OCI_MANIFEST, MemoryRegistry, sha256_digest
from podrelease.policy import keys_document
from tests.conftest import FakeLambdaContext, import_handler

REPOSITORY = "podinfo"


class NoScans:
    def describe_image_scan_findings(self, **_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "ScanNotFoundException", "Message": "none"}}, "DescribeImageScanFindings")


@pytest.fixture
def image() -> tuple[MemoryRegistry, str, Any, str]:
    """A signed image (legacy .sig) with no SBOM attached; returns registry, digest, key, PEM."""
    registry = MemoryRegistry()
    config = b'{"os":"linux"}'
    registry.put_blob(REPOSITORY, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": signing.OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [],
        }
    ).encode()
    digest = registry.put_manifest(REPOSITORY, manifest, OCI_MANIFEST, tag="6.9.1")
    key, pem = signing.generate_key()
    signing.publish_legacy(registry, REPOSITORY, digest, signing.legacy_signature_artifact(key, "r/podinfo", digest))
    return registry, digest, key, pem


def handler(monkeypatch: pytest.MonkeyPatch, registry: MemoryRegistry, policy: str, keys: str = "") -> Any:
    monkeypatch.setenv("RELEASE_POLICY", policy)
    monkeypatch.setenv("COSIGN_PUBLIC_KEYS", keys)
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", "0")
    app = import_handler("verify")
    monkeypatch.setattr(app, "registry", registry)
    monkeypatch.setattr(app, "ecr", NoScans())
    return app


def event(digest: str, environment: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"release": {"release_id": "r-1", "repository": REPOSITORY, "digest": digest}}
    if environment is not None:
        body["environment"] = environment
    return body


@pytest.mark.usefixtures("aws_credentials")
def test_the_environment_picks_its_section_of_the_policy(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    # GIVEN dev needs only the signature, prod also an SBOM; the image is signed, with no SBOM
    registry, digest, key, pem = image
    app = handler(monkeypatch, registry, keys_document(pem, require_sbom=["prod"]))
    # WHEN Verify (dev) runs THEN it passes with the signature evidence only
    evidence = app.handler(event(digest, "dev"), FakeLambdaContext())
    assert evidence["verified"] is True
    assert "sbom" not in evidence
    # WHEN VerifyProd runs THEN the missing SBOM stops the release
    with pytest.raises(SbomMissing, match=f"none signed for podinfo@{digest} is attached"):
        app.handler(event(digest, "prod"), FakeLambdaContext())
    # AND once the build attests the SBOM, prod passes with the SBOM's evidence
    signing.publish(
        registry,
        REPOSITORY,
        signing.sbom_attestation_artifact(key, digest, signing.image_descriptor(registry, REPOSITORY, digest)),
    )
    evidence = app.handler(event(digest, "prod"), FakeLambdaContext())
    assert [s["format"] for s in evidence["sbom"]["sboms"]] == ["spdx"]


@pytest.mark.usefixtures("aws_credentials")
def test_a_scan_threshold_without_a_scan_stops_the_release(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, keys_document(pem, scan={"dev": {"block_at": "HIGH"}}))
    with pytest.raises(ScanUnavailable, match="has no scan"):
        app.handler(event(digest, "dev"), FakeLambdaContext())


@pytest.mark.usefixtures("aws_credentials")
def test_an_event_without_environment_is_checked_under_dev(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, keys_document(pem, require_sbom=["prod"]))
    assert app.handler(event(digest, None), FakeLambdaContext())["verified"] is True


@pytest.mark.usefixtures("aws_credentials")
def test_an_unknown_environment_is_a_policy_error(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, keys_document(pem))
    with pytest.raises(PolicyError, match="environment 'staging' is not in the release policy"):
        app.handler(event(digest, "staging"), FakeLambdaContext())


@pytest.mark.usefixtures("aws_credentials")
@pytest.mark.parametrize(
    ("policy", "keys", "error", "message"),
    [
        ('{"version": 1}', "", PolicyError, "release policy document: missing required field(s) 'environments'"),
        ("not json", "", PolicyError, "release policy: not valid JSON"),
        ("", "", ConfigurationError, "environment variable COSIGN_PUBLIC_KEYS is not set"),
    ],
    ids=["incomplete", "not JSON", "neither variable"],
)
def test_an_unreadable_policy_fails_the_function_at_cold_start(
    monkeypatch: pytest.MonkeyPatch, policy: str, keys: str, error: type[Exception], message: str
) -> None:
    # an unreadable RELEASE_POLICY is never replaced by the COSIGN_PUBLIC_KEYS shorthand
    monkeypatch.setenv("RELEASE_POLICY", policy)
    monkeypatch.setenv("COSIGN_PUBLIC_KEYS", keys or signing.generate_key()[1] if policy else keys)
    with pytest.raises(error) as info:
        import_handler("verify")
    assert type(info.value) is error
    assert str(info.value).startswith(message)
