"""The promote handler (the Promote state) against moto with `local.emulation` (see handler_world.py):
the approved image copied to the prod repository by digest, blobs and all, with its signatures,
attestations and referrers, or nothing copied."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from local import signing
from podrelease.core.errors import ConfigurationError, InvalidRequest, PromotionFailed
from podrelease.verify.gate import enforce
from podrelease.verify.policy import EnvironmentPolicy
from podrelease.verify.provenance import ProvenanceRequirement
from podrelease.verify.registry import EcrRegistry
from podrelease.verify.trust_policy import TrustPolicy
from tests.conftest import import_handler
from tests.integration.handler_world import PROD_REPOSITORY, REPOSITORY, Context, Registry, release_of


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
    assert reply == {"source": REPOSITORY, "target": PROD_REPOSITORY, "digest": image.digest,
                     "carried": {"tags": {}, "referrers": []}}
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


def test_promote_refuses_a_release_without_a_digest_and_copies_nothing(registry: Registry, promote_app: Any) -> None:
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = {k: v for k, v in release_of(image.digest).items() if k != "digest"}
    with pytest.raises(InvalidRequest) as info:
        promote_app.handler({"release": release}, Context())
    assert str(info.value) == "promote: release: the event has no 'digest'"
    assert prod_images(registry.ecr) == []


def _manifests(ecr: Any, repository: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """digest -> (manifest text, sorted tags) of every image in `repository`."""
    details = ecr.describe_images(repositoryName=repository)["imageDetails"]
    found = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": d["imageDigest"]} for d in details],
                                acceptedMediaTypes=["application/vnd.oci.image.manifest.v1+json"])["images"]
    tags = {d["imageDigest"]: tuple(sorted(d.get("imageTags") or [])) for d in details}
    return {i["imageId"]["imageDigest"]: (i["imageManifest"], tags[i["imageId"]["imageDigest"]]) for i in found}


def test_promote_carries_signatures_attestations_and_referrers_and_prod_verifies_from_prod_alone(
    registry: Registry, promote_app: Any
) -> None:
    # GIVEN an image signed and attested in both of cosign's layouts: the legacy .sig and .att tags,
    # and referrers (a signature bundle, an SBOM bundle, a provenance bundle)
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    key, pem = signing.generate_key()
    registry.pusher.sign_legacy(key, image)
    registry.pusher.attest_sbom(key, image, layout="legacy")
    registry.pusher.sign_bundle(key, image)
    registry.pusher.attest_sbom(key, image)
    registry.pusher.attest_provenance(key, image)
    source = _manifests(registry.ecr, REPOSITORY)
    # WHEN the Promote state runs
    reply = promote_app.handler({"release": release_of(image.digest)}, Context())
    # THEN prod holds every one of those manifests byte for byte, the legacy ones under their tags
    assert _manifests(registry.ecr, PROD_REPOSITORY) == {d: m for d, m in source.items() if m[1] != ("6.9.1",)} | {
        image.digest: (image.manifest.decode(), ())
    }
    hex_ = image.digest[7:]
    assert sorted(reply["carried"]["tags"]) == [f"sha256-{hex_}.att", f"sha256-{hex_}.sig"]
    assert len(reply["carried"]["referrers"]) == 3
    # AND the prod repository's referrers API lists them for the same digest
    oci = EcrRegistry(registry.ecr)
    assert sorted(r["digest"] for r in oci.list_referrers(PROD_REPOSITORY, image.digest)) == sorted(
        r["digest"] for r in reply["carried"]["referrers"])
    # AND a retry of the state is a no-op with the same reply
    assert promote_app.handler({"release": release_of(image.digest)}, Context()) == reply
    # AND with the workload repository gone, the prod gate reading only the prod repository passes:
    # both signatures, the SBOM and the provenance verify
    registry.ecr.delete_repository(repositoryName=REPOSITORY, force=True)
    policy = EnvironmentPolicy(name="prod", trust=TrustPolicy.from_pem(pem), require_sbom=True, provenance=ProvenanceRequirement(
        builder="https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main",
        repository="https://github.com/acme/podinfo", ref="refs/heads/main"))
    evidence = enforce(EcrRegistry(registry.ecr), registry.ecr, PROD_REPOSITORY, image.digest, policy, 0)
    assert evidence["verified"] is True
    assert len(evidence["signatures"]) == 2
    assert sorted(s["source"] for s in evidence["sbom"]["sboms"]) == ["referrer", f"tag:sha256-{hex_}.att#1"]
    assert evidence["provenance"]["ref"] == "refs/heads/main"


def test_a_signature_added_after_promotion_moves_the_prod_tag_on_the_next_promotion(
    registry: Registry, promote_app: Any
) -> None:
    # GIVEN a promoted image with one legacy signature
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    key, _ = signing.generate_key()
    first = registry.pusher.sign_legacy(key, image)
    promote_app.handler({"release": release_of(image.digest)}, Context())
    # WHEN the .sig tag moves in the source (cosign adds a layer for a second signature) and the
    # digest is promoted again
    second = registry.pusher.sign_legacy(signing.generate_key()[0], image)
    assert second.digest != first.digest
    reply = promote_app.handler({"release": release_of(image.digest)}, Context())
    # THEN prod's .sig tag names the same manifest as the source's
    tag = f"sha256-{image.digest[7:]}.sig"
    assert reply["carried"]["tags"] == {tag: second.digest}
    found = registry.ecr.batch_get_image(repositoryName=PROD_REPOSITORY, imageIds=[{"imageTag": tag}])["images"]
    assert [i["imageId"]["imageDigest"] for i in found] == [second.digest]
