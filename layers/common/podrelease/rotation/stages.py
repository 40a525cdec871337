"""Secrets Manager staging labels, shared by every rotation function of the control plane.

A rotation step receives `{SecretId, ClientRequestToken, Step}`. Whatever the secret, the steps
agree on three things, written once here: the stage guard (the token must be a version of this
secret staged AWSPENDING; one already AWSCURRENT means the rotation is done), reading the pending
value (absent until createSecret has run), and promoting it (AWSCURRENT moves to the pending
version, the old one becomes AWSPREVIOUS, AWSPENDING is removed).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from podrelease.core.errors import RotationTokenUnknown
from podrelease.core.obs import register_secret

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def already_current(described: dict[str, Any], token: str) -> bool:
    """The stage guard, on a `DescribeSecret` reply: True when `token` is already AWSCURRENT (the
    rotation is done); False when it is AWSPENDING (go on); RotationTokenUnknown otherwise."""
    name = described.get("Name") or described.get("ARN")
    stages = described.get("VersionIdsToStages", {}).get(token)
    if stages is None:
        msg = f"ClientRequestToken {token} is not a version of secret {name}"
        raise RotationTokenUnknown(msg)
    if CURRENT in stages:
        return True
    if PENDING not in stages:
        msg = f"version {token} of secret {name} is not staged AWSPENDING: not a rotation in progress"
        raise RotationTokenUnknown(msg)
    return False


def current_version(described: dict[str, Any]) -> str | None:
    return next((str(v) for v, stages in described.get("VersionIdsToStages", {}).items() if CURRENT in stages), None)


def pending_string(sm: Any, secret_id: str, token: str) -> str | None:
    """The pending version's SecretString, or None before createSecret has put one (registered as secret)."""
    try:
        reply = sm.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage=PENDING)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"ResourceNotFoundException", "InvalidRequestException"}:
            return None
        raise
    value = reply.get("SecretString")
    if not value:
        return None
    register_secret(str(value))
    return str(value)


def promote_pending(sm: Any, secret_id: str, token: str, described: dict[str, Any]) -> str | None:
    """finishSecret: AWSCURRENT moves to `token` (idempotent), and no AWSPENDING is left behind.
    Returns the version that was current before."""
    previous = current_version(described)
    if previous != token:
        sm.update_secret_version_stage(
            SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token,
            **({"RemoveFromVersionId": previous} if previous else {}),
        )
    if PENDING in described.get("VersionIdsToStages", {}).get(token, []):
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=token)
    return previous
