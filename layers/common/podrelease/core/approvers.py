"""Who may approve a release into an environment: the `approvers` section of an environment in the
release policy document (`podrelease.verify.policy` validates it with the rest of the document; the
approval page reads it with `approvers_in`).

    "approvers": {
      "emails": ["alice@example.com"],
      "groups": ["release-approvers"],
      "required": 2,
      "rejections": 1,
      "no_self_approval": true,
      "identities": {"alice@example.com": "alice-gh", "sub-0f3c...": ["bob-gh", "bob-bot"]}
    }

- `emails`, `groups`: the named approvers (the provider's verified email) and the groups whose
  members approve (the ID token's group claim, named by the sign-in settings' `groups_claim`). At
  least one entry in all.
- `required` (default 1): distinct approvals that release it (N of M); one person's vote counts once.
- `rejections` (default 1): distinct rejections that end it.
- `no_self_approval` (default false): whoever triggered the build (the `actor` and `triggering_actor`
  of its verified SLSA provenance) may not decide on it. `identities` maps the provider's identities
  (email or subject) to GitHub logins; with `no_self_approval`, an identity the map does not name,
  and a release whose provenance names no actor, are refused: unknown is never allowed.

Without an `approvers` section the link's own approver decides alone (one approval, one rejection).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from podrelease.core.errors import PolicyError
from podrelease.core.policy_fields import (
    boolean_at,
    fail,
    integer_at,
    list_at,
    object_at,
    read_document,
    text_at,
)

MAX_APPROVERS = 50
MAX_IDENTITIES = 200
MAX_VOTES = 16
#: A GitHub login (and a GitHub App's `name[bot]`).
LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
FIELDS = frozenset({"emails", "groups", "required", "rejections", "no_self_approval", "identities"})


@dataclass(frozen=True)
class ApproverPolicy:
    """One environment's approvers (see the module docstring)."""

    emails: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    required: int = 1
    rejections: int = 1
    no_self_approval: bool = False
    #: provider identity (lower-cased email, or subject as given) -> GitHub logins (lower-cased)
    identities: dict[str, frozenset[str]] = field(default_factory=dict)

    def names(self, email: str, groups: tuple[str, ...]) -> bool:
        """Is the person (verified email, group claim) one of the approvers?"""
        return email.lower() in self.emails or bool(self.groups.intersection(groups))

    def logins(self, email: str, subject: str) -> frozenset[str] | None:
        """The GitHub logins of a provider identity (by email, then subject); None when unmapped."""
        found = [self.identities[key] for key in (email.lower(), subject) if key in self.identities]
        return frozenset().union(*found) if found else None

    def describe(self) -> dict[str, Any]:
        return {"emails": sorted(self.emails), "groups": sorted(self.groups), "required": self.required,
                "rejections": self.rejections, "no_self_approval": self.no_self_approval,
                "identities": len(self.identities)}


def _names(value: object, where: str, *, email: bool) -> frozenset[str]:
    found: set[str] = set()
    for number, entry in enumerate(list_at(value, where, MAX_APPROVERS)):
        text = text_at(entry, f"{where}[{number}]").strip()
        if email and "@" not in text:
            raise fail(f"{where}[{number}]", f"{text[:80]!r} is not an email address")
        key = text.lower() if email else text
        if key in found:
            raise fail(f"{where}[{number}]", f"repeats {text[:80]!r}")
        found.add(key)
    return frozenset(found)


def _identities(value: object, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise fail(where, "must be an object mapping a provider identity (email or subject) to GitHub login(s)")
    if len(value) > MAX_IDENTITIES:
        raise fail(where, f"has {len(value)} entries, more than {MAX_IDENTITIES}")
    out: dict[str, frozenset[str]] = {}
    for raw_key, logins in value.items():
        key = text_at(raw_key, f"{where} key").strip()
        at = f"{where}.{key[:60]}"
        entries = [logins] if isinstance(logins, str) else list_at(logins, at)
        if not entries:
            raise fail(at, "names no GitHub login")
        for entry in entries:
            if not isinstance(entry, str) or not LOGIN_RE.match(entry):
                raise fail(at, f"{str(entry)[:60]!r} is not a GitHub login")
        out[key.lower() if "@" in key else key] = frozenset(e.lower() for e in entries)
    return out


def _count(body: dict[str, Any], name: str, where: str) -> int:
    number = integer_at(body.get(name, 1), f"{where}.{name}")
    if not 1 <= number <= MAX_VOTES:
        raise fail(f"{where}.{name}", f"is {number}; it must be 1..{MAX_VOTES}")
    return number


def parse_approvers(value: object, where: str) -> ApproverPolicy:
    """An environment's `approvers` section at `where`; PolicyError naming the place otherwise."""
    body = object_at(value, where, FIELDS)
    emails = _names(body.get("emails", []), f"{where}.emails", email=True)
    groups = _names(body.get("groups", []), f"{where}.groups", email=False)
    if not emails and not groups:
        raise fail(where, "names no emails and no groups: nobody could ever approve")
    required, rejections = _count(body, "required", where), _count(body, "rejections", where)
    if not groups and required > len(emails):
        raise fail(f"{where}.required", f"is {required}, but only {len(emails)} approver(s) are named: it could never be met")
    no_self = boolean_at(body.get("no_self_approval", False), f"{where}.no_self_approval")
    identities = _identities(body.get("identities", {}), f"{where}.identities")
    if no_self and not identities:
        raise fail(f"{where}.identities", "is empty, but no_self_approval needs it to tell approvers from build actors")
    return ApproverPolicy(emails=emails, groups=groups, required=required, rejections=rejections,
                          no_self_approval=no_self, identities=identities)


def approvers_in(document: str | bytes, environment: str) -> ApproverPolicy | None:
    """The `approvers` of `environment` in a release policy document (None: it has none)."""
    body = read_document(document)
    environments = body.get("environments") if isinstance(body, dict) else None
    section = environments.get(environment) if isinstance(environments, dict) else None
    if not isinstance(section, dict):
        msg = f"release policy: environments.{environment} is missing"
        raise PolicyError(msg)
    if "approvers" not in section:
        return None
    return parse_approvers(section["approvers"], f"environments.{environment}.approvers")
