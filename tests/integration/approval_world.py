"""What the approval tests share: the release waiting for approval, its approvers and key, and
the `World` the `world` and `pending` fixtures (conftest.py) stand up against moto: a real execution
waits for its task token, emails go to SNS, the page reads and writes the DynamoDB ledger and
resumes the execution.

The release's `lambda:invoke.waitForTaskToken` Task is stood in for by an SQS
`sendMessage.waitForTaskToken` Task (moto runs it in process); the test reads the task token from
the queue and gives it to the approval_request handler exactly as the state machine would.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from local.oidc import CLIENT_ID, subject_of
from podrelease.approval.keys import KeyRing
from podrelease.approval.session import LOGIN_COOKIE, SESSION_COOKIE, Identity, LoginState, Session, form_nonce
from podrelease.approval.signin import OidcClient, SignInSettings
from podrelease.approval.store import ApprovalStore

REGION = "eu-west-1"
SIGN_IN_PARAMETER = "/podrel/approval-sign-in"
TABLE = "ledger"
BASE_URL = "https://approve.example.test/"
APPROVERS = ("alice@example.com", "bob@example.com")
SIGNING_KEY = bytes(range(7, 39))
SIGNING_KEY_B64 = base64.b64encode(SIGNING_KEY).decode()
DIGEST = "sha256:" + "3f" * 32
OTHER_DIGEST = "sha256:" + "c0" * 32
REPOSITORY = "podinfo"
RELEASE_ID = "podinfo-3f3f3f3f3f3f-1"
EVIDENCE = {"verified": True, "digest": DIGEST, "signatures": [{"key_id": "cosign-2025", "source": "legacy"}],
            "sbom": {"verified": True, "sboms": [{"format": "spdx <b>ok</b>", "sbom_digest": "sha256:" + "5b" * 32}]}}
DEV = {"lambda": {"status": "Succeeded", "version": "7"}, "ec2": {"status": "Succeeded", "colour": "green"}}
WAITING_STATE = {
    "StartAt": "RequestApproval",
    "States": {
        "RequestApproval": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": "${queue}", "MessageBody": {"task_token.$": "$$.Task.Token"}},
            "TimeoutSeconds": 120,
            "End": True,
        }
    },
}


def sign_in_settings(issuer: str) -> dict[str, str]:
    """The sign-in settings the template writes for a provider at `issuer` (the page at BASE_URL)."""
    return {"issuer": issuer, "client_id": CLIENT_ID, "redirect_uri": BASE_URL + "callback"}


PAGE_ORIGIN = BASE_URL.rstrip("/")
#: What a browser sends with a form POST from the page itself.
SAME_ORIGIN = {"origin": PAGE_ORIGIN, "sec-fetch-site": "same-origin"}


def token_claims(token: str) -> dict[str, Any]:
    """The claims a token says it has (read, not verified); {} when unreadable."""
    try:
        payload = token.split(".")[0]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (ValueError, TypeError):
        return {}


def set_cookies(response: dict[str, Any]) -> dict[str, str]:
    """name -> value of the cookies a page answer sets (an emptied cookie maps to "")."""
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0] for c in response.get("cookies") or []}


def _no_redirects() -> urllib.request.OpenerDirector:
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(Keep)


@dataclass
class Context:
    """The parts of a Lambda context Powertools reads."""

    function_name: str = "approval"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:approval"
    aws_request_id: str = "req-1"


@dataclass
class World:
    ddb: Any
    sfn: Any
    sqs: Any
    topic_arn: str
    secret_arn: str
    queue_url: str
    state_machine_arn: str
    request_app: ModuleType
    page_app: ModuleType
    issuer: str

    # --- the release -------------------------------------------------------------------------------
    def start_release(self) -> tuple[str, str]:
        """Start an execution that waits for a token; return (execution ARN, task token)."""
        execution = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, input="{}")["executionArn"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=self.queue_url).get("Messages", []):
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                return execution, json.loads(message["Body"])["task_token"]
            time.sleep(0.05)
        pytest.fail("the execution never reached its waitForTaskToken state")

    def execution(self, arn: str, *, settle: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + (5 if settle else 0)
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING" or time.monotonic() >= deadline:
                return described
            time.sleep(0.05)

    def event(self, execution: str, task_token: str, release_id: str = RELEASE_ID) -> dict[str, Any]:
        return {
            "task_token": task_token,
            "release": {
                "id": release_id,
                "repository": REPOSITORY,
                "digest": DIGEST,
                "image_uri": f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{DIGEST}",
                "execution": execution,
            },
            "evidence": EVIDENCE,
            "dev": DEV,
        }

    def request(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.request_app.handler(event, Context())

    # --- what the world holds ----------------------------------------------------------------------
    def record(self, release_id: str = RELEASE_ID) -> dict[str, Any] | None:
        """The raw ledger item (attribute-value form), for exact before/after comparisons."""
        return self.ddb.get_item(TableName=TABLE, Key={"pk": {"S": f"approval#{release_id}"}}, ConsistentRead=True).get("Item")

    def ledger(self, release_id: str = RELEASE_ID) -> dict[str, Any]:
        found = ApprovalStore(boto3.resource("dynamodb", region_name=REGION).Table(TABLE)).get(release_id)
        assert found is not None
        return found

    def emails(self) -> list[tuple[str, str, str, dict[str, Any], str | None]]:
        return list(sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[self.topic_arn].sent_notifications)

    def links(self) -> dict[str, str]:
        """approver -> approval token, read from the emails' links."""
        found = {}
        for _, body, _, attributes, _ in self.emails():
            match = re.search(re.escape(BASE_URL) + r"\?t=(\S+)", body)
            assert match, body
            assert attributes is not None
            found[attributes["approver"]["Value"]] = match.group(1)
        return found

    # --- the page ----------------------------------------------------------------------------------
    def page(
        self,
        method: str,
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        *,
        base64_body: bool = False,
        raw_body: str | None = None,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/",
    ) -> dict[str, Any]:
        """One request to the page's handler. A POST carries the form's Content-Type and the page's own
        Origin / Sec-Fetch-Site unless `headers` says otherwise (a header given as "" is left out)."""
        body = raw_body if raw_body is not None else (urlencode(form) if form is not None else None)
        if body is not None and base64_body:
            body = base64.b64encode(body.encode()).decode()
        sent = {"content-type": "application/x-www-form-urlencoded", **SAME_ORIGIN} if method == "POST" else {}
        sent = {k: v for k, v in {**sent, **(headers or {})}.items() if v}
        event = {
            "version": "2.0",
            "rawPath": path,
            "rawQueryString": urlencode(query or {}),
            "headers": sent,
            "requestContext": {"stage": "$default", "http": {"method": method, "path": path}},
            "isBase64Encoded": base64_body,
        }
        if query:
            event["queryStringParameters"] = query
        if cookies:
            event["cookies"] = [f"{k}={v}" for k, v in cookies.items()]
        if body is not None:
            event["body"] = body
        return self.page_app.handler(event, Context())

    # --- signing in ---------------------------------------------------------------------------------
    def sign_in(self, email: str, link_token: str | None = None) -> dict[str, str]:
        """Sign in as `email` at the OIDC provider, starting from a link (default: `email`'s own, or
        alice's when `email` has none); the session cookie the page sets."""
        token = link_token or self.links().get(email) or self.links()[APPROVERS[0]]
        start = self.page("GET", {"t": token})
        if start["statusCode"] == 302:
            login, location = set_cookies(start), start["headers"]["Location"]
        else:  # the link is decided: start the sign-in as the page would have
            state = LoginState.begin(token, time.time())
            login = {LOGIN_COOKIE: state.seal(KeyRing("k1", {"k1": SIGNING_KEY}))}
            location = OidcClient(SignInSettings.parse(sign_in_settings(self.issuer))).authorize_url(state)
        pressed = urllib.request.Request(location, method="POST",  # noqa: S310 - the local provider
                                         data=urlencode({"sub": subject_of(email)}).encode())
        with pytest.raises(urllib.error.HTTPError) as redirected:  # the provider's 302 back to the page
            _no_redirects().open(pressed, timeout=30)
        assert redirected.value.code == 302, redirected.value.read()
        back = urlsplit(redirected.value.headers["Location"])
        query = {k: v[0] for k, v in parse_qs(back.query).items()}
        done = self.page("GET", query, cookies=login, path="/callback")
        assert done["statusCode"] == 200, done["body"]
        return {k: v for k, v in set_cookies(done).items() if v}

    def crafted(self, email: str, token: str) -> tuple[dict[str, str], str]:
        """The session cookie a sign-in as `email` sets and the nonce the page would show it for `token`,
        sealed here with the test's key (for tests that must not let the page read anything first)."""
        ring = KeyRing("k1", {"k1": SIGNING_KEY})
        session = Session.start(Identity(subject_of(email), email, self.issuer), time.time())
        return {SESSION_COOKIE: session.seal(ring)}, form_nonce(ring, session, token_claims(token)["jti"], time.time())

    def nonce(self, token: str, cookies: dict[str, str]) -> str:
        """The form nonce of the page `token` shows to the session in `cookies` ("" when it shows no form)."""
        shown = self.page("GET", {"t": token}, cookies=cookies)
        found = re.search(r'name="n" value="([^"]+)"', shown["body"])
        return html.unescape(found.group(1)) if found else ""

    def decide(self, token: str, decision: str, *, as_: str | None = None, comment: str = "",
               headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Sign in (as `as_`, by default the link's approver) and press `decision` on the page."""
        approver = as_ or token_claims(token).get("apr")
        email = approver if approver in APPROVERS else APPROVERS[0]
        cookies = self.sign_in(email)
        form = {"t": token, "n": self.nonce(token, cookies) or "none", "decision": decision, "comment": comment}
        return self.page("POST", form=form, cookies=cookies, headers=headers)


EXPECTED_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def assert_security_headers(response: dict[str, Any]) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response["headers"][name] == value
    csp = response["headers"]["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
    assert "<script" not in response["body"]
