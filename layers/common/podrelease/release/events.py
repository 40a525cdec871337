"""The ECR push event: what starts a release, and what does not.

`parse_push` turns an EventBridge `ECR Image Action` event into an `ImagePush` or raises a named
error. `is_artifact_push` recognises pushes of signatures, attestations and other OCI artifacts,
which must never start a release. `execution_name` derives the Step Functions execution name from
repository and digest, so a duplicate event maps onto the release that already exists.

Hand-written on purpose, not Powertools' `EventBridgeEvent`/parser models: each refusal is its own
named error (MalformedEvent, ForeignEvent, EventTooLarge, with a message saying which field), and
the state machine carries that name from `Normalize`'s Catch (`$.error.Error`) to `RecordRejected`,
the release record and the outcome email; a generic validation error would lose it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from podrelease.core.errors import EventTooLarge, ForeignEvent, MalformedEvent

#: A real ECR push event is well under 2 KiB; anything past this is refused unread.
MAX_EVENT_BYTES = 16 * 1024

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# ECR repository names: lowercase, digits, and . _ - / separators, 2..256 characters.
REPOSITORY_RE = re.compile(r"^(?=.{2,256}$)[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# cosign's legacy tags for signatures, attestations and SBOMs, and the OCI 1.1 referrers fallback tag.
ARTIFACT_TAG_RE = re.compile(r"^sha256-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$")
IMAGE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
IMAGE_CONFIG_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


@dataclass(frozen=True)
class ImagePush:
    """One successful push of an image (not an artifact) by digest."""

    account: str
    region: str
    repository: str
    digest: str
    tag: str | None
    event_id: str
    time: str

    @property
    def image_uri(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"image_uri": self.image_uri}


def _text(detail: dict[str, Any], key: str) -> str:
    value = detail.get(key)
    if not isinstance(value, str) or not value:
        msg = f"the event's detail has no valid {key!r}"
        raise MalformedEvent(msg)
    return value


def event_size(event: Any) -> int:
    return len(json.dumps(event, separators=(",", ":"), default=str).encode())


def is_artifact_push(event: Any) -> bool:
    """True for pushes of cosign signatures/attestations and OCI artifacts (never a release)."""
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict):
        return False
    tag = detail.get("image-tag")
    if isinstance(tag, str) and ARTIFACT_TAG_RE.match(tag):
        return True
    artifact_type = detail.get("artifact-media-type")
    if isinstance(artifact_type, str) and artifact_type and artifact_type not in IMAGE_CONFIG_MEDIA_TYPES:
        return True
    manifest_type = detail.get("manifest-media-type")
    return isinstance(manifest_type, str) and bool(manifest_type) and manifest_type not in IMAGE_MEDIA_TYPES


def _push_detail(event: Any) -> dict[str, Any]:
    """The detail of an ECR image action event of a sane size."""
    if not isinstance(event, dict):
        msg = f"expected an EventBridge event object, got {type(event).__name__}"
        raise MalformedEvent(msg)
    size = event_size(event)
    if size > MAX_EVENT_BYTES:
        msg = f"event is {size} bytes; an ECR push event is never over {MAX_EVENT_BYTES}"
        raise EventTooLarge(msg)
    if event.get("source") != "aws.ecr" or event.get("detail-type") != "ECR Image Action":
        msg = f"not an ECR image action (source={event.get('source')!r}, detail-type={event.get('detail-type')!r})"
        raise ForeignEvent(msg)
    detail = event.get("detail")
    if not isinstance(detail, dict):
        msg = "the event has no detail object"
        raise MalformedEvent(msg)
    return detail


def _tag(detail: dict[str, Any]) -> str | None:
    tag = detail.get("image-tag")
    if tag in ("", None):
        return None
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        msg = "image-tag is not a valid tag"
        raise MalformedEvent(msg)
    return tag


def _origin(event: dict[str, Any]) -> tuple[str, str]:
    """The event's account and region."""
    account = event.get("account")
    region = event.get("region")
    if not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        msg = "the event's account is not a 12-digit AWS account id"
        raise MalformedEvent(msg)
    if not (isinstance(region, str) and re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region)):
        msg = "the event's region is not an AWS region"
        raise MalformedEvent(msg)
    return account, region


def parse_push(event: Any, watched_repositories: tuple[str, ...]) -> ImagePush:
    """Validate an EventBridge ECR push event for a watched repository, or raise a named error."""
    detail = _push_detail(event)
    if detail.get("action-type") != "PUSH" or detail.get("result") != "SUCCESS":
        msg = f"not a successful push (action-type={detail.get('action-type')!r}, result={detail.get('result')!r})"
        raise ForeignEvent(msg)
    repository = _text(detail, "repository-name")
    if not REPOSITORY_RE.match(repository):
        msg = f"repository-name {repository[:80]!r} is not a valid ECR repository name"
        raise MalformedEvent(msg)
    if repository not in watched_repositories:
        msg = f"repository {repository!r} is not watched (watched: {', '.join(watched_repositories) or 'none'})"
        raise ForeignEvent(msg)
    digest = detail.get("image-digest")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        shown = digest[:80] if isinstance(digest, str) else digest
        msg = f"image-digest {shown!r} is not sha256:<64 hex>; a release needs the exact digest, never a tag alone"
        raise MalformedEvent(msg)
    if is_artifact_push(event):
        msg = "the push is a signature, attestation or other OCI artifact, not an image"
        raise ForeignEvent(msg)
    tag = _tag(detail)
    account, region = _origin(event)
    event_id = event.get("id")
    return ImagePush(
        account=account,
        region=region,
        repository=repository,
        digest=digest,
        tag=tag,
        event_id=event_id if isinstance(event_id, str) else "",
        time=str(event.get("time", "")),
    )


def execution_name(repository: str, digest: str, attempt: int = 1) -> str:
    """Deterministic execution name for a release of `repository@digest`.

    Readable (repository slug and digest prefix) and unique (a 64-bit hash of the full pair).
    Attempt 1 has no suffix; a deliberate re-release of the same digest uses attempt 2, 3, ...
    """
    if not DIGEST_RE.match(digest):
        msg = f"{digest[:80]!r} is not sha256:<64 hex>"
        raise MalformedEvent(msg)
    if attempt < 1 or attempt > 99:
        msg = "attempt must be between 1 and 99"
        raise MalformedEvent(msg)
    slug = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")[:24] or "repo"
    key = hashlib.sha256(f"{repository}@{digest}".encode()).hexdigest()[:16]
    name = f"{slug}-{digest[7:19]}-{key}"
    return name if attempt == 1 else f"{name}-a{attempt}"


def fallback_execution_name(event: Any) -> str:
    """Name for an event that cannot be parsed: derived from its bytes, so duplicates still dedup."""
    blob = json.dumps(event, sort_keys=True, default=str).encode()[:MAX_EVENT_BYTES * 4]
    return f"rejected-{hashlib.sha256(blob).hexdigest()[:32]}"
