"""Strict reading of the release policy document's JSON, shared by the verify gate (the whole
document, `podrelease.verify.policy`) and the approval page (its `approvers` sections,
`podrelease.core.approvers`): every problem is a `PolicyError` naming the place it is at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from podrelease.core.errors import PolicyError

#: A policy document larger than this is refused unread (Lambda's environment holds 4 KiB anyway).
MAX_POLICY_BYTES = 64 * 1024
MAX_ENTRIES = 16
MAX_TEXT = 1024


def fail(where: str, problem: str) -> PolicyError:
    return PolicyError(f"release policy {where}: {problem}")


def type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def object_at(value: object, where: str, allowed: AbstractSet[str], required: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(where, f"must be an object, not {type_name(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise fail(where, f"unknown field(s) {', '.join(repr(u[:40]) for u in unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise fail(where, f"missing required field(s) {', '.join(repr(m) for m in missing)}")
    return value


def text_at(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise fail(where, f"must be a string, not {type_name(value)}")
    if not value.strip():
        raise fail(where, "must not be empty")
    if len(value) > MAX_TEXT:
        raise fail(where, f"is longer than {MAX_TEXT} characters")
    return value


def list_at(value: object, where: str, limit: int = MAX_ENTRIES) -> list[Any]:
    if not isinstance(value, list):
        raise fail(where, f"must be a list, not {type_name(value)}")
    if len(value) > limit:
        raise fail(where, f"has {len(value)} entries, more than {limit}")
    return value


def integer_at(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(where, f"must be an integer, not {type_name(value)}")
    return value


def boolean_at(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise fail(where, f"must be true or false, not {type_name(value)}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            msg = f"release policy: field {key[:40]!r} appears twice in one object"
            raise PolicyError(msg)
        seen[key] = value
    return seen


def read_document(text: str | bytes) -> Any:
    """The document's JSON value: bounded in size, not empty, valid UTF-8 JSON without duplicate keys."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if len(data) > MAX_POLICY_BYTES:
        msg = f"release policy: the document is {len(data)} bytes, more than {MAX_POLICY_BYTES}"
        raise PolicyError(msg)
    if not data.strip():
        msg = "release policy: the document is empty"
        raise PolicyError(msg)
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        msg = f"release policy: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        raise PolicyError(msg) from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        msg = "release policy: not valid JSON (not UTF-8, or nested too deeply)"
        raise PolicyError(msg) from exc


def parameter_name(env: Mapping[str, str]) -> str:
    """The SSM parameter (`name` or `name:version`) holding the policy document, from
    RELEASE_POLICY_PARAMETER and RELEASE_POLICY_VERSION (the version the stack was deployed with,
    not whatever is latest); "" when the stack runs the default policy."""
    name = env.get("RELEASE_POLICY_PARAMETER", "").strip()
    version = env.get("RELEASE_POLICY_VERSION", "").strip()
    return f"{name}:{version}" if name and version not in ("", "0") else name
