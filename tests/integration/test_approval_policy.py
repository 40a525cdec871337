"""The approval page under prod's approver policy, against moto and the local OIDC provider (see
approval_world.py): the release policy document in SSM, as the stack passes it to the page.

GIVEN a release waiting for approval (alice's and bob's links) and an approver policy
WHEN approvers sign in and vote THEN the release waits, is approved, rejected or blocked exactly as the
policy says, every vote and refused attempt is in the ledger, and Step Functions hears only the decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from podrelease.release.actions import Actions
from podrelease.verify.policy import keys_document
from tests.integration.approval_world import DIGEST, EVIDENCE, REGION, TABLE, World, token_claims

ALICE, BOB = "alice@example.com", "bob@example.com"
POLICY_PARAMETER = "/podrel/release-policy"
SELF = {"emails": [ALICE, BOB], "no_self_approval": True, "identities": {ALICE: "alice-gh", BOB: "bob-gh"}}
BUILT_BY_ALICE = {**EVIDENCE, "provenance": {"verified": True, "actor": "alice-gh", "commit": "0" * 40, "ref": "refs/heads/main"}}


@pytest.fixture
def under(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[World, str]]:
    """GIVEN prod's approvers `section` and a release with `evidence` waiting for them: (world, execution)."""
    return lambda section, evidence=EVIDENCE: _waiting(world, monkeypatch, section, evidence)


def _waiting(world: World, monkeypatch: pytest.MonkeyPatch, section: dict[str, Any], evidence: dict[str, Any]) -> tuple[World, str]:
    body = json.loads(keys_document(signing_pem()))
    body["environments"]["prod"]["approvers"] = section
    boto3.client("ssm", region_name=REGION).put_parameter(Name=POLICY_PARAMETER, Type="String", Value=json.dumps(body))
    monkeypatch.setenv("RELEASE_POLICY_PARAMETER", POLICY_PARAMETER)
    execution, task_token = world.start_release()
    world.request({**world.event(execution, task_token), "evidence": evidence})
    return world, execution


def signing_pem() -> str:
    from local import signing

    return signing.generate_key()[1]


def refusal(response: dict[str, Any]) -> tuple[int, str]:
    return response["statusCode"], response["headers"].get("X-Approval-Refusal", "")


def test_two_of_the_group_release_it_one_leaves_it_waiting_and_a_second_vote_counts_once(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under({"groups": ["release-approvers"], "required": 2})
    links = world.links()
    # WHEN alice (in the group, from the provider's groups claim) approves THEN her vote is recorded, the release waits
    first = world.decide(links[ALICE], "approve", comment="first")
    assert first["statusCode"] == 200, first["body"]
    assert "Your vote is recorded" in first["body"]
    assert "1 of 2 approval(s) needed (alice@example.com)" in first["body"]
    assert world.execution(execution, settle=False)["status"] == "RUNNING"
    assert (world.ledger()["status"], [v["email"] for v in world.ledger()["votes"]]) == ("pending", [ALICE])
    # WHEN she votes again THEN it is refused by name and counts nothing
    assert refusal(world.decide(links[ALICE], "approve")) == (409, "AlreadyVoted")
    assert [v["email"] for v in world.ledger()["votes"]] == [ALICE]
    # WHEN bob's page is opened THEN it shows the votes so far
    assert "1 of 2 approval(s) needed" in world.page("GET", {"t": links[BOB]}, cookies=world.sign_in(BOB))["body"]
    # WHEN bob approves THEN the release is approved by both, and Step Functions hears it once, with every vote
    second = world.decide(links[BOB], "approve", comment="second")
    assert second["statusCode"] == 200, second["body"]
    record = world.ledger()
    assert (record["status"], record["decided_by"], record["callback"]) == ("approved", f"{ALICE}, {BOB}", "delivered")
    assert [(v["email"], v["subject"], v["link"], v["comment"]) for v in record["votes"]] == [
        (ALICE, "sub-alice", token_claims(links[ALICE])["jti"], "first"), (BOB, "sub-bob", token_claims(links[BOB])["jti"], "second")]
    described = world.execution(execution)
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["approved_by"] == f"{ALICE}, {BOB}"
    assert [v.split(" (")[0] for v in output["votes"]] == [f"approved by {ALICE}", f"approved by {BOB}"]


def test_under_two_of_m_one_reject_ends_it(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under({"groups": ["release-approvers"], "required": 2})
    links = world.links()
    assert world.decide(links[ALICE], "approve")["statusCode"] == 200
    assert world.decide(links[BOB], "reject", comment="no")["statusCode"] == 200
    assert (world.ledger()["status"], world.ledger()["decided_by"]) == ("rejected", BOB)
    described = world.execution(execution)
    assert (described["status"], described["error"]) == ("FAILED", "ApprovalRejected")
    # (moto's in-process engine drops a task failure's cause: the ledger holds both votes)
    assert [(v["email"], v["decision"]) for v in world.ledger()["votes"]] == [(ALICE, "approved"), (BOB, "rejected")]


def test_a_signed_in_approver_outside_the_groups_is_refused_and_the_attempt_noted(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under({"groups": ["prod-approvers"]})
    token = world.links()[ALICE]
    cookies, nonce = world.crafted(ALICE, token)
    assert refusal(world.page("GET", {"t": token}, cookies=world.sign_in(ALICE))) == (403, "NotAnApprover")
    assert refusal(world.page("POST", form={"t": token, "n": nonce, "decision": "approve"}, cookies=cookies)) == (
        403, "NotAnApprover")
    record = world.ledger()
    assert (record["status"], record.get("votes")) == ("pending", None)
    assert [(r["email"], r["reason"], r["link"]) for r in record["refused"]] == [(ALICE, "NotAnApprover", token_claims(token)["jti"])]
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def test_the_builds_actor_cannot_approve_it_another_approver_can(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under(SELF, evidence=BUILT_BY_ALICE)
    links = world.links()
    token = links[ALICE]
    cookies, nonce = world.crafted(ALICE, token)
    # WHEN alice, who triggered the build, opens her link or posts an approval THEN both are refused by name
    shown = world.page("GET", {"t": token}, cookies=world.sign_in(ALICE))
    assert refusal(shown) == (403, "SelfApproval")
    assert "alice-gh" in shown["body"]
    assert refusal(world.page("POST", form={"t": token, "n": nonce, "decision": "approve"}, cookies=cookies)) == (
        403, "SelfApproval")
    assert (world.ledger()["status"], world.ledger().get("votes")) == ("pending", None)
    assert [r["reason"] for r in world.ledger()["refused"]] == ["SelfApproval"]
    # WHEN bob approves THEN it is approved by him
    assert world.decide(links[BOB], "approve")["statusCode"] == 200
    assert world.execution(execution)["status"] == "SUCCEEDED"
    assert world.ledger()["decided_by"] == BOB


def test_without_provenance_no_one_may_approve_when_self_approval_is_forbidden(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under(SELF)
    response = world.decide(world.links()[BOB], "approve")
    assert refusal(response) == (403, "BuildActorUnknown")
    assert "no verified provenance" in response["body"]
    assert world.ledger()["status"] == "pending"
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def test_reject_and_block_rejects_it_and_blocks_the_digest_recording_who(under: Callable[..., tuple[World, str]]) -> None:
    world, execution = under({"emails": [ALICE, BOB]})
    token = world.links()[ALICE]
    # THEN the page offers it
    assert 'value="reject-block"' in world.page("GET", {"t": token}, cookies=world.sign_in(ALICE))["body"]
    response = world.decide(token, "reject-block", comment="CVE-2026-0002")
    assert response["statusCode"] == 200, response["body"]
    described = world.execution(execution)
    assert (described["status"], described["error"]) == ("FAILED", "ApprovalRejected")
    (vote,) = world.ledger()["votes"]
    assert (vote["decision"], vote["block"], vote["comment"]) == ("rejected", True, "CVE-2026-0002")
    actions = Actions(boto3.resource("dynamodb", region_name=REGION).Table(TABLE))
    block = actions.blocked(DIGEST)
    assert block is not None
    assert block["blocked_by"] == f"{ALICE} (subject sub-alice) on the approval page, link {token_claims(token)['jti']}"
    assert block["reason"] == "CVE-2026-0002"
    assert [(a["action"], a["who"]) for a in actions.history(digest=DIGEST)] == [("block", block["blocked_by"])]
