"""Human approval between dev and prod: signed links, one ledger record, a read-only GET, a deciding POST.

The release waits in a `lambda:invoke.waitForTaskToken` Task. `request_approval` stores the Step
Functions task token in the ledger (it never leaves the control plane), mints one signed link per
approver and emails each approver through SNS. The link opens `handle_http`: GET only shows what is
being approved (email link scanners prefetch GETs, so GET never writes anything), POST decides.

Tokens are `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first segment))`, bound to release
id, execution, digest and approver, expiring, and single-use in effect: the decision is a conditional
update `status = pending`, so the first POST wins and every later decision is refused.

Ledger item (`pk = "approval#<release id>"`): task_token, execution_arn, digest, repository,
image_uri, approvers, evidence, dev, status (pending | approved | rejected | superseded), decided_by, decided_at,
decision_jti, callback (sending | delivered | task_gone | failed), callback_error, notified
(approver -> SNS message id), created_at, updated_at, expires_at (also the table's TTL attribute).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from podrelease.core import config
from podrelease.core.errors import (
    AlreadyDecided,
    ApprovalRejected,
    ApprovalSuperseded,
    ConfigurationError,
    MalformedEvent,
    ReleaseError,
    TokenExpired,
    TokenInvalid,
)
from podrelease.core.notify import sns_subject
from podrelease.core.obs import bind_release, get_logger, register_secret

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = get_logger("approval")

#: A token longer than this is refused before it is decoded.
MAX_TOKEN_BYTES = 2048
#: A form body longer than this is refused unread (a real one is well under 3 KiB).
MAX_FORM_BYTES = 8 * 1024
#: Signing keys shorter than this are a configuration error (HMAC-SHA256 wants 256 bits).
MIN_KEY_BYTES = 32
#: How long `load_keys` trusts its in-process copy of the signing keys.
KEY_CACHE_SECONDS = 300.0
#: Bounds of APPROVAL_TTL_SECONDS: at most 7 days. The template asks for at least 5 minutes; the
#: code accepts shorter windows so the local demo can show a timeout in seconds.
MIN_TTL_SECONDS = 5
MAX_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_TTL_SECONDS = 24 * 3600
#: Longest evidence/dev block put into an email; the page shows everything.
MAX_EMAIL_BLOCK_CHARS = 4000

PK_PREFIX = "approval#"
#: One item per repository naming its release that waits for approval (the newest to ask).
WAITING_PREFIX = "approval-waiting#"
PENDING, APPROVED, REJECTED, SUPERSEDED = "pending", "approved", "rejected", "superseded"
DECISIONS = {"approve": APPROVED, "reject": REJECTED}
# Step Functions' answers to SendTask* when the waiting task no longer exists.
TASK_GONE_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
# ... and when this page's role may not call it: an operator must fix the stack, retrying will not help.
NOT_ALLOWED_ERRORS = frozenset({"AccessDenied", "AccessDeniedException"})

_CLAIM_TYPES: dict[str, type] = {
    "rid": str,
    "exe": str,
    "dig": str,
    "apr": str,
    "exp": int,
    "jti": str,
    "kid": str,
}
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_EMAIL_RE = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"']+$")
_KID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

SECURITY_HEADERS: dict[str, str] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


# --- tokens -------------------------------------------------------------------------------------
class UnknownKeyId(TokenInvalid):
    """The token names a key version this function does not know (maybe rotated since the cache)."""


@dataclass(frozen=True)
class Claims:
    """What an approval token asserts: this approver may decide this release of this digest until `exp`."""

    rid: str
    exe: str
    dig: str
    apr: str
    exp: int
    jti: str
    kid: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rid": self.rid,
            "exe": self.exe,
            "dig": self.dig,
            "apr": self.apr,
            "exp": self.exp,
            "jti": self.jti,
            "kid": self.kid,
        }


@dataclass(frozen=True)
class KeyRing:
    """The signing keys: `current` signs new tokens, every key in `keys` verifies."""

    current: str
    keys: dict[str, bytes]

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.current]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    if not _B64URL_RE.fullmatch(segment):
        msg = "approval token is not base64url"
        raise TokenInvalid(msg)
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        msg = "approval token is not base64url"
        raise TokenInvalid(msg) from exc


def _mac(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def mint_token(
    key: bytes,
    kid: str,
    *,
    release_id: str,
    execution_arn: str,
    digest: str,
    approver: str,
    expires_at: int,
    token_id: str | None = None,
) -> str:
    """Sign a compact approval token for one approver of one release."""
    if len(key) < MIN_KEY_BYTES:
        msg = f"approval signing key must be at least {MIN_KEY_BYTES} bytes"
        raise ConfigurationError(msg)
    claims = Claims(
        rid=release_id,
        exe=execution_arn,
        dig=digest,
        apr=approver,
        exp=int(expires_at),
        jti=token_id or secrets.token_urlsafe(16),
        kid=kid,
    )
    payload = _b64encode(json.dumps(claims.to_dict(), sort_keys=True, separators=(",", ":")).encode())
    token = f"{payload}.{_b64encode(_mac(key, payload))}"
    if len(token) > MAX_TOKEN_BYTES:
        msg = f"approval token would be {len(token)} bytes, over the {MAX_TOKEN_BYTES}-byte limit; shorten the release id"
        raise ConfigurationError(msg)
    return token


def _parse_claims(raw: bytes) -> Claims:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        msg = "approval token claims are not JSON"
        raise TokenInvalid(msg) from exc
    if not isinstance(data, dict) or set(data) != set(_CLAIM_TYPES):
        msg = "approval token claims are not the expected set"
        raise TokenInvalid(msg)
    for name, kind in _CLAIM_TYPES.items():
        value = data[name]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            msg = f"approval token claim {name} has the wrong type"
            raise TokenInvalid(msg)
    return Claims(**data)


def verify_token(token: str, keys: Mapping[str, bytes], now: float | None = None) -> Claims:
    """Return the claims of a genuine, unexpired token; raise TokenInvalid or TokenExpired otherwise.

    The MAC is checked (in constant time) before any claim is believed, so a forged token is always
    TokenInvalid, never TokenExpired.
    """
    if not isinstance(token, str) or not token:
        msg = "approval token is missing"
        raise TokenInvalid(msg)
    if len(token) > MAX_TOKEN_BYTES:
        msg = f"approval token is longer than {MAX_TOKEN_BYTES} bytes"
        raise TokenInvalid(msg)
    parts = token.split(".")
    if len(parts) != 2:
        msg = "approval token does not have two parts"
        raise TokenInvalid(msg)
    payload, mac_segment = parts
    claims = _parse_claims(_b64decode(payload))
    given_mac = _b64decode(mac_segment)
    key = keys.get(claims.kid)
    if key is None:
        msg = f"approval token was signed with unknown key version {claims.kid!r}"
        raise UnknownKeyId(msg)
    if not hmac.compare_digest(_mac(key, payload), given_mac):
        msg = "approval token signature does not verify"
        raise TokenInvalid(msg)
    current = time.time() if now is None else now
    if claims.exp <= current:
        msg = "approval link has expired"
        raise TokenExpired(msg)
    return claims


# --- signing keys -------------------------------------------------------------------------------
_key_cache: dict[str, tuple[float, KeyRing]] = {}


def clear_key_cache() -> None:
    _key_cache.clear()


def _decode_key(entry: Any, where: str) -> tuple[str, bytes]:
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not isinstance(entry.get("key"), str):
        msg = f"approval key secret: {where} must be an object with string fields kid and key"
        raise ConfigurationError(msg)
    kid, text = entry["kid"], entry["key"].strip()
    register_secret(text)
    if not _KID_RE.fullmatch(kid):
        msg = f"approval key secret: {where} kid must be 1-64 characters of [A-Za-z0-9._:-]"
        raise ConfigurationError(msg)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"approval key secret: {where} key is not base64"
        raise ConfigurationError(msg) from exc
    if len(key) < MIN_KEY_BYTES:
        msg = f"approval key secret: {where} key must decode to at least {MIN_KEY_BYTES} bytes"
        raise ConfigurationError(msg)
    return kid, key


def parse_key_secret(secret_string: str) -> KeyRing:
    """Parse `{"kid", "key", "previous": {"kid", "key"}?}`; every key is registered for log masking."""
    register_secret(secret_string)
    try:
        data = json.loads(secret_string)
    except ValueError as exc:
        msg = "approval key secret is not JSON"
        raise ConfigurationError(msg) from exc
    current_kid, current_key = _decode_key(data, "the secret")
    keys = {current_kid: current_key}
    previous = data.get("previous")
    if previous is not None:
        old_kid, old_key = _decode_key(previous, "previous")
        keys.setdefault(old_kid, old_key)
    return KeyRing(current=current_kid, keys=keys)


def load_keys(secretsmanager: Any, secret_id: str, *, now: float | None = None, max_age: float = KEY_CACHE_SECONDS) -> KeyRing:
    """Read the signing keys from Secrets Manager, cached in process for `max_age` seconds."""
    current = time.monotonic() if now is None else now
    cached = _key_cache.get(secret_id)
    if cached is not None and current - cached[0] < max_age:
        return cached[1]
    try:
        # AWSCURRENT is the default, named anyway: a rotation moves the label, and the name makes the
        # read exact (moto, for one, keeps its default on the version first created).
        secret_string = secretsmanager.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
    except (ClientError, KeyError) as exc:
        msg = f"approval key secret {secret_id} cannot be read"
        raise ConfigurationError(msg) from exc
    ring = parse_key_secret(secret_string)
    _key_cache[secret_id] = (current, ring)
    return ring


# --- ledger helpers -----------------------------------------------------------------------------
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    # DynamoDB wants Decimal, not float: round-trip through JSON once.
    plain = json.loads(json.dumps(values, default=str), parse_float=Decimal)
    return {k: _serializer.serialize(v) for k, v in plain.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(v) for v in value]
    return value


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _pk(release_id: str) -> dict[str, Any]:
    return {"pk": {"S": PK_PREFIX + release_id}}


def _is_conditional_failure(exc: ClientError) -> bool:
    code: object = exc.response.get("Error", {}).get("Code")
    return code == "ConditionalCheckFailedException"


def get_record(dynamodb: Any, table: str, release_id: str) -> dict[str, Any] | None:
    """The approval record of a release, read consistently, or None."""
    item = dynamodb.get_item(TableName=table, Key=_pk(release_id), ConsistentRead=True).get("Item")
    return _from_item(item) if item else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- request ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseFacts:
    """What is being approved, parsed from the state machine's payload."""

    release_id: str
    execution_arn: str
    repository: str
    digest: str
    image_uri: str

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
        image_uri = release.get("image_uri")
        return cls(
            release_id=fields["id"],
            execution_arn=fields["execution"],
            repository=fields["repository"],
            digest=fields["digest"],
            image_uri=image_uri if isinstance(image_uri, str) else "",
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


def _link(base_url: str, token: str) -> str:
    return f"{base_url}{'&' if '?' in base_url else '?'}t={token}"


def _block(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str) if value not in (None, {}, []) else "(none)"
    if len(text) > MAX_EMAIL_BLOCK_CHARS:
        text = text[:MAX_EMAIL_BLOCK_CHARS] + "\n... (truncated; the approval page shows everything)"
    return text


def _subject(record: Mapping[str, Any]) -> str:
    digest = record["digest"]
    short = digest[: len("sha256:") + 12]
    return sns_subject(f"Approve podinfo {short}... for prod? [{record['release_id']}]")


def _email_body(record: Mapping[str, Any], approver: str, link: str) -> str:
    return "\n".join(
        [
            f"podinfo release {record['release_id']} is deployed to dev and waits for your approval to go to prod.",
            "",
            f"Repository:     {record['repository']}",
            f"Digest:         {record['digest']}",
            f"Image:          {record.get('image_uri') or '(not given)'}",
            f"Correlation id: {record['release_id']}",
            f"Approver:       {approver}",
            f"Link expires:   {_iso(record['expires_at'])}",
            "",
            "Signature and SBOM evidence:",
            _block(record.get("evidence")),
            "",
            "Dev deployment results:",
            _block(record.get("dev")),
            "",
            "Open this link to review the release, then choose Approve or Reject on the page",
            "(opening the link changes nothing; only the buttons decide):",
            link,
            "",
            "The link is yours alone; do not forward it. The first decision from any approver counts.",
        ]
    )


def _create_or_refresh(
    dynamodb: Any,
    table: str,
    facts: ReleaseFacts,
    task_token: str,
    approvers: Sequence[str],
    evidence: Any,
    dev: Any,
    ttl_seconds: int,
    now: float,
) -> dict[str, Any]:
    item = {
        "pk": PK_PREFIX + facts.release_id,
        "release_id": facts.release_id,
        "task_token": task_token,
        "execution_arn": facts.execution_arn,
        "digest": facts.digest,
        "repository": facts.repository,
        "image_uri": facts.image_uri,
        "approvers": list(approvers),
        "evidence": evidence if isinstance(evidence, dict) else {},
        "dev": dev if isinstance(dev, dict) else {},
        "status": PENDING,
        "notified": {},
        "created_at": int(now),
        "updated_at": int(now),
        "expires_at": int(now) + ttl_seconds,
    }
    try:
        dynamodb.put_item(TableName=table, Item=_to_item(item), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if not _is_conditional_failure(exc):
            raise
    else:
        return item
    # The record exists (a Lambda retry, or the state machine retried the Task with a new token).
    try:
        out = dynamodb.update_item(
            TableName=table,
            Key=_pk(facts.release_id),
            UpdateExpression="SET task_token = :t, updated_at = :now",
            ConditionExpression="#s = :pending AND execution_arn = :exe AND digest = :dig",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":t": {"S": task_token},
                ":now": {"N": str(int(now))},
                ":pending": {"S": PENDING},
                ":exe": {"S": facts.execution_arn},
                ":dig": {"S": facts.digest},
            },
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if not _is_conditional_failure(exc):
            raise
        existing = get_record(dynamodb, table, facts.release_id) or {}
        if existing.get("execution_arn") != facts.execution_arn or existing.get("digest") != facts.digest:
            msg = (
                f"release {facts.release_id} already has an approval record for another execution or digest; "
                "a release id names one execution of one digest"
            )
            raise MalformedEvent(msg) from exc
        msg = f"release {facts.release_id} was already {existing.get('status')} by {existing.get('decided_by')}"
        raise AlreadyDecided(msg) from exc
    return _from_item(out["Attributes"])


def supersede_waiting(dynamodb: Any, sfn: Any, table: str, facts: ReleaseFacts, expires_at: int, now: float) -> str | None:
    """Make `facts` the release of its repository that waits for approval. An older one still
    pending is ended with ApprovalSuperseded: dev now runs the newer digest, so approving the older
    one would promote something dev no longer runs. Its links then show who superseded it. Returns
    the superseded release id, if any. Safe to repeat (a Lambda retry supersedes nothing twice)."""
    key = {"pk": {"S": WAITING_PREFIX + facts.repository}}
    found = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item") or {}
    older = found.get("release_id", {}).get("S")
    superseded = None
    if older and older != facts.release_id:
        try:
            out = dynamodb.update_item(
                TableName=table,
                Key=_pk(older),
                UpdateExpression="SET #s = :sup, decided_by = :by, decided_at = :now, #c = :sending, updated_at = :now",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status", "#c": "callback"},
                ExpressionAttributeValues={
                    ":sup": {"S": SUPERSEDED},
                    ":by": {"S": f"release {facts.release_id}"},
                    ":now": {"N": str(int(now))},
                    ":sending": {"S": "sending"},
                    ":pending": {"S": PENDING},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
        else:
            record = _from_item(out["Attributes"])
            register_secret(record["task_token"])
            cause = (f"release {facts.release_id} ({facts.digest}) of {facts.repository} reached approval after it and "
                     "replaced it in dev; only the newer release can be promoted")
            try:
                sfn.send_task_failure(taskToken=record["task_token"], error=ApprovalSuperseded.__name__, cause=cause)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "Unknown")
                _set_callback(dynamodb, table, older, "task_gone" if code in TASK_GONE_ERRORS else "failed", code, now)
            else:
                _set_callback(dynamodb, table, older, "delivered", None, now)
            superseded = older
            logger.info("older release superseded at approval", extra={"superseded": older})
    dynamodb.put_item(TableName=table, Item=_to_item({"pk": key["pk"]["S"], "release_id": facts.release_id,
                                                      "updated_at": int(now), "expires_at": expires_at}))
    return superseded


def request_approval(
    *,
    dynamodb: Any,
    sns: Any,
    secretsmanager: Any,
    settings: RequestSettings,
    release: Mapping[str, Any],
    task_token: str,
    evidence: Mapping[str, Any] | None = None,
    dev: Mapping[str, Any] | None = None,
    now: float | None = None,
    sfn: Any = None,
) -> dict[str, Any]:
    """Store the approval record and email one signed link per approver; idempotent per release id.

    A second call for the same release (Lambda retry) keeps the record, replaces the task token while
    the record is pending, and emails only approvers who were not emailed yet. Returns a summary
    without any token.
    """
    if not isinstance(task_token, str) or not task_token:
        msg = "approval request: task_token is missing (the Task must use lambda:invoke.waitForTaskToken)"
        raise MalformedEvent(msg)
    register_secret(task_token)
    facts = ReleaseFacts.from_payload(release)
    current = time.time() if now is None else now
    keys = load_keys(secretsmanager, settings.key_secret_id)
    record = _create_or_refresh(
        dynamodb,
        settings.table,
        facts,
        task_token,
        settings.approvers,
        dict(evidence or {}),
        dict(dev or {}),
        settings.ttl_seconds,
        current,
    )
    superseded = (supersede_waiting(dynamodb, sfn, settings.table, facts, int(record["expires_at"]), current)
                  if sfn is not None else None)
    notified: dict[str, str] = dict(record.get("notified") or {})
    for approver in record["approvers"]:
        if approver in notified:
            continue
        token = mint_token(
            keys.signing_key,
            keys.current,
            release_id=facts.release_id,
            execution_arn=facts.execution_arn,
            digest=facts.digest,
            approver=approver,
            expires_at=int(record["expires_at"]),
        )
        register_secret(token)
        body = _email_body(record, approver, _link(settings.base_url, token)).replace(task_token, "***")
        message_id = sns.publish(
            TopicArn=settings.topic_arn,
            Subject=_subject(record),
            Message=body,
            MessageAttributes={
                "approver": {"DataType": "String", "StringValue": approver},
                "release_id": {"DataType": "String", "StringValue": facts.release_id},
            },
        )["MessageId"]
        notified[approver] = message_id
        # Remember each email as it goes, so a retry after a crash does not email this approver twice.
        dynamodb.update_item(
            TableName=settings.table,
            Key=_pk(facts.release_id),
            UpdateExpression="SET notified.#a = :m",
            ExpressionAttributeNames={"#a": approver},
            ExpressionAttributeValues={":m": {"S": message_id}},
        )
    logger.info("approval requested", extra={"approvers": list(record["approvers"]), "emails_sent": len(notified)})
    return {
        "release_id": facts.release_id,
        "superseded": superseded,
        "status": record["status"],
        "approvers": list(record["approvers"]),
        "expires_at": int(record["expires_at"]),
        "expires_at_iso": _iso(record["expires_at"]),
        "message_ids": notified,
    }


# --- the page -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageSettings:
    table: str
    key_secret_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PageSettings:
        return cls(table=config.require("LEDGER_TABLE", env), key_secret_id=config.require("APPROVAL_KEY_SECRET_ARN", env))


class _Refusal(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail


Response = tuple[int, dict[str, str], str]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}"
    "dt{font-weight:600;margin-top:.6rem}dd{margin:0;word-break:break-all}"
    "pre{background:#f4f4f4;padding:.6rem;overflow:auto;font-size:.85rem}"
    "button{font-size:1rem;padding:.5rem 1.4rem;margin-right:1rem;border-radius:4px;border:1px solid #555}"
    ".approve{background:#1f7a1f;color:#fff}.reject{background:#a11;color:#fff}.note{color:#555}"
)


def _page(status: int, title: str, body: str) -> Response:
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return status, dict(SECURITY_HEADERS), document


def _refusal_page(refusal: _Refusal) -> Response:
    return _page(refusal.status, refusal.title, f"<p>{html.escape(refusal.detail)}</p>")


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
        ("Link expires", _iso(claims.exp)),
    ]
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)
    return (
        f"<dl>{items}</dl><h2>Signature and SBOM evidence</h2>{_pre(record.get('evidence'))}"
        f"<h2>Dev deployment results</h2>{_pre(record.get('dev'))}"
    )


def _verify(token: str, secretsmanager: Any, secret_id: str, now: float) -> Claims:
    try:
        keys = load_keys(secretsmanager, secret_id)
        try:
            return verify_token(token, keys.keys, now)
        except UnknownKeyId:
            # The key may have rotated after this process cached it: read the secret once more.
            return verify_token(token, load_keys(secretsmanager, secret_id, max_age=0).keys, now)
    except TokenExpired as exc:
        raise _Refusal(
            410,
            "This approval link has expired",
            "The link is past its expiry. Ask the release owner to start a new release.",
        ) from exc
    except TokenInvalid as exc:
        raise _Refusal(
            403,
            "This approval link is not valid",
            "The link is damaged or was not issued by the release control plane. Open the link from the "
            "approval email exactly as received; nothing was approved or rejected.",
        ) from exc


def _bound_record(dynamodb: Any, table: str, claims: Claims) -> dict[str, Any]:
    record = get_record(dynamodb, table, claims.rid)
    if record is None:
        raise _Refusal(
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
        raise _Refusal(
            403,
            "This approval link is not valid for this release",
            "The link was issued for another execution, digest or approver. Use the link from the latest "
            "approval email; nothing was approved or rejected.",
        )
    return record


def _decided_refusal(record: Mapping[str, Any]) -> _Refusal:
    when = _iso(record["decided_at"]) if record.get("decided_at") else "earlier"
    if record.get("status") == SUPERSEDED:
        return _Refusal(
            410,
            "Release superseded",
            f"Release {record.get('release_id')} was superseded by {record.get('decided_by')} at {when}: a newer image "
            "of the same repository reached approval after it, and dev runs that one now. Nothing was changed; "
            "decide on the newer release from its own email.",
        )
    return _Refusal(
        410,
        f"Release already {record.get('status')}",
        f"Release {record.get('release_id')} was already {record.get('status')} by {record.get('decided_by')} at "
        f"{when}. Nothing was changed. A decision cannot be changed; to undo an approval, roll back prod or "
        "start a new release.",
    )


def _expired_refusal(record: Mapping[str, Any]) -> _Refusal:
    return _Refusal(
        410,
        "This approval has expired",
        f"The approval window of release {record.get('release_id')} closed at {_iso(record['expires_at'])}. "
        "Nothing was changed; start a new release to deploy this digest to prod.",
    )


def _show(record: Mapping[str, Any], claims: Claims, token: str, now: float) -> Response:
    if record.get("status") != PENDING:
        raise _decided_refusal(record)
    if int(record["expires_at"]) <= now:
        raise _expired_refusal(record)
    form = (
        '<form method="post" action="">'
        f'<input type="hidden" name="t" value="{html.escape(token, quote=True)}">'
        '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
        '<button class="reject" type="submit" name="decision" value="reject">Reject</button></form>'
    )
    body = (
        f'<p class="note">Promote this exact digest of podinfo from dev to prod? Opening this page changed '
        f"nothing. The first decision from any approver counts and cannot be changed.</p>"
        f"{_facts_html(record, claims)}<h2>Decision</h2>{form}"
    )
    return _page(200, f"Approve podinfo release {record['release_id']} for prod?", body)


def _parse_form(body: str | None, headers: Mapping[str, str]) -> tuple[str, str]:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/x-www-form-urlencoded":
        raise _Refusal(400, "Bad request", "The decision must be sent by the form on the approval page.")
    raw = body or ""
    if len(raw) > MAX_FORM_BYTES:
        raise _Refusal(400, "Bad request", "The form is too large. Use the form on the approval page.")
    try:
        fields = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=10)
    except ValueError as exc:
        raise _Refusal(400, "Bad request", "The form could not be read. Use the form on the approval page.") from exc
    token, decision = fields.get("t", []), fields.get("decision", [])
    if len(token) != 1 or len(decision) != 1 or decision[0] not in DECISIONS:
        raise _Refusal(400, "Bad request", "The form must carry the link's token and decision=approve or decision=reject.")
    return token[0], decision[0]


def _deliver(sfn: Any, dynamodb: Any, table: str, record: Mapping[str, Any], now: float) -> Response:
    """Tell Step Functions the decision already committed in `record`; record what happened."""
    task_token = record["task_token"]
    register_secret(task_token)
    try:
        if record["status"] == APPROVED:
            sfn.send_task_success(
                taskToken=task_token,
                output=json.dumps({"approved_by": record["decided_by"], "decided_at": _iso(record["decided_at"])}),
            )
        else:
            sfn.send_task_failure(
                taskToken=task_token, error=ApprovalRejected.__name__, cause=f"rejected by {record['decided_by']}"
            )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        gone = code in TASK_GONE_ERRORS
        _set_callback(dynamodb, table, record["release_id"], "task_gone" if gone else "failed", code, now)
        logger.warning("decision not delivered to Step Functions", extra={"error_code": code, "task_gone": gone})
        if gone:
            # TaskTimedOut: the waiting task is closed (approval window over, execution stopped,
            # timed out or otherwise ended); InvalidToken / TaskDoesNotExist: nothing waits on it.
            raise _Refusal(
                410,
                "This release is no longer waiting",
                f"Your decision ({record['status']}) was recorded, but release {record['release_id']} is no longer "
                "waiting for a decision: its approval window closed, or it was stopped or ended. Nothing was "
                "changed. Start a new release to deploy this digest.",
            ) from exc
        if code in NOT_ALLOWED_ERRORS:
            raise _Refusal(
                500,
                "Decision recorded, not delivered",
                f"Your decision ({record['status']}) was recorded, but Step Functions refused this page's call "
                f"({code}): the approval page's role lacks states:SendTaskSuccess/SendTaskFailure on the release "
                "state machine. Tell the team that runs this stack; once it is fixed, submit the same decision again.",
            ) from exc
        raise _Refusal(
            503,
            "Decision recorded, not yet delivered",
            "Your decision was recorded but Step Functions could not be reached. Go back and submit the same "
            "decision again in a minute to deliver it.",
        ) from exc
    _set_callback(dynamodb, table, record["release_id"], "delivered", None, now)
    logger.info("decision delivered", extra={"decision": record["status"], "decided_by": record["decided_by"]})
    verb = "approved" if record["status"] == APPROVED else "rejected"
    detail = (
        "The same digest is now being promoted to prod." if verb == "approved" else "The release stops here; prod is unchanged."
    )
    return _page(
        200,
        f"Release {verb}",
        f"<p>Release {html.escape(record['release_id'])} ({html.escape(record['digest'])}) was {verb} by "
        f"{html.escape(str(record['decided_by']))}. {html.escape(detail)}</p>",
    )


def _set_callback(dynamodb: Any, table: str, release_id: str, state: str, error: str | None, now: float) -> None:
    values: dict[str, Any] = {":c": {"S": state}, ":now": {"N": str(int(now))}}
    expression = "SET #c = :c, updated_at = :now"
    if error:
        expression += ", callback_error = :e"
        values[":e"] = {"S": error}
    dynamodb.update_item(
        TableName=table,
        Key=_pk(release_id),
        UpdateExpression=expression,
        ExpressionAttributeNames={"#c": "callback"},
        ExpressionAttributeValues=values,
    )


def _decide(
    sfn: Any, dynamodb: Any, table: str, record: Mapping[str, Any], claims: Claims, decision: str, now: float
) -> Response:
    status = DECISIONS[decision]
    if record.get("status") != PENDING:
        # A delivery that failed transiently may be retried with the same decision; nothing else.
        if record.get("status") == status and record.get("callback") == "failed":
            return _deliver(sfn, dynamodb, table, record, now)
        raise _decided_refusal(record)
    try:
        out = dynamodb.update_item(
            TableName=table,
            Key=_pk(claims.rid),
            UpdateExpression="SET #s = :s, decided_by = :by, decided_at = :now, decision_jti = :jti, "
            "#c = :sending, updated_at = :now",
            ConditionExpression="#s = :pending AND expires_at > :now AND execution_arn = :exe AND digest = :dig",
            ExpressionAttributeNames={"#s": "status", "#c": "callback"},
            ExpressionAttributeValues={
                ":s": {"S": status},
                ":by": {"S": claims.apr},
                ":now": {"N": str(int(now))},
                ":jti": {"S": claims.jti},
                ":sending": {"S": "sending"},
                ":pending": {"S": PENDING},
                ":exe": {"S": claims.exe},
                ":dig": {"S": claims.dig},
            },
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if not _is_conditional_failure(exc):
            raise
        latest = get_record(dynamodb, table, claims.rid) or dict(record)
        if latest.get("status") != PENDING:
            raise _decided_refusal(latest) from exc
        raise _expired_refusal(latest) from exc
    decided = _from_item(out["Attributes"])
    logger.info("decision recorded", extra={"decision": status, "decided_by": claims.apr})
    return _deliver(sfn, dynamodb, table, decided, now)


def handle_http(
    method: str,
    query: Mapping[str, str | Sequence[str]] | str | None,
    body: str | None,
    headers: Mapping[str, str] | None,
    *,
    dynamodb: Any,
    sfn: Any,
    secretsmanager: Any,
    settings: PageSettings,
    now: float | None = None,
) -> Response:
    """Serve the approval page: GET shows (and changes nothing), POST decides. Returns (status, headers, html)."""
    current = time.time() if now is None else now
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    try:
        verb = (method or "").upper()
        token, decision = _read_request(verb, query, body, lowered)
        register_secret(token)
        claims = _verify(token, secretsmanager, settings.key_secret_id, current)
        bind_release(logger, claims.rid)
        record = _bound_record(dynamodb, settings.table, claims)
        if verb == "GET":
            return _show(record, claims, token, current)
        return _decide(sfn, dynamodb, settings.table, record, claims, decision, current)
    except _Refusal as refusal:
        logger.info("approval page refused", extra={"status": refusal.status, "reason": refusal.title})
        status, out_headers, page = _refusal_page(refusal)
        if refusal.status == 405:
            out_headers["Allow"] = "GET, POST"
        return status, out_headers, page
    except ReleaseError as exc:  # configuration problems: say so without detail
        logger.exception("approval page failed", extra={"error": exc.name})
        return _page(500, "Approval page unavailable", "<p>The approval service is misconfigured. Tell the release owner.</p>")
    except ClientError as exc:  # the ledger could not be read or written: nothing was decided
        logger.exception("approval page failed", extra={"error_code": exc.response.get("Error", {}).get("Code")})
        return _page(503, "Approval page unavailable", "<p>The ledger could not be reached. Please try again in a minute.</p>")


def _read_request(
    verb: str, query: Mapping[str, str | Sequence[str]] | str | None, body: str | None, headers: Mapping[str, str]
) -> tuple[str, str]:
    """The token (and for POST the decision) of a request, or a refusal."""
    if verb == "GET":
        return _single(_query_values(query).get("t", [])), ""
    if verb == "POST":
        return _parse_form(body, headers)
    raise _Refusal(405, "Method not allowed", "Open the link from the approval email; decide with its buttons.")


def _query_values(query: Mapping[str, str | Sequence[str]] | str | None) -> dict[str, list[str]]:
    if query is None:
        return {}
    if isinstance(query, str):
        try:
            return parse_qs(query, keep_blank_values=True, max_num_fields=10)
        except ValueError as exc:
            raise _Refusal(400, "Bad request", "The link's query string is malformed. Open the link from the email.") from exc
    return {k: [v] if isinstance(v, str) else list(v) for k, v in query.items()}


def _single(values: Sequence[str]) -> str:
    if len(values) != 1 or not values[0]:
        raise _Refusal(
            400, "Missing approval token", "This page needs the full link from the approval email (it ends in ?t=...)."
        )
    return values[0]
