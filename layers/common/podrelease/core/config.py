"""Settings read from a function's environment, parsed once at the edge.

A missing or malformed setting is a ConfigurationError naming the variable, raised at cold start of
the function that needs it, not a KeyError deep inside a release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from podrelease.core.errors import ConfigurationError


def require(name: str, env: Mapping[str, str] | None = None) -> str:
    """Return environment variable `name`, or raise ConfigurationError naming it."""
    source = os.environ if env is None else env
    value = source.get(name, "").strip()
    if not value:
        msg = f"environment variable {name} is not set; the template sets it for every function that needs it"
        raise ConfigurationError(msg)
    return value


def optional(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    source = os.environ if env is None else env
    return source.get(name, default).strip()


def integer(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    raw = optional(name, str(default), env)
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"environment variable {name} must be an integer, got {raw!r}"
        raise ConfigurationError(msg) from exc


def csv(name: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped."""
    return tuple(part.strip() for part in optional(name, "", env).split(",") if part.strip())
