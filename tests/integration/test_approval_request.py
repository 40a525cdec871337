"""The approval_request handler against moto (see approval_world.py): one email per approver, with
a signed link and never the task token, and the pending approval in the ledger."""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest

from podrelease.approval.tokens import verify_token
from podrelease.core.errors import MalformedEvent
from podrelease.release.ledger import Ledger
from tests.integration.approval_world import (
    APPROVERS,
    BASE_URL,
    DEV,
    DIGEST,
    EVIDENCE,
    OTHER_DIGEST,
    REGION,
    RELEASE_ID,
    REPOSITORY,
    SIGNING_KEY,
    TABLE,
    World,
)


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
        assert re.search(r"ok\s+Signature:\s+verified, by cosign-2025", body)  # the gate's verdict
        assert re.search(r"ok\s+Dev ec2:\s+succeeded", body)  # dev's results
        assert "Votes:" in body
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


def test_the_email_shows_what_prod_runs_now_as_the_last_release_there_recorded_it(world: World) -> None:
    # GIVEN an earlier release that reached prod (the Record state writes the ledger's live#prod)
    earlier = "sha256:" + "c" * 64
    Ledger(boto3.resource("dynamodb", region_name=REGION).Table(TABLE)).record_release(
        "podinfo-earlier", {"outcome": "SUCCEEDED", "digest": earlier, "repository": REPOSITORY, "approved_by": "bob@example.com"},
        now=time.time() - 2 * 86400 - 3 * 3600)
    execution, task_token = world.start_release()
    # WHEN this release asks for approval
    world.request(world.event(execution, task_token))
    # THEN every email (and the page, from the same record) puts prod's digest, age and approver beside the candidate's
    prod = world.ledger()["prod"]
    assert (prod["digest"], prod["release_id"], prod["approved_by"]) == (earlier, "podinfo-earlier", "bob@example.com")
    for _, body, _, _, _ in world.emails():
        assert re.search(r"Prod now:\s+sha256:cccccccccccc, deployed \S+Z \(2 d 3 h ago\), approved by bob@example.com", body), body
