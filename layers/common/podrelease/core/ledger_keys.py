"""Ledger items that more than one stage reads: one spelling of each key."""

from __future__ import annotations


def live_key(environment: str) -> dict[str, str]:
    """What runs in `environment` now, as the last release that reached it recorded it: the Record
    state writes it (`podrelease.release.ledger.Ledger.record_release`), the approval request reads
    it for the page's and the email's "Prod now" (`podrelease.approval.store.ApprovalStore.live`)."""
    return {"pk": f"live#{environment}"}
