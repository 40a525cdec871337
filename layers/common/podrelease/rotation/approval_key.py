"""Rotation of the approval-link signing key (`ApprovalSigningKey`): the four Secrets Manager steps.

The secret is `{"kid", "key", "previous": {"kid", "key"}}`. A rotation puts a fresh random key in
front and keeps the key it replaces as `previous`, so every link already in an inbox still verifies
after the rotation (`approval.keys.parse_key_secret` accepts both); the key before that is dropped.

Grace period: a link lives at most APPROVAL_TTL_SECONDS, and `approval.keys.SigningKeys` may keep
signing with a key for KEY_CACHE_SECONDS after it was replaced. A key stays `previous` for one rotation
interval, so a rotation is refused (`createSecret` raises RotationTooSoon, nothing is written)
while the current version is younger than TTL + cache: the key it would drop may still sign links
that have not expired. The template's schedule (`ApprovalKeyRotationDays`, at least 8 days, over
the 7-day maximum TTL) never hits this; it guards a manual `rotate-secret` run too early.

Each step is idempotent: createSecret keeps an existing AWSPENDING value, finishSecret on a version
that is already AWSCURRENT does nothing, and every step refuses a token that is not this secret's
AWSPENDING version (the stage guard), so a retried or crashed rotation ends with AWSCURRENT valid
and at most one AWSPENDING.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from datetime import datetime
from typing import Any

from podrelease.approval.keys import KEY_CACHE_SECONDS, KeyRing, parse_key_secret
from podrelease.approval.tokens import MIN_KEY_BYTES, mint_token, verify_token
from podrelease.core.errors import ReleaseError, RotationError, RotationTooSoon
from podrelease.core.errors import SecretTestFailed as RotationTestFailed
from podrelease.core.obs import get_logger, register_secret
from podrelease.rotation.stages import CURRENT, PENDING, STEPS, already_current, current_version, pending_string, promote_pending

logger = get_logger("keyrotation")

#: Bytes of a new signing key (HMAC-SHA256: 256 bits is the block-size-independent minimum).
NEW_KEY_BYTES = max(MIN_KEY_BYTES, 32)
_PROBE_TTL = 60


def new_kid(token: str) -> str:
    """A key id derived from the rotation's ClientRequestToken, so a retried createSecret names the same key."""
    return "k-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _stage_guard(sm: Any, secret_id: str, token: str) -> tuple[dict[str, Any], bool]:
    """Describe the secret; return (description, already_current). Refuse unknown or non-pending tokens."""
    described = sm.describe_secret(SecretId=secret_id)
    if described.get("RotationEnabled") is False:
        msg = f"secret {secret_id} does not have rotation enabled"
        raise RotationError(msg)
    return described, already_current(described, token)


def _value(sm: Any, secret_id: str, **selector: str) -> str:
    value = str(sm.get_secret_value(SecretId=secret_id, **selector)["SecretString"])
    register_secret(value)
    return value


def _pending_exists(sm: Any, secret_id: str, token: str) -> bool:
    return pending_string(sm, secret_id, token) is not None


def _created_at(sm: Any, secret_id: str, version_id: str) -> float | None:
    paginator_args: dict[str, Any] = {"SecretId": secret_id, "IncludeDeprecated": True}
    while True:
        page = sm.list_secret_version_ids(**paginator_args)
        for version in page.get("Versions", []):
            if version.get("VersionId") == version_id:
                created = version.get("CreatedDate")
                if isinstance(created, datetime):
                    return created.timestamp()
                return float(created) if created is not None else None
        if not page.get("NextToken"):
            return None
        paginator_args["NextToken"] = page["NextToken"]


def create_secret(sm: Any, secret_id: str, token: str, *, ttl_seconds: int, now: float) -> None:
    described, done = _stage_guard(sm, secret_id, token)
    if done or _pending_exists(sm, secret_id, token):
        logger.info("createSecret: pending key already exists", extra={"version": token})
        return
    current = current_version(described)
    if current is None:
        msg = f"secret {secret_id} has no AWSCURRENT version"
        raise RotationError(msg)
    created = _created_at(sm, secret_id, current)
    grace = ttl_seconds + KEY_CACHE_SECONDS
    if created is not None and now - created < grace:
        msg = (
            f"the current approval signing key is {int(now - created)} s old; rotating before {grace} s "
            "(APPROVAL_TTL_SECONDS + key cache) would drop the previous key while links signed with it are valid"
        )
        raise RotationTooSoon(msg)
    current_value = json.loads(_value(sm, secret_id, VersionStage=CURRENT))
    key = base64.b64encode(secrets.token_bytes(NEW_KEY_BYTES)).decode("ascii")
    register_secret(key)
    pending = {"kid": new_kid(token), "key": key, "previous": {"kid": current_value["kid"], "key": current_value["key"]}}
    parse_key_secret(json.dumps(pending))  # never store a value the approval functions cannot read
    sm.put_secret_value(SecretId=secret_id, ClientRequestToken=token, SecretString=json.dumps(pending), VersionStages=[PENDING])
    logger.info("createSecret: pending key stored", extra={"version": token, "kid": pending["kid"]})


def set_secret(sm: Any, secret_id: str, token: str) -> None:
    # Nothing to set: no other system holds a copy of the key. The approval functions read the
    # secret themselves (AWSCURRENT), so the new key is in use as soon as finishSecret moves the label.
    _stage_guard(sm, secret_id, token)
    logger.info("setSecret: nothing to set (the approval functions read the secret directly)", extra={"version": token})


def _probe(ring: KeyRing, now: float) -> str:
    """A short-lived token for a made-up release, signed with the ring's current key."""
    token = mint_token(
        ring.signing_key,
        ring.current,
        release_id="rotation-probe",
        execution_arn="arn:aws:states:::execution:rotation-probe",
        digest="sha256:" + "0" * 64,
        approver="rotation@probe.invalid",
        expires_at=int(now) + _PROBE_TTL,
    )
    register_secret(token)
    return token


def check_pending(sm: Any, secret_id: str, token: str, *, now: float) -> None:
    _, done = _stage_guard(sm, secret_id, token)
    if done:
        return
    pending_value = _value(sm, secret_id, VersionId=token, VersionStage=PENDING)
    current_value = _value(sm, secret_id, VersionStage=CURRENT)
    pending, current = parse_key_secret(pending_value), parse_key_secret(current_value)
    if pending_value == current_value:
        # RotateSecret with RotateImmediately false only runs testSecret, on a copy of AWSCURRENT:
        # check that the current key still signs and verifies, and change nothing.
        verify_token(_probe(current, now), current.keys, now)
        logger.info("testSecret: configuration test on a copy of the current key passed")
        return
    try:
        verify_token(_probe(pending, now), pending.keys, now)
        # A link mailed before this rotation was signed with today's current key: it must still verify.
        verify_token(_probe(current, now), pending.keys, now)
    except ReleaseError as exc:
        msg = f"pending approval key fails its test: {exc}"
        raise RotationTestFailed(msg) from exc
    if pending.current == current.current:
        msg = "pending approval key has the same kid as the current key"
        raise RotationTestFailed(msg)
    logger.info("testSecret: pending key signs and verifies; links signed with the current key still verify")


def finish_secret(sm: Any, secret_id: str, token: str) -> None:
    described, _ = _stage_guard(sm, secret_id, token)
    promote_pending(sm, secret_id, token, described)
    logger.info("finishSecret: pending key is now current", extra={"version": token})


def rotate(sm: Any, event: dict[str, Any], *, ttl_seconds: int, now: float | None = None) -> None:
    """Run one rotation step from a Secrets Manager rotation event {SecretId, ClientRequestToken, Step}."""
    secret_id, token, step = event.get("SecretId"), event.get("ClientRequestToken"), event.get("Step")
    if not isinstance(secret_id, str) or not isinstance(token, str) or step not in STEPS:
        msg = f"rotation event needs SecretId, ClientRequestToken and Step in {STEPS}"
        raise RotationError(msg)
    current = time.time() if now is None else now
    if step == "createSecret":
        create_secret(sm, secret_id, token, ttl_seconds=ttl_seconds, now=current)
    elif step == "setSecret":
        set_secret(sm, secret_id, token)
    elif step == "testSecret":
        check_pending(sm, secret_id, token, now=current)
    else:
        finish_secret(sm, secret_id, token)
