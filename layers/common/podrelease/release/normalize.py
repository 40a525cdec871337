"""The release's first state: the execution's input (an ECR push event) into the release facts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podrelease.core.errors import EventTooLarge, InvalidRequest
from podrelease.release.events import MAX_EVENT_BYTES, parse_push

#: Environments an operator's rollback (`podrelease rollback ENV`) may target; the state machine's
#: entry Choice sends a prod rollback straight to the prod stages (no dev canary, no approval).
ROLLBACK_ENVIRONMENTS = ("dev", "prod")


def _rollback(event: dict[str, Any]) -> dict[str, Any] | None:
    """The operator's rollback request carried by the execution's input (see `podrelease.release.start`)."""
    rollback = event.get("rollback")
    if rollback is None:
        return None
    if not isinstance(rollback, dict) or rollback.get("environment") not in ROLLBACK_ENVIRONMENTS:
        msg = f"normalize: 'rollback' must name an environment ({', '.join(ROLLBACK_ENVIRONMENTS)})"
        raise InvalidRequest(msg)
    asked: dict[str, Any] = {k: str(v) for k, v in rollback.items() if k in ("environment", "requested_by", "replaces") and v}
    if rollback.get("fast") is True:  # `podrelease rollback --fast`: all traffic at once, hooks and checks still run
        asked["fast"] = True
    return asked


def normalize(event: Any, execution: str, name: str, watched: tuple[str, ...], settings: dict[str, Any],
              refuse_if_blocked: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The release facts every later state uses, or a named error for an event that is not a release
    (DigestBlocked, from `refuse_if_blocked`, for a digest an operator blocked)."""
    if isinstance(event, dict) and event.get("refused") == "EventTooLarge":
        msg = f"event of {event.get('size')} bytes refused; an ECR push event is never over {MAX_EVENT_BYTES}"
        raise EventTooLarge(msg)
    push = parse_push(event, watched)
    if refuse_if_blocked is not None:
        refuse_if_blocked(push.digest)
    attempt = int(event.get("rerelease", 1)) if isinstance(event, dict) else 1
    release = push.to_dict() | {"id": name, "execution": execution, "attempt": attempt}
    # A person's rollback: the prod one enters at the prod stages, and either may move its environment
    # back to an older digest (the lock refuses that otherwise: Superseded).
    rollback = _rollback(event) if isinstance(event, dict) else None
    if rollback:
        release["rollback"] = rollback
    return {"release": release, "settings": settings}
