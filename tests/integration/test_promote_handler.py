"""The promote handler (the Promote state) against moto with `local.emulation` (see handler_world.py):
the approved image copied to the prod repository by digest, blobs and all, or nothing copied."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError, InvalidRequest, PromotionFailed
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


def test_promote_refuses_a_release_without_a_digest_and_copies_nothing(registry: Registry, promote_app: Any) -> None:
    image = registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = {k: v for k, v in release_of(image.digest).items() if k != "digest"}
    with pytest.raises(InvalidRequest) as info:
        promote_app.handler({"release": release}, Context())
    assert str(info.value) == "promote: release: the event has no 'digest'"
    assert prod_images(registry.ecr) == []
