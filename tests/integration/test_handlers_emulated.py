"""The registry and deployment handlers (verify, promote, deploy, traffic_hook) against moto in process,
with `local.emulation` filling moto's documented gaps.

moto has no ECR layer API, no OCI `/v2/` API and no CodeDeploy lifecycle-hook status, so every test
here installs the project's one emulation (`Emulation.install`, its registry on loopback) and
pushes real podinfo demo images with `local.images.Pusher`. What each handler left behind is read
back through the AWS APIs (ECR images and blobs, Lambda code and versions, CodeDeploy deployments,
ledger items) or, for hook verdicts, from the emulated CodeDeploy's record of
PutLifecycleEventHookExecutionStatus.

Determinism: the emulation's CodeDeploy engine runs every created deployment in a thread. The
LambdaRuntime attached here knows only the two podinfo functions (answered in process by
`local.standin`), not the hook functions, so the engine registers the BeforeAllowTraffic lifecycle
event, finds no hook function to run, and fails the deployment at once without shifting traffic.
Tests join the engine's threads before looking, then drive the hook handler themselves with the
lifecycle event id the engine registered.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from moto import mock_aws
from moto.codedeploy.models import codedeploy_backends

from local import signing
from local.emulation import Emulation
from local.images import Pushed, Pusher
from local.stack import LocalFunction, Stack
from podrelease.core import obs
from podrelease.core.errors import (
    ConfigurationError,
    DeploymentFailed,
    InvalidRequest,
    PolicyError,
    PromotionFailed,
    RegistryError,
    SignatureInvalid,
    SignatureMissing,
)
from podrelease.release import lambda_target as deploy
from podrelease.release.events import execution_name
from podrelease.verify.policy import keys_document
from tests.conftest import FAKE_CREDENTIALS, FakeLambdaContext, import_handler
from tests.lambda_updates import LambdaUpdates

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "podrel"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPOSITORY = "podinfo"
PROD_REPOSITORY = "podinfo-prod"
TABLE = f"{STACK}-ledger"
DEV_FUNCTION = f"{STACK}-podinfo-dev"
PROD_FUNCTION = f"{STACK}-podinfo-prod"
APPLICATION = f"{STACK}-podinfo"
DEPLOY_ENV = {
    "LEDGER_TABLE": TABLE,
    "DEV_FUNCTION_NAME": DEV_FUNCTION,
    "PROD_FUNCTION_NAME": PROD_FUNCTION,
    "CODEDEPLOY_APPLICATION": APPLICATION,
    "DEV_DEPLOYMENT_GROUP": f"{STACK}-podinfo-dev",
    "PROD_DEPLOYMENT_GROUP": f"{STACK}-podinfo-prod",
    "PRE_TRAFFIC_HOOK": f"{STACK}-before-allow-traffic",
    "POST_TRAFFIC_HOOK": f"{STACK}-after-allow-traffic",
    "PROD_REPOSITORY": PROD_REPOSITORY,
}
Context = FakeLambdaContext


def release_of(digest: str, repository: str = REPOSITORY) -> dict[str, Any]:
    """The `$.release` the normalize state builds for a push of repository@digest."""
    name = execution_name(repository, digest)
    return {
        "account": ACCOUNT,
        "region": REGION,
        "repository": repository,
        "digest": digest,
        "tag": None,
        "event_id": "",
        "time": "",
        "image_uri": f"{REGISTRY}/{repository}@{digest}",
        "id": name,
        "execution": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{name}",
        "attempt": 1,
    }


def key_id_of(public_pem: str) -> str:
    """The key id cosign evidence uses: hex SHA-256 of the public key's DER SubjectPublicKeyInfo."""
    der = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass
class Registry:
    emulation: Emulation
    ecr: Any
    pusher: Pusher


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Registry]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    was_installed, was_current = Emulation._installed, Emulation.current
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": False}}):
        emulation = Emulation(ACCOUNT, REGION, minute_seconds=0.01, work_dir=tmp_path)
        Emulation.install(emulation)
        try:
            ecr = boto3.client("ecr", region_name=REGION)
            for repository in (REPOSITORY, PROD_REPOSITORY):
                ecr.create_repository(repositoryName=repository)
            yield Registry(emulation, ecr, Pusher(ecr, REGISTRY))
        finally:
            for thread in emulation.codedeploy.threads:
                thread.join(timeout=10)
            emulation.shutdown()
            # Every patch the emulation's modules installed is taken back, so later test modules in
            # this process see plain moto (the fleet's ELB and Auto Scaling patches included).
            if was_installed:
                Emulation.current = was_current
            else:
                Emulation.uninstall()


# --- verify --------------------------------------------------------------------------------------


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


# --- promote -------------------------------------------------------------------------------------


@pytest.fixture
def promote_app(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Any:
    registry.emulation.start_registry()  # layer download URLs point at it
    monkeypatch.setenv("PROD_REPOSITORY", PROD_REPOSITORY)
    return import_handler("promote")


def prod_images(ecr: Any) -> list[str]:
    return sorted(d["imageDigest"] for d in ecr.describe_images(repositoryName=PROD_REPOSITORY)["imageDetails"])


def test_promote_copies_the_exact_manifest_and_its_blobs_to_prod_by_digest(registry: Registry, promote_app: Any) -> None:
    # GIVEN an approved image in the workload repository (config and layer blobs uploaded)
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    manifest = json.loads(image.manifest)
    blob_digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    # WHEN the Promote state runs
    reply = promote_app.handler({"release": release_of(image.digest)}, Context())
    # THEN prod serves the same manifest bytes under the same digest
    assert reply == {"source": REPOSITORY, "target": PROD_REPOSITORY, "digest": image.digest}
    found = registry.ecr.batch_get_image(repositoryName=PROD_REPOSITORY, imageIds=[{"imageDigest": image.digest}])["images"]
    assert [(i["imageId"]["imageDigest"], i["imageManifest"]) for i in found] == [(image.digest, image.manifest.decode())]
    assert hashlib.sha256(found[0]["imageManifest"].encode()).hexdigest() == image.digest[7:]
    # AND every blob the manifest names is in prod
    available = registry.ecr.batch_check_layer_availability(repositoryName=PROD_REPOSITORY, layerDigests=blob_digests)
    assert sorted(layer["layerDigest"] for layer in available["layers"] if layer["layerAvailability"] == "AVAILABLE") == sorted(
        blob_digests
    )
    assert available["failures"] == []
    # AND a retry of the state is a no-op with the same reply
    assert promote_app.handler({"release": release_of(image.digest)}, Context()) == reply
    assert prod_images(registry.ecr) == [image.digest]


def test_promote_uploads_blobs_in_the_part_size_ecr_asks_for(
    registry: Registry, promote_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    config = json.loads(image.manifest)["config"]
    # GIVEN ECR asks for parts far smaller than the image config (and refuses bigger ones), as the
    # real registry does at 20 MiB for large layers
    monkeypatch.setattr(type(registry.emulation.ecr), "PART_SIZE", 64)
    assert config["size"] > 3 * 64
    promote_app.handler({"release": release_of(image.digest)}, Context())
    # THEN every blob arrived whole (CompleteLayerUpload checks the digest of the joined parts)
    assert prod_images(registry.ecr) == [image.digest]
    copied = registry.emulation.ecr.blobs[(PROD_REPOSITORY, config["digest"])]
    assert len(copied) == config["size"]


def test_promote_of_a_digest_not_in_the_workload_repository_fails_and_copies_nothing(
    registry: Registry, promote_app: Any
) -> None:
    missing = "sha256:" + "0d" * 32
    with pytest.raises(PromotionFailed) as info:
        promote_app.handler({"release": release_of(missing)}, Context())
    assert str(info.value) == f"{REPOSITORY}@{missing} is not in the registry"
    assert prod_images(registry.ecr) == []


def test_promote_without_a_prod_repository_fails_at_import(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_REPOSITORY", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable PROD_REPOSITORY is not set;"):
        import_handler("promote")


# --- deploy --------------------------------------------------------------------------------------


@dataclass
class Site:
    """Both podinfo functions (version 1 behind `live`), their CodeDeploy groups and the ledger."""

    registry: Registry
    lam: Any
    codedeploy: Any
    table: Any
    bootstrap: Pushed

    @property
    def emulation(self) -> Emulation:
        return self.registry.emulation

    def settle(self) -> None:
        """Wait for the emulated CodeDeploy engine to finish every deployment it started."""
        for thread in self.emulation.codedeploy.threads:
            thread.join(timeout=10)
            assert not thread.is_alive()

    def deployments(self, environment: str) -> list[str]:
        group = DEPLOY_ENV[f"{environment.upper()}_DEPLOYMENT_GROUP"]
        return list(self.codedeploy.list_deployments(applicationName=APPLICATION, deploymentGroupName=group)["deployments"])

    def image(self, function: str, qualifier: str = "$LATEST") -> str:
        return str(self.lam.get_function(FunctionName=function, Qualifier=qualifier)["Code"]["ImageUri"])

    def set_status(self, deployment_id: str, status: str) -> None:
        """Move a deployment along as CodeDeploy would (after the engine has settled)."""
        info = codedeploy_backends[ACCOUNT][REGION].deployments[deployment_id]
        info.status, info.error_information, info.rollback_message = status, {}, ""

    def lock(self, environment: str, holder: str) -> None:
        self.table.put_item(
            Item={
                "pk": f"lock#{environment}",
                "holder": holder,
                "environment": environment,
                "acquired_at": 1750000000,
                "expires_at": 4102444800,
            }
        )

    def lock_holder(self, environment: str) -> str | None:
        found = self.table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item")
        return str(found["holder"]) if found else None


@pytest.fixture
def site(registry: Registry, monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Site:
    for var, value in DEPLOY_ENV.items():
        monkeypatch.setenv(var, value)
    bootstrap = registry.pusher.push_podinfo(REPOSITORY, "6.9.0", tag="bootstrap")
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="podinfo",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    codedeploy = boto3.client("codedeploy", region_name=REGION)
    codedeploy.create_application(applicationName=APPLICATION, computePlatform="Lambda")
    functions = {}
    for environment, function in (("dev", DEV_FUNCTION), ("prod", PROD_FUNCTION)):
        created = lam.create_function(
            FunctionName=function,
            Role=role,
            PackageType="Image",
            Code={"ImageUri": f"{REGISTRY}/{REPOSITORY}@{bootstrap.digest}"},
        )
        assert lam.publish_version(FunctionName=function)["Version"] == "1"
        lam.create_alias(FunctionName=function, Name=deploy.ALIAS, FunctionVersion="1")
        codedeploy.create_deployment_group(
            applicationName=APPLICATION,
            deploymentGroupName=DEPLOY_ENV[f"{environment.upper()}_DEPLOYMENT_GROUP"],
            deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes",
            serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/codedeploy",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )
        functions[f"Podinfo{environment.title()}Function"] = LocalFunction(
            f"Podinfo{environment.title()}Function", function, created["FunctionArn"], None, None, {}
        )
    table = ledger_table(TABLE)
    # Only the podinfo functions run (in process, by the stand-in); see the module docstring.
    registry.emulation.attach(Stack(STACK, REGION, ACCOUNT, {}, {}, functions=functions), endpoint="http://127.0.0.1:9")
    return Site(registry, lam, codedeploy, table, bootstrap)


@pytest.fixture
def deploy_app(site: Site) -> Any:
    return import_handler("deploy")


@pytest.mark.parametrize(
    ("environment", "function", "repository"),
    [("dev", DEV_FUNCTION, REPOSITORY), ("prod", PROD_FUNCTION, PROD_REPOSITORY)],
)
def test_deploy_start_points_the_environment_at_its_repository_by_digest(
    site: Site, deploy_app: Any, environment: str, function: str, repository: str
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    # WHEN the DeployDev / DeployProd state runs
    reply = deploy_app.handler({"action": "start", "environment": environment, "release": release}, Context())
    # THEN the function runs repo@digest (prod from the prod repository), as a new version 2
    expected_uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}@{image.digest}"
    assert site.image(function) == expected_uri
    assert site.image(function, "2") == expected_uri
    assert reply == {
        "id": reply["id"],
        "status": "InProgress",
        "environment": environment,
        "function": function,
        "previous_version": "1",
        "version": "2",
    }
    # AND exactly one deployment in that environment's group carries the release and shifts 1 -> 2
    assert site.deployments(environment) == [reply["id"]]
    info = site.codedeploy.get_deployment(deploymentId=reply["id"])["deploymentInfo"]
    assert deploy.parse_description(info["description"]) == {"release": release["id"], "digest": image.digest, "env": environment}
    assert deploy.appspec_versions(info["revision"]["appSpecContent"]["content"]) == {
        "function": function,
        "current": "1",
        "target": "2",
    }
    # AND the other environment is untouched
    other = PROD_FUNCTION if environment == "dev" else DEV_FUNCTION
    assert site.image(other) == f"{REGISTRY}/{REPOSITORY}@{site.bootstrap.digest}"
    assert site.deployments("prod" if environment == "dev" else "dev") == []


@pytest.mark.parametrize("moto_status", ["InProgress", "Succeeded"])
def test_deploy_status_reports_codedeploy_progress(site: Site, deploy_app: Any, moto_status: str) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    site.settle()
    site.set_status(started["id"], moto_status)
    # WHEN the CheckDev state polls with the deployment the DeployDev state returned
    reply = deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    # THEN it returns that deployment with CodeDeploy's status (the Choice state reads `status`)
    assert reply == started | {"status": moto_status, "overview": {}}


def test_deploy_status_carries_on_a_start_lambda_was_still_applying(site: Site, deploy_app: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    updates = LambdaUpdates(monkeypatch)
    updates.hold = True
    monkeypatch.setattr(deploy, "UPDATE_WAIT_SECONDS", 0.0)  # no in-function wait: the state machine polls
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    # WHEN DeployDev starts while Lambda takes its time applying the image
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    # THEN it answers Updating (the Choice state goes on to WaitDev), with nothing published yet
    assert (started["status"], started["id"]) == (deploy.UPDATING, None)
    assert site.image(DEV_FUNCTION) == release["image_uri"]
    assert site.deployments("dev") == []
    # AND a CheckDev poll after Lambda is done publishes version 2 and starts the deployment
    updates.finish(DEV_FUNCTION)
    polled = deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    assert (polled["status"], polled["previous_version"], polled["version"]) == ("InProgress", "1", "2")
    assert site.deployments("dev") == [polled["id"]]


def test_deploy_status_of_a_rolled_back_deployment_is_deployment_failed_with_the_reason(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    # GIVEN CodeDeploy failed the deployment at its BeforeAllowTraffic hook and rolled it back
    site.settle()
    assert site.codedeploy.get_deployment(deploymentId=started["id"])["deploymentInfo"]["status"] == "Failed"
    with pytest.raises(DeploymentFailed) as info:
        deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    assert str(info.value) == (
        f"dev deployment {started['id']} failed and was rolled back: HOOK_EXECUTION_FAILURE: "
        "the BeforeAllowTraffic hook reported Failed: the new version did not pass its health checks"
    )


def test_deploy_abort_stops_the_release_in_flight_and_frees_only_its_own_locks(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    other_release = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    site.settle()
    site.set_status(started["id"], "InProgress")
    # GIVEN this release holds dev, another release holds prod
    site.lock("dev", release["id"])
    site.lock("prod", other_release)
    state = {
        "release": release,
        "locks": {"dev": {"holder": release["id"]}},
        "dev": {"deployment": started},
        "error": {"Error": "HookCheckFailed", "Cause": "..."},
    }
    # WHEN the Abort state runs with the whole execution state
    reply = deploy_app.handler({"action": "abort", "state": state}, Context())
    # THEN the dev deployment was asked to stop (and roll back), and only this release's lock is gone
    assert reply == {"stopped": [started["id"]], "locks_released": ["dev"]}
    assert site.emulation.codedeploy.runs[started["id"]].stop_requested is True
    assert site.lock_holder("dev") is None
    assert site.lock_holder("prod") == other_release


def test_deploy_abort_leaves_finished_deployments_and_other_releases_alone(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    other_release = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    site.settle()  # the engine failed it: already terminal
    site.lock("dev", other_release)
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    assert reply == {"stopped": [], "locks_released": []}
    assert site.emulation.codedeploy.runs[started["id"]].stop_requested is False
    assert site.lock_holder("dev") == other_release
    # AND a state with no release at all (refused before normalize) touches nothing
    assert deploy_app.handler({"action": "abort", "state": {"error": {"Error": "ForeignEvent"}}}, Context()) == {
        "stopped": [],
        "locks_released": [],
    }
    assert site.lock_holder("dev") == other_release


def succeeded_dev_canary(site: Site, deploy_app: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A release whose dev Lambda canary succeeded: live -> version 2. Returns (release, deployment)."""
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    site.settle()
    site.set_status(started["id"], "Succeeded")
    site.lam.update_alias(FunctionName=DEV_FUNCTION, Name="live", FunctionVersion="2", RoutingConfig={})
    return release, started


def test_deploy_abort_points_a_succeeded_alias_back_when_the_release_failed_elsewhere(site: Site, deploy_app: Any) -> None:
    # GIVEN the Lambda canary succeeded but the release failed on its other target, still deploying dev
    release, started = succeeded_dev_canary(site, deploy_app)
    site.lock("dev", release["id"])
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    # THEN live serves the previous version again, and the reply says so
    assert reply["stopped"] == [f"{DEV_FUNCTION}:live back to version 1"]
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "1"
    # AND a second abort (a retried Abort state) changes nothing more
    again = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    assert again["stopped"] == []
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "1"


def test_deploy_abort_keeps_an_environment_the_release_had_finished(site: Site, deploy_app: Any) -> None:
    # GIVEN dev was done (its lock released) and the release failed later (rejected, or in prod)
    release, started = succeeded_dev_canary(site, deploy_app)
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    # THEN dev keeps serving the release
    assert reply["stopped"] == []
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "2"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            "PROD_REPOSITORY",
            "environment variable PROD_REPOSITORY is not set; the template sets it for every function that needs it",
        ),
        ("DEV_DEPLOYMENT_GROUP", "environment variable DEV_DEPLOYMENT_GROUP is not set for the dev target"),
        ("PROD_FUNCTION_NAME", "environment variable PROD_FUNCTION_NAME is not set for the prod target"),
        ("LEDGER_TABLE", "environment variable LEDGER_TABLE is not set; the template sets it for every function that needs it"),
    ],
)
def test_deploy_with_an_incomplete_environment_fails_at_import(
    site: Site, monkeypatch: pytest.MonkeyPatch, missing: str, message: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError) as info:
        import_handler("deploy")
    assert str(info.value) == message


# --- traffic_hook --------------------------------------------------------------------------------


@dataclass
class Hooked:
    """A deployment the engine has settled, and the BeforeAllowTraffic lifecycle event it registered."""

    deployment_id: str
    execution_id: str

    def event(self) -> dict[str, str]:
        return {"DeploymentId": self.deployment_id, "LifecycleEventHookExecutionId": self.execution_id}


def settled(site: Site, deployment_id: str) -> Hooked:
    site.settle()
    run = site.emulation.codedeploy.runs[deployment_id]
    assert list(run.events.values()) == ["BeforeAllowTraffic"]
    assert run.hook_status == {}  # nobody has reported yet
    return Hooked(deployment_id, next(iter(run.events)))


def started_by_deploy(site: Site, image: Pushed) -> Hooked:
    target = deploy.LambdaTarget.from_env("dev", dict(os.environ))
    release = release_of(image.digest) | {"image_uri": f"{REGISTRY}/{REPOSITORY}@{image.digest}"}
    out = deploy.start(site.lam, site.codedeploy, target, release)
    return settled(site, out["id"])


def created_by_hand(site: Site, digest: str, target_version: str) -> Hooked:
    """A deployment whose description names `digest` and whose AppSpec targets `target_version`."""
    target = deploy.LambdaTarget.from_env("dev", dict(os.environ))
    content = deploy.appspec(target, "1", target_version)
    deployment_id = site.codedeploy.create_deployment(
        applicationName=APPLICATION,
        deploymentGroupName=target.deployment_group,
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": content}},
        description=deploy.describe(execution_name(REPOSITORY, digest), digest, "dev"),
    )["deploymentId"]
    return settled(site, deployment_id)


def hook_app(monkeypatch: pytest.MonkeyPatch, phase: str) -> Any:
    monkeypatch.setenv("HOOK_PHASE", phase)
    return import_handler("traffic_hook")


def reported(site: Site, hooked: Hooked) -> dict[str, str]:
    return dict(site.emulation.codedeploy.runs[hooked.deployment_id].hook_status)


def test_hook_before_traffic_passes_a_healthy_version_running_the_release_digest(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    # WHEN CodeDeploy invokes the BeforeAllowTraffic hook
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    # THEN it reported Succeeded for exactly that lifecycle event
    assert reported(site, hooked) == {hooked.execution_id: "Succeeded"}
    # AND it checked version 2 directly: its image is the release digest, podinfo answered
    assert reply == {
        "release_id": execution_name(REPOSITORY, image.digest),
        "phase": "BeforeAllowTraffic",
        "qualifier": "2",
        "passed": True,
        "checks": [
            {"path": "image", "ok": True, "status": None, "detail": f"{REGISTRY}/{REPOSITORY}@{image.digest}"},
            {"path": "/healthz", "ok": True, "status": 200, "detail": '{"status": "OK"}'},
            {"path": "/readyz", "ok": True, "status": 200, "detail": '{"status": "OK"}'},
            {
                "path": "/version",
                "ok": True,
                "status": 200,
                "detail": json.dumps({"version": "6.9.1", "commit": image.digest[7:19]}),
            },
        ],
    }


def test_hook_after_traffic_checks_the_live_alias(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    # GIVEN all traffic has moved: `live` points at version 2
    site.lam.update_alias(FunctionName=DEV_FUNCTION, Name=deploy.ALIAS, FunctionVersion="2")
    reply = hook_app(monkeypatch, "AfterAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Succeeded"}
    assert (reply["phase"], reply["qualifier"], reply["passed"]) == ("AfterAllowTraffic", "live", True)
    assert reply["checks"][-1]["detail"] == json.dumps({"version": "6.9.1", "commit": image.digest[7:19]})


def test_hook_reports_failed_when_the_version_does_not_run_the_release_digest(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    started_by_deploy(site, image)  # version 2 runs image.digest
    # GIVEN a deployment of version 2 that claims to release another digest
    other = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.2")
    hooked = created_by_hand(site, other.digest, "2")
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}
    assert reply["passed"] is False
    assert reply["checks"][0] == {
        "path": "image",
        "ok": False,
        "status": None,
        "detail": f"{REGISTRY}/{REPOSITORY}@{image.digest}",
    }


def test_hook_reports_failed_when_podinfo_is_not_ready(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1", fault="unready")
    hooked = started_by_deploy(site, image)
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}
    assert [(c["path"], c["ok"], c["status"]) for c in reply["checks"]] == [
        ("image", True, None),
        ("/healthz", True, 200),
        ("/readyz", False, 503),
        ("/version", True, 200),
    ]


def test_hook_reports_failed_even_when_its_checks_crash(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    # GIVEN a deployment whose target version does not exist (get_function raises inside the checks)
    hooked = created_by_hand(site, image.digest, "99")
    with pytest.raises(ClientError) as info:
        hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # THEN the verdict still reached CodeDeploy, so the deployment does not hang on the hook
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}


def test_hook_crash_line_carries_the_release_id(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The correlation id is bound as soon as the deployment names the release, before any check runs."""
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = created_by_hand(site, image.digest, "99")
    app = hook_app(monkeypatch, "BeforeAllowTraffic")
    printed = io.StringIO()
    handlers = [h for h in logging.getLogger(obs.SERVICE).handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(printed) for h in handlers]
    try:
        with pytest.raises(ClientError):
            app.handler(hooked.event(), Context())
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
    lines = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith("{")]
    crash = [line for line in lines if line["message"].startswith("hook checks crashed")]
    assert crash, lines
    assert crash[0]["correlation_id"] == execution_name(REPOSITORY, image.digest)
    assert crash[0]["release_id"] == execution_name(REPOSITORY, image.digest)


def test_hook_without_a_phase_fails_at_import(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_PHASE", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable HOOK_PHASE is not set;"):
        import_handler("traffic_hook")


# --- events a handler does not accept -------------------------------------------------------------


def _deploy_refusals(release: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [
        ({"action": "restart", "environment": "dev", "release": release},
         "deploy: unknown action 'restart' (expected one of start, status, abort)"),
        ({"environment": "dev", "release": release}, "deploy: the event has no 'action'"),
        ({"action": "start", "release": release}, "deploy: the event has no 'environment'"),
        ({"action": "start", "environment": "staging", "release": release},
         "deploy: unknown environment 'staging' (expected one of dev, prod)"),
        ({"action": "start", "environment": "dev", "release": {k: v for k, v in release.items() if k != "digest"}},
         "deploy: release: the event has no 'digest'"),
        ({"action": "status", "environment": "dev", "release": release}, "deploy: the event has no 'deployment'"),
        ({"action": "abort", "state": ["dev"]}, "deploy: 'state' must be dict, not list"),
    ]


def test_deploy_refuses_an_event_the_state_machine_never_sends_and_changes_nothing(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    site.lock("dev", release["id"])
    for event, message in _deploy_refusals(release):
        # WHEN the deploy function gets an event no state sends (an unknown action used to mean `status`)
        with pytest.raises(InvalidRequest) as info:
            deploy_app.handler(event, Context())
        # THEN it is refused, named
        assert str(info.value) == message
    # AND nothing moved: no deployment, both functions on the bootstrap image, the lock still held
    assert site.deployments("dev") == site.deployments("prod") == []
    assert site.image(DEV_FUNCTION) == site.image(PROD_FUNCTION) == f"{REGISTRY}/{REPOSITORY}@{site.bootstrap.digest}"
    assert site.lock_holder("dev") == release["id"]


def test_promote_refuses_a_release_without_a_digest_and_copies_nothing(registry: Registry, promote_app: Any) -> None:
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = {k: v for k, v in release_of(image.digest).items() if k != "digest"}
    with pytest.raises(InvalidRequest) as info:
        promote_app.handler({"release": release}, Context())
    assert str(info.value) == "promote: release: the event has no 'digest'"
    assert prod_images(registry.ecr) == []


def test_hook_refuses_an_event_without_its_hook_execution_id_and_reports_nothing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    with pytest.raises(InvalidRequest) as info:
        hook_app(monkeypatch, "BeforeAllowTraffic").handler({"DeploymentId": hooked.deployment_id}, Context())
    assert str(info.value) == "traffic_hook: the event has no 'LifecycleEventHookExecutionId'"
    assert reported(site, hooked) == {}
