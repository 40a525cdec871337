"""Build and push demo podinfo images (and their cosign signatures) through the ECR API.

A demo image is a real OCI image manifest with a config blob (carrying podinfo's version label and,
for fault scenarios, the stand-in's fault label) and one layer. Pushing goes through the same ECR
calls a registry client makes: layer upload, then PutImage with the exact digest. Signing uses
`local.signing` and pushes what cosign pushes: the legacy `.sig` tag and/or a bundle referrer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from local import signing
from local.standin import FAULT_LABEL, VERSION_LABEL

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pushed:
    repository: str
    digest: str
    manifest: bytes

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": len(self.manifest)}


class Pusher:
    """Pushes blobs and manifests into one account's ECR (moto + the local ECR extension)."""

    def __init__(self, ecr: Any, registry_host: str) -> None:
        self.ecr = ecr
        self.registry_host = registry_host

    def upload_blob(self, repository: str, data: bytes) -> str:
        digest = _digest(data)
        available = self.ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
        if any(layer.get("layerAvailability") == "AVAILABLE" for layer in available.get("layers", [])):
            return digest
        upload_id = self.ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        self.ecr.upload_layer_part(repositoryName=repository, uploadId=upload_id, partFirstByte=0,
                                   partLastByte=len(data) - 1, layerPartBlob=data)
        self.ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
        return digest

    def put(self, repository: str, manifest: bytes, blobs: dict[str, bytes] | list[bytes], tag: str | None = None,
            media_type: str = OCI_MANIFEST) -> Pushed:
        for data in blobs.values() if isinstance(blobs, dict) else blobs:
            self.upload_blob(repository, data)
        digest = _digest(manifest)
        args: dict[str, Any] = {"repositoryName": repository, "imageManifest": manifest.decode(),
                                "imageManifestMediaType": media_type, "imageDigest": digest}
        if tag:
            args["imageTag"] = tag
        self.ecr.put_image(**args)
        return Pushed(repository, digest, manifest)

    def push_podinfo(self, repository: str, version: str, tag: str | None = None, fault: str = "") -> Pushed:
        labels = {VERSION_LABEL: version, "org.opencontainers.image.source": "https://github.com/stefanprodan/podinfo"}
        if fault:
            labels[FAULT_LABEL] = fault
        layer = f"podinfo {version} stand-in layer {fault}".encode()
        config = json.dumps({
            "architecture": "arm64", "os": "linux",
            "config": {"User": "65534", "ExposedPorts": {"9898/tcp": {}}, "Labels": labels,
                       "Env": ["AWS_LWA_PORT=9898", "AWS_LWA_READINESS_CHECK_PATH=/readyz"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }, sort_keys=True, separators=(",", ":")).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        }, separators=(",", ":")).encode()
        return self.put(repository, manifest, [config, layer], tag=tag or version)

    def sign_legacy(self, key: Any, image: Pushed, tamper: bool = False) -> Pushed:
        """Push the `sha256-<hex>.sig` signature; `tamper` alters the payload after signing."""
        manifest, blobs = signing.legacy_signature_artifact(key, f"{self.registry_host}/{image.repository}", image.digest)
        if tamper:
            manifest, blobs = _tampered(manifest, blobs)
        return self.put(image.repository, manifest, blobs, tag=f"sha256-{image.digest[7:]}.sig")

    def sign_keyless(self, sigstore: Any, image: Pushed, **options: Any) -> Pushed:
        """Push a keyless cosign v3 bundle (certificate from the local sigstore instance) as a referrer."""
        manifest, blobs = sigstore.keyless_referrer_artifact(image.digest, image.descriptor(), **options)
        return self.put(image.repository, manifest, blobs)

    def attest_sbom_keyless(self, sigstore: Any, image: Pushed, fmt: str = "spdx", **options: Any) -> Pushed:
        """Push an SBOM attestation signed keyless (as `cosign attest` in the build workflow does)."""
        bundle = sigstore.keyless_bundle(image.digest, statement=signing.sbom_statement(image.digest, fmt), **options)
        manifest, blobs = signing.bundle_referrer_manifest(bundle, image.descriptor(), predicate_type=signing.SBOM_PREDICATES[fmt])
        return self.put(image.repository, manifest, blobs)

    def attest_provenance(self, key: Any, image: Pushed, **fields: Any) -> Pushed:
        """Push a key-signed SLSA provenance attestation of `image` (a cosign v3 bundle referrer);
        `fields` go to `signing.provenance_predicate` (e.g. `ref="refs/heads/feature"`)."""
        manifest, blobs = signing.provenance_attestation_artifact(key, image.digest, image.descriptor(), **fields)
        return self.put(image.repository, manifest, blobs)

    def attest_provenance_keyless(
        self, sigstore: Any, image: Pushed, identity: str, *, rekor_v2: bool = False, **fields: Any
    ) -> Pushed:
        """Push SLSA provenance signed keyless as `identity` (the build workflow's certificate)."""
        bundle = sigstore.keyless_bundle(image.digest, statement=signing.provenance_statement(image.digest, **fields),
                                         identity=identity, rekor_v2=rekor_v2)
        manifest, blobs = signing.bundle_referrer_manifest(bundle, image.descriptor(), predicate_type=signing.SLSA_PROVENANCE_V1)
        return self.put(image.repository, manifest, blobs)

    def sign_bundle(self, key: Any, image: Pushed) -> Pushed:
        """Push a cosign v3 sigstore bundle as an OCI 1.1 referrer of the image."""
        manifest, blobs = signing.bundle_referrer_artifact(key, image.digest, image.descriptor())
        return self.put(image.repository, manifest, blobs)

    def attest_sbom(
        self, key: Any, image: Pushed, fmt: str = "spdx", *, layout: str = "referrer", other_digest: str | None = None
    ) -> Pushed:
        """Push a signed SBOM attestation of `image` as cosign does: `layout` "referrer" (cosign v3
        bundle referrer) or "legacy" (the `sha256-<hex>.att` tag). `other_digest` attaches an SBOM
        whose statement is about another image (the `sbom-other-digest` demo scenario)."""
        if layout == "referrer":
            manifest, blobs = signing.sbom_attestation_artifact(key, image.digest, image.descriptor(), fmt, other_digest)
            return self.put(image.repository, manifest, blobs)
        if layout == "legacy":
            manifest, blobs = signing.legacy_attestation_artifact(key, image.digest, fmt, other_digest)
            return self.put(image.repository, manifest, blobs, tag=f"sha256-{image.digest[7:]}.att")
        msg = f"unknown attestation layout {layout!r} (referrer or legacy)"
        raise ValueError(msg)


def _tampered(manifest: bytes, blobs: dict[str, bytes]) -> tuple[bytes, dict[str, bytes]]:
    """Change one byte of meaning in the signed payload and fix up the manifest's descriptors."""
    document = json.loads(manifest)
    layer = document["layers"][0]
    payload = json.loads(blobs[layer["digest"]])
    payload["optional"] = {**(payload.get("optional") or {}), "creator": "someone else"}
    new_payload = json.dumps(payload, separators=(",", ":")).encode()
    new_blobs = {k: v for k, v in blobs.items() if k != layer["digest"]}
    new_blobs[_digest(new_payload)] = new_payload
    layer["digest"], layer["size"] = _digest(new_payload), len(new_payload)
    return json.dumps(document, separators=(",", ":")).encode(), new_blobs
