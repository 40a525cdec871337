"""`ApprovalRefused`: the approval page's one refusal (shared by the page and the approver policy), and
what the page says about a release that is decided, expired or no longer waiting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podrelease.approval import render
from podrelease.approval.store import SUPERSEDED, TASK_GONE_ERRORS, iso
from podrelease.core.errors import ReleaseError

if TYPE_CHECKING:
    from collections.abc import Mapping

# Step Functions' answers when the page's role may not call it: an operator must fix the stack, retrying will not help.
NOT_ALLOWED_ERRORS = frozenset({"AccessDenied", "AccessDeniedException"})


class ApprovalRefused(ReleaseError):
    """The page refuses the request and says why; nothing was approved or rejected by it. `reason` names
    the refusal (the `X-Approval-Refusal` header) for tests and logs."""

    def __init__(self, status: int, title: str, detail: str, reason: str = "Refused") -> None:
        super().__init__(title)
        self.status, self.title, self.detail, self.reason = status, title, detail, reason


# --- what the page says about a decided or expired release ---------------------------------------
def decided_refusal(record: Mapping[str, Any]) -> ApprovalRefused:
    when = iso(record["decided_at"]) if record.get("decided_at") else "earlier"
    if record.get("status") == SUPERSEDED:
        return ApprovalRefused(
            410, "Release superseded",
            f"Release {record.get('release_id')} was superseded by {record.get('decided_by')} at {when}: a newer image "
            "of the same repository reached approval after it, and dev runs that one now. Nothing was changed; "
            "decide on the newer release from its own email.", "Superseded",
        )
    votes = render.votes_text(record)
    return ApprovalRefused(
        410, f"Release already {record.get('status')}",
        f"Release {record.get('release_id')} was already {record.get('status')} by {record.get('decided_by')} at "
        f"{when}. Decisions: {votes}. Nothing was changed. A decision cannot be changed; to undo an approval, roll "
        "back prod or start a new release.", "AlreadyDecided",
    )


def expired_refusal(record: Mapping[str, Any]) -> ApprovalRefused:
    return ApprovalRefused(
        410, "This approval has expired",
        f"The approval window of release {record.get('release_id')} closed at {iso(record['expires_at'])}. "
        "Nothing was changed; start a new release to deploy this digest to prod.", "ApprovalExpired",
    )


def undelivered(record: Mapping[str, Any], code: str) -> ApprovalRefused:
    if code in TASK_GONE_ERRORS:
        # TaskTimedOut: the waiting task is closed (approval window over, execution stopped,
        # timed out or otherwise ended); InvalidToken / TaskDoesNotExist: nothing waits on it.
        return ApprovalRefused(
            410, "This release is no longer waiting",
            f"Your decision ({record['status']}) was recorded, but release {record['release_id']} is no longer "
            "waiting for a decision: its approval window closed, or it was stopped or ended. Nothing was "
            "changed. Start a new release to deploy this digest.", "TaskGone",
        )
    if code in NOT_ALLOWED_ERRORS:
        return ApprovalRefused(
            500, "Decision recorded, not delivered",
            f"Your decision ({record['status']}) was recorded, but Step Functions refused this page's call "
            f"({code}): the approval page's role lacks states:SendTaskSuccess/SendTaskFailure on the release "
            "state machine. Tell the team that runs this stack; once it is fixed, submit the same decision again.",
            "NotAllowed",
        )
    return ApprovalRefused(
        503, "Decision recorded, not yet delivered",
        "Your decision was recorded but Step Functions could not be reached. Go back and submit the same "
        "decision again in a minute to deliver it.", "NotDelivered",
    )
