"""SNS: email subscriptions write each delivered message (after the subscription's filter policy)
to a file in an outbox folder, one per message."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from moto.sns.models import Subscription

from local.emulation.base import Current, Patches, Timeline


class EmailOutbox:
    """Email subscriptions of SNS topics write each delivered message to a file (one per message)."""

    def __init__(self, folder: Path, timeline: Timeline) -> None:
        self.folder = folder
        self.timeline = timeline
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    def deliver(self, subscription: Any, message: str, subject: str | None, attributes: dict[str, Any] | None) -> None:
        matcher = getattr(subscription, "_filter_policy_matcher", None)
        if matcher is not None and not matcher.matches(attributes, message):
            return
        record = {"to": subscription.endpoint, "topic": subscription.topic.arn, "subject": subject or "", "body": message,
                  "attributes": {k: v.get("Value") for k, v in (attributes or {}).items()}, "time": time.time()}
        with self.lock:
            self.messages.append(record)
            path = self.folder / f"{len(self.messages):04d}-{re.sub(r'[^a-z0-9]+', '_', subscription.endpoint.lower())}.eml"
        path.write_text(f"To: {record['to']}\nSubject: {record['subject']}\n\n{message}\n")
        release = re.search(r"\[([A-Za-z0-9_-]+)\]", record["subject"])
        self.timeline.add("email", f"to {record['to']}: {record['subject']}", release.group(1) if release else "")


_patches = Patches()


def install(current: Current) -> None:
    """Email subscriptions deliver to the outbox; every other protocol as moto does."""
    original_publish = Subscription.publish

    def publish(self: Subscription, message: str, message_id: str, subject: str | None = None,
                message_attributes: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> None:
        if self.protocol in ("email", "email-json"):
            current().outbox.deliver(self, message, subject, message_attributes)
            return
        original_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)

    _patches.patch(Subscription, "publish", publish)


def uninstall() -> None:
    _patches.restore()
