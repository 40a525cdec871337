"""Release-level rules: `podrelease.release.start`, `.normalize` and `.summary`.

- `normalize`: GIVEN the execution's input WHEN normalized THEN the release facts every later state
  uses, or the named refusal;
- `summarize`: GIVEN a finished execution's state WHEN summarized THEN the exact record, subject and
  notification lines (what completed, where it stopped, why);
- `start_release` against moto Step Functions in process: GIVEN an ECR event WHEN the starter runs
  (once, twice, for an artifact, for junk) THEN exactly the expected executions exist, read back
  with `list_executions` / `describe_execution`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from podrelease.core.errors import EventTooLarge, ForeignEvent, MalformedEvent
from podrelease.release.events import MAX_EVENT_BYTES, event_size, execution_name, fallback_execution_name
from podrelease.release.normalize import normalize
from podrelease.release.start import start_release
from podrelease.release.summary import summarize
from tests.conftest import FAKE_CREDENTIALS

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"
ACCOUNT = "123456789012"
SAMPLE = json.loads((Path(__file__).parents[1] / "vectors" / "events" / "ecr-image-action-push.awsdocs.json").read_text())
DIGEST = "sha256:" + "ab12" * 16
REPOSITORY = "podinfo"
WATCHED = (REPOSITORY,)
SETTINGS = {"grace_seconds": 30, "lease_seconds": 3600}
SAMPLE_DIGEST = SAMPLE["detail"]["image-digest"]  # 60 hex digits: malformed
NAME = execution_name(REPOSITORY, DIGEST)
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:release:{NAME}"


def push_event(**detail: Any) -> dict[str, Any]:
    """The AWS-docs sample, moved to our account/region/repository with a 64-hex digest."""
    event = copy.deepcopy(SAMPLE)
    event["account"], event["region"] = ACCOUNT, REGION
    event["detail"].update({"repository-name": REPOSITORY, "image-digest": DIGEST, "image-tag": "6.7.0"})
    event["detail"].update({k.replace("_", "-"): v for k, v in detail.items()})
    return event


# --- normalize -----------------------------------------------------------------------------------------


def test_normalize_turns_a_push_into_the_release_facts() -> None:
    # GIVEN a valid push WHEN normalized with the execution's arn and name
    out = normalize(push_event(), EXECUTION_ARN, NAME, WATCHED, SETTINGS)
    # THEN the release is the push plus its id (the execution name) and attempt 1; settings pass through
    assert out == {
        "release": {
            "account": ACCOUNT,
            "region": REGION,
            "repository": REPOSITORY,
            "digest": DIGEST,
            "tag": "6.7.0",
            "event_id": "13cde686-328b-6117-af20-0e5566167482",
            "time": "2019-11-16T01:54:34Z",
            "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{DIGEST}",
            "id": NAME,
            "execution": EXECUTION_ARN,
            "attempt": 1,
        },
        "settings": SETTINGS,
    }


def test_normalize_carries_the_rerelease_attempt() -> None:
    event = push_event() | {"rerelease": 2}
    out = normalize(event, EXECUTION_ARN + "-a2", NAME + "-a2", WATCHED, SETTINGS)
    assert out["release"]["attempt"] == 2
    assert out["release"]["id"] == NAME + "-a2"


def test_normalize_refuses_the_oversize_marker_with_its_size() -> None:
    # GIVEN the marker the starter puts in place of an oversized event
    with pytest.raises(EventTooLarge) as info:
        normalize({"refused": "EventTooLarge", "size": 20000}, EXECUTION_ARN, NAME, WATCHED, SETTINGS)
    # THEN the refusal is EventTooLarge and states both sizes
    assert str(info.value) == f"event of 20000 bytes refused; an ECR push event is never over {MAX_EVENT_BYTES}"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (push_event(image_digest=SAMPLE_DIGEST), MalformedEvent),
        (push_event(repository_name="elsewhere"), ForeignEvent),
        (push_event(action_type="DELETE"), ForeignEvent),
        ("not an event", MalformedEvent),
        ({"refused": "EventTooLarge", "size": 1}, EventTooLarge),
    ],
    ids=["60-hex digest", "unwatched repository", "delete", "string", "oversize marker"],
)
def test_normalize_refuses_what_is_not_a_release(event: Any, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info:
        normalize(event, EXECUTION_ARN, NAME, WATCHED, SETTINGS)
    assert type(info.value) is expected


# --- summarize -----------------------------------------------------------------------------------------

RELEASE = {"id": NAME, "repository": REPOSITORY, "digest": DIGEST}
SHORT = DIGEST[:19]  # sha256: and 12 hex digits


def test_summarize_a_release_that_reached_prod() -> None:
    # GIVEN the state of a release that passed every stage
    state = {
        "release": RELEASE,
        "evidence": {"verified": True},
        "dev": {"deployment": {"status": "Succeeded"}},
        "approval": {"approved_by": "alice@example.com", "decided_at": "2026-11-26T10:00:00Z"},
        "promotion": {"digest": DIGEST},
        "prod": {"deployment": {"status": "Succeeded"}},
    }
    # WHEN summarized
    out = summarize("SUCCEEDED", state, NAME, console_url="https://console.example/exec")
    # THEN the record lists every stage and no stop; the message has no failure lines
    assert out["record"] == {
        "outcome": "SUCCEEDED",
        "release_id": NAME,
        "repository": REPOSITORY,
        "digest": DIGEST,
        "stages_done": ["verify", "deploy dev", "approval", "promote", "deploy prod"],
        "stopped_at": None,
        "error": None,
        "cause": None,
        "evidence": {"verified": True},
        "approved_by": "alice@example.com",
        "approved_at": "2026-11-26T10:00:00Z",
    }
    assert out["subject"] == f"podinfo {SHORT} released to prod [{NAME}]"
    assert out["message"].splitlines() == [
        f"Release {NAME} released to prod.",
        f"Image: {REPOSITORY}@{DIGEST}",
        "Stages completed: verify, deploy dev, approval, promote, deploy prod",
        "Approved by alice@example.com at 2026-11-26T10:00:00Z",
        f"Correlation id: {NAME}",
        "Execution: https://console.example/exec",
    ]


def test_summarize_a_release_that_failed_while_deploying_to_dev() -> None:
    # GIVEN a verified release whose dev deployment was still in progress when a Lambda task failed
    lambda_cause = {
        "errorMessage": "dev deployment d-ABC123 failed and was rolled back: ALARM_ACTIVE: 5xx alarm",
        "errorType": "DeploymentFailed",
        "stackTrace": ["  File app.py, line 1"],
    }
    state = {
        "release": RELEASE,
        "evidence": {"verified": True},
        "dev": {"deployment": {"id": "d-ABC123", "status": "InProgress"}},
        "error": {"Error": "DeploymentFailed", "Cause": json.dumps(lambda_cause)},
    }
    # WHEN summarized as FAILED
    out = summarize("FAILED", state, NAME)
    # THEN it stopped at "deploy dev" (an in-progress deployment is not done) with the Lambda's errorMessage
    assert out["record"] == {
        "outcome": "FAILED",
        "release_id": NAME,
        "repository": REPOSITORY,
        "digest": DIGEST,
        "stages_done": ["verify"],
        "stopped_at": "deploy dev",
        "error": "DeploymentFailed",
        "cause": lambda_cause["errorMessage"],
        "evidence": {"verified": True},
    }
    assert out["subject"] == f"podinfo {SHORT} failed [{NAME}]"
    assert out["message"].splitlines() == [
        f"Release {NAME} failed.",
        f"Image: {REPOSITORY}@{DIGEST}",
        "Stages completed: verify",
        "Stopped at: deploy dev",
        f"Reason: DeploymentFailed: {lambda_cause['errorMessage']}",
        "Nothing from this release is left serving traffic: in-flight deployments were rolled back.",
        f"Correlation id: {NAME}",
    ]
    assert "stackTrace" not in out["message"]


def test_summarize_a_release_failed_after_dev_says_dev_keeps_it() -> None:
    # GIVEN dev's canary succeeded and the approver rejected the promotion
    state = {"release": RELEASE, "evidence": {"verified": True}, "dev": {"deployment": {"status": "Succeeded"}},
             "error": {"Error": "ApprovalRejected", "Cause": "alice@example.com rejected the release"}}
    out = summarize("FAILED", state, NAME)
    assert out["record"]["stages_done"] == ["verify", "deploy dev"]
    assert out["record"]["stopped_at"] == "approval"
    # THEN the email does not claim dev was rolled back: it keeps the release, prod is untouched
    assert "dev keeps running this release (its canary passed); prod was left as it was" in out["message"]
    assert "Nothing from this release is left serving traffic" not in out["message"]


def test_summarize_keeps_a_plain_text_cause_as_it_is() -> None:
    state = {"release": RELEASE, "error": {"Error": "States.Timeout", "Cause": "the approval timed out"}}
    out = summarize("FAILED", state, NAME)
    assert out["record"]["cause"] == "the approval timed out"
    assert out["record"]["stopped_at"] == "verify"


def test_summarize_a_rejected_event_uses_the_execution_name() -> None:
    # GIVEN a refused event: no release was ever normalized
    rejected = fallback_execution_name({"source": "aws.s3"})
    cause = json.dumps({"errorMessage": "not an ECR image action", "errorType": "ForeignEvent"})
    state = {"error": {"Error": "ForeignEvent", "Cause": cause}}
    # WHEN summarized
    out = summarize("REJECTED", state, rejected)
    # THEN the execution name stands in for the release id, and nothing is claimed done
    assert out["record"] == {
        "outcome": "REJECTED",
        "release_id": rejected,
        "repository": None,
        "digest": None,
        "stages_done": [],
        "stopped_at": "normalize",
        "error": "ForeignEvent",
        "cause": "not an ECR image action",
    }
    assert out["subject"] == f"podinfo unknown digest refused [{rejected}]"
    assert out["message"].splitlines() == [
        f"Release {rejected} refused.",
        "Image: ?@unknown digest",
        "Stages completed: none",
        "Stopped at: normalize",
        "Reason: ForeignEvent: not an ECR image action",
        "Nothing was deployed: the event was refused before any stage ran.",
        f"Correlation id: {rejected}",
    ]


def test_summarize_keeps_the_subject_under_sns_limit() -> None:
    # SNS takes subjects under 100 characters only (more cases: tests/unit/test_notify.py)
    out = summarize("FAILED", {"release": RELEASE | {"id": "x" * 200}}, NAME)
    assert out["subject"] == f"podinfo {SHORT} failed [{'x' * 59}...]"


# --- start_release against moto Step Functions ------------------------------------------------------------

PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(name="release", definition=PASS_MACHINE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn")[
            "stateMachineArn"
        ]
        yield client, arn


def executions(client: Any, arn: str) -> list[dict[str, Any]]:
    return client.list_executions(stateMachineArn=arn)["executions"]


def test_a_push_starts_one_execution_named_after_repository_and_digest(sfn: tuple[Any, str]) -> None:
    client, arn = sfn
    event = push_event()
    # WHEN the starter sees the push
    out = start_release(client, arn, event, WATCHED)
    # THEN exactly one execution exists, with the deterministic name and the event as its input
    assert out == {"started": True, "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:release:{NAME}", "name": NAME}
    assert [e["name"] for e in executions(client, arn)] == [NAME]
    assert json.loads(client.describe_execution(executionArn=out["execution_arn"])["input"]) == event


def test_the_same_push_again_is_a_duplicate_and_starts_nothing(sfn: tuple[Any, str]) -> None:
    client, arn = sfn
    # GIVEN a push that already started its release
    first = start_release(client, arn, push_event(), WATCHED)
    # WHEN EventBridge delivers the same event again (and a second event for the same digest, new id)
    again = start_release(client, arn, push_event(), WATCHED)
    retagged = push_event(image_tag="latest") | {"id": "another-delivery"}
    other = start_release(client, arn, retagged, WATCHED)
    # THEN both are duplicates of the first, and there is still exactly one execution
    assert again["duplicate"] is True
    assert again["started"] is False
    assert again["execution_arn"] == first["execution_arn"]
    assert again["status"] == "RUNNING"
    assert other["duplicate"] is True
    assert [e["name"] for e in executions(client, arn)] == [NAME]


@pytest.mark.parametrize(
    "detail",
    [
        {"image_tag": "sha256-" + DIGEST[7:] + ".sig"},
        {"image_tag": "sha256-" + DIGEST[7:] + ".att"},
        {"artifact_media_type": "application/vnd.dev.sigstore.bundle.v0.3+json"},
    ],
    ids=["sig", "att", "bundle"],
)
def test_an_artifact_push_starts_nothing(sfn: tuple[Any, str], detail: dict[str, str]) -> None:
    client, arn = sfn
    out = start_release(client, arn, push_event(**detail), WATCHED)
    assert out == {"started": False, "reason": "the push is a signature, attestation or OCI artifact, not an image"}
    assert executions(client, arn) == []


@pytest.mark.parametrize(
    "event",
    [push_event(image_digest=SAMPLE_DIGEST), push_event(repository_name="elsewhere"), {"hello": "world"}, ["not", "a", "dict"]],
    ids=["60-hex digest", "unwatched", "junk dict", "list"],
)
def test_a_malformed_or_foreign_event_starts_a_rejected_execution(sfn: tuple[Any, str], event: Any) -> None:
    client, arn = sfn
    # WHEN the starter sees an event that is not a release
    out = start_release(client, arn, event, WATCHED)
    # THEN one execution named from the event's bytes holds the event, so the refusal is visible
    name = fallback_execution_name(event)
    assert out == {"started": True, "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:release:{name}", "name": name}
    assert name.startswith("rejected-")
    assert [e["name"] for e in executions(client, arn)] == [name]
    assert json.loads(client.describe_execution(executionArn=out["execution_arn"])["input"]) == event
    # AND the same junk again starts nothing more
    assert start_release(client, arn, event, WATCHED)["duplicate"] is True
    assert len(executions(client, arn)) == 1


def test_a_rerelease_starts_a_second_execution_with_an_attempt_suffix(sfn: tuple[Any, str]) -> None:
    client, arn = sfn
    # GIVEN a digest that was released once
    start_release(client, arn, push_event(), WATCHED)
    # WHEN someone asks for a deliberate re-release, attempt 2
    out = start_release(client, arn, {"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": 2}, WATCHED)
    # THEN a second execution exists, named with -a2, whose input normalizes to attempt 2 of the same image
    assert out["started"] is True
    assert out["name"] == NAME + "-a2"
    assert sorted(e["name"] for e in executions(client, arn)) == [NAME, NAME + "-a2"]
    payload = json.loads(client.describe_execution(executionArn=out["execution_arn"])["input"])
    release = normalize(payload, out["execution_arn"], out["name"], WATCHED, SETTINGS)["release"]
    assert (release["repository"], release["digest"], release["attempt"]) == (REPOSITORY, DIGEST, 2)
    assert release["image_uri"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{DIGEST}"
    # AND asking for attempt 2 again is a duplicate
    again = start_release(client, arn, {"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": 2}, WATCHED)
    assert again["duplicate"] is True
    assert len(executions(client, arn)) == 2


def test_a_rerelease_with_a_bad_digest_is_refused_before_anything_starts(sfn: tuple[Any, str]) -> None:
    client, arn = sfn
    with pytest.raises(MalformedEvent):
        start_release(client, arn, {"action": "rerelease", "repository": REPOSITORY, "digest": "latest"}, WATCHED)
    assert executions(client, arn) == []


def test_an_oversized_event_starts_an_execution_whose_input_is_the_refusal_marker(sfn: tuple[Any, str]) -> None:
    client, arn = sfn
    # GIVEN a push padded past the size limit
    event = push_event()
    event["resources"] = ["x" * MAX_EVENT_BYTES]
    size = event_size(event)
    assert size > MAX_EVENT_BYTES
    # WHEN the starter sees it
    out = start_release(client, arn, event, WATCHED)
    # THEN the execution's input is only the marker (the event itself is not carried), which normalize refuses
    assert out["name"] == fallback_execution_name(event)
    payload = json.loads(client.describe_execution(executionArn=out["execution_arn"])["input"])
    assert payload == {"refused": "EventTooLarge", "size": size}
    with pytest.raises(EventTooLarge):
        normalize(payload, out["execution_arn"], out["name"], WATCHED, SETTINGS)
