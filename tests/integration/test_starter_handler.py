"""The starter handler (the EventBridge rule's target) against moto (see handler_world.py): the one
execution it starts per push, named by repository and digest, and the re-release."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError
from podrelease.release.actions import Actions
from podrelease.release.events import fallback_execution_name
from podrelease.release.start import blocked_push_name
from tests.conftest import import_handler
from tests.integration.handler_world import (
    ACCOUNT,
    DIGEST,
    EXECUTION_ARN,
    REGION,
    RELEASE_ID,
    REPOSITORY,
    STACK,
    Context,
    Starter,
    push_event,
)


def test_starter_starts_one_execution_named_by_repository_and_digest(starter: Starter) -> None:
    # GIVEN no release of the digest WHEN its push event arrives
    reply = starter.start(push_event())
    # THEN exactly one execution runs, named from repository and digest, with the event as its input
    assert reply == {"started": True, "execution_arn": EXECUTION_ARN, "name": RELEASE_ID}
    assert starter.executions() == [RELEASE_ID]
    assert starter.input_of(RELEASE_ID) == push_event()


def test_starter_given_the_same_push_twice_starts_nothing_more(starter: Starter) -> None:
    starter.start(push_event())
    # WHEN EventBridge delivers the same push again (at-least-once delivery, retries)
    reply = starter.start(push_event())
    # THEN it reports the existing release and the state machine still has one execution
    assert reply == {"started": False, "duplicate": True, "execution_arn": EXECUTION_ARN, "status": "RUNNING"}
    assert starter.executions() == [RELEASE_ID]


def test_a_blocked_digest_pushed_again_starts_a_release_that_fails_fast(starter: Starter, ledger: Any) -> None:
    # GIVEN the digest's release ran (it was rejected) and an operator blocked the digest
    starter.start(push_event())
    Actions(ledger).block(DIGEST, "alice@example.com", "CVE in the base image")
    # WHEN the same digest is pushed again (a new push: a new event id, here a new tag)
    again = push_event(tag="6.9.1-again") | {"id": "0f1e2d3c-0000-4000-8000-000000000001"}
    reply = starter.start(again)
    # THEN a release of its own starts, named from the push, whose first state refuses it (DigestBlocked)
    name = blocked_push_name(REPOSITORY, DIGEST, again["id"])
    assert reply == {"started": True, "execution_arn": EXECUTION_ARN.replace(RELEASE_ID, name), "name": name}
    assert starter.executions() == sorted([RELEASE_ID, name])
    assert starter.input_of(name) == again
    # AND a duplicate delivery of that push starts nothing more
    assert starter.start(again)["duplicate"] is True
    assert starter.executions() == sorted([RELEASE_ID, name])
    # AND once unblocked, a push of the digest is a plain duplicate again (a re-release is `rerelease`)
    Actions(ledger).unblock(DIGEST, "alice@example.com")
    later = push_event(tag="6.9.1-later") | {"id": "0f1e2d3c-0000-4000-8000-000000000002"}
    assert starter.start(later) == {"started": False, "duplicate": True, "execution_arn": EXECUTION_ARN, "status": "RUNNING"}
    assert starter.executions() == sorted([RELEASE_ID, name])


ARTIFACT = {"started": False, "reason": "the push is a signature, attestation or OCI artifact, not an image"}


@pytest.mark.parametrize(
    "event",
    [
        push_event(digest="sha256:" + "5a" * 32, tag=f"sha256-{DIGEST[7:]}.sig"),
        push_event(digest="sha256:" + "5a" * 32, tag=f"sha256-{DIGEST[7:]}.att"),
        push_event(
            digest="sha256:" + "5a" * 32, tag=None, **{"artifact-media-type": "application/vnd.dev.sigstore.bundle.v0.3+json"}
        ),
    ],
    ids=["cosign .sig tag", "cosign .att tag", "sigstore bundle referrer"],
)
def test_starter_ignores_signature_and_artifact_pushes(starter: Starter, event: dict[str, Any]) -> None:
    # WHEN cosign pushes a signature or attestation into the watched repository
    reply = starter.start(event)
    # THEN no release starts
    assert reply == ARTIFACT
    assert starter.executions() == []


@pytest.mark.parametrize(
    ("event", "expected_input"),
    [
        (push_event(repository="other-service"), push_event(repository="other-service")),
        (push_event(digest=None), push_event(digest=None)),
        (
            push_event(padding="x" * 17000),
            {"refused": "EventTooLarge", "size": len(json.dumps(push_event(padding="x" * 17000), separators=(",", ":")))},
        ),
    ],
    ids=["unwatched repository", "no digest", "oversized event"],
)
def test_starter_starts_a_refusal_execution_named_from_the_event_bytes(
    starter: Starter, event: dict[str, Any], expected_input: Any
) -> None:
    # WHEN an event arrives that is not a release
    reply = starter.start(event)
    # THEN one execution starts (its first state refuses the event, visibly), named from the event itself
    name = fallback_execution_name(event)
    assert name.startswith("rejected-")
    assert reply == {
        "started": True,
        "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{name}",
        "name": name,
    }
    assert starter.executions() == [name]
    # AND an oversized event is not passed on: only its size is
    assert starter.input_of(name) == expected_input
    # AND the same event again is a duplicate of that execution
    assert starter.start(event)["duplicate"] is True
    assert starter.executions() == [name]


def test_starter_rerelease_starts_attempt_two_which_normalize_accepts(
    starter: Starter, ledger: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the digest's first release exists
    starter.start(push_event())
    # WHEN an operator asks for a re-release of the same digest
    reply = starter.start({"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": 2})
    # THEN a second execution, suffixed -a2, starts beside the first
    name = f"{RELEASE_ID}-a2"
    assert reply == {"started": True, "execution_arn": f"{EXECUTION_ARN}-a2", "name": name}
    assert starter.executions() == [RELEASE_ID, name]
    given = starter.input_of(name)
    assert given["detail"] == {"result": "SUCCESS", "action-type": "PUSH", "repository-name": REPOSITORY, "image-digest": DIGEST}
    assert (given["account"], given["region"], given["rerelease"]) == (ACCOUNT, REGION, 2)
    # AND the normalize state turns that input into attempt 2 of the release
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    normalize = import_handler("normalize")
    out = normalize.handler({"event": given, "execution": reply["execution_arn"], "execution_name": name}, Context())
    assert (out["release"]["id"], out["release"]["digest"], out["release"]["attempt"], out["release"]["tag"]) == (
        name,
        DIGEST,
        2,
        None,
    )


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_starter_without_a_state_machine_arn_fails_at_import(
    aws: None, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    else:
        monkeypatch.setenv("STATE_MACHINE_ARN", value)
    with pytest.raises(ConfigurationError) as info:
        import_handler("starter")
    assert str(info.value) == (
        "environment variable STATE_MACHINE_ARN is not set; the template sets it for every function that needs it"
    )
