"""Asking for approval: one ledger record per release, one signed link per approver, emailed through SNS.

The release waits in a `lambda:invoke.waitForTaskToken` Task. `request_approval` stores the Step
Functions task token in the approval record (it never leaves the control plane), mints one signed
link per approver and emails each approver. The link opens the approval page (`approval.page`):
GET only shows what is being approved, POST decides.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from podrelease.approval.render import summary_text
from podrelease.approval.store import PENDING, callback_state, iso
from podrelease.approval.tokens import mint_token
from podrelease.core import config
from podrelease.core.edge import field, mapping
from podrelease.core.errors import AlreadyDecided, ApprovalSuperseded, ConfigurationError, MalformedEvent
from podrelease.core.notify import sns_subject
from podrelease.core.obs import get_logger, register_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from podrelease.approval.keys import SigningKeys
    from podrelease.approval.store import ApprovalStore

logger = get_logger("approval")

#: Bounds of APPROVAL_TTL_SECONDS: at most 7 days. The template asks for at least 5 minutes; the
#: code accepts shorter windows so the local demo can show a timeout in seconds.
MIN_TTL_SECONDS = 5
MAX_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_TTL_SECONDS = 24 * 3600

_EMAIL_RE = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"']+$")


@dataclass(frozen=True)
class ReleaseFacts:
    """What is being approved, parsed from the state machine's payload."""

    release_id: str
    execution_arn: str
    repository: str
    digest: str
    image_uri: str
    tag: str = ""  # the ECR tag the push carried (e.g. 6.9.1), shown beside the digest

    @classmethod
    def from_payload(cls, release: Any) -> ReleaseFacts:
        if not isinstance(release, dict):
            msg = "approval request: release must be an object with id, execution, repository, digest"
            raise MalformedEvent(msg)
        fields = {}
        for name in ("id", "execution", "repository", "digest"):
            value = release.get(name)
            if not isinstance(value, str) or not value.strip():
                msg = f"approval request: release.{name} is missing"
                raise MalformedEvent(msg)
            fields[name] = value.strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", fields["digest"]):
            msg = "approval request: release.digest is not sha256:<64 hex>"
            raise MalformedEvent(msg)
        image_uri, tag = release.get("image_uri"), release.get("tag")
        return cls(
            release_id=fields["id"],
            execution_arn=fields["execution"],
            repository=fields["repository"],
            digest=fields["digest"],
            image_uri=image_uri if isinstance(image_uri, str) else "",
            tag=tag if isinstance(tag, str) else "",
        )


@dataclass(frozen=True)
class RequestSettings:
    table: str
    topic_arn: str
    key_secret_id: str
    base_url: str
    approvers: tuple[str, ...]
    ttl_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RequestSettings:
        ttl = config.integer("APPROVAL_TTL_SECONDS", DEFAULT_TTL_SECONDS, env)
        if not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
            msg = f"environment variable APPROVAL_TTL_SECONDS must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"
            raise ConfigurationError(msg)
        base_url = config.require("APPROVAL_BASE_URL", env)
        if not base_url.startswith(("https://", "http://")):
            msg = "environment variable APPROVAL_BASE_URL must be an http(s) URL"
            raise ConfigurationError(msg)
        return cls(
            table=config.require("LEDGER_TABLE", env),
            topic_arn=config.require("APPROVAL_TOPIC_ARN", env),
            key_secret_id=config.require("APPROVAL_KEY_SECRET_ARN", env),
            base_url=base_url,
            approvers=normalize_approvers(config.csv("APPROVERS", env)),
            ttl_seconds=ttl,
        )


def normalize_approvers(approvers: Sequence[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated, validated approver emails; at least one."""
    seen: dict[str, None] = {}
    for raw in approvers:
        email = raw.strip().lower()
        if not _EMAIL_RE.fullmatch(email):
            msg = f"approver {raw!r} is not an email address (APPROVERS is a comma-separated list of emails)"
            raise ConfigurationError(msg)
        seen[email] = None
    if not seen:
        msg = "no approvers configured: set APPROVERS to a comma-separated list of emails"
        raise ConfigurationError(msg)
    return tuple(seen)


# --- the email ----------------------------------------------------------------------------------
def _link(base_url: str, token: str) -> str:
    return f"{base_url}{'&' if '?' in base_url else '?'}t={token}"


def email_subject(record: Mapping[str, Any]) -> str:
    digest = record["digest"]
    short = digest[: len("sha256:") + 12]
    return sns_subject(f"Approve podinfo {short}... for prod? [{record['release_id']}]")


def _email_body(record: Mapping[str, Any], approver: str, link: str, now: float) -> str:
    return "\n".join(
        [
            f"podinfo release {record['release_id']} is deployed to dev and waits for your approval to go to prod.",
            "",
            summary_text(record, now),
            "",
            f"Repository:     {record['repository']}",
            f"Digest:         {record['digest']}",
            f"Image:          {record.get('image_uri') or '(not given)'}",
            f"Correlation id: {record['release_id']}",
            f"Approver:       {approver}",
            f"Link expires:   {iso(record['expires_at'])}",
            "",
            "Open this link, sign in as yourself, review the release, then choose Approve or Reject on the page",
            "(opening the link changes nothing; only the buttons decide, and only when you are signed in as",
            f"{approver}). The raw evidence and dev results are on the page.",
            link,
            "",
            "The link is yours alone; do not forward it (it does nothing without your sign-in).",
            "The first decision from any approver counts.",
        ]
    )


# --- the record ---------------------------------------------------------------------------------
def _prod_now(store: ApprovalStore) -> dict[str, Any]:
    """What prod runs now, for the summary's "Prod now" line (digest, tag, since when, who approved)."""
    live = store.live("prod") or {}
    facts = {k: live[k] for k in ("digest", "repository", "tag", "release_id", "approved_by") if live.get(k)}
    if live.get("deployed_at"):
        facts["deployed_at"], facts["deployed_epoch"] = iso(int(live["deployed_at"])), int(live["deployed_at"])
    return facts


def _create_or_refresh(
    store: ApprovalStore, facts: ReleaseFacts, task_token: str, settings: RequestSettings, evidence: Any, dev: Any, now: float,
    bake: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    record = {
        "release_id": facts.release_id,
        "task_token": task_token,
        "execution_arn": facts.execution_arn,
        "digest": facts.digest,
        "repository": facts.repository,
        "image_uri": facts.image_uri,
        **({"tag": facts.tag} if facts.tag else {}),
        "approvers": list(settings.approvers),
        "evidence": evidence if isinstance(evidence, dict) else {},
        "dev": dev if isinstance(dev, dict) else {},
        "bake": dict(bake or {}),
        "prod": _prod_now(store),
        "status": PENDING,
        "notified": {},
        "created_at": int(now),
        "updated_at": int(now),
        "expires_at": int(now) + settings.ttl_seconds,
    }
    if store.create(record):
        return record
    # The record exists (a Lambda retry, or the state machine retried the Task with a new token).
    refreshed = store.refresh_task_token(facts.release_id, facts.execution_arn, facts.digest, task_token, now)
    if refreshed is not None:
        return refreshed
    existing = store.get(facts.release_id) or {}
    if existing.get("execution_arn") != facts.execution_arn or existing.get("digest") != facts.digest:
        msg = (
            f"release {facts.release_id} already has an approval record for another execution or digest; "
            "a release id names one execution of one digest"
        )
        raise MalformedEvent(msg)
    msg = f"release {facts.release_id} was already {existing.get('status')} by {existing.get('decided_by')}"
    raise AlreadyDecided(msg)


def supersede_waiting(store: ApprovalStore, sfn: Any, facts: ReleaseFacts, expires_at: int, now: float) -> str | None:
    """Make `facts` the release of its repository that waits for approval. An older one still
    pending is ended with ApprovalSuperseded: dev now runs the newer digest, so approving the older
    one would promote something dev no longer runs. Its links then show who superseded it. Returns
    the superseded release id, if any. Safe to repeat (a Lambda retry supersedes nothing twice)."""
    older = store.waiting(facts.repository)
    superseded = None
    if older and older != facts.release_id:
        record = store.supersede(older, f"release {facts.release_id}", now)
        if record is not None:
            register_secret(record["task_token"])
            cause = (f"release {facts.release_id} ({facts.digest}) of {facts.repository} reached approval after it and "
                     "replaced it in dev; only the newer release can be promoted")
            try:
                sfn.send_task_failure(taskToken=record["task_token"], error=ApprovalSuperseded.__name__, cause=cause)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "Unknown")
                store.set_callback(older, callback_state(code), code, now)
            else:
                store.set_callback(older, "delivered", None, now)
            superseded = older
            logger.info("older release superseded at approval", extra={"superseded": older})
    store.set_waiting(facts.repository, facts.release_id, now, expires_at)
    return superseded


WHERE = "approval request"


@dataclass(frozen=True)
class ApprovalRequest:
    """The RequestApproval task's event: the task token, the release, the gate's evidence, dev's outcome."""

    task_token: str
    release: dict[str, Any]
    evidence: dict[str, Any]
    dev: dict[str, Any]

    @classmethod
    def parse(cls, event: Any) -> ApprovalRequest:
        body = mapping(event, WHERE)
        return cls(field(body, "task_token", str, WHERE), field(body, "release", dict, WHERE),
                   field(body, "evidence", dict, WHERE, {}), field(body, "dev", dict, WHERE, {}))


def request_approval(
    *,
    store: ApprovalStore,
    sns: Any,
    keys: SigningKeys,
    settings: RequestSettings,
    release: Mapping[str, Any],
    task_token: str,
    evidence: Mapping[str, Any] | None = None,
    dev: Mapping[str, Any] | None = None,
    now: float | None = None,
    sfn: Any = None,
    measure: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Store the approval record and email one signed link per approver; idempotent per release id.

    A second call for the same release (Lambda retry) keeps the record, replaces the task token while
    the record is pending, and emails only approvers who were not emailed yet. `measure` (dev's
    outcome -> its bake's figures, `podrelease.approval.bake.gather`) runs once, for a new record.
    Returns a summary without any token.
    """
    if not isinstance(task_token, str) or not task_token:
        msg = "approval request: task_token is missing (the Task must use lambda:invoke.waitForTaskToken)"
        raise MalformedEvent(msg)
    register_secret(task_token)
    facts = ReleaseFacts.from_payload(release)
    current = time.time() if now is None else now
    ring = keys.ring()
    existing = store.get(facts.release_id) if measure is not None else None
    bake = measure(dict(dev or {})) if measure is not None and existing is None else None
    record = _create_or_refresh(store, facts, task_token, settings, dict(evidence or {}), dict(dev or {}), current, bake)
    superseded = supersede_waiting(store, sfn, facts, int(record["expires_at"]), current) if sfn is not None else None
    notified: dict[str, str] = dict(record.get("notified") or {})
    for approver in record["approvers"]:
        if approver in notified:
            continue
        token = mint_token(
            ring.signing_key,
            ring.current,
            release_id=facts.release_id,
            execution_arn=facts.execution_arn,
            digest=facts.digest,
            approver=approver,
            expires_at=int(record["expires_at"]),
        )
        register_secret(token)
        body = _email_body(record, approver, _link(settings.base_url, token), current).replace(task_token, "***")
        message_id = sns.publish(
            TopicArn=settings.topic_arn,
            Subject=email_subject(record),
            Message=body,
            MessageAttributes={
                "approver": {"DataType": "String", "StringValue": approver},
                "release_id": {"DataType": "String", "StringValue": facts.release_id},
            },
        )["MessageId"]
        notified[approver] = message_id
        store.mark_notified(facts.release_id, approver, message_id)
    logger.info("approval requested", extra={"approvers": list(record["approvers"]), "emails_sent": len(notified)})
    return {
        "release_id": facts.release_id,
        "superseded": superseded,
        "status": record["status"],
        "approvers": list(record["approvers"]),
        "expires_at": int(record["expires_at"]),
        "expires_at_iso": iso(record["expires_at"]),
        "message_ids": notified,
    }
