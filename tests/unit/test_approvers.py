"""The approver policy: its section of the release policy document (`podrelease.core.approvers`) and
how the approval page applies it (`podrelease.approval.approvers.ApproverCheck`).

GIVEN an `approvers` section WHEN it is parsed THEN it is exactly what it says, or a PolicyError naming
the place. GIVEN a signed-in identity, a link and a release record WHEN the check runs THEN it passes
or refuses by name; GIVEN votes THEN the outcome is decided at N distinct approvals (or the policy's
rejections), and never by one person twice.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from local import signing
from podrelease.approval.approvers import ApproverCheck, build_actors, load_approvers
from podrelease.approval.refusal import ApprovalRefused
from podrelease.approval.session import Identity
from podrelease.approval.store import APPROVED, REJECTED
from podrelease.approval.tokens import Claims
from podrelease.core.approvers import ApproverPolicy, approvers_in, parse_approvers
from podrelease.core.errors import PolicyError, PolicyUnavailable
from podrelease.verify.policy import keys_document, parse_policy

_, PEM = signing.generate_key()
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
SECTION: dict[str, Any] = {"emails": [ALICE, "Bob@Example.com"], "groups": ["release-approvers"], "required": 2,
                           "no_self_approval": True,
                           "identities": {"Alice@Example.com": "alice-gh", "sub-bob": ["bob-gh", "bob-bot[bot]"]}}


def document(section: Any, environment: str = "prod") -> str:
    body = json.loads(keys_document(PEM))
    body["environments"][environment]["approvers"] = section
    return json.dumps(body)


# --- parsing ----------------------------------------------------------------------------------------
def test_a_valid_section_is_parsed_exactly_as_the_gate_and_the_page_read_it() -> None:
    expected = ApproverPolicy(emails=frozenset({ALICE, BOB}), groups=frozenset({"release-approvers"}), required=2,
                              rejections=1, no_self_approval=True,
                              identities={ALICE: frozenset({"alice-gh"}), "sub-bob": frozenset({"bob-gh", "bob-bot[bot]"})})
    assert parse_policy(document(SECTION)).environment("prod").approvers == expected
    assert parse_policy(document(SECTION)).environment("dev").approvers is None
    assert approvers_in(document(SECTION), "prod") == expected
    assert approvers_in(document(SECTION), "dev") is None
    assert parse_policy(document(SECTION)).environment("prod").describe()["approvers"] == {
        "emails": [ALICE, BOB], "groups": ["release-approvers"], "required": 2, "rejections": 1, "no_self_approval": True,
        "identities": 2}


def _with(**changes: Any) -> dict[str, Any]:
    section = copy.deepcopy(SECTION)
    for key, value in changes.items():
        if value is None:
            section.pop(key)
        else:
            section[key] = value
    return section


AT = "release policy environments.prod.approvers"
INVALID: list[tuple[str, Any, str]] = [
    ("not an object", ["alice"], f"{AT}: must be an object, not a list"),
    ("unknown field", _with(quorum=2), f"{AT}: unknown field(s) 'quorum'"),
    ("nobody", _with(emails=[], groups=[]), f"{AT}: names no emails and no groups: nobody could ever approve"),
    ("not an email", _with(emails=["alice"]), f"{AT}.emails[0]: 'alice' is not an email address"),
    ("repeated email", _with(emails=[ALICE, "ALICE@example.com"]), f"{AT}.emails[1]: repeats 'ALICE@example.com'"),
    ("empty group", _with(groups=[" "]), f"{AT}.groups[0]: must not be empty"),
    ("required zero", _with(required=0), f"{AT}.required: is 0; it must be 1..16"),
    ("required text", _with(required="2"), f"{AT}.required: must be an integer, not a string"),
    ("required true", _with(required=True), f"{AT}.required: must be an integer, not a boolean"),
    ("required beyond the named", _with(groups=None, required=3),
     f"{AT}.required: is 3, but only 2 approver(s) are named: it could never be met"),
    ("rejections zero", _with(rejections=0), f"{AT}.rejections: is 0; it must be 1..16"),
    ("no_self_approval text", _with(no_self_approval="yes"), f"{AT}.no_self_approval: must be true or false, not a string"),
    ("self-approval without identities", _with(identities=None),
     f"{AT}.identities: is empty, but no_self_approval needs it"),
    ("identities a list", _with(identities=[ALICE]), f"{AT}.identities: must be an object"),
    ("login not a login", _with(identities={ALICE: "alice gh"}), f"{AT}.identities.{ALICE}: 'alice gh' is not a GitHub login"),
    ("no login", _with(identities={ALICE: []}), f"{AT}.identities.{ALICE}: names no GitHub login"),
]


@pytest.mark.parametrize(("case", "section", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_a_bad_section_is_a_policy_error_naming_the_place(case: str, section: Any, message: str) -> None:
    for read in (lambda: parse_policy(document(section)), lambda: approvers_in(document(section), "prod")):
        with pytest.raises(PolicyError) as info:
            read()
        assert str(info.value).startswith(message), (case, str(info.value))


def test_the_page_refuses_a_document_it_cannot_read() -> None:
    with pytest.raises(PolicyError, match="not valid JSON"):
        approvers_in("{", "prod")
    with pytest.raises(PolicyError, match=r"environments\.prod is missing"):
        approvers_in('{"version": 1, "environments": {}}', "prod")


def test_the_page_reads_the_version_the_stack_runs_and_names_an_unreadable_parameter() -> None:
    read: list[str] = []
    text = document(SECTION)
    env = {"RELEASE_POLICY_PARAMETER": "/podrel/policy", "RELEASE_POLICY_VERSION": "3"}
    assert load_approvers(env, lambda name: read.append(name) or text) is not None
    assert read == ["/podrel/policy:3"]
    assert load_approvers({"RELEASE_POLICY_PARAMETER": ""}, lambda name: text) is None  # the default policy: none

    def broken(name: str) -> str:
        raise TimeoutError(name)

    with pytest.raises(PolicyUnavailable, match="/podrel/policy:3 could not be read"):
        load_approvers(env, broken)


# --- who may decide --------------------------------------------------------------------------------
def claims(approver: str) -> Claims:
    return Claims(rid="r-1", exe="arn:exe", dig="sha256:" + "a" * 64, apr=approver, exp=2_000_000_000, jti=f"j-{approver[:3]}",
                  kid="k1")


def person(email: str, *groups: str, subject: str | None = None) -> Identity:
    return Identity(subject or f"sub-{email.split('@')[0]}", email, "https://idp.example", tuple(groups))


def record(actor: str | None = "alice-gh", *, triggering: str | None = None, verified: bool = True,
           votes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    provenance = {k: v for k, v in {"verified": verified, "actor": actor, "triggering_actor": triggering}.items() if v is not None}
    return {"release_id": "r-1", "evidence": {"provenance": provenance}, "votes": votes or []}


def check(section: dict[str, Any] | None) -> ApproverCheck:
    rules = parse_approvers(section, "approvers") if section is not None else None
    return ApproverCheck(lambda: rules)


def refusal(run: Any) -> str | None:
    try:
        run()
    except ApprovalRefused as refused:
        caught = refused
    else:
        return None
    assert caught.status == 403
    assert caught.detail.endswith("Nothing was decided.")
    return caught.reason


GROUPS = {"groups": ["release-approvers"]}
SELF = {"emails": [ALICE, BOB], "no_self_approval": True, "identities": {ALICE: "alice-gh", "sub-bob": "bob-gh"}}
CHECKS: list[tuple[str, dict[str, Any] | None, Identity, str, dict[str, Any], str | None]] = [
    # case, policy section, who signed in, whose link, record, refusal
    ("no policy: the link's approver", None, person(BOB), BOB, record(), None),
    ("no policy: someone else", None, person(BOB), ALICE, record(), "WrongApprover"),
    ("named by email", {"emails": [BOB]}, person("Bob@Example.com"), BOB, record(), None),
    ("a member of the group", GROUPS, person(BOB, "release-approvers"), BOB, record(), None),
    ("in another group only", GROUPS, person(BOB, "developers"), BOB, record(), "NotAnApprover"),
    ("named nowhere", {"emails": [CAROL]}, person(BOB), BOB, record(), "NotAnApprover"),
    ("a group member on another's link", GROUPS, person(BOB, "release-approvers"), ALICE, record(), "WrongApprover"),
    ("the build's actor", SELF, person(ALICE), ALICE, record("alice-gh"), "SelfApproval"),
    ("the build's actor, login case differs", SELF, person(ALICE), ALICE, record("Alice-GH"), "SelfApproval"),
    ("the build's triggering actor", SELF, person(ALICE), ALICE, record("bot", triggering="alice-gh"), "SelfApproval"),
    ("mapped by subject, the actor", SELF, person(BOB), BOB, record("bob-gh"), "SelfApproval"),
    ("another approver of the actor's build", SELF, person(BOB), BOB, record("alice-gh"), None),
    ("no provenance", SELF, person(BOB), BOB, {"release_id": "r-1", "evidence": {}}, "BuildActorUnknown"),
    ("provenance without an actor", SELF, person(BOB), BOB, record(None), "BuildActorUnknown"),
    ("provenance refused", SELF, person(BOB), BOB, record("alice-gh", verified=False), "BuildActorUnknown"),
    ("an approver the identities do not map", {**SELF, "emails": [ALICE, BOB, CAROL]}, person(CAROL), CAROL, record(),
     "IdentityNotMapped"),
    ("self-approval allowed", {"emails": [ALICE]}, person(ALICE), ALICE, record("alice-gh"), None),
]


@pytest.mark.parametrize(("case", "section", "who", "link", "release", "expected"), CHECKS, ids=[c[0] for c in CHECKS])
def test_the_approver_check_passes_or_refuses_by_name(case: str, section: dict[str, Any] | None, who: Identity, link: str,
                                                      release: dict[str, Any], expected: str | None) -> None:
    assert refusal(lambda: check(section)(claims(link), who, release)) == expected, case


def test_the_build_actors_are_read_from_verified_provenance_only() -> None:
    assert build_actors(record("Alice-GH", triggering="bot")) == {"alice-gh", "bot"}
    assert build_actors(record("alice-gh", verified=False)) == frozenset()
    assert build_actors({"evidence": "not a dict"}) == frozenset()


# --- when the votes decide ---------------------------------------------------------------------------
def vote(decision: str, who: str) -> dict[str, Any]:
    return {"decision": decision, "subject": f"sub-{who}", "email": f"{who}@example.com"}


OUTCOMES: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]], str | None]] = [
    ("no policy: one approval", None, [vote(APPROVED, "alice")], APPROVED),
    ("no policy: one rejection", None, [vote(REJECTED, "alice")], REJECTED),
    ("2 of 3: one approval waits", {**GROUPS, "required": 2}, [vote(APPROVED, "alice")], None),
    ("2 of 3: the same person twice still waits", {**GROUPS, "required": 2},
     [vote(APPROVED, "alice"), vote(APPROVED, "alice")], None),
    ("2 of 3: two people approve", {**GROUPS, "required": 2}, [vote(APPROVED, "alice"), vote(APPROVED, "bob")], APPROVED),
    ("2 of 3: one reject ends it", {**GROUPS, "required": 2}, [vote(APPROVED, "alice"), vote(REJECTED, "bob")], REJECTED),
    ("a person's later reject does not count", {**GROUPS, "required": 2},
     [vote(APPROVED, "alice"), vote(REJECTED, "alice")], None),
    ("two rejections needed: one waits", {**GROUPS, "rejections": 2}, [vote(REJECTED, "alice")], None),
    ("two rejections needed: two end it", {**GROUPS, "rejections": 2}, [vote(REJECTED, "alice"), vote(REJECTED, "bob")],
     REJECTED),
    ("whichever number is reached first", {**GROUPS, "required": 2, "rejections": 2},
     [vote(REJECTED, "carol"), vote(APPROVED, "alice"), vote(APPROVED, "bob"), vote(REJECTED, "dan")], APPROVED),
]


@pytest.mark.parametrize(("case", "section", "votes", "expected"), OUTCOMES, ids=[c[0] for c in OUTCOMES])
def test_the_votes_decide_at_the_policys_numbers(case: str, section: dict[str, Any] | None, votes: list[dict[str, Any]],
                                                 expected: str | None) -> None:
    assert check(section).outcome({"votes": votes}) == expected, case


def test_the_page_says_the_votes_so_far_and_who_decided() -> None:
    approvers = check({**GROUPS, "required": 2})
    waiting = {"votes": [vote(APPROVED, "alice"), vote(APPROVED, "alice")]}
    assert approvers.progress(waiting) == "1 of 2 approval(s) needed (alice@example.com); 1 rejection(s) end it"
    done = {"votes": [vote(APPROVED, "alice"), vote(APPROVED, "bob")]}
    assert approvers.deciders(done, APPROVED) == "alice@example.com, bob@example.com"
