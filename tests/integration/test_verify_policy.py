"""The verify handler under a release policy: the event's environment picks the section.

The policy document sits in an SSM parameter (moto), as `make deploy POLICY=...` leaves it; the
handler module is imported afresh with its environment (as Lambda does at cold start); its
module-scope registry and ECR client are then pointed at a MemoryRegistry and a fake scan API, so
what is asserted is the handler's reply or its named error for exact registry content.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import (
    ConfigurationError,
    InvalidRequest,
    OutsideDeployWindow,
    PolicyError,
    SbomMissing,
    ScanUnavailable,
)
from podrelease.verify.policy import build_identity, keys_document
from podrelease.verify.registry import OCI_MANIFEST, sha256_digest
from tests.conftest import FakeLambdaContext, import_handler

REPOSITORY = "podinfo"
PARAMETER = "/podrel/release-policy"


@pytest.fixture(autouse=True)
def ssm(aws_credentials: None) -> Any:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


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


def handler(monkeypatch: pytest.MonkeyPatch, registry: MemoryRegistry, policy: str, identity: str = "") -> Any:
    if policy:
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name=PARAMETER, Value=policy, Type="String", Overwrite=True)
    monkeypatch.setenv("RELEASE_POLICY_PARAMETER", PARAMETER if policy else "")
    monkeypatch.setenv("BUILD_IDENTITY", identity)
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


@pytest.mark.parametrize(
    ("policy", "identity", "error", "message"),
    [
        ('{"version": 1}', "", PolicyError, "release policy document: missing required field(s) 'environments'"),
        ("not json", "", PolicyError, "release policy: not valid JSON"),
        ("", "", ConfigurationError, "no release policy: deploy with ReleasePolicyParameter"),
    ],
    ids=["incomplete", "not JSON", "no policy at all"],
)
def test_an_unreadable_policy_stops_the_release_with_a_named_error(
    monkeypatch: pytest.MonkeyPatch, image: Any, policy: str, identity: str, error: type[Exception], message: str
) -> None:
    registry, digest, _, _ = image
    app = handler(monkeypatch, registry, policy, identity)
    with pytest.raises(error) as info:
        app.handler(event(digest, "dev"), FakeLambdaContext())
    assert type(info.value) is error
    assert str(info.value).startswith(message)


def test_a_missing_policy_parameter_is_a_policy_error_naming_it(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    # GIVEN the stack names a parameter that nobody wrote (make deploy writes it first)
    registry, digest, _, _ = image
    monkeypatch.setenv("RELEASE_POLICY_PARAMETER", "/nobody/wrote/this")
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", "0")
    app = import_handler("verify")
    monkeypatch.setattr(app, "registry", registry)
    # WHEN a release is verified THEN it stops, naming the parameter and what to do; never an allow
    with pytest.raises(PolicyError, match=r"release policy parameter /nobody/wrote/this cannot be read .*make deploy POLICY=file"):
        app.handler(event(digest, "dev"), FakeLambdaContext())


def test_the_policy_is_read_once_per_execution_environment(monkeypatch: pytest.MonkeyPatch, image: Any, ssm: Any) -> None:
    # GIVEN a function that verified one release under a key policy
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, keys_document(pem))
    assert app.handler(event(digest, "dev"), FakeLambdaContext())["verified"] is True
    # WHEN the parameter changes to something unreadable THEN the warm function keeps the policy it
    # read at its cold start (a new execution environment reads the new one)
    ssm.put_parameter(Name=PARAMETER, Value="not json", Type="String", Overwrite=True)
    assert app.handler(event(digest, "dev"), FakeLambdaContext())["verified"] is True
    with pytest.raises(PolicyError, match="not valid JSON"):
        import_handler("verify").handler(event(digest, "dev"), FakeLambdaContext())


def test_without_a_parameter_the_default_trusts_only_the_build_workflow(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    # GIVEN a stack deployed with GitHubOrg/GitHubRepo and no policy parameter
    registry = image[0]
    app = handler(monkeypatch, registry, "", build_identity("acme", "podinfo", "main"))
    policy = app.policy()
    # THEN both environments trust exactly the workflow's keyless identity and require its SBOM
    for name in ("dev", "prod"):
        section = policy.environment(name)
        assert section.require_sbom is True
        assert section.trust.key_ids == ()
    assert policy.source.startswith("default")


def test_the_function_reads_the_version_the_stack_was_deployed_with(monkeypatch: pytest.MonkeyPatch, image: Any,
                                                                     ssm: Any) -> None:
    # GIVEN a stack deployed with version 1 of the policy parameter (a key policy)
    registry, digest, _, pem = image
    version = ssm.put_parameter(Name=PARAMETER, Value=keys_document(pem), Type="String", Overwrite=True)["Version"]
    # AND someone writes another document to the parameter afterwards, outside a deploy
    ssm.put_parameter(Name=PARAMETER, Value='{"version": 1}', Type="String", Overwrite=True)
    monkeypatch.setenv("RELEASE_POLICY_PARAMETER", PARAMETER)
    monkeypatch.setenv("RELEASE_POLICY_VERSION", str(version))
    monkeypatch.setenv("SIGNATURE_WAIT_SECONDS", "0")
    app = import_handler("verify")
    monkeypatch.setattr(app, "registry", registry)
    monkeypatch.setattr(app, "ecr", NoScans())
    # WHEN a release is verified THEN it runs under the deployed version, not the latest write
    assert app.handler(event(digest, "dev"), FakeLambdaContext())["verified"] is True
    assert app.policy().source == f"ssm:{PARAMETER}:{version}"
    # AND without a pinned version it would read the latest, unreadable one
    monkeypatch.setenv("RELEASE_POLICY_VERSION", "0")
    with pytest.raises(PolicyError, match="missing required field"):
        import_handler("verify").handler(event(digest, "dev"), FakeLambdaContext())


@pytest.mark.parametrize(
    ("bad_event", "message"),
    [
        ({"environment": "dev"}, "verify: the event has no 'release'"),
        ({"release": {"repository": REPOSITORY}}, "verify.release: the event has no 'digest'"),
        ({"release": {"repository": REPOSITORY, "digest": 7}}, "verify.release: 'digest' must be str, not int"),
        ({"release": {"repository": REPOSITORY, "digest": "sha256:" + "0" * 64}, "environment": ["prod"]},
         "verify: 'environment' must be str, not list"),
    ],
    ids=["no release", "no digest", "digest not a string", "environment not a string"],
)
def test_an_event_without_what_the_gate_reads_is_an_invalid_request_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, image: Any, bad_event: dict[str, Any], message: str
) -> None:
    # GIVEN a working function and policy
    registry, _, _, pem = image
    app = handler(monkeypatch, registry, keys_document(pem))
    # WHEN the event lacks (or mistypes) a field THEN the handler refuses it at its edge, naming the field
    with pytest.raises(InvalidRequest) as info:
        app.handler(bad_event, FakeLambdaContext())
    assert str(info.value) == message


def _windowed(pem: str, opens_in: datetime.timedelta, max_wait_minutes: int) -> str:
    """Keys; prod may deploy every day for two hours starting `opens_in` from now (UTC)."""
    opens = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0) + opens_in
    document = json.loads(keys_document(pem))
    document["environments"]["prod"]["deploy_window"] = {
        "timezone": "UTC", "max_wait_minutes": max_wait_minutes,
        "open": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": f"{opens:%H:%M}",
                  "to": f"{opens + datetime.timedelta(hours=2):%H:%M}"}]}
    return json.dumps(document)


@pytest.mark.usefixtures("aws_credentials")
def test_the_states_before_a_deploy_get_the_window_decision(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    # GIVEN prod's window opens in an hour; dev has none
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, _windowed(pem, datetime.timedelta(hours=1), 120))
    # WHEN Verify (dev) runs as the state machine calls it THEN dev is open and prod's window is forecast
    evidence = app.handler({**event(digest, "dev"), "check_window": True, "forecast_window": "prod"}, FakeLambdaContext())
    assert evidence["window"] == {"open": True}
    assert evidence["window_ahead"]["environment"] == "prod"
    assert evidence["window_ahead"]["open"] is False
    # WHEN VerifyProd runs THEN the evidence says until when prod waits (whole seconds, UTC, as a Wait state reads it)
    window = app.handler({**event(digest, "prod"), "check_window": True}, FakeLambdaContext())["window"]
    until = datetime.datetime.strptime(window["wait_until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert window["open"] is False
    assert datetime.timedelta(minutes=50) < until - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(hours=1)
    # AND VerifyPromoted (no check_window) does not decide again
    assert "window" not in app.handler(event(digest, "prod"), FakeLambdaContext())


@pytest.mark.usefixtures("aws_credentials")
def test_a_window_further_than_the_max_wait_is_outside_deploy_window(monkeypatch: pytest.MonkeyPatch, image: Any) -> None:
    registry, digest, _, pem = image
    app = handler(monkeypatch, registry, _windowed(pem, datetime.timedelta(hours=3), 60))
    with pytest.raises(OutsideDeployWindow, match="further than the policy's max wait of 60 minutes; nothing was deployed"):
        app.handler({**event(digest, "prod"), "check_window": True}, FakeLambdaContext())
