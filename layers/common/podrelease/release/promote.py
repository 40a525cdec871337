"""Promotion: the prod repository receives the same manifest by digest (same bytes, same digest).

Blobs the prod repository lacks are copied through the ECR layer API first (ECR refuses a manifest
whose layers are missing), then the exact manifest bytes are put with `imageDigest`, so ECR itself
checks that the digest did not change. Idempotent: a second promotion finds the image in place.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

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


def _manifest(ecr: Any, repository: str, digest: str) -> tuple[str, str]:
    found = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}], acceptedMediaTypes=ACCEPTED)
    images = found.get("images") or []
    if not images:
        msg = f"{repository}@{digest} is not in the registry"
        raise PromotionFailed(msg)
    raw = images[0]["imageManifest"]
    media_type = images[0].get("imageManifestMediaType") or json.loads(raw).get("mediaType", ACCEPTED[0])
    return raw, media_type


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


def _copy(ecr: Any, source: str, target: str, digest: str, opener: Any, depth: int = 0) -> str:
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
    try:
        ecr.put_image(repositoryName=target, imageManifest=raw, imageManifestMediaType=media_type, imageDigest=digest)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ImageAlreadyExistsException":
            raise
    return raw


def promote(ecr: Any, source: str, target: str, digest: str, opener: Any = urllib.request.urlopen) -> dict[str, Any]:
    """Copy `source@digest` to `target@digest`; verify the target serves the identical bytes."""
    try:
        raw = _copy(ecr, source, target, digest, opener)
        copied, _ = _manifest(ecr, target, digest)
    except ClientError as exc:
        msg = f"could not copy {source}@{digest} to {target}: {exc}"
        raise PromotionFailed(msg) from exc
    if copied != raw:
        msg = f"{target}@{digest} does not hold the same manifest bytes as {source}"
        raise PromotionFailed(msg)
    return {"source": source, "target": target, "digest": digest}
