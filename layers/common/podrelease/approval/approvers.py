"""Who may decide on an approval link, and when the votes decide: the approver policy of prod
(`podrelease.core.approvers`, from the release policy document) applied on the approval page.

`ApproverCheck(claims, identity, record)` refuses (`ApprovalRefused`, with a named reason) a signed-in
identity that may not decide on the link: not the link's approver (`WrongApprover`), not named by the
policy (`NotAnApprover`), the build's own actor (`SelfApproval`), an identity the policy's
`identities` do not map while self-approval is forbidden (`IdentityNotMapped`), or a release whose
provenance names no actor while self-approval is forbidden (`BuildActorUnknown`: unknown is never
allowed). `ApproverCheck.outcome(record)` reads the votes: approved when `required` distinct people
approved, rejected when `rejections` distinct people rejected (whichever came first), else None (the
release keeps waiting). One person's later votes do not count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from podrelease.approval.refusal import ApprovalRefused
from podrelease.approval.store import APPROVED, REJECTED
from podrelease.core.approvers import ApproverPolicy, approvers_in
from podrelease.core.errors import PolicyUnavailable
from podrelease.core.policy_fields import parameter_name

if TYPE_CHECKING:
    from podrelease.approval.session import Identity
    from podrelease.approval.tokens import Claims

#: The environment whose approvers decide on the approval page (it promotes dev's digest to prod).
APPROVAL_ENVIRONMENT = "prod"
#: Without an approvers section: the link's approver alone, one approval or one rejection.
LINK_APPROVER_ONLY = ApproverPolicy(emails=frozenset({"*"}))


def _refused(title: str, detail: str, reason: str) -> ApprovalRefused:
    return ApprovalRefused(403, title, f"{detail} Nothing was decided.", reason)


def build_actors(record: Mapping[str, Any]) -> frozenset[str]:
    """The GitHub logins that triggered the build, from the verified provenance in the record's evidence."""
    evidence = record.get("evidence")
    provenance = evidence.get("provenance") if isinstance(evidence, Mapping) else None
    if not isinstance(provenance, Mapping) or provenance.get("verified") is False:
        return frozenset()
    return frozenset(str(provenance[k]).lower() for k in ("actor", "triggering_actor") if provenance.get(k))


def counted(votes: Any) -> list[Mapping[str, Any]]:
    """The votes that count: each person's (provider subject's) first."""
    seen: set[str] = set()
    out = []
    for vote in votes or []:
        if isinstance(vote, Mapping) and vote.get("subject") not in seen:
            seen.add(str(vote.get("subject")))
            out.append(vote)
    return out


@dataclass(frozen=True)
class ApproverCheck:
    """The approval page's approver rules; `policy` returns prod's approvers (None: the link's approver alone)."""

    policy: Callable[[], ApproverPolicy | None] = lambda: None

    def rules(self) -> ApproverPolicy:
        return self.policy() or LINK_APPROVER_ONLY

    def __call__(self, claims: Claims, identity: Identity, record: Mapping[str, Any]) -> None:
        if identity.email.lower() != claims.apr.lower():
            raise _refused("This link is not yours",
                           f"You are signed in as {identity.email}, but this link was issued to another approver. Open the "
                           "link from your own approval email.", "WrongApprover")
        rules = self.policy()
        if rules is None:
            return
        if not rules.names(identity.email, identity.groups):
            raise _refused("You are not an approver of prod",
                           f"{identity.email} is neither named nor in a group the release policy lets approve prod "
                           f"(groups: {', '.join(sorted(rules.groups)) or 'none'}).", "NotAnApprover")
        if rules.no_self_approval:
            _not_the_builder(rules, identity, record)

    def outcome(self, record: Mapping[str, Any]) -> str | None:
        """APPROVED or REJECTED once the counted votes reach the policy's numbers, else None."""
        rules = self.rules()
        approvals = rejections = 0
        for vote in counted(record.get("votes")):
            approvals += vote.get("decision") == APPROVED
            rejections += vote.get("decision") == REJECTED
            if approvals >= rules.required:
                return APPROVED
            if rejections >= rules.rejections:
                return REJECTED
        return None

    def progress(self, record: Mapping[str, Any]) -> str:
        """The votes so far against the policy's numbers, for the page."""
        rules = self.rules()
        votes = counted(record.get("votes"))
        approvals = [str(v.get("email")) for v in votes if v.get("decision") == APPROVED]
        return (f"{len(approvals)} of {rules.required} approval(s) needed"
                f"{' (' + ', '.join(approvals) + ')' if approvals else ''}; {rules.rejections} rejection(s) end it")

    def deciders(self, record: Mapping[str, Any], status: str) -> str:
        """Who decided: the emails of the counted votes for `status`."""
        return ", ".join(str(v.get("email")) for v in counted(record.get("votes")) if v.get("decision") == status)


def _not_the_builder(rules: ApproverPolicy, identity: Identity, record: Mapping[str, Any]) -> None:
    actors = build_actors(record)
    if not actors:
        raise _refused("Approval refused: the build's actor is unknown",
                       "The release policy forbids approving your own change, and this release's evidence has no "
                       "verified provenance naming who triggered the build, so nobody can be shown not to be that person. "
                       "Require provenance for this environment, or release a build that carries it.", "BuildActorUnknown")
    logins = rules.logins(identity.email, identity.subject)
    if logins is None:
        raise _refused("Approval refused: your build identity is unknown",
                       f"The release policy forbids approving your own change, and its identities map does not name "
                       f"{identity.email}, so you cannot be told apart from the build's actor. Ask the policy's owner to "
                       "add you.", "IdentityNotMapped")
    if logins & actors:
        raise _refused("You cannot approve your own change",
                       f"This build was triggered by {', '.join(sorted(logins & actors))}, which the release policy maps to "
                       f"{identity.email}; it forbids self-approval. Another approver must decide.", "SelfApproval")


def load_approvers(env: Mapping[str, str], read_parameter: Callable[[str], str]) -> ApproverPolicy | None:
    """Prod's approvers from the release policy the stack runs (RELEASE_POLICY_PARAMETER at
    RELEASE_POLICY_VERSION); None when it runs the default policy (no approvers section either)."""
    name = parameter_name(env)
    if not name:
        return None
    try:
        document = read_parameter(name)
    except Exception as exc:
        msg = f"release policy parameter {name} could not be read ({type(exc).__name__})"
        raise PolicyUnavailable(msg) from exc
    return approvers_in(document, APPROVAL_ENVIRONMENT)
