"""Readable output: aligned tables and `key: value` blocks; `--json` prints the same facts as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def short(value: Any) -> str:
    """A cell: digests to their first 12 hex digits, None as '-', mappings as k=v."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, str) and value.startswith("sha256:") and len(value) == 71:
        return value[:19]
    if isinstance(value, dict):
        return " ".join(f"{k}={short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(short(v) for v in value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[short(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def block(facts: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = keys or list(facts)
    width = max(len(k) for k in keys)
    return "\n".join(f"{k.ljust(width)}  {short(facts.get(k)) if k != 'digest' else facts.get(k) or '-'}" for k in keys)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def release(detail: dict[str, Any]) -> str:
    """`podrelease release ID`: the facts, the timeline, evidence, deployments, approval, actions."""
    parts = [block(detail, ["release_id", "status", "outcome", "repository", "digest", "pushed_at", "started", "stopped",
                            "stopped_at", "error", "cause", "rollback", "approved_by", "approved_at"])]
    parts += ["", "TIMELINE", table(detail["timeline"], ["stage", "started", "ended", "seconds", "state"])]
    for key, evidence in detail["evidence"].items():
        signatures = evidence.get("signatures") or []
        parts += ["", f"EVIDENCE ({key})", block({
            "verified": evidence.get("verified"),
            "policy": evidence.get("policy"),
            "signatures": [f"{s.get('kind')} {s.get('identity') or 'key ' + str(s.get('key_id', '?'))[:12]}"
                           for s in signatures if isinstance(s, dict)],
            "sbom": evidence.get("sbom"),
            "scan": evidence.get("scan"),
        })]
    rows = [{"environment": env, **{k: d.get(k) for k in ("id", "status", "lambda_status")},
             "fleet": (d.get("fleet") or {}).get("phase")} for env, d in detail["deployments"].items()]
    parts += ["", "DEPLOYMENTS", table(rows, ["environment", "id", "status", "lambda_status", "fleet"]) if rows else "-"]
    approval = detail.get("approval") or {}
    parts += ["", "APPROVAL", block({k: approval.get(k) for k in ("status", "approvers", "decided_by", "decided_at")})
              if approval else "-"]
    parts += ["", "ACTIONS", table(detail["actions"], ["at", "action", "who"]) if detail["actions"] else "-"]
    return "\n".join(parts)
