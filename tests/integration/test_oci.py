"""EcrRegistry against moto's ECR (in process), MemoryRegistry, and the gate end to end over ECR.

moto 5.2 has no GetDownloadUrlForLayer and no `/v2/` registry API, so blob downloads and the
referrers API are served by a fake `urlopen` (`FakeWeb`), and the ECR client is wrapped to hand out
download URLs (`EcrWithLayerUrls`). Manifests, tags and authorization tokens are moto's own.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import MalformedSignature, RegistryError, SignatureInvalid
from podrelease.verify.registry import OCI_INDEX, OCI_MANIFEST, EcrRegistry, sha256_digest
from podrelease.verify.signatures import verify_image
from podrelease.verify.trust_policy import TrustPolicy

REPO = "podinfo"
REGION = "us-east-1"
IMAGE = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    }
).encode()
IMAGE_DIGEST = sha256_digest(IMAGE)


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status = 200
        self.headers = headers or {}


class FakeWeb:
    """A `urlopen` stand-in: serves registered URLs, 404 for the rest, records requests."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self.requests: list[urllib.request.Request] = []

    def __call__(self, request: urllib.request.Request, timeout: float = 0) -> FakeResponse:
        del timeout
        self.requests.append(request)
        url = request.full_url
        if url not in self.pages:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]
        return FakeResponse(self.pages[url])


class EcrWithLayerUrls:
    """moto's ECR client plus GetDownloadUrlForLayer (which moto lacks), pointing into FakeWeb."""

    def __init__(self, client: Any, web: FakeWeb) -> None:
        self._client = client
        self._web = web

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def add_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        self._web.pages[f"https://layers.example/{digest}"] = data
        return digest

    def get_download_url_for_layer(self, repositoryName: str, layerDigest: str) -> dict[str, str]:
        del repositoryName
        return {"downloadUrl": f"https://layers.example/{layerDigest}", "layerDigest": layerDigest}


@pytest.fixture
def ecr() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName=REPO)
        yield client


def put_image(client: Any, raw: bytes, media_type: str = OCI_MANIFEST, tag: str | None = None) -> str:
    digest = sha256_digest(raw)
    kwargs: dict[str, Any] = {"imageTag": tag} if tag else {}
    client.put_image(
        repositoryName=REPO,
        imageManifest=raw.decode(),
        imageManifestMediaType=media_type,
        imageDigest=digest,
        **kwargs,
    )
    return digest


def test_get_manifest_by_digest_and_by_tag(ecr: Any) -> None:
    put_image(ecr, IMAGE, tag="v1")
    registry = EcrRegistry(ecr)
    by_digest = registry.get_manifest(REPO, IMAGE_DIGEST)
    by_tag = registry.get_manifest(REPO, "v1")
    assert by_digest is not None
    assert by_tag is not None
    assert (by_digest.raw, by_digest.digest, by_digest.media_type) == (IMAGE, IMAGE_DIGEST, OCI_MANIFEST)
    assert (by_tag.raw, by_tag.digest) == (IMAGE, IMAGE_DIGEST)


def test_missing_manifest_is_none(ecr: Any) -> None:
    registry = EcrRegistry(ecr)
    assert registry.get_manifest(REPO, "v9") is None
    assert registry.get_manifest(REPO, "sha256:" + "1" * 64) is None


def test_missing_repository_is_a_registry_error(ecr: Any) -> None:
    with pytest.raises(RegistryError):
        EcrRegistry(ecr).get_manifest("no-such-repo", "v1")


def test_invalid_reference_is_a_registry_error(ecr: Any) -> None:
    with pytest.raises(RegistryError):
        EcrRegistry(ecr).get_manifest(REPO, "sha256:not-a-digest!")


def test_media_type_read_from_the_manifest_when_ecr_omits_it() -> None:
    class NoMediaType:
        def batch_get_image(self, **_: Any) -> dict[str, Any]:
            return {"images": [{"imageManifest": IMAGE.decode()}], "failures": []}

    manifest = EcrRegistry(NoMediaType()).get_manifest(REPO, IMAGE_DIGEST)
    assert manifest is not None
    assert manifest.media_type == OCI_MANIFEST


def test_manifest_not_matching_its_digest_is_refused() -> None:
    class Substituting:
        def batch_get_image(self, **_: Any) -> dict[str, Any]:
            return {"images": [{"imageManifest": IMAGE.decode() + " "}], "failures": []}

    with pytest.raises(MalformedSignature):
        EcrRegistry(Substituting()).get_manifest(REPO, IMAGE_DIGEST)


def test_get_blob_through_download_url(ecr: Any) -> None:
    web = FakeWeb()
    client = EcrWithLayerUrls(ecr, web)
    digest = client.add_blob(b"payload bytes")
    registry = EcrRegistry(client, opener=web)
    assert registry.get_blob(REPO, digest) == b"payload bytes"
    assert "Authorization" not in web.requests[-1].headers  # pre-signed URL: no registry token


def test_get_blob_refuses_substituted_and_oversized_content(ecr: Any) -> None:
    web = FakeWeb()
    client = EcrWithLayerUrls(ecr, web)
    digest = client.add_blob(b"original")
    web.pages[f"https://layers.example/{digest}"] = b"substituted"
    registry = EcrRegistry(client, opener=web)
    with pytest.raises(MalformedSignature, match="hashing to"):
        registry.get_blob(REPO, digest)
    big = client.add_blob(b"x" * 2048)
    with pytest.raises(MalformedSignature, match="exceeds"):
        registry.get_blob(REPO, big, max_bytes=1024)


def test_missing_blob_is_a_registry_error(ecr: Any) -> None:
    web = FakeWeb()
    registry = EcrRegistry(EcrWithLayerUrls(ecr, web), opener=web)
    with pytest.raises(RegistryError):
        registry.get_blob(REPO, "sha256:" + "2" * 64)


def referrers_url(ecr: Any, digest: str) -> str:
    endpoint = ecr.get_authorization_token()["authorizationData"][0]["proxyEndpoint"].rstrip("/")
    return f"{endpoint}/v2/{REPO}/referrers/{digest}"


def test_referrers_api_with_basic_token(ecr: Any, capsys: pytest.CaptureFixture[str]) -> None:
    web = FakeWeb()
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "3" * 64,
        "size": 10,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    web.pages[referrers_url(ecr, IMAGE_DIGEST)] = json.dumps(index).encode()
    registry = EcrRegistry(ecr, opener=web)
    assert registry.list_referrers(REPO, IMAGE_DIGEST) == [descriptor]
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert web.requests[-1].get_header("Authorization") == f"Basic {token}"
    assert token not in capsys.readouterr().out


def test_referrers_fall_back_to_the_tag_schema_on_404(ecr: Any, capsys: pytest.CaptureFixture[str]) -> None:
    web = FakeWeb()  # serves nothing: the referrers API answers 404
    registry = EcrRegistry(ecr, opener=web)
    assert registry.list_referrers(REPO, IMAGE_DIGEST) == []
    descriptor = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "4" * 64, "size": 5, "artifactType": "x/y"}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}).encode()
    put_image(ecr, index, OCI_INDEX, tag=IMAGE_DIGEST.replace(":", "-"))
    assert registry.list_referrers(REPO, IMAGE_DIGEST) == [descriptor]
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert token not in capsys.readouterr().out


def test_referrers_api_failure_is_a_registry_error(ecr: Any) -> None:
    def forbidden(request: urllib.request.Request, timeout: float = 0) -> Any:
        del timeout
        raise urllib.error.HTTPError(request.full_url, 403, "Forbidden", {}, None)  # type: ignore[arg-type]

    with pytest.raises(RegistryError, match="403"):
        EcrRegistry(ecr, opener=forbidden).list_referrers(REPO, IMAGE_DIGEST)


def test_verify_image_over_ecr_legacy_and_bundle(ecr: Any) -> None:
    """The gate end to end over ECR: the legacy tag from moto, a bundle referrer via the API."""
    web = FakeWeb()
    client = EcrWithLayerUrls(ecr, web)
    key, pem = signing.generate_key()
    put_image(ecr, IMAGE, tag="v1")

    sig_manifest, blobs = signing.legacy_signature_artifact(key, f"example/{REPO}", IMAGE_DIGEST)
    for data in blobs.values():
        client.add_blob(data)
    put_image(ecr, sig_manifest, tag=IMAGE_DIGEST.replace(":", "-") + ".sig")

    subject = {"mediaType": OCI_MANIFEST, "digest": IMAGE_DIGEST, "size": len(IMAGE)}
    referrer, blobs = signing.bundle_referrer_artifact(key, IMAGE_DIGEST, subject)
    for data in blobs.values():
        client.add_blob(data)
    referrer_digest = put_image(ecr, referrer)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": referrer_digest,
                "size": len(referrer),
                "artifactType": json.loads(referrer)["artifactType"],
            }
        ],
    }
    web.pages[referrers_url(ecr, IMAGE_DIGEST)] = json.dumps(index).encode()

    result = verify_image(EcrRegistry(client, opener=web), REPO, IMAGE_DIGEST, TrustPolicy.from_pem(pem))
    assert sorted(s.kind for s in result.signatures) == ["bundle-dsse", "simple-signing"]
    assert {s.signature_manifest for s in result.signatures} == {sha256_digest(sig_manifest), referrer_digest}

    _, other_pem = signing.generate_key()
    with pytest.raises(SignatureInvalid):
        verify_image(EcrRegistry(client, opener=web), REPO, IMAGE_DIGEST, TrustPolicy.from_pem(other_pem))


# --- MemoryRegistry -----------------------------------------------------------------------------


def test_memory_registry_round_trip_and_referrers() -> None:
    registry = MemoryRegistry()
    digest = registry.put_manifest(REPO, IMAGE, OCI_MANIFEST, tag="v1")
    assert digest == IMAGE_DIGEST
    assert registry.get_manifest(REPO, "v1") == registry.get_manifest(REPO, digest)
    assert registry.get_manifest("other", digest) is None
    blob = registry.put_blob(REPO, b"abc")
    assert registry.get_blob(REPO, blob) == b"abc"
    with pytest.raises(MalformedSignature):
        registry.get_blob(REPO, blob, max_bytes=2)

    key, _ = signing.generate_key()
    subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(IMAGE)}
    referrer = signing.publish(registry, REPO, signing.bundle_referrer_artifact(key, digest, subject))
    [descriptor] = registry.list_referrers(REPO, digest)
    assert descriptor["digest"] == referrer
    assert descriptor["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert registry.list_referrers(REPO, "sha256:" + "5" * 64) == []


def test_memory_registry_detects_stored_manifest_tampering() -> None:
    registry = MemoryRegistry()
    digest = registry.put_manifest(REPO, IMAGE, OCI_MANIFEST)
    stored = registry.manifests[(REPO, digest)]
    registry.manifests[(REPO, digest)] = type(stored)(
        raw=stored.raw + b" ", media_type=stored.media_type, digest=digest
    )
    with pytest.raises(MalformedSignature):
        registry.get_manifest(REPO, digest)


def test_token_decoding_helper_masks_password(ecr: Any) -> None:
    # The decoded Basic token is "AWS:<password>"; after a referrers call neither may be logged.
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).partition(b":")[2].decode()
    web = FakeWeb()
    EcrRegistry(ecr, opener=web).list_referrers(REPO, IMAGE_DIGEST)
    from podrelease.core.obs import redact

    assert redact(f"leak {password} and {token}") == "leak *** and ***"
