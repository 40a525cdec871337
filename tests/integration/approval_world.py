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
import json
import re
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from podrelease.approval.store import ApprovalStore

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
