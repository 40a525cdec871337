"""The approval page: the link is a capability, the sign-in says who holds it; only both decide.

GET `?t=<link token>`: a genuine link for a pending release sends a browser without a session to
the organisation's OIDC provider (`podrelease.approval.signin`, code flow with PKCE); back at
`/callback` the ID token is checked and a short-lived session cookie set (`podrelease.approval.session`);
then GET shows the summary, the votes so far and the form, if the signed-in identity may decide on
this link (its email is the link's approver, and the approver policy, `podrelease.approval.approvers`:
named approvers or groups, no self-approval, says so). GET never writes anything (email link scanners
prefetch it).

POST decides only with: the form's Content-Type, a same-origin request (Origin / Sec-Fetch-Site),
a session, the link's token, the identity the link was issued to, and the page's nonce (checked in
constant time). The vote is a conditional update (`status = pending`, one vote per person), recorded
with who (provider subject and email), when, from which link, the comment (and, for reject-and-block,
the block of the digest); when the votes reach the policy's numbers (N of M approvals, or its
rejections) the record is decided and Step Functions told; before that the release waits.
Every refusal is `ApprovalRefused` with a name (`X-Approval-Refusal`).
"""

from __future__ import annotations

import hmac
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from botocore.exceptions import ClientError

from podrelease.approval import render
from podrelease.approval.approvers import ApproverCheck
from podrelease.approval.refusal import ApprovalRefused, decided_refusal, expired_refusal, undelivered
from podrelease.approval.session import (
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    LoginState,
    Session,
    SessionInvalid,
    check_form_nonce,
    form_nonce,
    now_or,
)
from podrelease.approval.signin import SignInFailed
from podrelease.approval.store import APPROVED, PENDING, REJECTED, TASK_GONE_ERRORS, callback_state, iso
from podrelease.core import config
from podrelease.core.errors import ApprovalRejected, TokenExpired, TokenInvalid
from podrelease.core.obs import bind_release, get_logger, register_secret

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from aws_lambda_powertools import Tracer

    from podrelease.approval.keys import SigningKeys
    from podrelease.approval.signin import OidcClient
    from podrelease.approval.store import ApprovalStore
    from podrelease.approval.tokens import Claims

logger = get_logger("approval")

#: A form body longer than this is refused unread (a real one is well under 4 KiB).
MAX_FORM_BYTES = 8 * 1024
MAX_COMMENT_CHARS = 500
#: The form's buttons: approve, reject, and reject-and-block (the digest may not be released again until unblocked).
DECISIONS = {"approve": APPROVED, "reject": REJECTED, "reject-block": REJECTED}
CALLBACK_PATH = "/callback"
SECURITY_HEADERS = render.SECURITY_HEADERS


@dataclass(frozen=True)
class PageSettings:
    table: str
    key_secret_id: str
    sign_in_parameter: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PageSettings:
        return cls(table=config.require("LEDGER_TABLE", env), key_secret_id=config.require("APPROVAL_KEY_SECRET_ARN", env),
                   sign_in_parameter=config.require("SIGN_IN_PARAMETER", env))


@dataclass(frozen=True)
class HtmlPage:
    """One answer of the page: status, headers (the security headers at least), cookies and the document."""

    status: int
    document: str
    headers: dict[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))
    cookies: list[Cookie] = field(default_factory=list)


def _page(status: int, title: str, body: str) -> HtmlPage:
    return HtmlPage(status, render.document(title, body))


def refusal_page(refusal: ApprovalRefused) -> HtmlPage:
    page = _page(refusal.status, refusal.title, f"<p>{html.escape(refusal.detail)}</p>")
    page.headers["X-Approval-Refusal"] = refusal.reason
    if refusal.status == 405:
        page.headers["Allow"] = "GET, POST"
    return page


def unavailable_page(status: int, reason: str) -> HtmlPage:
    """The page when the service itself fails (configuration, ledger): nothing was decided."""
    return _page(status, "Approval page unavailable", f"<p>{html.escape(reason)}</p>")


def method_not_allowed() -> ApprovalRefused:
    return ApprovalRefused(405, "Method not allowed", "Open the link from the approval email; decide with its buttons.",
                           "MethodNotAllowed")


# --- reading the request ------------------------------------------------------------------------
def token_from_query(query: Mapping[str, Sequence[str]]) -> str:
    """The link's token (`?t=`): exactly one, not empty."""
    values = list(query.get("t", []))
    if len(values) != 1 or not values[0]:
        raise ApprovalRefused(
            400, "Missing approval token", "This page needs the full link from the approval email (it ends in ?t=...).",
            "MissingToken",
        )
    return values[0]


@dataclass(frozen=True)
class DecisionForm:
    token: str
    decision: str
    nonce: str
    comment: str

    @property
    def block(self) -> bool:
        return self.decision == "reject-block"


def check_post_origin(headers: Mapping[str, str], expected_origin: str) -> None:
    """A decision comes from the page itself: Sec-Fetch-Site `same-origin` and/or Origin equal to the
    page's; at least one of them present (every browser sends them on a form POST)."""
    site = (headers.get("sec-fetch-site") or "").strip().lower()
    origin = (headers.get("origin") or "").strip()
    # The page's Referrer-Policy is no-referrer, so browsers send `Origin: null` with its own form:
    # then Sec-Fetch-Site (sent by every current browser) alone decides.
    origin = "" if origin == "null" else origin
    cross = ApprovalRefused(403, "Cross-site request refused",
                            "Decisions are only accepted from the form on the approval page itself. Nothing was decided.",
                            "CrossSiteRequest")
    if not site and not origin:
        raise cross
    if site and site != "same-origin":
        raise cross
    if origin and origin.rstrip("/") != expected_origin.rstrip("/"):
        raise cross


def read_form(body: str | None, content_type: str | None) -> DecisionForm:
    """The page's form (application/x-www-form-urlencoded: t, decision, n, comment?)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise ApprovalRefused(415, "Unsupported form", "The decision must be sent by the form on the approval page.",
                              "BadContentType")
    raw = body or ""
    if len(raw) > MAX_FORM_BYTES:
        raise ApprovalRefused(400, "Bad request", "The form is too large. Use the form on the approval page.", "FormTooLarge")
    try:
        fields = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=10)
    except ValueError as exc:
        raise unreadable_form() from exc
    token, decision, nonce = fields.get("t", []), fields.get("decision", []), fields.get("n", [])
    comment = fields.get("comment", [""])
    if len(token) != 1 or len(decision) != 1 or decision[0] not in DECISIONS or len(comment) != 1:
        raise ApprovalRefused(400, "Bad request", "The form must carry the link's token and decision=approve or decision=reject.",
                              "BadForm")
    if len(nonce) != 1 or not nonce[0]:
        raise ApprovalRefused(403, "This form is not from the approval page",
                              "The form carries no page nonce. Open the link and use the page's buttons. Nothing was decided.",
                              "FormNonceMissing")
    return DecisionForm(token[0], decision[0], nonce[0], comment[0].strip()[:MAX_COMMENT_CHARS])


def unreadable_form() -> ApprovalRefused:
    return ApprovalRefused(400, "Bad request", "The form could not be read. Use the form on the approval page.", "BadForm")


def _sign_in_again(detail: str, reason: str) -> ApprovalRefused:
    return ApprovalRefused(401, "Please sign in again", f"{detail} Open the link from the approval email again to sign in. "
                           "Nothing was decided.", reason)


# --- the page -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalPage:
    """Shows and decides approvals: the ledger's approval records, the signing keys, the sign-in
    provider (built on first use) and Step Functions (all injected)."""

    store: ApprovalStore
    keys: SigningKeys
    sfn: Any
    sign_in: Callable[[], OidcClient]
    tracer: Tracer | None = None
    #: Who may decide and when the votes decide (`podrelease.approval.approvers`).
    approver_check: ApproverCheck = field(default_factory=ApproverCheck)
    #: Records a block of a digest (digest, who, reason, now): the handler passes the ledger's
    #: (`podrelease.release.actions.Actions.block`); without it the page offers no reject-and-block.
    block: Callable[[str, str, str, float], object] | None = None

    # --- cookies ---
    def _cookie(self, name: str, value: str, max_age: int, same_site: SameSite) -> Cookie:
        return Cookie(name, value, path="/", secure=self.sign_in().settings.secure, http_only=True, max_age=max_age,
                      same_site=same_site)

    def session_of(self, cookies: Mapping[str, str], now: float) -> Session | None:
        value = cookies.get(SESSION_COOKIE)
        if not value:
            return None
        register_secret(value)
        try:
            return Session.unseal(self.keys.ring().keys, value, now)
        except SessionInvalid:
            return None

    # --- GET ---
    def show(self, token: str, cookies: Mapping[str, str], now: float | None = None) -> HtmlPage:
        """GET: sends a visitor without a session to sign in; shows the signed-in approver the summary
        and the form; changes nothing."""
        current = now_or(now)
        claims, record = self._bound(token, current)
        if record.get("status") != PENDING:
            raise decided_refusal(record)
        if int(record["expires_at"]) <= current:
            raise expired_refusal(record)
        session = self.session_of(cookies, current)
        if session is None:
            return self._to_sign_in(token, current)
        self.approver_check(claims, session.identity, record)
        nonce = form_nonce(self.keys.ring(), session, claims.jti, current)
        form = (
            '<form class="decide" method="post" action="">'
            f'<input type="hidden" name="t" value="{html.escape(token, quote=True)}">'
            f'<input type="hidden" name="n" value="{html.escape(nonce, quote=True)}">'
            '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
            '<button class="reject" type="submit" name="decision" value="reject">Reject</button>'
            + ('<button class="reject" type="submit" name="decision" value="reject-block">Reject and block this digest'
               '</button>' if self.block is not None else "") +
            '<br><label>Comment (optional, recorded with your decision):<br>'
            f'<textarea name="comment" rows="2" maxlength="{MAX_COMMENT_CHARS}"></textarea></label></form>'
        )
        body = (
            f'<p class="note">Signed in as <b>{html.escape(session.identity.email)}</b>. Promote this exact digest of '
            "podinfo from dev to prod? Opening this page changed nothing; only the buttons decide, and a decision "
            f"cannot be changed. Votes so far: {html.escape(self.approver_check.progress(record))}.</p>"
            f"{form}<h2>At a glance</h2>{render.summary_html(record, current)}"
            f"<h2>Details</h2>{render.raw_html(record)}"
        )
        return _page(200, f"Approve podinfo release {record['release_id']} for prod?", body)

    def _to_sign_in(self, token: str, now: float) -> HtmlPage:
        login = LoginState.begin(token, now)
        target = self.sign_in().authorize_url(login)
        link = html.escape(target, quote=True)
        page = _page(302, "Sign in to decide", f'<p><a href="{link}">Sign in</a> to see this release.</p>')
        page.headers["Location"] = target
        # Lax: the provider sends the browser back with a cross-site top-level GET (Strict would not be sent).
        page.cookies.append(self._cookie(LOGIN_COOKIE, login.seal(self.keys.ring()), LOGIN_SECONDS, SameSite.LAX_MODE))
        return page

    def callback(self, query: Mapping[str, Sequence[str]], cookies: Mapping[str, str], now: float | None = None) -> HtmlPage:
        """GET /callback: the provider's answer; checks state, redeems the code (PKCE) and the ID token
        (nonce), then starts a session and sends the browser back to the link."""
        current = now_or(now)
        raw_login = cookies.get(LOGIN_COOKIE, "")
        register_secret(raw_login)
        try:
            login = LoginState.unseal(self.keys.ring().keys, raw_login, current)
        except SessionInvalid as exc:
            raise _sign_in_again("This sign-in was not started here, or took too long.", "LoginStateInvalid") from exc
        states, codes = list(query.get("state", [])), list(query.get("code", []))
        if len(states) != 1 or not _same(states[0], login.state):
            raise _sign_in_again("The provider's answer does not belong to this sign-in.", "LoginStateMismatch")
        if query.get("error") or len(codes) != 1 or not codes[0]:
            raise _sign_in_again("The provider did not sign you in.", "SignInDenied")
        register_secret(codes[0])
        try:
            identity = self.sign_in().redeem(codes[0], login, current)
        except SignInFailed as exc:
            logger.warning("sign-in failed", extra={"reason": str(exc)[:200]})
            raise _sign_in_again("The sign-in could not be verified.", "SignInFailed") from exc
        session = Session.start(identity, current)
        link = f"{self.sign_in().settings.redirect_uri.removesuffix(CALLBACK_PATH.lstrip('/'))}?t={login.link_token}"
        logger.info("signed in", extra={"subject": identity.subject})
        # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect would continue the
        # provider's cross-site navigation (Strict cookies are not sent on it); this page's own refresh is same-site.
        page = _page(200, "Signed in",
                     f'<meta http-equiv="refresh" content="0;url={html.escape(link, quote=True)}">'
                     f"<p>Signed in as {html.escape(identity.email)}. "
                     f'<a href="{html.escape(link, quote=True)}">Continue to the release</a>.</p>')
        page.cookies.append(self._cookie(SESSION_COOKIE, session.seal(self.keys.ring()), SESSION_SECONDS, SameSite.STRICT_MODE))
        page.cookies.append(self._cookie(LOGIN_COOKIE, "", 0, SameSite.LAX_MODE))
        return page

    # --- POST ---
    def decide(self, form: DecisionForm, cookies: Mapping[str, str], now: float | None = None) -> HtmlPage:
        """POST: the signed-in approver's decision on their link, with the page's nonce; the first counts."""
        current = now_or(now)
        register_secret(form.nonce)
        session = self.session_of(cookies, current)
        if session is None:
            raise ApprovalRefused(401, "Sign in to decide",
                                  "There is no signed-in session with this request: a decision needs both the link and your "
                                  "sign-in. Open the link from the approval email. Nothing was decided.", "SignInRequired")
        claims, record = self._bound(form.token, current)
        try:
            self.approver_check(claims, session.identity, record)
        except ApprovalRefused as refusal:
            self.store.note_refused(claims.rid, {"subject": session.identity.subject, "email": session.identity.email,
                                                 "at": int(current), "link": claims.jti, "reason": refusal.reason}, current)
            raise
        try:
            check_form_nonce(self.keys.ring().keys, form.nonce, session, claims.jti, current)
        except SessionInvalid as exc:
            raise ApprovalRefused(403, "This form is not from your approval page",
                                  "The form's nonce does not match this page and session (a stale page or another site's "
                                  "form). Open the link again. Nothing was decided.", "FormNonceInvalid") from exc
        status = DECISIONS[form.decision]
        if form.block and self.block is None:
            raise ApprovalRefused(400, "Blocking is not available here", "This page cannot block digests. Nothing was "
                                  "decided.", "BlockUnavailable")
        if record.get("status") != PENDING:
            # A delivery that failed transiently may be retried with the same decision; nothing else.
            if record.get("status") == status and record.get("callback") == "failed":
                return self._deliver(record, current)
            raise decided_refusal(record)
        vote = {"decision": status, "subject": session.identity.subject, "email": session.identity.email,
                "issuer": session.identity.issuer, "at": int(current), "link": claims.jti, "approver": claims.apr,
                "comment": form.comment, "block": form.block}
        voted = self.store.vote(claims, vote, current)
        if voted is None:  # decided, expired, or this person voted already (then perhaps a retry after a crash)
            voted = self.store.get(claims.rid) or dict(record)
            if voted.get("status") != PENDING:
                raise decided_refusal(voted)
            if session.identity.subject not in (voted.get("voters") or []):
                raise expired_refusal(voted)
            if self.approver_check.outcome(voted) is None:
                raise ApprovalRefused(409, "You have already voted",
                                      f"Your vote on release {claims.rid} is recorded and counts once: "
                                      f"{self.approver_check.progress(voted)}. Nothing was changed.", "AlreadyVoted")
        elif form.block:
            assert self.block is not None  # noqa: S101 - checked above
            self.block(record["digest"], f"{session.identity.email} (subject {session.identity.subject}) on the approval "
                       f"page, link {claims.jti}", form.comment or f"rejected and blocked on release {claims.rid}", current)
        logger.info("vote recorded", extra={"decision": status, "subject": session.identity.subject, "block": form.block})
        return self._conclude(claims, voted, current)

    def _conclude(self, claims: Claims, record: Mapping[str, Any], now: float) -> HtmlPage:
        """Decide when the votes in `record` reach the policy's numbers; else say the release waits."""
        status = self.approver_check.outcome(record)
        if status is None:
            return _page(200, "Your vote is recorded",
                         f"<p>Release {html.escape(record['release_id'])} waits for more votes: "
                         f"{html.escape(self.approver_check.progress(record))}. Each approver decides from their own "
                         f"link.</p><h2>Decisions</h2><p>{html.escape(render.votes_text(record))}</p>")
        decided = self.store.conclude(claims.rid, status, self.approver_check.deciders(record, status), claims.jti, now)
        if decided is None:  # another vote decided it at the same time
            raise decided_refusal(self.store.get(claims.rid) or dict(record))
        logger.info("decision recorded", extra={"decision": status, "decided_by": decided["decided_by"]})
        return self._deliver(decided, now)

    def _bound(self, token: str, now: float) -> tuple[Claims, dict[str, Any]]:
        """The token's claims and the record they are bound to (same execution, digest, an approver)."""
        register_secret(token)
        try:
            claims = self.keys.verify(token, now)
        except TokenExpired as exc:
            raise ApprovalRefused(410, "This approval link has expired",
                                  "The link is past its expiry. Ask the release owner to start a new release.",
                                  "LinkExpired") from exc
        except TokenInvalid as exc:
            raise ApprovalRefused(
                403, "This approval link is not valid",
                "The link is damaged or was not issued by the release control plane. Open the link from the "
                "approval email exactly as received; nothing was approved or rejected.", "LinkInvalid",
            ) from exc
        bind_release(logger, claims.rid, self.tracer)
        record = self.store.get(claims.rid)
        if record is None:
            raise ApprovalRefused(
                404, "Unknown release",
                f"There is no pending approval for release {claims.rid}. It may have been cleaned up after it "
                "expired; check the release timeline.", "UnknownRelease",
            )
        if (
            record.get("execution_arn") != claims.exe
            or record.get("digest") != claims.dig
            or claims.apr not in (record.get("approvers") or [])
        ):
            raise ApprovalRefused(
                403, "This approval link is not valid for this release",
                "The link was issued for another execution, digest or approver. Use the link from the latest "
                "approval email; nothing was approved or rejected.", "LinkNotForRelease",
            )
        return claims, record

    def _deliver(self, record: Mapping[str, Any], now: float) -> HtmlPage:
        """Tell Step Functions the decision already committed in `record`; record what happened."""
        task_token = record["task_token"]
        register_secret(task_token)
        votes = [v for v in record.get("votes") or [] if isinstance(v, dict)]
        vote = votes[-1] if votes else {}
        try:
            if record["status"] == APPROVED:
                self.sfn.send_task_success(taskToken=task_token, output=json.dumps({
                    "approved_by": record["decided_by"], "decided_at": iso(record["decided_at"]),
                    "subject": vote.get("subject"), "link": vote.get("link"), "comment": vote.get("comment", ""),
                    "votes": [render.vote_text(v) for v in votes]}))
            else:
                self.sfn.send_task_failure(
                    taskToken=task_token, error=ApprovalRejected.__name__,
                    cause=f"rejected by {record['decided_by']} at {iso(record['decided_at'])}. Decisions: "
                          f"{render.votes_text(record)}"[:1000],
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            self.store.set_callback(record["release_id"], callback_state(code), code, now)
            logger.warning("decision not delivered to Step Functions", extra={"error_code": code,
                                                                              "task_gone": code in TASK_GONE_ERRORS})
            raise undelivered(record, code) from exc
        self.store.set_callback(record["release_id"], "delivered", None, now)
        logger.info("decision delivered", extra={"decision": record["status"], "decided_by": record["decided_by"]})
        verb = "approved" if record["status"] == APPROVED else "rejected"
        detail = ("The same digest is now being promoted to prod." if verb == "approved"
                  else "The release stops here; prod is unchanged.")
        window = render.window_line(record.get("evidence") or {}) if verb == "approved" else None
        if window is not None and not window.good:  # closed: the approval takes effect when prod's window opens
            detail = f"The approval is recorded. {window.label}: {window.text}."
        return _page(
            200, f"Release {verb}",
            f"<p>Release {html.escape(record['release_id'])} ({html.escape(record['digest'])}) was {verb} by "
            f"{html.escape(str(record['decided_by']))}. {html.escape(detail)}</p>"
            f"<h2>Decisions</h2><p>{html.escape(render.votes_text(record))}</p>",
        )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
