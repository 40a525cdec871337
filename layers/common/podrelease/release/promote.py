"""Promotion: the prod repository receives the same manifest by digest (same bytes, same digest),
and with it the evidence attached to it, so prod can be verified from prod alone.

What is copied, each manifest byte for byte:

1. the image (an index's child manifests first);
2. cosign's legacy tags of the digest, `sha256-<hex>.sig` (signatures) and `sha256-<hex>.att`
   (attestations), under the same tags;
3. every OCI 1.1 referrer of the digest (cosign v3's signature, SBOM and provenance bundles), listed
   with the OCI referrers API by the `referrers` reader the caller gives (the promote function
   gives `podrelease.verify.registry.EcrRegistry`, which needs `ecr:GetAuthorizationToken` and
   `ecr:BatchGetImage` on the source; this stage does not import the verify stage). A referrer keeps its
   `subject`, so the prod repository's referrers API lists it for the same digest; it is put
   untagged, after its subject, as a registry client pushes one.

Blobs the prod repository lacks are copied through the ECR layer API first (ECR refuses a manifest
whose layers are missing, the 2-byte empty config of a referrer included), then the exact manifest
bytes are put with `imageDigest`, so ECR itself checks that the digest did not change; each copy is
read back and compared. Idempotent: a second promotion finds everything in place (a legacy tag that
moved in the source since, because the build signed again, moves in prod too).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Protocol

from botocore.exceptions import ClientError

from podrelease.core.errors import PromotionFailed

ACCEPTED = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]
MAX_BLOB_BYTES = 512 * 1024 * 1024
# ECR's layer-part quota for API uploads ("Amazon ECR service quotas": at most 10 MiB, at least
# 5 MiB but the last); UploadLayerPart's own reference allows 20 MiB: the smaller one is used.
MAX_PART_BYTES = 10 * 1024 * 1024
#: cosign's legacy tags of a digest: signatures and attestations.
EVIDENCE_TAG_SUFFIXES = (".sig", ".att")


class Referrers(Protocol):
    """Lists the OCI 1.1 referrers (descriptors with `digest`, `artifactType`) of repository@digest."""

    def list_referrers(self, repository: str, digest: str) -> list[dict[str, Any]]: ...


def _find(ecr: Any, repository: str, image_id: dict[str, str]) -> tuple[str, str, str] | None:
    """(manifest text, media type, digest) of an image by digest or tag; None when absent."""
    found = ecr.batch_get_image(repositoryName=repository, imageIds=[image_id], acceptedMediaTypes=ACCEPTED)
    images = found.get("images") or []
    if not images:
        return None
    raw = images[0]["imageManifest"]
    media_type = images[0].get("imageManifestMediaType") or json.loads(raw).get("mediaType", ACCEPTED[0])
    return raw, media_type, images[0]["imageId"]["imageDigest"]


def _manifest(ecr: Any, repository: str, digest: str) -> tuple[str, str]:
    found = _find(ecr, repository, {"imageDigest": digest})
    if found is None:
        msg = f"{repository}@{digest} is not in the registry"
        raise PromotionFailed(msg)
    return found[0], found[1]


def _blob_digests(manifest: dict[str, Any]) -> list[str]:
    blobs = [manifest["config"]["digest"]] if "config" in manifest else []
    return blobs + [layer["digest"] for layer in manifest.get("layers", [])]


def _copy_blob(ecr: Any, source: str, target: str, digest: str, opener: Any) -> None:
    """Stream one blob into the target repository, part by part in the size ECR asks for (at most
    MAX_PART_BYTES, ECR's layer-part quota), so memory holds one part, not the layer."""
    url = ecr.get_download_url_for_layer(repositoryName=source, layerDigest=digest)["downloadUrl"]
    upload = ecr.initiate_layer_upload(repositoryName=target)
    upload_id = upload["uploadId"]
    part_size = min(int(upload.get("partSize") or MAX_PART_BYTES), MAX_PART_BYTES)
    sent = 0
    with opener(url, timeout=60) as response:
        while True:
            part = response.read(part_size)
            if not part and sent:
                break
            if sent + len(part) > MAX_BLOB_BYTES:
                msg = f"layer {digest} is over {MAX_BLOB_BYTES} bytes"
                raise PromotionFailed(msg)
            ecr.upload_layer_part(repositoryName=target, uploadId=upload_id, partFirstByte=sent,
                                  partLastByte=max(sent + len(part) - 1, 0), layerPartBlob=part)
            sent += len(part)
            if len(part) < part_size:
                break
    ecr.complete_layer_upload(repositoryName=target, uploadId=upload_id, layerDigests=[digest])


def _copy(ecr: Any, source: str, target: str, digest: str, opener: Any, depth: int = 0, tag: str | None = None) -> str:
    raw, media_type = _manifest(ecr, source, digest)
    manifest = json.loads(raw)
    for child in manifest.get("manifests", []) if depth == 0 else []:
        _copy(ecr, source, target, child["digest"], opener, depth + 1)
    blobs = _blob_digests(manifest)
    if blobs:
        available = ecr.batch_check_layer_availability(repositoryName=target, layerDigests=blobs)
        present = {layer["layerDigest"] for layer in available.get("layers", []) if layer.get("layerAvailability") == "AVAILABLE"}
        for blob in blobs:
            if blob not in present:
                _copy_blob(ecr, source, target, blob, opener)
    put: dict[str, Any] = {"repositoryName": target, "imageManifest": raw, "imageManifestMediaType": media_type,
                           "imageDigest": digest}
    if tag is not None:
        put["imageTag"] = tag
    try:
        ecr.put_image(**put)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ImageAlreadyExistsException":
            raise
    copied, _ = _manifest(ecr, target, digest)
    if copied != raw:
        msg = f"{target}@{digest} does not hold the same manifest bytes as {source}"
        raise PromotionFailed(msg)
    return raw


def _carry_evidence(ecr: Any, registry: Referrers, source: str, target: str, digest: str, opener: Any) -> dict[str, Any]:
    """Copy the digest's legacy `.sig`/`.att` tags and its referrers; what was carried."""
    tags: dict[str, str] = {}
    for suffix in EVIDENCE_TAG_SUFFIXES:
        tag = digest.replace(":", "-", 1) + suffix  # cosign's sha256-<hex>.sig / .att
        found = _find(ecr, source, {"imageTag": tag})
        if found is not None:
            _copy(ecr, source, target, found[2], opener, tag=tag)
            tags[tag] = found[2]
    referrers = []
    for descriptor in registry.list_referrers(source, digest):
        referrer = str(descriptor.get("digest"))
        _copy(ecr, source, target, referrer, opener)
        referrers.append({"digest": referrer, "artifactType": str(descriptor.get("artifactType", ""))[:200]})
    return {"tags": tags, "referrers": referrers}


def promote(
    ecr: Any, source: str, target: str, digest: str, registry: Referrers, opener: Any = urllib.request.urlopen
) -> dict[str, Any]:
    """Copy `source@digest` and its evidence (see the module docstring) to `target`, each manifest
    read back and compared; `registry` lists the digest's referrers.
    Returns what was carried. PromotionFailed names what could not be copied; a registry that
    cannot be read now is RegistryError (the state retries)."""
    try:
        _copy(ecr, source, target, digest, opener)
        carried = _carry_evidence(ecr, registry, source, target, digest, opener)
    except ClientError as exc:
        msg = f"could not copy {source}@{digest} to {target}: {exc}"
        raise PromotionFailed(msg) from exc
    return {"source": source, "target": target, "digest": digest, "carried": carried}
