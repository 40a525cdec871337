"""The approval page: GET shows what is being approved and changes nothing, POST decides.

Email link scanners prefetch GETs, so GET never writes anything. A POST records the decision with a
conditional update (`status = pending`, so the first decision wins and every later one is refused),
then tells Step Functions: SendTaskSuccess for approve, SendTaskFailure(ApprovalRejected) for reject.
Every answer is a small HTML document with strict security headers and no script; every refusal is
`ApprovalRefused`, whose status, title and detail the page shows (the function's exception handler).
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from botocore.exceptions import ClientError

from podrelease.approval.store import APPROVED, PENDING, REJECTED, SUPERSEDED, TASK_GONE_ERRORS, callback_state, iso
from podrelease.core import config
from podrelease.core.errors import ApprovalRejected, ReleaseError, TokenExpired, TokenInvalid
from podrelease.core.obs import bind_release, get_logger, register_secret

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from aws_lambda_powertools import Tracer

    from podrelease.approval.keys import SigningKeys
    from podrelease.approval.store import ApprovalStore
    from podrelease.approval.tokens import Claims

logger = get_logger("approval")

#: A form body longer than this is refused unread (a real one is well under 3 KiB).
MAX_FORM_BYTES = 8 * 1024
DECISIONS = {"approve": APPROVED, "reject": REJECTED}
# Step Functions' answers when this page's role may not call it: an operator must fix the stack, retrying will not help.
NOT_ALLOWED_ERRORS = frozenset({"AccessDenied", "AccessDeniedException"})

SECURITY_HEADERS: dict[str, str] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}"
    "dt{font-weight:600;margin-top:.6rem}dd{margin:0;word-break:break-all}"
    "pre{background:#f4f4f4;padding:.6rem;overflow:auto;font-size:.85rem}"
    "button{font-size:1rem;padding:.5rem 1.4rem;margin-right:1rem;border-radius:4px;border:1px solid #555}"
    ".approve{background:#1f7a1f;color:#fff}.reject{background:#a11;color:#fff}.note{color:#555}"
)


@dataclass(frozen=True)
class PageSettings:
    table: str
    key_secret_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PageSettings:
        return cls(table=config.require("LEDGER_TABLE", env), key_secret_id=config.require("APPROVAL_KEY_SECRET_ARN", env))


class ApprovalRefused(ReleaseError):
    """The page refuses the request and says why; nothing was approved or rejected by it."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class HtmlPage:
    """One answer of the page: status, headers (the security headers at least) and the document."""

    status: int
    document: str
    headers: dict[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))


def _page(status: int, title: str, body: str) -> HtmlPage:
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HtmlPage(status, document)


def refusal_page(refusal: ApprovalRefused) -> HtmlPage:
    page = _page(refusal.status, refusal.title, f"<p>{html.escape(refusal.detail)}</p>")
    if refusal.status == 405:
        page.headers["Allow"] = "GET, POST"
    return page


def unavailable_page(status: int, reason: str) -> HtmlPage:
    """The page when the service itself fails (configuration, ledger): nothing was decided."""
    return _page(status, "Approval page unavailable", f"<p>{html.escape(reason)}</p>")


def method_not_allowed() -> ApprovalRefused:
    return ApprovalRefused(405, "Method not allowed", "Open the link from the approval email; decide with its buttons.")


# --- reading the request ------------------------------------------------------------------------
def token_from_query(query: Mapping[str, Sequence[str]]) -> str:
    """The link's token (`?t=`): exactly one, not empty."""
    values = list(query.get("t", []))
    if len(values) != 1 or not values[0]:
        raise ApprovalRefused(
            400, "Missing approval token", "This page needs the full link from the approval email (it ends in ?t=...)."
        )
    return values[0]


def read_form(body: str | None, content_type: str | None) -> tuple[str, str]:
    """The token and decision of the page's form (application/x-www-form-urlencoded: t, decision)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type and media_type != "application/x-www-form-urlencoded":
        raise ApprovalRefused(400, "Bad request", "The decision must be sent by the form on the approval page.")
    raw = body or ""
    if len(raw) > MAX_FORM_BYTES:
        raise ApprovalRefused(400, "Bad request", "The form is too large. Use the form on the approval page.")
    try:
        fields = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=10)
    except ValueError as exc:
        raise unreadable_form() from exc
    token, decision = fields.get("t", []), fields.get("decision", [])
    if len(token) != 1 or len(decision) != 1 or decision[0] not in DECISIONS:
        raise ApprovalRefused(400, "Bad request", "The form must carry the link's token and decision=approve or decision=reject.")
    return token[0], decision[0]


def unreadable_form() -> ApprovalRefused:
    return ApprovalRefused(400, "Bad request", "The form could not be read. Use the form on the approval page.")


# --- what the page says -------------------------------------------------------------------------
def _pre(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str) if value not in (None, {}, []) else "(none)"
    return f"<pre>{html.escape(text)}</pre>"


def _facts_html(record: Mapping[str, Any], claims: Claims) -> str:
    rows = [
        ("Release (correlation id)", record["release_id"]),
        ("Repository", record["repository"]),
        ("Digest", record["digest"]),
        ("Image", record.get("image_uri") or "(not given)"),
        ("Execution", record["execution_arn"]),
        ("You are", claims.apr),
        ("Link expires", iso(claims.exp)),
    ]
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)
    return (
        f"<dl>{items}</dl><h2>Signature and SBOM evidence</h2>{_pre(record.get('evidence'))}"
        f"<h2>Dev deployment results</h2>{_pre(record.get('dev'))}"
    )


def _decided_refusal(record: Mapping[str, Any]) -> ApprovalRefused:
    when = iso(record["decided_at"]) if record.get("decided_at") else "earlier"
    if record.get("status") == SUPERSEDED:
        return ApprovalRefused(
            410,
            "Release superseded",
            f"Release {record.get('release_id')} was superseded by {record.get('decided_by')} at {when}: a newer image "
            "of the same repository reached approval after it, and dev runs that one now. Nothing was changed; "
            "decide on the newer release from its own email.",
        )
    return ApprovalRefused(
        410,
        f"Release already {record.get('status')}",
        f"Release {record.get('release_id')} was already {record.get('status')} by {record.get('decided_by')} at "
        f"{when}. Nothing was changed. A decision cannot be changed; to undo an approval, roll back prod or "
        "start a new release.",
    )


def _expired_refusal(record: Mapping[str, Any]) -> ApprovalRefused:
    return ApprovalRefused(
        410,
        "This approval has expired",
        f"The approval window of release {record.get('release_id')} closed at {iso(record['expires_at'])}. "
        "Nothing was changed; start a new release to deploy this digest to prod.",
    )


def _undelivered(record: Mapping[str, Any], code: str) -> ApprovalRefused:
    if code in TASK_GONE_ERRORS:
        # TaskTimedOut: the waiting task is closed (approval window over, execution stopped,
        # timed out or otherwise ended); InvalidToken / TaskDoesNotExist: nothing waits on it.
        return ApprovalRefused(
            410,
            "This release is no longer waiting",
            f"Your decision ({record['status']}) was recorded, but release {record['release_id']} is no longer "
            "waiting for a decision: its approval window closed, or it was stopped or ended. Nothing was "
            "changed. Start a new release to deploy this digest.",
        )
    if code in NOT_ALLOWED_ERRORS:
        return ApprovalRefused(
            500,
            "Decision recorded, not delivered",
            f"Your decision ({record['status']}) was recorded, but Step Functions refused this page's call "
            f"({code}): the approval page's role lacks states:SendTaskSuccess/SendTaskFailure on the release "
            "state machine. Tell the team that runs this stack; once it is fixed, submit the same decision again.",
        )
    return ApprovalRefused(
        503,
        "Decision recorded, not yet delivered",
        "Your decision was recorded but Step Functions could not be reached. Go back and submit the same "
        "decision again in a minute to deliver it.",
    )


# --- the page -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalPage:
    """Shows and decides approvals: the ledger's approval records, the signing keys, Step Functions (injected)."""

    store: ApprovalStore
    keys: SigningKeys
    sfn: Any
    tracer: Tracer | None = None

    def show(self, token: str, now: float | None = None) -> HtmlPage:
        """GET: the release, its evidence and the decision form; changes nothing."""
        current = time.time() if now is None else now
        claims, record = self._bound(token, current)
        if record.get("status") != PENDING:
            raise _decided_refusal(record)
        if int(record["expires_at"]) <= current:
            raise _expired_refusal(record)
        form = (
            '<form method="post" action="">'
            f'<input type="hidden" name="t" value="{html.escape(token, quote=True)}">'
            '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
            '<button class="reject" type="submit" name="decision" value="reject">Reject</button></form>'
        )
        body = (
            '<p class="note">Promote this exact digest of podinfo from dev to prod? Opening this page changed '
            "nothing. The first decision from any approver counts and cannot be changed.</p>"
            f"{_facts_html(record, claims)}<h2>Decision</h2>{form}"
        )
        return _page(200, f"Approve podinfo release {record['release_id']} for prod?", body)

    def decide(self, token: str, decision: str, now: float | None = None) -> HtmlPage:
        """POST: record the first decision and tell Step Functions; every later one is refused."""
        current = time.time() if now is None else now
        claims, record = self._bound(token, current)
        status = DECISIONS[decision]
        if record.get("status") != PENDING:
            # A delivery that failed transiently may be retried with the same decision; nothing else.
            if record.get("status") == status and record.get("callback") == "failed":
                return self._deliver(record, current)
            raise _decided_refusal(record)
        decided = self.store.decide(claims, status, current)
        if decided is None:
            latest = self.store.get(claims.rid) or dict(record)
            raise _decided_refusal(latest) if latest.get("status") != PENDING else _expired_refusal(latest)
        logger.info("decision recorded", extra={"decision": status, "decided_by": claims.apr})
        return self._deliver(decided, current)

    def _bound(self, token: str, now: float) -> tuple[Claims, dict[str, Any]]:
        """The token's claims and the record they are bound to (same execution, digest, an approver)."""
        register_secret(token)
        try:
            claims = self.keys.verify(token, now)
        except TokenExpired as exc:
            raise ApprovalRefused(
                410,
                "This approval link has expired",
                "The link is past its expiry. Ask the release owner to start a new release.",
            ) from exc
        except TokenInvalid as exc:
            raise ApprovalRefused(
                403,
                "This approval link is not valid",
                "The link is damaged or was not issued by the release control plane. Open the link from the "
                "approval email exactly as received; nothing was approved or rejected.",
            ) from exc
        bind_release(logger, claims.rid, self.tracer)
        record = self.store.get(claims.rid)
        if record is None:
            raise ApprovalRefused(
                404,
                "Unknown release",
                f"There is no pending approval for release {claims.rid}. It may have been cleaned up after it "
                "expired; check the release timeline.",
            )
        if (
            record.get("execution_arn") != claims.exe
            or record.get("digest") != claims.dig
            or claims.apr not in (record.get("approvers") or [])
        ):
            raise ApprovalRefused(
                403,
                "This approval link is not valid for this release",
                "The link was issued for another execution, digest or approver. Use the link from the latest "
                "approval email; nothing was approved or rejected.",
            )
        return claims, record

    def _deliver(self, record: Mapping[str, Any], now: float) -> HtmlPage:
        """Tell Step Functions the decision already committed in `record`; record what happened."""
        task_token = record["task_token"]
        register_secret(task_token)
        try:
            if record["status"] == APPROVED:
                self.sfn.send_task_success(
                    taskToken=task_token,
                    output=json.dumps({"approved_by": record["decided_by"], "decided_at": iso(record["decided_at"])}),
                )
            else:
                self.sfn.send_task_failure(
                    taskToken=task_token, error=ApprovalRejected.__name__, cause=f"rejected by {record['decided_by']}"
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            self.store.set_callback(record["release_id"], callback_state(code), code, now)
            logger.warning("decision not delivered to Step Functions", extra={"error_code": code,
                                                                              "task_gone": code in TASK_GONE_ERRORS})
            raise _undelivered(record, code) from exc
        self.store.set_callback(record["release_id"], "delivered", None, now)
        logger.info("decision delivered", extra={"decision": record["status"], "decided_by": record["decided_by"]})
        verb = "approved" if record["status"] == APPROVED else "rejected"
        detail = (
            "The same digest is now being promoted to prod."
            if verb == "approved"
            else "The release stops here; prod is unchanged."
        )
        return _page(
            200,
            f"Release {verb}",
            f"<p>Release {html.escape(record['release_id'])} ({html.escape(record['digest'])}) was {verb} by "
            f"{html.escape(str(record['decided_by']))}. {html.escape(detail)}</p>",
        )
