"""Make cosign-shaped signatures with a local key: for tests and the local demo, never deployed.

The gates (`podrelease.verify.signatures`, `podrelease.verify.sbom`) only verify; this module produces what
they verify, in the two layouts cosign uses (see `podrelease.verify.attachments`' and
`podrelease.verify.envelopes`' module docstrings for the sources):

- `legacy_signature_artifact`: the `sha256-<hex>.sig` manifest (an OCI image manifest with a config
  blob and one simple-signing layer carrying its signature annotation);
- `provenance_attestation_artifact`: SLSA provenance v1 (`podrelease.verify.provenance`) in a bundle
  referrer, as `cosign attest --type slsaprovenance1` pushes it;
- `bundle_referrer_artifact`: a sigstore bundle v0.3 (DSSE in-toto statement, predicate
  `https://sigstore.dev/cosign/sign/v1`, or a message signature) in an OCI 1.1 referrer manifest
  with `subject` and `artifactType`.

Each returns `(manifest_bytes, {blob_digest: blob_bytes})`; `publish_*` helpers write them into a
`MemoryRegistry`. The smaller pieces (payload, sign, manifest builders) are public so tests can
build tampered variants.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from local.registry import MemoryRegistry
from podrelease.verify.attachments import (
    ATTESTATION_TAG_SUFFIX,
    BUNDLE_MEDIA_TYPE,
    BUNDLE_PREDICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    DSSE_ENVELOPE_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_TAG_SUFFIX,
    SIMPLESIGNING_MEDIA_TYPE,
)
from podrelease.verify.envelopes import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_TYPE, dsse_pae
from podrelease.verify.provenance import GITHUB_BUILD_TYPE, SLSA_PROVENANCE_V1
from podrelease.verify.registry import OCI_MANIFEST, referrers_tag, sha256_digest
from podrelease.verify.sbom import CYCLONEDX_PREDICATE, SPDX_PREDICATE

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"

Blobs = dict[str, bytes]


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def generate_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh ECDSA P-256 key (cosign's default) and its public key as PEM."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_key, public_pem


def key_hint(private_key: ec.EllipticCurvePrivateKey) -> str:
    """base64 of the SHA-256 of the public key's DER SPKI (the bundle `publicKey.hint`)."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """DER ECDSA signature over `data` with SHA-256."""
    return private_key.sign(data, ec.ECDSA(hashes.SHA256()))


def sign_digest(private_key: ec.EllipticCurvePrivateKey, digest: str) -> bytes:
    """DER ECDSA signature over the artifact whose SHA-256 is `digest` (sha256:<hex>)."""
    return private_key.sign(bytes.fromhex(digest.removeprefix("sha256:")), ec.ECDSA(Prehashed(hashes.SHA256())))


# --- legacy .sig ----------------------------------------------------------------------------------


def simple_signing_payload(docker_reference: str, digest: str, optional: dict[str, Any] | None = None) -> bytes:
    """A cosign simple-signing payload for `digest` (compact JSON, cosign's field order)."""
    return _compact(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": SIMPLESIGNING_TYPE,
            },
            "optional": optional,
        }
    )


def _legacy_manifest(layers: list[tuple[bytes, str, dict[str, str]]]) -> tuple[bytes, Blobs]:
    """The OCI manifest cosign's legacy mode pushes under `.sig`/`.att`: the given layers
    `(bytes, media type, annotations)` and the minimal image config cosign writes for them."""
    blobs: Blobs = {}
    descriptors = []
    for data, media_type, layer_annotations in layers:
        digest = sha256_digest(data)
        blobs[digest] = data
        descriptors.append({"mediaType": media_type, "size": len(data), "digest": digest, "annotations": layer_annotations})
    config = _compact(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
            "config": {},
        }
    )
    config_digest = sha256_digest(config)
    blobs[config_digest] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
        "layers": descriptors,
    }
    return _compact(manifest), blobs


def legacy_signature_manifest(layers: list[tuple[bytes, str]]) -> tuple[bytes, Blobs]:
    """A `.sig` manifest whose layers are `(payload, base64 signature)` pairs."""
    return _legacy_manifest(
        [(payload, SIMPLESIGNING_MEDIA_TYPE, {SIGNATURE_ANNOTATION: signature_b64}) for payload, signature_b64 in layers]
    )


def legacy_signature_artifact(
    private_key: ec.EllipticCurvePrivateKey, docker_reference: str, digest: str
) -> tuple[bytes, Blobs]:
    """The `.sig` manifest and blobs cosign (legacy mode) would push for `digest`."""
    payload = simple_signing_payload(docker_reference, digest)
    signature_b64 = base64.b64encode(sign(private_key, payload)).decode()
    return legacy_signature_manifest([(payload, signature_b64)])


# --- bundle referrers ------------------------------------------------------------------------------


def cosign_sign_statement(digest: str, predicate_type: str = COSIGN_SIGN_PREDICATE) -> bytes:
    """The in-toto Statement v1 cosign v3 signs for an image: one subject, this digest."""
    return _compact(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicateType": predicate_type,
            "predicate": {},
        }
    )


def dsse_bundle(
    private_key: ec.EllipticCurvePrivateKey,
    payload: bytes,
    payload_type: str = INTOTO_PAYLOAD_TYPE,
) -> bytes:
    """A v0.3 bundle holding a DSSE envelope of `payload`, key-based, no transparency log."""
    signature = sign(private_key, dsse_pae(payload_type, payload))
    return _compact(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key_hint(private_key)}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": payload_type,
                "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
            },
        }
    )


def message_signature_bundle(private_key: ec.EllipticCurvePrivateKey, digest: str) -> bytes:
    """A v0.3 bundle holding a message signature over the artifact with SHA-256 `digest`."""
    return _compact(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key_hint(private_key)}, "tlogEntries": []},
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(bytes.fromhex(digest.removeprefix("sha256:"))).decode(),
                },
                "signature": base64.b64encode(sign_digest(private_key, digest)).decode(),
            },
        }
    )


def bundle_referrer_manifest(
    bundle: bytes,
    subject_descriptor: dict[str, Any],
    *,
    content: str = "dsse-envelope",
    predicate_type: str | None = COSIGN_SIGN_PREDICATE,
) -> tuple[bytes, Blobs]:
    """An OCI 1.1 referrer manifest for a bundle blob, laid out as cosign v3 writes it."""
    bundle_digest = sha256_digest(bundle)
    annotations = {"dev.sigstore.bundle.content": content, "org.opencontainers.image.created": "2025-01-01T00:00:00Z"}
    if predicate_type is not None:
        annotations[BUNDLE_PREDICATE_ANNOTATION] = predicate_type
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256_digest(EMPTY_JSON), "size": len(EMPTY_JSON)},
        "layers": [
            {
                "mediaType": BUNDLE_MEDIA_TYPE,
                "digest": bundle_digest,
                "size": len(bundle),
                "annotations": {"org.opencontainers.image.title": bundle_digest.replace(":", "-") + ".sigstore.json"},
            }
        ],
        "subject": subject_descriptor,
        "annotations": annotations,
    }
    return _compact(manifest), {bundle_digest: bundle, sha256_digest(EMPTY_JSON): EMPTY_JSON}


def bundle_referrer_artifact(
    private_key: ec.EllipticCurvePrivateKey,
    digest: str,
    subject_descriptor: dict[str, Any],
    *,
    kind: str = "dsse",
) -> tuple[bytes, Blobs]:
    """The referrer manifest and blobs of a cosign v3 signature of `digest` (`kind` "dsse", the
    cosign v3 default, or "message" for a message-signature bundle)."""
    if kind == "dsse":
        bundle = dsse_bundle(private_key, cosign_sign_statement(digest))
        return bundle_referrer_manifest(bundle, subject_descriptor)
    if kind == "message":
        bundle = message_signature_bundle(private_key, digest)
        return bundle_referrer_manifest(bundle, subject_descriptor, content="message-signature", predicate_type=None)
    msg = f"unknown bundle kind {kind!r} (dsse or message)"
    raise ValueError(msg)


# --- publishing into a MemoryRegistry ----------------------------------------------------------------


def publish(registry: MemoryRegistry, repository: str, artifact: tuple[bytes, Blobs], tag: str | None = None) -> str:
    """Put an artifact's blobs and manifest into `registry`; returns the manifest digest."""
    manifest, blobs = artifact
    for data in blobs.values():
        registry.put_blob(repository, data)
    return registry.put_manifest(repository, manifest, OCI_MANIFEST, tag=tag)


def publish_legacy(registry: MemoryRegistry, repository: str, image_digest: str, artifact: tuple[bytes, Blobs]) -> str:
    """Publish a `.sig` artifact under the legacy tag of `image_digest`."""
    return publish(registry, repository, artifact, tag=referrers_tag(image_digest) + SIGNATURE_TAG_SUFFIX)


def image_descriptor(registry: MemoryRegistry, repository: str, digest: str) -> dict[str, Any]:
    """The descriptor of a stored image, as a referrer's `subject`."""
    manifest = registry.get_manifest(repository, digest)
    if manifest is None:
        msg = f"{repository}@{digest} is not in the registry"
        raise LookupError(msg)
    return {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)}


# --- SBOM attestations (cosign attest) ------------------------------------------------------------
# Layouts as `podrelease.verify.sbom`'s docstring describes them (read in sigstore/cosign): the legacy
# `sha256-<hex>.att` manifest with one `application/vnd.dsse.envelope.v1+json` layer per attestation
# (layer annotations `predicateType` and an empty `dev.cosignproject.cosign/signature`), and the
# cosign v3 bundle referrer with the `dev.sigstore.bundle.predicateType` annotation.

SBOM_PREDICATES = {"spdx": SPDX_PREDICATE, "cyclonedx": CYCLONEDX_PREDICATE}
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"


def sbom_document(fmt: str = "spdx", name: str = "podinfo") -> dict[str, Any]:
    """A small but well-formed SBOM of podinfo: SPDX 2.3 JSON or CycloneDX 1.5 JSON."""
    if fmt == "spdx":
        return {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": name,
            "documentNamespace": f"https://example.com/spdx/{name}",
            "creationInfo": {"created": "2025-01-01T00:00:00Z", "creators": ["Tool: local.signing"]},
            "packages": [
                {"name": "github.com/stefanprodan/podinfo", "SPDXID": "SPDXRef-Package-podinfo", "versionInfo": "6.9.1",
                 "downloadLocation": "NOASSERTION"},
            ],
        }
    if fmt == "cyclonedx":
        return {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "version": 1,
            "metadata": {"timestamp": "2025-01-01T00:00:00Z", "component": {"type": "container", "name": name}},
            "components": [{"type": "library", "name": "github.com/stefanprodan/podinfo", "version": "6.9.1"}],
        }
    msg = f"unknown SBOM format {fmt!r} (spdx or cyclonedx)"
    raise ValueError(msg)


def sbom_statement(
    digest: str,
    fmt: str = "spdx",
    *,
    statement_type: str = STATEMENT_V1,
    predicate: Any = None,
    predicate_type: str | None = None,
    subject_name: str = "podinfo",
) -> bytes:
    """The in-toto statement `cosign attest --type <fmt>` signs: one subject (`digest`), the SBOM
    as the predicate. `predicate`/`predicate_type` override the defaults (for bad variants)."""
    return _compact(
        {
            "_type": statement_type,
            "predicateType": predicate_type or SBOM_PREDICATES[fmt],
            "subject": [{"name": subject_name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicate": sbom_document(fmt) if predicate is None else predicate,
        }
    )


def dsse_envelope(
    private_key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = INTOTO_PAYLOAD_TYPE
) -> bytes:
    """A bare DSSE envelope (what a legacy `.att` layer's blob is)."""
    signature = sign(private_key, dsse_pae(payload_type, payload))
    return _compact(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    )


def legacy_attestation_manifest(layers: list[tuple[bytes, str | None]]) -> tuple[bytes, Blobs]:
    """A `.att` manifest whose layers are `(DSSE envelope bytes, predicate type annotation)`."""
    return _legacy_manifest(
        [
            (envelope, DSSE_ENVELOPE_MEDIA_TYPE, {SIGNATURE_ANNOTATION: ""} | ({"predicateType": predicate} if predicate else {}))
            for envelope, predicate in layers
        ]
    )


def legacy_attestation_artifact(
    private_key: ec.EllipticCurvePrivateKey,
    digest: str,
    fmt: str = "spdx",
    other_digest: str | None = None,
) -> tuple[bytes, Blobs]:
    """The `.att` manifest and blobs `cosign attest --type <fmt>` (legacy mode) pushes for
    `digest`; `other_digest` makes the statement's subject another image (a misattached SBOM)."""
    statement = sbom_statement(other_digest or digest, fmt, statement_type=STATEMENT_V01)
    return legacy_attestation_manifest([(dsse_envelope(private_key, statement), SBOM_PREDICATES[fmt])])


def sbom_attestation_artifact(
    private_key: ec.EllipticCurvePrivateKey,
    digest: str,
    subject_descriptor: dict[str, Any],
    fmt: str = "spdx",
    other_digest: str | None = None,
) -> tuple[bytes, Blobs]:
    """The referrer manifest and blobs of a cosign v3 SBOM attestation of `digest` (a DSSE bundle,
    referring to `subject_descriptor`); `other_digest` signs a statement about another image while
    still attaching it to this one."""
    bundle = dsse_bundle(private_key, sbom_statement(other_digest or digest, fmt))
    return bundle_referrer_manifest(bundle, subject_descriptor, predicate_type=SBOM_PREDICATES[fmt])


def publish_attestation_legacy(
    registry: MemoryRegistry, repository: str, image_digest: str, artifact: tuple[bytes, Blobs]
) -> str:
    """Publish a `.att` artifact under the legacy attestation tag of `image_digest`."""
    return publish(registry, repository, artifact, tag=referrers_tag(image_digest) + ATTESTATION_TAG_SUFFIX)


# --- SLSA provenance attestations (cosign attest --type slsaprovenance1) ----------------------------
# The predicate `podrelease.verify.provenance`'s docstring describes: GitHub's workflow build type, as
# the build workflow writes it for the image it built.

DEMO_SOURCE = "https://github.com/acme/podinfo"
DEMO_COMMIT = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"


def provenance_predicate(
    *,
    repository: str = DEMO_SOURCE,
    ref: str = "refs/heads/main",
    commit: str = DEMO_COMMIT,
    actor: str = "octocat",
    run_id: int = 4242,
    workflow: str = ".github/workflows/build.yml",
) -> dict[str, Any]:
    """SLSA provenance v1 of a build by `workflow` of `repository` at `ref` (commit, actor, run)."""
    return {
        "buildDefinition": {
            "buildType": GITHUB_BUILD_TYPE,
            "externalParameters": {"workflow": {"ref": ref, "repository": repository, "path": workflow}},
            "internalParameters": {"github": {"event_name": "push", "actor": actor, "triggering_actor": actor,
                                              "runner_environment": "github-hosted"}},
            "resolvedDependencies": [{"uri": f"git+{repository}@{ref}", "digest": {"gitCommit": commit}}],
        },
        "runDetails": {
            "builder": {"id": f"{repository}/{workflow}@{ref}"},
            "metadata": {"invocationId": f"{repository}/actions/runs/{run_id}/attempts/1"},
        },
    }


def provenance_statement(digest: str, predicate: Any = None, **fields: Any) -> bytes:
    """The in-toto statement `cosign attest --type slsaprovenance1` signs for `digest`."""
    return _compact(
        {
            "_type": STATEMENT_V1,
            "predicateType": SLSA_PROVENANCE_V1,
            "subject": [{"name": "podinfo", "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicate": provenance_predicate(**fields) if predicate is None else predicate,
        }
    )


def provenance_attestation_artifact(
    private_key: ec.EllipticCurvePrivateKey, digest: str, subject_descriptor: dict[str, Any], **fields: Any
) -> tuple[bytes, Blobs]:
    """The referrer manifest and blobs of a cosign v3 provenance attestation of `digest` (key-signed);
    `fields` go to `provenance_predicate` (e.g. `ref="refs/heads/feature"`)."""
    bundle = dsse_bundle(private_key, provenance_statement(digest, **fields))
    return bundle_referrer_manifest(bundle, subject_descriptor, predicate_type=SLSA_PROVENANCE_V1)
