"""An in-memory OCI registry: the test double of `podrelease.verify.registry.Registry`.

Tests and the local demo signer (`local.signing`) write to it; the gates read from it exactly as
they read ECR. Stored content goes through the same checks as the real reader (digests, sizes), and
`blobs` and `manifests` are public so a test can corrupt stored content on purpose. It is not part
of the Lambda layer: nothing deployed needs it.
"""

from __future__ import annotations

from typing import Any

from podrelease.core.errors import MalformedSignature, RegistryError
from podrelease.verify.registry import (
    MAX_BLOB_BYTES,
    Manifest,
    check_reference,
    check_repository,
    checked_blob,
    checked_manifest,
    is_digest,
    require_digest,
    sha256_digest,
)


class MemoryRegistry:
    """An in-memory registry: tests and the local demo signer write to it, the gate reads from it.

    `blobs` and `manifests` are public so a test can corrupt stored content on purpose.
    """

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], Manifest] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put_manifest(self, repository: str, raw: bytes, media_type: str | None = None, tag: str | None = None) -> str:
        check_repository(repository)
        manifest = Manifest.from_raw(raw, media_type)
        self.manifests[(repository, manifest.digest)] = manifest
        if tag is not None:
            check_reference(tag)
            self.tags[(repository, tag)] = manifest.digest
        return manifest.digest

    def put_blob(self, repository: str, data: bytes) -> str:
        check_repository(repository)
        digest = sha256_digest(data)
        self.blobs[(repository, digest)] = data
        return digest

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        check_repository(repository)
        check_reference(reference)
        digest = reference if is_digest(reference) else self.tags.get((repository, reference))
        if digest is None:
            return None
        stored = self.manifests.get((repository, digest))
        if stored is None:
            return None
        return checked_manifest(stored.raw, stored.media_type, reference)

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
        check_repository(repository)
        require_digest(digest)
        data = self.blobs.get((repository, digest))
        if data is None:
            msg = f"blob {digest} is not in {repository}"
            raise RegistryError(msg)
        return checked_blob(data, digest, max_bytes)

    def list_referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        check_repository(repository)
        require_digest(digest)
        found: list[dict[str, Any]] = []
        for (repo, manifest_digest), manifest in self.manifests.items():
            if repo != repository:
                continue
            try:
                body = manifest.json()
            except MalformedSignature:
                continue
            subject = body.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            config = body.get("config") if isinstance(body.get("config"), dict) else {}
            descriptor: dict[str, Any] = {
                "mediaType": manifest.media_type,
                "digest": manifest_digest,
                "size": len(manifest.raw),
                "artifactType": body.get("artifactType") or (config or {}).get("mediaType", ""),
            }
            if isinstance(body.get("annotations"), dict):
                descriptor["annotations"] = body["annotations"]
            found.append(descriptor)
        return found
