"""Times as the ledger, CloudWatch, CodeDeploy and Step Functions give them, as epoch seconds."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def epoch(value: Any) -> float | None:
    """Epoch seconds from a datetime (boto3's timestamps), a number (or a DynamoDB Decimal, or its text)
    or an ISO-8601 time ("2026-11-27T15:00:00Z"); None when it is none of them."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
