"""Rotation of the approval-link signing key against moto: four idempotent steps, a stage guard, grace.

Links signed before one rotation still verify (until they expire); links signed two rotations ago
do not. `now` is passed explicitly so a rotation interval longer than the approval TTL needs no sleep.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.secretsmanager.models import secretsmanager_backends

from podrelease.approval.keys import KEY_CACHE_SECONDS, KeyRing, parse_key_secret
from podrelease.approval.tokens import mint_token, verify_token
from podrelease.core import obs
from podrelease.core.errors import TokenExpired, TokenInvalid
from podrelease.rotation import approval_key as keyrotation
from podrelease.rotation.approval_key import RotationError, RotationTestFailed, RotationTooSoon, rotate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

TTL = 3600
GRACE = TTL + KEY_CACHE_SECONDS
STEPS = keyrotation.STEPS
FACTS: dict[str, Any] = {
    "release_id": "podinfo-rot-1",
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:release:podinfo-rot-1",
    "digest": "sha256:" + "a" * 64,
    "approver": "alice@example.com",
}
INITIAL = {"kid": "v1", "key": base64.b64encode(b"k" * 48).decode()}


@pytest.fixture
def sm(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="stack/approval-signing-key", SecretString=json.dumps(INITIAL))
        yield client


SECRET = "stack/approval-signing-key"


def _start(sm: Any, token: str) -> None:
    """What RotateSecret does before invoking the function: an AWSPENDING version id with no value yet.

    moto's own rotate_secret either invokes the function in Docker or, without one, completes the
    rotation itself with an empty value, so the placeholder is put into moto's backend directly.
    """
    secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].secrets[SECRET]
    secret.remove_version_stages_from_old_versions(["AWSPENDING"])
    secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
    secret.rotation_enabled = True


def _rotate(sm: Any, token: str, now: float, *, twice: bool = False) -> None:
    _start(sm, token)
    for step in STEPS:
        for _ in range(2 if twice else 1):
            rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": step}, ttl_seconds=TTL, now=now)


def _ring(sm: Any) -> KeyRing:
    return parse_key_secret(sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"])


def _link(ring: KeyRing, expires_at: float) -> str:
    return mint_token(ring.signing_key, ring.current, expires_at=int(expires_at), **FACTS)


def _stages(sm: Any) -> dict[str, list[str]]:
    return {k: v for k, v in sm.describe_secret(SecretId=SECRET)["VersionIdsToStages"].items() if v}


def test_rotating_twice_keeps_links_from_one_rotation_ago_until_they_expire(sm: Any) -> None:
    t0 = time.time() + GRACE + 1  # the initial version was created "long enough" ago
    link0 = _link(_ring(sm), t0 + TTL)
    _rotate(sm, "00000000-0000-4000-8000-000000000001", t0)
    ring1 = _ring(sm)
    assert ring1.current == keyrotation.new_kid("00000000-0000-4000-8000-000000000001")
    assert set(ring1.keys) == {"v1", ring1.current}
    assert verify_token(link0, ring1.keys, t0 + 10).rid == FACTS["release_id"]  # grace: the old link verifies
    link1 = _link(ring1, t0 + TTL)
    with pytest.raises(TokenExpired):
        verify_token(link0, ring1.keys, t0 + TTL + 1)  # ... until it expires

    t1 = t0 + GRACE + 1
    _rotate(sm, "00000000-0000-4000-8000-000000000002", t1 + time.time() - t0)
    ring2 = _ring(sm)
    assert set(ring2.keys) == {ring1.current, ring2.current}
    assert verify_token(link1, ring2.keys, t0 + 10).kid == ring1.current  # one rotation ago: verifies
    with pytest.raises(TokenInvalid, match="unknown key version 'v1'"):
        verify_token(link0, ring2.keys, t0 + 10)  # two rotations ago: refused even before its expiry
    assert list(_stages(sm).values()).count(["AWSCURRENT"]) == 1
    assert not any("AWSPENDING" in s for s in _stages(sm).values())


def test_each_step_twice_ends_with_one_current_and_no_pending(sm: Any) -> None:
    token = "00000000-0000-4000-8000-000000000003"
    now = time.time() + GRACE + 1
    _start(sm, token)
    rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": "createSecret"}, ttl_seconds=TTL, now=now)
    first = sm.get_secret_value(SecretId=SECRET, VersionId=token, VersionStage="AWSPENDING")["SecretString"]
    rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": "createSecret"}, ttl_seconds=TTL, now=now)
    assert sm.get_secret_value(SecretId=SECRET, VersionId=token)["SecretString"] == first  # not regenerated
    for step in STEPS[1:]:
        for _ in range(2):
            rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": step}, ttl_seconds=TTL, now=now)
    assert _stages(sm)[token] == ["AWSCURRENT"]
    assert sum("AWSCURRENT" in s for s in _stages(sm).values()) == 1
    assert not any("AWSPENDING" in s for s in _stages(sm).values())
    assert _ring(sm).current == keyrotation.new_kid(token)
    # Every step again after the rotation finished changes nothing.
    for step in STEPS:
        rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": step}, ttl_seconds=TTL, now=now)
    assert sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"] == first


@pytest.mark.parametrize("step", STEPS)
def test_unknown_token_is_refused_and_changes_nothing(sm: Any, step: str) -> None:
    _start(sm, "00000000-0000-4000-8000-000000000004")
    before = sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"]
    with pytest.raises(RotationError, match="not a version of secret"):
        rotate(sm, {"SecretId": SECRET, "ClientRequestToken": "nope-" + "0" * 32, "Step": step}, ttl_seconds=TTL)
    assert sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"] == before


def test_a_token_that_is_neither_pending_nor_current_is_refused(sm: Any) -> None:
    old = sm.describe_secret(SecretId=SECRET)["VersionIdsToStages"]
    old_version = next(v for v, s in old.items() if "AWSCURRENT" in s)
    _rotate(sm, "00000000-0000-4000-8000-000000000005", time.time() + GRACE + 1)
    # The first version is now AWSPREVIOUS.
    with pytest.raises(RotationError, match="is not staged AWSPENDING"):
        rotate(sm, {"SecretId": SECRET, "ClientRequestToken": old_version, "Step": "finishSecret"}, ttl_seconds=TTL)


def test_rotation_before_the_ttl_has_passed_is_refused(sm: Any) -> None:
    token = "00000000-0000-4000-8000-000000000006"
    _start(sm, token)
    before = sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"]
    with pytest.raises(RotationTooSoon, match="APPROVAL_TTL_SECONDS"):
        rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": "createSecret"}, ttl_seconds=TTL)
    assert sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"] == before
    with pytest.raises(Exception, match=r"ResourceNotFound|not found|AWSPENDING"):
        sm.get_secret_value(SecretId=SECRET, VersionId=token, VersionStage="AWSPENDING")["SecretString"]


def test_test_step_fails_on_a_bad_pending_value_and_current_stays(sm: Any) -> None:
    token = "00000000-0000-4000-8000-000000000007"
    _start(sm, token)
    bad = {"kid": "v1", "key": base64.b64encode(b"z" * 48).decode(), "previous": INITIAL}  # same kid as current
    sm.put_secret_value(SecretId=SECRET, ClientRequestToken=token, SecretString=json.dumps(bad), VersionStages=["AWSPENDING"])
    with pytest.raises(RotationTestFailed):
        rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": "testSecret"}, ttl_seconds=TTL)
    assert json.loads(sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"]) == INITIAL


def test_malformed_event_is_refused(sm: Any) -> None:
    with pytest.raises(RotationError, match="SecretId, ClientRequestToken and Step"):
        rotate(sm, {"SecretId": SECRET, "Step": "rotate"}, ttl_seconds=TTL)


def test_handler_runs_a_step_and_logs_no_key(
    sm: Any, monkeypatch: pytest.MonkeyPatch, load_handler: Callable[[str], ModuleType]
) -> None:
    monkeypatch.setenv("APPROVAL_TTL_SECONDS", "300")
    app = load_handler("rotate_approval_key")
    printed = io.StringIO()
    handlers = [h for h in logging.getLogger(obs.SERVICE).handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(printed) for h in handlers]
    token = "00000000-0000-4000-8000-000000000008"
    _start(sm, token)
    try:
        with pytest.raises(RotationTooSoon):  # the secret was created a moment ago
            app.handler({"SecretId": SECRET, "ClientRequestToken": token, "Step": "createSecret"}, _context())
        app.handler({"SecretId": SECRET, "ClientRequestToken": token, "Step": "setSecret"}, _context())
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
    out = printed.getvalue()
    assert "setSecret: nothing to set" in out
    assert INITIAL["key"] not in out


def _context() -> Any:
    from tests.conftest import FakeLambdaContext

    return FakeLambdaContext(function_name="rotate-approval-key")


def test_configuration_test_on_a_copy_of_current_passes_and_changes_nothing(sm: Any) -> None:
    """RotateSecret with RotateImmediately false runs only testSecret, on a copy of AWSCURRENT."""
    token = "00000000-0000-4000-8000-000000000009"
    _start(sm, token)
    secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].secrets[SECRET]
    secret.versions[token]["secret_string"] = json.dumps(INITIAL)
    rotate(sm, {"SecretId": SECRET, "ClientRequestToken": token, "Step": "testSecret"}, ttl_seconds=TTL)
    assert json.loads(sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"]) == INITIAL
