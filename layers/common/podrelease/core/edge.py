"""The edge of every handler: its event parsed into a typed request before any domain call.

Each handler declares a frozen dataclass of what it reads and builds it with `field`/`action`; an
unknown action or a missing or mistyped field is `InvalidRequest`, naming the field and the handler,
never a KeyError from deep inside. (Powertools' parser would do this with pydantic models; the layer
has pydantic only for sigstore, and importing it would add its cold start to every function.)
"""

from __future__ import annotations

from typing import Any, TypeVar

from podrelease.core.errors import InvalidRequest

T = TypeVar("T")


def mapping(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidRequest(f"{where}: the event must be a JSON object, not {type(event).__name__}")
    return event


def field(event: dict[str, Any], name: str, kind: type[T], where: str, default: T | None = None) -> T:
    """`event[name]` as `kind`; without a default, a missing field is InvalidRequest."""
    if name not in event or event[name] is None:
        if default is not None:
            return default
        raise InvalidRequest(f"{where}: the event has no {name!r}")
    value = event[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"{where}: {name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def action(event: dict[str, Any], allowed: tuple[str, ...], where: str) -> str:
    """The event's `action`, one of `allowed`."""
    value = field(event, "action", str, where)
    if value not in allowed:
        raise InvalidRequest(f"{where}: unknown action {value!r} (expected one of {', '.join(allowed)})")
    return value
