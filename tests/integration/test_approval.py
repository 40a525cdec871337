"""The approval flow against moto: a real execution waits for its task token, emails go to SNS,
the page reads and writes the DynamoDB ledger and resumes the execution.

The release's `lambda:invoke.waitForTaskToken` Task is stood in for by an SQS
`sendMessage.waitForTaskToken` Task (moto runs it in process); the test reads the task token from
the queue and gives it to the approval_request handler exactly as the state machine would.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from podrelease.approval.store import ApprovalStore, iso
from podrelease.approval.tokens import mint_token, verify_token
from podrelease.core import obs
from podrelease.core.errors import MalformedEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

REGION = "eu-west-1"
TABLE = "ledger"
BASE_URL = "https://approve.example.test/"
APPROVERS = ("alice@example.com", "bob@example.com")
SIGNING_KEY = bytes(range(7, 39))
SIGNING_KEY_B64 = base64.b64encode(SIGNING_KEY).decode()
DIGEST = "sha256:" + "3f" * 32
OTHER_DIGEST = "sha256:" + "c0" * 32
REPOSITORY = "podinfo"
RELEASE_ID = "podinfo-3f3f3f3f3f3f-1"
EVIDENCE = {"signature": {"mode": "key", "key_id": "cosign-2025", "verified": True}, "sbom": "spdx <b>ok</b>"}
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
    ) -> dict[str, Any]:
        body = raw_body if raw_body is not None else (urlencode(form) if form is not None else None)
        if body is not None and base64_body:
            body = base64.b64encode(body.encode()).decode()
        event = {
            "version": "2.0",
            "rawPath": "/",
            "rawQueryString": urlencode(query or {}),
            "headers": {"content-type": "application/x-www-form-urlencoded"} if body is not None else {},
            "requestContext": {"stage": "$default", "http": {"method": method, "path": "/"}},
            "isBase64Encoded": base64_body,
        }
        if query:
            event["queryStringParameters"] = query
        if body is not None:
            event["body"] = body
        return self.page_app.handler(event, Context())

    def decide(self, token: str, decision: str) -> dict[str, Any]:
        return self.page("POST", form={"t": token, "decision": decision})


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, load_handler: Callable[[str], ModuleType],
          ledger_table: Callable[..., Any]) -> Iterator[World]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "podinfo-release",
        "LEDGER_TABLE": TABLE,
        "APPROVAL_BASE_URL": BASE_URL,
        "APPROVERS": " Alice@Example.com, bob@example.com ",
        "APPROVAL_TTL_SECONDS": "3600",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        ddb = boto3.client("dynamodb", region_name=REGION)
        ledger_table(TABLE)
        topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="approvals")["TopicArn"]
        secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="approval-key", SecretString=json.dumps({"kid": "k1", "key": SIGNING_KEY_B64})
        )["ARN"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="task-tokens")["QueueUrl"]
        role = boto3.client("iam", region_name=REGION).create_role(RoleName="release", AssumeRolePolicyDocument="{}")["Role"][
            "Arn"
        ]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = json.dumps(WAITING_STATE).replace("${queue}", queue_url)
        state_machine_arn = sfn.create_state_machine(name="release", definition=definition, roleArn=role)["stateMachineArn"]
        monkeypatch.setenv("APPROVAL_TOPIC_ARN", topic_arn)
        monkeypatch.setenv("APPROVAL_KEY_SECRET_ARN", secret_arn)
        yield World(
            ddb=ddb,
            sfn=sfn,
            sqs=sqs,
            topic_arn=topic_arn,
            secret_arn=secret_arn,
            queue_url=queue_url,
            state_machine_arn=state_machine_arn,
            request_app=load_handler("approval_request"),
            page_app=load_handler("approval_page"),
        )


@pytest.fixture
def pending(world: World) -> tuple[World, str, str]:
    """GIVEN a release waiting for approval and its two emails sent: (world, execution, task token)."""
    execution, task_token = world.start_release()
    world.request(world.event(execution, task_token))
    return world, execution, task_token


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


# --- request_approval ---------------------------------------------------------------------------
def test_one_email_per_approver_with_link_and_correlation_id_but_no_task_token(world: World) -> None:
    execution, task_token = world.start_release()

    summary = world.request(world.event(execution, task_token))

    emails = world.emails()
    assert len(emails) == 2
    by_approver = {attrs["approver"]["Value"]: (mid, body, subject, attrs) for mid, body, subject, attrs, _ in emails}
    assert set(by_approver) == set(APPROVERS)
    links = world.links()
    for approver, (message_id, body, subject, attrs) in by_approver.items():
        assert attrs["release_id"] == {"Type": "String", "Value": RELEASE_ID}
        assert attrs["approver"]["Type"] == "String"
        assert subject == f"Approve podinfo {DIGEST[:19]}... for prod? [{RELEASE_ID}]"
        assert f"Correlation id: {RELEASE_ID}" in body
        assert f"Repository:     {REPOSITORY}" in body
        assert f"Digest:         {DIGEST}" in body
        assert "cosign-2025" in body  # signature evidence
        assert '"colour": "green"' in body  # dev results
        assert f"{BASE_URL}?t={links[approver]}" in body
        assert task_token not in body
        assert task_token not in subject
        assert task_token not in json.dumps(attrs)
        assert verify_token(links[approver], {"k1": SIGNING_KEY}).apr == approver
        assert summary["message_ids"][approver] == message_id
    assert links["alice@example.com"] != links["bob@example.com"]

    # The summary is what the execution history keeps: no token of any kind.
    dumped = json.dumps(summary)
    assert task_token not in dumped
    assert all(token not in dumped for token in links.values())
    assert summary["approvers"] == list(APPROVERS)
    assert summary["status"] == "pending"

    record = world.ledger()
    assert record["task_token"] == task_token
    assert record["status"] == "pending"
    assert record["execution_arn"] == execution
    assert record["digest"] == DIGEST
    assert record["repository"] == REPOSITORY
    assert record["approvers"] == list(APPROVERS)
    assert record["evidence"] == EVIDENCE
    assert record["dev"] == DEV
    assert record["expires_at"] == summary["expires_at"]
    assert 3590 <= record["expires_at"] - time.time() <= 3600


def test_request_approval_is_idempotent(world: World) -> None:
    execution, task_token = world.start_release()
    first = world.request(world.event(execution, task_token))
    before = world.ledger()

    # WHEN Lambda retries the same invocation, and then the state machine retries with a new token
    second = world.request(world.event(execution, task_token))
    third = world.request(world.event(execution, "a-newer-task-token-from-a-task-retry-0123456789"))

    # THEN one record, the same emails (nobody is emailed twice), the newest token kept while pending
    assert len(world.emails()) == 2
    assert second["message_ids"] == first["message_ids"] == third["message_ids"]
    assert second["expires_at"] == first["expires_at"]
    after = world.ledger()
    assert after["created_at"] == before["created_at"]
    assert after["expires_at"] == before["expires_at"]
    assert after["task_token"] == "a-newer-task-token-from-a-task-retry-0123456789"
    assert {k: v for k, v in after.items() if k not in {"task_token", "updated_at"}} == {
        k: v for k, v in before.items() if k not in {"task_token", "updated_at"}
    }


def test_request_for_same_release_id_but_other_digest_is_refused(world: World) -> None:
    execution, task_token = world.start_release()
    world.request(world.event(execution, task_token))
    before = world.record()
    other = world.event(execution, task_token)
    other["release"]["digest"] = OTHER_DIGEST

    with pytest.raises(MalformedEvent):
        world.request(other)
    assert world.record() == before
    assert len(world.emails()) == 2


# --- GET ----------------------------------------------------------------------------------------
def test_get_renders_the_facts_and_changes_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["bob@example.com"]
    before = world.record()

    responses = [world.page("GET", {"t": token}) for _ in range(2)]  # a link scanner, then the person

    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"
    for response in responses:
        assert response["statusCode"] == 200
        assert_security_headers(response)
        page = response["body"]
        for fact in (RELEASE_ID, REPOSITORY, DIGEST, execution, "bob@example.com", "cosign-2025", "green"):
            assert fact in page
        assert "spdx &lt;b&gt;ok&lt;/b&gt;" in page  # evidence is escaped, not markup
        assert "<b>ok</b>" not in page
        assert '<form method="post"' in page
        assert f'<input type="hidden" name="t" value="{token}">' in page
        assert 'name="decision" value="approve"' in page
        assert 'name="decision" value="reject"' in page


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

    response = world.decide(world.links()["alice@example.com"], "approve")

    assert response["statusCode"] == 200, response["body"]
    assert_security_headers(response)
    assert "Release approved" in response["body"]
    record = world.ledger()
    assert record["status"] == "approved"
    assert record["decided_by"] == "alice@example.com"
    assert record["callback"] == "delivered"
    assert abs(record["decided_at"] - time.time()) < 10
    described = world.execution(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {
        "approved_by": "alice@example.com",
        "decided_at": iso(record["decided_at"]),
    }


def test_post_reject_fails_the_release_with_approval_rejected(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending

    response = world.page("POST", form={"t": world.links()["bob@example.com"], "decision": "reject"}, base64_body=True)

    assert response["statusCode"] == 200, response["body"]
    assert "Release rejected" in response["body"]
    record = world.ledger()
    assert record["status"] == "rejected"
    assert record["decided_by"] == "bob@example.com"
    assert record["callback"] == "delivered"
    described = world.execution(execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "ApprovalRejected"


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
    assert world.decide(links["alice@example.com"], first)["statusCode"] == 200
    status_after_first = world.execution(execution)["status"]
    before = world.record()

    response = world.decide(links[second_approver], second)

    assert response["statusCode"] == 410
    assert "already" in response["body"]
    assert "alice@example.com" in response["body"]  # says who decided
    assert world.record() == before
    assert world.execution(execution)["status"] == status_after_first
    # and the page no longer offers the buttons
    assert world.page("GET", {"t": links[second_approver]})["statusCode"] == 410


def test_decision_after_the_release_timed_out_says_so(pending: tuple[World, str, str]) -> None:
    world, _, _ = pending
    # Step Functions answers TaskTimedOut for a task that stopped waiting (moto does not model this).
    stubber = Stubber(world.page_app.sfn)
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
    token = world.links()["alice@example.com"]
    stubber = Stubber(world.page_app.sfn)
    stubber.add_client_error("send_task_success", service_error_code="ThrottlingException", http_status_code=400)
    with stubber:
        assert world.decide(token, "approve")["statusCode"] == 503
    assert world.ledger()["callback"] == "failed"
    assert world.execution(execution, settle=False)["status"] == "RUNNING"

    assert world.decide(world.links()["bob@example.com"], "reject")["statusCode"] == 410  # not another decision
    response = world.decide(token, "approve")

    assert response["statusCode"] == 200
    assert world.ledger()["callback"] == "delivered"
    assert world.execution(execution)["status"] == "SUCCEEDED"


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
        "headers": {"content-type": "application/x-www-form-urlencoded"},
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

    response = world.decide(token, "approve")  # the page has not read the key yet: it reads it now

    assert response["statusCode"] == 500
    assert "The approval service is misconfigured" in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def test_an_unreachable_ledger_is_503_and_decides_nothing(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    token = world.links()["alice@example.com"]
    before = world.record()
    stubber = Stubber(world.page_app.approvals.store.table.meta.client)
    stubber.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException", http_status_code=400)

    with stubber:
        response = world.decide(token, "approve")

    stubber.assert_no_pending_responses()
    assert response["statusCode"] == 503
    assert "The ledger could not be reached" in response["body"]
    assert_security_headers(response)
    assert world.record() == before
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


# --- keys ---------------------------------------------------------------------------------------
def test_links_signed_before_a_rotation_still_work_and_new_ones_verify_at_once(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    old_link = world.links()["alice@example.com"]
    assert world.page("GET", {"t": old_link})["statusCode"] == 200  # the page has cached key k1
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

    assert world.page("GET", {"t": new_link})["statusCode"] == 200  # unknown kid: the page re-reads the secret
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
        world.decide(links["alice@example.com"], "approve")
        world.decide(links["bob@example.com"], "reject")
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)

    logs = printed.getvalue() + caplog.text
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "approval requested",
        "approval page refused",
        "decision recorded",
        "decision delivered",
        "approval page refused",
    ]
    assert all(line["correlation_id"] == RELEASE_ID for line in lines if line["message"] != "approval page refused")
    for secret in (SIGNING_KEY_B64, task_token, *links.values()):
        assert secret not in logs
    assert world.execution(execution)["status"] == "SUCCEEDED"
