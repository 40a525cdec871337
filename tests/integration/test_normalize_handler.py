"""The normalize handler (the release's first state) against moto (see handler_world.py): the
push turned into the release's facts and settings, or refused with a named error."""

from __future__ import annotations

from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError, DigestBlocked, EventTooLarge, ForeignEvent, InvalidRequest, MalformedEvent
from podrelease.release.actions import Actions
from tests.conftest import import_handler
from tests.integration.handler_world import DIGEST, EXECUTION_ARN, RELEASE, RELEASE_ID, REPOSITORY, Context, push_event


@pytest.fixture
def normalize(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WATCHED_REPOSITORIES", f"{REPOSITORY}, podinfo-canary")
    monkeypatch.setenv("DEPLOY_POLL_SECONDS", "7")
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "900")
    monkeypatch.setenv("WATCH_BACKSTOP_SECONDS", "120")
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "600")
    return import_handler("normalize")


def test_normalize_turns_the_push_into_release_facts_and_settings_from_the_environment(normalize: Any) -> None:
    # WHEN the first state gets the execution input as the ASL passes it
    out = normalize.handler({"event": push_event(), "execution": EXECUTION_ARN, "execution_name": RELEASE_ID}, Context())
    # THEN the release names the exact digest and the execution, and the settings are the template's parameters
    assert out == {"release": RELEASE,
                   "settings": {"poll_seconds": 7, "approval_timeout_seconds": 900, "watch_backstop_seconds": 120,
                                "lock_wait_seconds": 600}}


def test_normalize_keeps_a_person_s_rollback_request(normalize: Any) -> None:
    rollback = {"environment": "dev", "requested_by": "arn:aws:iam::123456789012:user/ops"}
    out = normalize.handler({"event": push_event() | {"rollback": rollback}, "execution": EXECUTION_ARN, "execution_name": RELEASE_ID},
                            Context())
    assert out["release"]["rollback"] == rollback


def test_normalize_settings_default_when_the_environment_leaves_them_out(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    monkeypatch.delenv("DEPLOY_POLL_SECONDS", raising=False)
    monkeypatch.delenv("APPROVAL_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("WATCH_BACKSTOP_SECONDS", raising=False)
    monkeypatch.delenv("LOCK_WAIT_SECONDS", raising=False)
    out = import_handler("normalize").handler(
        {"event": push_event(), "execution": EXECUTION_ARN, "execution_name": RELEASE_ID}, Context()
    )
    assert out["settings"] == {"poll_seconds": 30, "approval_timeout_seconds": 86400, "watch_backstop_seconds": 900,
                               "lock_wait_seconds": 900}


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (
            push_event(repository="other-service"),
            ForeignEvent,
            "repository 'other-service' is not watched (watched: podinfo, podinfo-canary)",
        ),
        (
            push_event(digest=None),
            MalformedEvent,
            "image-digest None is not sha256:<64 hex>; a release needs the exact digest, never a tag alone",
        ),
        (
            push_event(digest="latest"),
            MalformedEvent,
            "image-digest 'latest' is not sha256:<64 hex>; a release needs the exact digest, never a tag alone",
        ),
        (
            {"refused": "EventTooLarge", "size": 20480},
            EventTooLarge,
            "event of 20480 bytes refused; an ECR push event is never over 16384",
        ),
        (
            push_event(tag=f"sha256-{DIGEST[7:]}.sig"),
            ForeignEvent,
            "the push is a signature, attestation or other OCI artifact, not an image",
        ),
        (
            push_event(result="FAILURE"),
            ForeignEvent,
            "not a successful push (action-type='PUSH', result='FAILURE')",
        ),
        (None, MalformedEvent, "expected an EventBridge event object, got NoneType"),
    ],
    ids=[
        "foreign repository",
        "no digest",
        "tag instead of digest",
        "oversize marker",
        "signature push",
        "failed push",
        "no event",
    ],
)
def test_normalize_refuses_what_is_not_a_release_with_a_named_error(
    normalize: Any, event: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        normalize.handler({"event": event, "execution": EXECUTION_ARN, "execution_name": "rejected-0123"}, Context())
    assert type(info.value) is error
    assert str(info.value) == message


@pytest.mark.parametrize("variable", ["DEPLOY_POLL_SECONDS", "APPROVAL_TIMEOUT_SECONDS"])
def test_normalize_with_a_non_integer_setting_fails_at_import(ledger: Any, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    monkeypatch.setenv("DEPLOY_POLL_SECONDS", "30")
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "86400")
    monkeypatch.setenv(variable, "thirty")
    with pytest.raises(ConfigurationError) as info:
        import_handler("normalize")
    assert str(info.value) == f"environment variable {variable} must be an integer, got 'thirty'"


# --- blocked digests and operators' rollbacks (podrelease block / rollback) -------------------------------


def test_normalize_refuses_a_blocked_digest_by_name_until_it_is_unblocked(normalize: Any, ledger: Any) -> None:
    # GIVEN an operator blocked the digest
    actions = Actions(ledger)
    actions.block(DIGEST, "arn:aws:iam::123456789012:user/carol", "CVE-2026-0001", now=1_800_000_000)
    request = {"event": push_event(), "execution": EXECUTION_ARN, "execution_name": RELEASE_ID}
    # WHEN its push reaches the first state THEN it is DigestBlocked, naming who blocked it, when and why
    with pytest.raises(DigestBlocked) as info:
        normalize.handler(request, Context())
    assert str(info.value) == (f"{DIGEST} is blocked by arn:aws:iam::123456789012:user/carol since 2027-01-15T08:00:00Z "
                               "(CVE-2026-0001); `podrelease unblock` it to release it")
    # WHEN it is unblocked THEN the same push is a release again, and both actions are in the ledger
    assert actions.unblock(DIGEST, "arn:aws:iam::123456789012:user/dave", now=1_800_000_060) is True
    assert normalize.handler(request, Context())["release"] == RELEASE
    assert [(a["action"], a["who"], a["digest"]) for a in actions.history(digest=DIGEST)] == [
        ("block", "arn:aws:iam::123456789012:user/carol", DIGEST),
        ("unblock", "arn:aws:iam::123456789012:user/dave", DIGEST),
    ]


def test_normalize_carries_an_operators_rollback_into_the_release(normalize: Any) -> None:
    rollback = {"environment": "prod", "requested_by": "arn:aws:iam::123456789012:user/carol", "replaces": "podinfo-bad"}
    out = normalize.handler({"event": push_event() | {"rollback": rollback}, "execution": EXECUTION_ARN,
                             "execution_name": RELEASE_ID}, Context())
    assert out["release"] == RELEASE | {"rollback": rollback}


def test_normalize_refuses_a_rollback_into_an_unknown_environment(normalize: Any) -> None:
    with pytest.raises(InvalidRequest):
        normalize.handler({"event": push_event() | {"rollback": {"environment": "staging"}}, "execution": EXECUTION_ARN,
                           "execution_name": RELEASE_ID}, Context())
