"""What the approval page refuses, and how it answers when a service it needs fails, against moto
(see approval_world.py): a clear status and page, no decision recorded, the release still waiting."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from podrelease.approval.tokens import mint_token
from tests.integration.approval_world import (
    DIGEST,
    OTHER_DIGEST,
    REGION,
    RELEASE_ID,
    SAME_ORIGIN,
    SIGNING_KEY,
    Context,
    World,
    assert_security_headers,
)

if TYPE_CHECKING:
    from collections.abc import Callable


# --- refusals -----------------------------------------------------------------------------------
def forged(world: World, execution: str) -> str:
    return mint_token(
        b"\x01" * 32,
        "k1",
        release_id=RELEASE_ID,
        execution_arn=execution,
        digest=DIGEST,
        approver="alice@example.com",
        expires_at=int(time.time()) + 600,
    )


def genuine(execution: str, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "release_id": RELEASE_ID,
        "execution_arn": execution,
        "digest": DIGEST,
        "approver": "alice@example.com",
        "expires_at": int(time.time()) + 600,
    }
    claims.update(overrides)
    return mint_token(SIGNING_KEY, "k1", **claims)


REFUSALS: list[tuple[str, Callable[[World, str], str], int, str]] = [
    ("forged", forged, 403, "not valid"),
    (
        "tampered link",
        lambda w, _e: w.links()["alice@example.com"][:-3]
        + ("AAA" if not w.links()["alice@example.com"].endswith("AAA") else "BBB"),
        403,
        "not valid",
    ),
    ("expired", lambda _w, e: genuine(e, expires_at=int(time.time()) - 1), 410, "expired"),
    ("another release's digest", lambda _w, e: genuine(e, digest=OTHER_DIGEST), 403, "another execution, digest"),
    ("another execution", lambda _w, e: genuine(e + "-other"), 403, "another execution, digest"),
    ("not an approver", lambda _w, e: genuine(e, approver="mallory@example.com"), 403, "approver"),
    ("unknown release", lambda _w, e: genuine(e, release_id="podinfo-never-requested"), 404, "no pending approval"),
]


@pytest.mark.parametrize(("case", "make", "status", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_refusals(
    pending: tuple[World, str, str],
    case: str,
    make: Callable[[World, str], str],
    status: int,
    says: str,
    method: str,
) -> None:
    world, execution, _ = pending
    token = make(world, execution)
    before = world.record()

    response = world.page("GET", {"t": token}) if method == "GET" else world.decide(token, "approve")

    assert response["statusCode"] == status, case
    assert says in response["body"]
    assert 'name="decision"' not in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


@pytest.mark.parametrize(
    "raw_body",
    [
        "",
        "decision=approve",  # no token
        "t=abc&decision=maybe",
        "t=abc&t=def&decision=approve",
        "%%%garbage",
        "t=" + "A" * 9000 + "&decision=approve",
    ],
    ids=["empty", "no token", "unknown decision", "two tokens", "garbage", "oversized"],
)
def test_malformed_form_is_400(pending: tuple[World, str, str], raw_body: str) -> None:
    world, execution, _ = pending
    before = world.record()
    response = world.page("POST", raw_body=raw_body)
    assert response["statusCode"] == 400
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def test_a_base64_body_that_is_not_utf8_is_400(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    before = world.record()
    event = {
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN},
        "requestContext": {"stage": "$default", "http": {"method": "POST", "path": "/"}},
        "isBase64Encoded": True,
        "body": base64.b64encode(b"t=\xff\xfe&decision=approve").decode(),
    }

    response = world.page_app.handler(event, Context())

    assert response["statusCode"] == 400
    assert "The form could not be read" in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


# --- the service failing ------------------------------------------------------------------------
def test_an_unreadable_signing_key_is_500_and_decides_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["alice@example.com"]
    before = world.record()
    boto3.client("secretsmanager", region_name=REGION).delete_secret(SecretId=world.secret_arn, ForceDeleteWithoutRecovery=True)

    cookies, nonce = world.crafted("alice@example.com", token)
    response = world.page("POST", form={"t": token, "n": nonce, "decision": "approve"}, cookies=cookies)  # reads the key now

    assert response["statusCode"] == 500
    assert "The approval service is misconfigured" in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def test_an_unreachable_ledger_is_503_and_decides_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["alice@example.com"]
    before = world.record()
    cookies = world.sign_in("alice@example.com")
    nonce = world.nonce(token, cookies)
    stubber = Stubber(world.page_app.approvals.store.table.meta.client)
    stubber.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException", http_status_code=400)

    with stubber:
        response = world.page("POST", form={"t": token, "n": nonce, "decision": "approve"}, cookies=cookies)

    stubber.assert_no_pending_responses()
    assert response["statusCode"] == 503
    assert "The ledger could not be reached" in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"
