#!/usr/bin/env python3
"""Refresh the sigstore trusted root that ships with the verify function.

The gate never fetches trust material while it verifies: it reads the pinned
`layers/common/podrelease/verify/trust/trusted_root.json`. This script, run on a schedule by
`.github/workflows/refresh-trusted-root.yml`, fetches the current production root through
sigstore's TUF repository (TUF checks the metadata signatures, so a tampered mirror is refused),
and rewrites the pinned file only when its content changed. A change then goes through review as a
pull request like any other change to what decides a release.

Exit codes: 0 unchanged, 10 updated (the file was rewritten), 1 the refresh failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PINNED = Path(__file__).resolve().parents[1] / "layers/common/podrelease/verify/trust/trusted_root.json"
UPDATED = 10


def fetch_production_root() -> dict[str, object]:
    from sigstore.models import ClientTrustConfig  # noqa: PLC0415 - only this script needs sigstore's TUF client

    config = ClientTrustConfig.production()
    # sigstore-python keeps the protobuf message behind `_inner`; it has no public serializer.
    document: dict[str, object] = json.loads(config.trusted_root._inner.to_json())  # noqa: SLF001
    return document


def main() -> int:
    try:
        fresh = fetch_production_root()
    except Exception as exc:  # any failure leaves the pinned root as it is
        print(f"refresh failed, pinned root left unchanged: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not fresh.get("certificateAuthorities") or not fresh.get("tlogs"):
        print("refusing a trusted root without certificate authorities or transparency logs", file=sys.stderr)
        return 1
    current = json.loads(PINNED.read_text())
    if current == fresh:
        print(f"{PINNED.name}: unchanged")
        return 0
    PINNED.write_text(json.dumps(fresh, indent=2) + "\n")
    print(f"{PINNED.name}: updated ({len(fresh['certificateAuthorities'])} CAs, {len(fresh['tlogs'])} logs)")  # type: ignore[arg-type]
    return UPDATED


if __name__ == "__main__":
    sys.exit(main())
