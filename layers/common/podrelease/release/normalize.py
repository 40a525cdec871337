"""The release's first state: the execution's input (an ECR push event) into the release facts."""

from __future__ import annotations

from typing import Any

from podrelease.core.errors import EventTooLarge
from podrelease.release.events import MAX_EVENT_BYTES, parse_push


def normalize(event: Any, execution: str, name: str, watched: tuple[str, ...], settings: dict[str, Any]) -> dict[str, Any]:
    """The release facts every later state uses, or a named error for an event that is not a release."""
    if isinstance(event, dict) and event.get("refused") == "EventTooLarge":
        msg = f"event of {event.get('size')} bytes refused; an ECR push event is never over {MAX_EVENT_BYTES}"
        raise EventTooLarge(msg)
    push = parse_push(event, watched)
    attempt = int(event.get("rerelease", 1)) if isinstance(event, dict) else 1
    # A person may ask to move an environment back to an older digest (the lock refuses it otherwise: Superseded).
    rollback = bool(event.get("rollback")) if isinstance(event, dict) else False
    release = push.to_dict() | {"id": name, "execution": execution, "attempt": attempt, "rollback": rollback}
    return {"release": release, "settings": settings}
