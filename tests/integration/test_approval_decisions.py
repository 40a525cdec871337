"""The approval page's decisions against moto (see approval_world.py): what a link shows, what a
decision records and how it resumes the release, links across a key rotation, and the logs of a
whole approval holding no secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber

from podrelease.approval.store import iso
from podrelease.approval.tokens import mint_token
from podrelease.core import obs
from tests.integration.approval_world import (
    DIGEST,
    REGION,
    RELEASE_ID,
    REPOSITORY,
    SIGNING_KEY_B64,
    World,
    assert_security_headers,
    token_claims,
)


# --- GET ----------------------------------------------------------------------------------------
def test_get_without_a_session_sends_to_sign_in_and_changes_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["bob@example.com"]
    before = world.record()

    responses = [world.page("GET", {"t": token}) for _ in range(2)]  # a link scanner, then the person

    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"
    for response in responses:
        assert response["statusCode"] == 302
        assert_security_headers(response)
        target = urlsplit(response["headers"]["Location"])
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert f"{target.scheme}://{target.netloc}" == world.issuer
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43
        assert query["redirect_uri"] == "https://approve.example.test/callback"
        assert query["nonce"]
        assert query["state"]
        assert 'name="decision"' not in response["body"]
        (login,) = response["cookies"]
        assert login.startswith("approval_login=")
        assert "; HttpOnly" in login
        assert "; Secure" in login  # the page is served over HTTPS
        assert "; SameSite=Lax" in login  # the provider's redirect back is cross-site


def test_signed_in_get_shows_the_summary_and_changes_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["bob@example.com"]
    cookies = world.sign_in("bob@example.com")
    before = world.record()

    response = world.page("GET", {"t": token}, cookies=cookies)

    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"
    assert response["statusCode"] == 200
    assert_security_headers(response)
    page = response["body"]
    for fact in (RELEASE_ID, REPOSITORY, DIGEST, execution, "bob@example.com", "cosign-2025", "Time left", "Votes"):
        assert fact in page
    assert "spdx &lt;b&gt;ok&lt;/b&gt;" in page  # evidence is escaped, not markup
    assert "<b>ok</b>" not in page
    assert "<details>" in page  # the raw evidence is folded
    assert page.index('name="decision" value="approve"') < page.index("At a glance")  # the buttons come first
    assert f'<input type="hidden" name="t" value="{token}">' in page
    assert 'name="decision" value="reject"' in page
    assert re.search(r'<input type="hidden" name="n" value="[^"]+">', page)


def test_get_without_token_is_400(pending: tuple[World, str, str]) -> None:
    world, _, _ = pending
    response = world.page("GET")
    assert response["statusCode"] == 400
    assert "full link from the approval email" in response["body"]
    assert_security_headers(response)


def test_other_methods_are_405(pending: tuple[World, str, str]) -> None:
    world, _, _ = pending
    before = world.record()
    response = world.page("PUT", {"t": world.links()["alice@example.com"]}, {"decision": "approve"})
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET, POST"
    assert world.record() == before


# --- POST ---------------------------------------------------------------------------------------
def test_post_approve_records_the_decision_and_resumes_the_release(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending

    response = world.decide(world.links()["alice@example.com"], "approve", comment="looks good")

    assert response["statusCode"] == 200, response["body"]
    assert_security_headers(response)
    assert "Release approved" in response["body"]
    assert "sub-alice" in response["body"]  # the decision as recorded
    record = world.ledger()
    assert record["status"] == "approved"
    assert record["decided_by"] == "alice@example.com"
    assert record["callback"] == "delivered"
    assert abs(record["decided_at"] - time.time()) < 10
    described = world.execution(execution)
    assert described["status"] == "SUCCEEDED"
    (vote,) = record["votes"]
    assert vote == {"decision": "approved", "subject": "sub-alice", "email": "alice@example.com", "issuer": world.issuer,
                    "at": record["decided_at"], "link": token_claims(world.links()["alice@example.com"])["jti"],
                    "approver": "alice@example.com", "comment": "looks good", "block": False}
    assert record["voters"] == ["sub-alice"]
    output = json.loads(described["output"])
    assert output["approved_by"] == "alice@example.com"
    assert output["decided_at"] == iso(record["decided_at"])
    assert output["subject"] == "sub-alice"
    assert output["comment"] == "looks good"
    assert "approved by alice@example.com (subject sub-alice)" in output["votes"][0]


def test_post_reject_fails_the_release_with_approval_rejected(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending

    token = world.links()["bob@example.com"]
    cookies = world.sign_in("bob@example.com")
    form = {"t": token, "n": world.nonce(token, cookies), "decision": "reject", "comment": "error rate too high"}
    response = world.page("POST", form=form, base64_body=True, cookies=cookies)

    assert response["statusCode"] == 200, response["body"]
    assert "Release rejected" in response["body"]
    record = world.ledger()
    assert record["status"] == "rejected"
    assert record["decided_by"] == "bob@example.com"
    assert record["callback"] == "delivered"
    described = world.execution(execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "ApprovalRejected"
    assert [(v["email"], v["subject"], v["comment"]) for v in record["votes"]] == [("bob@example.com", "sub-bob", "error rate too high")]


@pytest.mark.parametrize(
    ("first", "second_approver", "second"),
    [
        ("approve", "alice@example.com", "approve"),  # replay of the same form
        ("approve", "bob@example.com", "reject"),  # another approver's valid link
        ("reject", "alice@example.com", "approve"),
    ],
)
def test_second_decision_is_410_and_changes_nothing(
    pending: tuple[World, str, str], first: str, second_approver: str, second: str
) -> None:
    world, execution, _ = pending
    links = world.links()
    # Both have the page open (signed in, the form's nonce in hand) when the first decides.
    cookies = world.sign_in(second_approver)
    nonce = world.nonce(links[second_approver], cookies)
    assert world.decide(links["alice@example.com"], first)["statusCode"] == 200
    status_after_first = world.execution(execution)["status"]
    before = world.record()

    response = world.page("POST", form={"t": links[second_approver], "n": nonce, "decision": second}, cookies=cookies)

    assert response["statusCode"] == 410
    assert "already" in response["body"]
    assert "alice@example.com" in response["body"]  # says who decided
    assert world.record() == before
    assert world.execution(execution)["status"] == status_after_first
    # and the page no longer offers the buttons
    assert world.page("GET", {"t": links[second_approver]}, cookies=cookies)["statusCode"] == 410


def test_decision_after_the_release_timed_out_says_so(pending: tuple[World, str, str]) -> None:
    world, _, _ = pending
    # Step Functions answers TaskTimedOut for a task that stopped waiting (moto does not model this).
    stubber = Stubber(world.page_app.approvals.sfn)
    stubber.add_client_error("send_task_success", service_error_code="TaskTimedOut", http_status_code=400)

    with stubber:
        response = world.decide(world.links()["bob@example.com"], "approve")

    stubber.assert_no_pending_responses()
    assert response["statusCode"] == 410
    assert "no longer waiting" in response["body"]
    record = world.ledger()
    assert record["status"] == "approved"
    assert record["callback"] == "task_gone"
    assert record["callback_error"] == "TaskTimedOut"


def test_failed_delivery_can_be_retried_with_the_same_decision(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    links = world.links()
    pages = {}  # each approver has the page open: their session and the form's nonce
    for approver in ("alice@example.com", "bob@example.com"):
        cookies = world.sign_in(approver)
        pages[approver] = (cookies, world.nonce(links[approver], cookies))

    def press(approver: str, decision: str) -> dict[str, Any]:
        cookies, nonce = pages[approver]
        return world.page("POST", form={"t": links[approver], "n": nonce, "decision": decision}, cookies=cookies)

    stubber = Stubber(world.page_app.approvals.sfn)
    stubber.add_client_error("send_task_success", service_error_code="ThrottlingException", http_status_code=400)
    with stubber:
        assert press("alice@example.com", "approve")["statusCode"] == 503
    assert world.ledger()["callback"] == "failed"
    assert world.execution(execution, settle=False)["status"] == "RUNNING"

    assert press("bob@example.com", "reject")["statusCode"] == 410  # not another decision
    response = press("alice@example.com", "approve")  # the same form, sent again

    assert response["statusCode"] == 200
    assert world.ledger()["callback"] == "delivered"
    assert world.execution(execution)["status"] == "SUCCEEDED"


# --- keys ---------------------------------------------------------------------------------------
def test_links_signed_before_a_rotation_still_work_and_new_ones_verify_at_once(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    old_link = world.links()["alice@example.com"]
    cookies = world.sign_in("bob@example.com")
    assert world.page("GET", {"t": old_link}, cookies=world.sign_in("alice@example.com"))["statusCode"] == 200  # k1 cached
    new_key = bytes(range(50, 82))
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=world.secret_arn,
        SecretString=json.dumps(
            {"kid": "k2", "key": base64.b64encode(new_key).decode(), "previous": {"kid": "k1", "key": SIGNING_KEY_B64}}
        ),
    )
    new_link = mint_token(
        new_key,
        "k2",
        release_id=RELEASE_ID,
        execution_arn=execution,
        digest=DIGEST,
        approver="bob@example.com",
        expires_at=int(time.time()) + 600,
    )

    assert world.page("GET", {"t": new_link}, cookies=cookies)["statusCode"] == 200  # unknown kid: the page re-reads the secret
    assert world.decide(old_link, "approve")["statusCode"] == 200  # previous key still verifies
    assert world.ledger()["decided_by"] == "alice@example.com"


# --- logs ---------------------------------------------------------------------------------------
def test_no_secret_or_token_reaches_a_log_line(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # Capture exactly what the functions print: the Powertools handlers' formatted JSON lines.
    printed = io.StringIO()
    service_logger = logging.getLogger(obs.SERVICE)
    handlers = [h for h in service_logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the handler modules set up the service logger"
    previous = [h.setStream(printed) for h in handlers]
    caplog.set_level("INFO")  # botocore DEBUG dumps whole requests; it is off in Lambda
    try:
        execution, task_token = world.start_release()
        world.request(world.event(execution, task_token))
        links = world.links()
        world.page("GET", {"t": links["alice@example.com"]})
        world.page("GET", {"t": "forged." + links["bob@example.com"]})
        sessions = {a: world.sign_in(a) for a in links}
        nonces = {a: world.nonce(links[a], sessions[a]) for a in links}
        for approver, decision in (("alice@example.com", "approve"), ("bob@example.com", "reject")):
            world.page("POST", form={"t": links[approver], "n": nonces[approver], "decision": decision}, cookies=sessions[approver])
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)

    logs = printed.getvalue() + caplog.text
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "approval requested",
        "approval page refused",  # the forged link
        "signed in",
        "signed in",
        "vote recorded",
        "decision recorded",
        "decision delivered",
        "approval page refused",  # bob, after alice decided
    ]
    assert all(line["correlation_id"] == RELEASE_ID for line in lines if line["message"] not in ("approval page refused", "signed in"))
    cookies = [value for session in sessions.values() for value in session.values()]
    for secret in (SIGNING_KEY_B64, task_token, *links.values(), *cookies, *nonces.values()):
        assert secret not in logs
    assert world.execution(execution)["status"] == "SUCCEEDED"
