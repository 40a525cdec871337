"""The ECR push event at the edge: `podrelease.release.events`.

GIVEN the real AWS-docs sample event, or a variant of it WHEN it is parsed THEN a valid image push
becomes an `ImagePush` with exact fields, and every other event is refused with exactly the named
error expected (MalformedEvent, ForeignEvent or EventTooLarge). Also: which pushes are artifacts,
and the deterministic Step Functions execution names.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from podrelease.core.errors import EventTooLarge, ForeignEvent, MalformedEvent
from podrelease.release.events import (
    MAX_EVENT_BYTES,
    ImagePush,
    event_size,
    execution_name,
    fallback_execution_name,
    is_artifact_push,
    parse_push,
)

if TYPE_CHECKING:
    from collections.abc import Callable

SAMPLE_PATH = Path(__file__).parents[1] / "vectors" / "events" / "ecr-image-action-push.awsdocs.json"
SAMPLE: dict[str, Any] = json.loads(SAMPLE_PATH.read_text())
WATCHED = ("my-repository-name", "podinfo")
DIGEST = "sha256:" + "7f5b2640fe6fb4f4" * 4
OTHER_DIGEST = "sha256:" + "0123456789abcdef" * 4
HEX = DIGEST.removeprefix("sha256:")
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def valid_event() -> dict[str, Any]:
    """The AWS-docs sample with a well-formed 64-hex digest (the sample's own digest has 60 hex)."""
    event = copy.deepcopy(SAMPLE)
    event["detail"]["image-digest"] = DIGEST
    return event


def variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    event = valid_event()
    change(event)
    return event


def set_detail(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        for key, value in fields.items():
            event["detail"][key.replace("_", "-")] = value

    return change


def drop_detail(key: str) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        del event["detail"][key]

    return change


def set_top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        event[key] = value

    return change


def oversized(event: dict[str, Any]) -> None:
    event["resources"] = ["x" * 1024] * 17


# --- the real sample --------------------------------------------------------------------------------


def test_the_aws_docs_sample_is_refused_because_its_digest_has_60_hex_digits() -> None:
    # GIVEN the sample exactly as AWS documents it (a 60-hex digest)
    assert len(SAMPLE["detail"]["image-digest"]) == len("sha256:") + 60
    # WHEN it is parsed THEN it is a malformed event, naming the digest
    with pytest.raises(MalformedEvent) as info:
        parse_push(SAMPLE, WATCHED)
    assert type(info.value) is MalformedEvent
    assert "image-digest 'sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234'" in str(info.value)


def test_a_valid_push_becomes_an_image_push_with_exact_fields() -> None:
    # GIVEN the sample with a 64-hex digest WHEN it is parsed
    push = parse_push(valid_event(), WATCHED)
    # THEN every field comes from the event, and the image is addressed by digest
    assert push == ImagePush(
        account="123456789012",
        region="us-west-2",
        repository="my-repository-name",
        digest=DIGEST,
        tag="latest",
        event_id="13cde686-328b-6117-af20-0e5566167482",
        time="2019-11-16T01:54:34Z",
    )
    assert push.image_uri == f"123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name@{DIGEST}"
    assert push.to_dict() == {
        "account": "123456789012",
        "region": "us-west-2",
        "repository": "my-repository-name",
        "digest": DIGEST,
        "tag": "latest",
        "event_id": "13cde686-328b-6117-af20-0e5566167482",
        "time": "2019-11-16T01:54:34Z",
        "image_uri": push.image_uri,
    }


@pytest.mark.parametrize("tag", ["", None])
def test_a_push_by_digest_without_a_tag_has_tag_none(tag: str | None) -> None:
    # GIVEN a push by digest only WHEN parsed THEN the release carries no tag
    push = parse_push(variant(set_detail(image_tag=tag)), WATCHED)
    assert push.tag is None
    assert push.digest == DIGEST


# --- refusals ------------------------------------------------------------------------------------------

REFUSALS: list[tuple[str, Any, type[Exception]]] = [
    ("not a dict (list)", [valid_event()], MalformedEvent),
    ("not a dict (string)", json.dumps(valid_event()), MalformedEvent),
    ("not a dict (None)", None, MalformedEvent),
    ("wrong source", variant(set_top("source", "aws.s3")), ForeignEvent),
    ("wrong detail-type", variant(set_top("detail-type", "ECR Image Scan")), ForeignEvent),
    ("no detail object", variant(set_top("detail", "PUSH")), MalformedEvent),
    ("action DELETE", variant(set_detail(action_type="DELETE")), ForeignEvent),
    ("result FAILURE", variant(set_detail(result="FAILURE")), ForeignEvent),
    ("missing digest", variant(drop_detail("image-digest")), MalformedEvent),
    ("tag-only event", variant(set_detail(image_digest=None)), MalformedEvent),
    ("digest is a tag", variant(set_detail(image_digest="latest")), MalformedEvent),
    ("uppercase digest", variant(set_detail(image_digest="sha256:" + HEX.upper())), MalformedEvent),
    ("sha512 digest", variant(set_detail(image_digest="sha512:" + HEX)), MalformedEvent),
    ("65-hex digest", variant(set_detail(image_digest=DIGEST + "0")), MalformedEvent),
    ("repository not watched", variant(set_detail(repository_name="other-repo")), ForeignEvent),
    ("missing repository", variant(drop_detail("repository-name")), MalformedEvent),
    ("uppercase repository", variant(set_detail(repository_name="Podinfo")), MalformedEvent),
    ("repository with ..", variant(set_detail(repository_name="pod..info")), MalformedEvent),
    ("repository with leading /", variant(set_detail(repository_name="/podinfo")), MalformedEvent),
    ("repository not a string", variant(set_detail(repository_name=["podinfo"])), MalformedEvent),
    ("invalid tag", variant(set_detail(image_tag="bad tag!")), MalformedEvent),
    ("oversized event", variant(oversized), EventTooLarge),
    ("account not 12 digits", variant(set_top("account", "12345")), MalformedEvent),
    ("account missing", variant(lambda e: e.pop("account")), MalformedEvent),
    ("region not a region", variant(set_top("region", "mars")), MalformedEvent),
    ("region uppercase", variant(set_top("region", "US-WEST-2")), MalformedEvent),
    ("cosign .sig push", variant(set_detail(image_tag=f"sha256-{HEX}.sig")), ForeignEvent),
    ("cosign .att push", variant(set_detail(image_tag=f"sha256-{HEX}.att")), ForeignEvent),
    ("cosign .sbom push", variant(set_detail(image_tag=f"sha256-{HEX}.sbom")), ForeignEvent),
    ("referrers fallback tag", variant(set_detail(image_tag=f"sha256-{HEX}")), ForeignEvent),
    ("cosign bundle artifact", variant(set_detail(artifact_media_type=BUNDLE_MEDIA_TYPE)), ForeignEvent),
    (
        "non-image manifest",
        variant(set_detail(manifest_media_type="application/vnd.oci.artifact.manifest.v1+json")),
        ForeignEvent,
    ),
]


@pytest.mark.parametrize(("event", "expected"), [(e, x) for _, e, x in REFUSALS], ids=[c for c, _, _ in REFUSALS])
def test_every_event_that_is_not_a_valid_watched_image_push_is_refused_by_name(event: Any, expected: type[Exception]) -> None:
    # GIVEN an event that is not a release WHEN parsed THEN exactly the named error is raised
    with pytest.raises(expected) as info:
        parse_push(event, WATCHED)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"


def test_an_oversized_event_is_refused_before_anything_else_is_read() -> None:
    # GIVEN an event just past the limit that is also foreign (wrong source)
    event = variant(oversized)
    event["source"] = "aws.s3"
    assert event_size(event) > MAX_EVENT_BYTES
    # WHEN parsed THEN the size refusal wins and states the limit
    with pytest.raises(EventTooLarge, match=f"never over {MAX_EVENT_BYTES}"):
        parse_push(event, WATCHED)


def test_the_size_limit_is_inclusive() -> None:
    # GIVEN a valid event padded to exactly MAX_EVENT_BYTES
    event = valid_event()
    event["resources"] = [""]
    event["resources"] = ["x" * (MAX_EVENT_BYTES - event_size(event))]
    assert event_size(event) == MAX_EVENT_BYTES
    # WHEN parsed THEN it is accepted
    assert parse_push(event, WATCHED).digest == DIGEST


def test_an_unwatched_repository_is_named_in_the_refusal() -> None:
    with pytest.raises(ForeignEvent) as info:
        parse_push(variant(set_detail(repository_name="other-repo")), ("podinfo",))
    assert str(info.value) == "repository 'other-repo' is not watched (watched: podinfo)"


# --- artifact pushes ------------------------------------------------------------------------------------

ARTIFACTS: list[tuple[str, Any, bool]] = [
    ("image push with a tag", valid_event(), False),
    ("image push without a tag", variant(drop_detail("image-tag")), False),
    ("oci image manifest", variant(set_detail(manifest_media_type="application/vnd.oci.image.manifest.v1+json")), False),
    ("oci index", variant(set_detail(manifest_media_type="application/vnd.oci.image.index.v1+json")), False),
    (
        "docker manifest",
        variant(set_detail(manifest_media_type="application/vnd.docker.distribution.manifest.v2+json")),
        False,
    ),
    (
        "docker manifest list",
        variant(set_detail(manifest_media_type="application/vnd.docker.distribution.manifest.list.v2+json")),
        False,
    ),
    ("oci image config", variant(set_detail(artifact_media_type="application/vnd.oci.image.config.v1+json")), False),
    (
        "docker image config",
        variant(set_detail(artifact_media_type="application/vnd.docker.container.image.v1+json")),
        False,
    ),
    ("empty media types", variant(set_detail(artifact_media_type="", manifest_media_type="")), False),
    ("tag that only looks like sha256-", variant(set_detail(image_tag="sha256-abc.sig")), False),
    ("tag with uppercase hex", variant(set_detail(image_tag=f"sha256-{HEX.upper()}.sig")), False),
    ("tag with unknown suffix", variant(set_detail(image_tag=f"sha256-{HEX}.txt")), False),
    ("not a dict", "sha256-" + HEX + ".sig", False),
    ("no detail", {"source": "aws.ecr"}, False),
    ("cosign .sig tag", variant(set_detail(image_tag=f"sha256-{HEX}.sig")), True),
    ("cosign .att tag", variant(set_detail(image_tag=f"sha256-{HEX}.att")), True),
    ("cosign .sbom tag", variant(set_detail(image_tag=f"sha256-{HEX}.sbom")), True),
    ("referrers fallback tag", variant(set_detail(image_tag=f"sha256-{HEX}")), True),
    ("cosign bundle artifact type", variant(set_detail(artifact_media_type=BUNDLE_MEDIA_TYPE)), True),
    ("oci empty config artifact", variant(set_detail(artifact_media_type="application/vnd.oci.empty.v1+json")), True),
    (
        "artifact manifest",
        variant(set_detail(manifest_media_type="application/vnd.oci.artifact.manifest.v1+json")),
        True,
    ),
    ("helm chart", variant(set_detail(artifact_media_type="application/vnd.cncf.helm.config.v1+json")), True),
]


@pytest.mark.parametrize(("event", "expected"), [(e, x) for _, e, x in ARTIFACTS], ids=[c for c, _, _ in ARTIFACTS])
def test_is_artifact_push(event: Any, expected: bool) -> None:
    assert is_artifact_push(event) is expected


# --- execution names -----------------------------------------------------------------------------------


def test_execution_name_is_deterministic_readable_and_valid() -> None:
    # GIVEN one repository and digest WHEN the name is derived twice
    first = execution_name("podinfo", DIGEST)
    second = execution_name("podinfo", DIGEST)
    # THEN it is the same name, starting with the repository and the digest's first 12 hex digits
    assert first == second
    assert first.startswith("podinfo-7f5b2640fe6f-")
    assert NAME_RE.match(first)
    assert len(first) == len("podinfo-7f5b2640fe6f-") + 16


@pytest.mark.parametrize(
    "repository",
    ["podinfo", "team/podinfo", "a" * 256, "x/" * 100 + "y", "my_repo.with-every.kind__of-separator"],
)
@pytest.mark.parametrize("attempt", [1, 2, 99])
def test_execution_name_is_at_most_80_safe_characters(repository: str, attempt: int) -> None:
    name = execution_name(repository, DIGEST, attempt)
    assert len(name) <= 80
    assert NAME_RE.match(name), name


def test_execution_name_differs_for_another_repository_or_digest() -> None:
    base = execution_name("podinfo", DIGEST)
    names = {
        base,
        execution_name("podinfo2", DIGEST),
        execution_name("team/podinfo", DIGEST),
        execution_name("team-podinfo", DIGEST),  # same slug as team/podinfo: the hash still tells them apart
        execution_name("podinfo", OTHER_DIGEST),
    }
    assert len(names) == 5


def test_execution_names_of_repositories_that_share_a_truncated_slug_still_differ() -> None:
    long_a, long_b = "a" * 30 + "-one", "a" * 30 + "-two"
    assert execution_name(long_a, DIGEST)[:37] == execution_name(long_b, DIGEST)[:37]
    assert execution_name(long_a, DIGEST) != execution_name(long_b, DIGEST)


def test_a_rerelease_attempt_adds_a_suffix_to_the_same_name() -> None:
    base = execution_name("podinfo", DIGEST)
    assert execution_name("podinfo", DIGEST, 1) == base
    assert execution_name("podinfo", DIGEST, 2) == base + "-a2"
    assert execution_name("podinfo", DIGEST, 99) == base + "-a99"


@pytest.mark.parametrize(
    ("digest", "attempt"),
    [
        (DIGEST, 0),
        (DIGEST, -1),
        (DIGEST, 100),
        ("sha256:" + HEX[:60], 1),
        ("sha256:" + HEX.upper(), 1),
        ("latest", 1),
        ("", 1),
    ],
    ids=["attempt 0", "attempt -1", "attempt 100", "60 hex", "uppercase hex", "tag", "empty"],
)
def test_execution_name_refuses_bad_digest_or_attempt(digest: str, attempt: int) -> None:
    with pytest.raises(MalformedEvent) as info:
        execution_name("podinfo", digest, attempt)
    assert type(info.value) is MalformedEvent


def test_fallback_execution_name_is_deterministic_and_independent_of_key_order() -> None:
    # GIVEN one malformed event and the same event with its keys in another order
    event = copy.deepcopy(SAMPLE)
    reordered = dict(reversed(list(event.items())))
    # WHEN named THEN both get the same `rejected-` name of 32 hex digits
    name = fallback_execution_name(event)
    assert name == fallback_execution_name(reordered)
    assert re.fullmatch(r"rejected-[0-9a-f]{32}", name)
    # AND a different event gets a different name
    assert fallback_execution_name(valid_event()) != name


@pytest.mark.parametrize("event", [None, "text", [1, 2], {"a": 1}, {"when": b"bytes are not JSON"}])
def test_fallback_execution_name_names_any_value(event: Any) -> None:
    name = fallback_execution_name(event)
    assert NAME_RE.match(name)
    assert name == fallback_execution_name(copy.deepcopy(event))
