"""What is attached to an image digest: the candidate signatures and attestations, read but not trusted.

cosign keeps what it attaches to an image in two layouts, and this is the one reader of both (the
signature gate and the SBOM gate only judge what it returns):

1. **Legacy tags** (cosign v1/v2, and v3 with `--new-bundle-format=false`): the tag
   `sha256-<hex>.sig` (signatures) or `sha256-<hex>.att` (attestations) in the image's repository
   is an OCI manifest with one layer per signature or attestation. A `.sig` layer is a
   simple-signing payload (`application/vnd.dev.cosign.simplesigning.v1+json`) with its base64
   signature in the `dev.cosignproject.cosign/signature` annotation; an `.att` layer is a DSSE
   envelope (`application/vnd.dsse.envelope.v1+json`) with the annotation `predicateType` (see
   `podrelease.verify.signatures` and `podrelease.verify.sbom` for the sources read).
2. **OCI 1.1 referrers** (cosign v3's default): a manifest whose `subject` is the image, whose
   `artifactType` is a sigstore bundle media type, whose one bundle layer is the bundle JSON, and
   whose annotation `dev.sigstore.bundle.predicateType` announces what the bundle signs. Signatures
   and attestations share the artifact type; only the predicate tells them apart.

`read_attachments(registry, repository, digest, kind)` returns one `Attachment` per candidate of
that kind (the layer or bundle bytes, where they were found, what is announced about them, or why
they could not be read) and the referrers passed over (not a sigstore bundle, or announced as the
other kind). Nothing here is authenticated: annotations and media types are claims, which the gates
check against the signed content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from podrelease.core.errors import MalformedSignature
from podrelease.verify.registry import MAX_BLOB_BYTES, Registry, referrers_tag, require_digest

# Legacy tag layout.
SIGNATURE_TAG_SUFFIX = ".sig"
ATTESTATION_TAG_SUFFIX = ".att"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
#: The layer annotation `cosign attest` writes on each `.att` layer.
LEGACY_PREDICATE_ANNOTATION = "predicateType"

# Referrer layout.
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_TYPES = frozenset(
    {
        BUNDLE_MEDIA_TYPE,
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
#: The predicate of cosign v3's image signature; every other predicate is an attestation.
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Largest simple-signing payload, DSSE envelope or bundle read (bytes).
MAX_ATTACHMENT_BYTES = MAX_BLOB_BYTES
#: Most candidates of one kind read for one image; more is refused rather than read to the end.
MAX_ATTACHMENTS = 32

Kind = Literal["signature", "attestation"]
_TAG_SUFFIX: Mapping[Kind, str] = {"signature": SIGNATURE_TAG_SUFFIX, "attestation": ATTESTATION_TAG_SUFFIX}
_LAYER_MEDIA_TYPE: Mapping[Kind, str] = {"signature": SIMPLESIGNING_MEDIA_TYPE, "attestation": DSSE_ENVELOPE_MEDIA_TYPE}


@dataclass(frozen=True)
class Attachment:
    """One candidate signature or attestation attached to the digest, not yet trusted."""

    #: Where it was found: `tag:sha256-<hex>.sig` / `tag:sha256-<hex>.att`, or `referrer`.
    source: str
    #: The digest of the manifest that holds it (the legacy tag's manifest, or the referrer).
    manifest: str
    #: Its position in the legacy manifest's layers (from 1); None for a referrer, or for a legacy
    #: manifest that could not be read at all.
    layer: int | None = None
    #: The legacy layer's media type, or the referrer's artifactType.
    media_type: str = ""
    #: The bytes: a simple-signing payload, a DSSE envelope, or a bundle's JSON. None when the
    #: legacy layer is not of its tag's media type (not read) or when `error` is set.
    content: bytes | None = None
    #: The legacy layer's annotations, or the referrer descriptor's.
    annotations: Mapping[str, Any] = field(default_factory=dict)
    #: The predicate type announced beside the content (unsigned: a claim to check).
    announced: str | None = None
    #: Why it could not be read (a corrupt manifest, a missing or oversized blob, ...).
    error: MalformedSignature | None = None

    @property
    def is_referrer(self) -> bool:
        return self.source == "referrer"


@dataclass(frozen=True)
class PassedOver:
    """A referrer that is not a candidate of the kind asked for: not a sigstore bundle, or a bundle
    announced (`predicate_type`) as the other kind."""

    manifest: str
    artifact_type: str
    predicate_type: str | None = None


@dataclass(frozen=True)
class Attachments:
    """Everything of one kind attached to a digest, in the order found (legacy tag first)."""

    candidates: tuple[Attachment, ...]
    passed_over: tuple[PassedOver, ...] = ()


def kind_of_predicate(predicate_type: str) -> Kind:
    """cosign v3's image signature predicate is a signature; every other predicate an attestation."""
    return "signature" if predicate_type == COSIGN_SIGN_PREDICATE else "attestation"


def read_attachments(registry: Registry, repository: str, digest: str, kind: Kind) -> Attachments:
    """The candidates of `kind` attached to repository@digest, from the legacy tag and the referrers.

    Raises MalformedSignature when more than MAX_ATTACHMENTS candidates are attached (before
    reading the rest); RegistryError (transient) passes through."""
    require_digest(digest)
    found: list[Attachment] = []

    def add(attachment: Attachment) -> None:
        found.append(attachment)
        if len(found) > MAX_ATTACHMENTS:
            msg = f"more than {MAX_ATTACHMENTS} {kind}s are attached to {repository}@{digest}; refusing to read them all"
            raise MalformedSignature(msg)

    for attachment in _legacy(registry, repository, digest, kind):
        add(attachment)
    passed_over: list[PassedOver] = []
    for descriptor in registry.list_referrers(repository, digest):
        referrer = str(descriptor.get("digest"))
        artifact_type = str(descriptor.get("artifactType"))
        annotations = _annotations(descriptor)
        announced = annotations.get(BUNDLE_PREDICATE_ANNOTATION)
        announced = announced[:200] if isinstance(announced, str) else None
        if artifact_type not in BUNDLE_MEDIA_TYPES:
            passed_over.append(PassedOver(referrer, artifact_type[:120]))
            continue
        if announced is not None and kind_of_predicate(announced) != kind:
            passed_over.append(PassedOver(referrer, artifact_type, announced))
            continue
        content: bytes | None = None
        error: MalformedSignature | None = None
        try:
            content = _referrer_bundle(registry, repository, digest, referrer)
        except MalformedSignature as exc:
            error = exc
        add(
            Attachment(
                source="referrer",
                manifest=referrer,
                media_type=artifact_type,
                content=content,
                annotations=annotations,
                announced=announced,
                error=error,
            )
        )
    return Attachments(candidates=tuple(found), passed_over=tuple(passed_over))


def _annotations(item: Mapping[str, Any]) -> dict[str, Any]:
    annotations = item.get("annotations")
    return dict(annotations) if isinstance(annotations, dict) else {}


def _layers(body: Mapping[str, Any], what: str) -> list[Mapping[str, Any]]:
    layers = body.get("layers")
    if not isinstance(layers, list):
        msg = f"{what} has no layers list"
        raise MalformedSignature(msg)
    return [layer if isinstance(layer, dict) else {} for layer in layers]


def _layer_blob(registry: Registry, repository: str, layer: Mapping[str, Any], what: str) -> bytes:
    digest = layer.get("digest")
    size = layer.get("size")
    if not isinstance(digest, str):
        msg = f"{what} has no digest"
        raise MalformedSignature(msg)
    if isinstance(size, int) and size > MAX_ATTACHMENT_BYTES:
        msg = f"{what} declares {size} bytes, over the {MAX_ATTACHMENT_BYTES}-byte limit"
        raise MalformedSignature(msg)
    return registry.get_blob(repository, require_digest(digest), max_bytes=MAX_ATTACHMENT_BYTES)


def _legacy(registry: Registry, repository: str, digest: str, kind: Kind) -> list[Attachment]:
    tag = referrers_tag(digest) + _TAG_SUFFIX[kind]
    source = f"tag:{tag}"
    manifest = registry.get_manifest(repository, tag)
    if manifest is None:
        return []
    try:
        layers = _layers(manifest.json(), f"{kind} manifest {manifest.digest}")
    except MalformedSignature as exc:
        return [Attachment(source=source, manifest=manifest.digest, error=exc)]
    found: list[Attachment] = []
    for number, layer in enumerate(layers, start=1):
        annotations = _annotations(layer)
        announced = annotations.get(LEGACY_PREDICATE_ANNOTATION)
        media_type = str(layer.get("mediaType", ""))
        content: bytes | None = None
        error: MalformedSignature | None = None
        if media_type == _LAYER_MEDIA_TYPE[kind]:
            try:
                content = _layer_blob(registry, repository, layer, f"{kind} layer {number}")
            except MalformedSignature as exc:
                error = exc
        found.append(
            Attachment(
                source=source,
                manifest=manifest.digest,
                layer=number,
                media_type=media_type,
                content=content,
                annotations=annotations,
                announced=announced if isinstance(announced, str) else None,
                error=error,
            )
        )
        if len(found) > MAX_ATTACHMENTS:
            break  # the caller refuses; the rest is not read
    return found


def _referrer_bundle(registry: Registry, repository: str, digest: str, referrer: str) -> bytes:
    """The bundle JSON of a referrer: its manifest must name `digest` as subject and hold exactly
    one bundle layer."""
    manifest = registry.get_manifest(repository, require_digest(referrer))
    if manifest is None:
        msg = f"referrer {referrer} is listed but its manifest is missing"
        raise MalformedSignature(msg)
    body = manifest.json()
    subject = body.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        msg = f"referrer {referrer} does not name {digest} as its subject"
        raise MalformedSignature(msg)
    bundles = [layer for layer in _layers(body, f"referrer {referrer}") if layer.get("mediaType") in BUNDLE_MEDIA_TYPES]
    if len(bundles) != 1:
        msg = f"referrer {referrer} has {len(bundles)} bundle layers, expected exactly one"
        raise MalformedSignature(msg)
    return _layer_blob(registry, repository, bundles[0], f"referrer {referrer}")
