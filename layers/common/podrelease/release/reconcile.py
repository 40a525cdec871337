"""No lost pushes: what the scheduled reconciler does.

ECR delivers push events best effort, and a push the starter could not turn into a release waits in
its dead-letter queue. The reconciler closes both gaps with the starter's own rule (`start_release`:
artifacts start nothing, one execution per repository and digest, named by `execution_name`):

- `reconcile_pushes`: every image pushed to a watched repository within the look-back window
  (DescribeImages' `imagePushedAt`) whose release is neither recorded in the ledger nor started is
  started now, from a push event rebuilt out of the image's details. A second run, or the push's
  own late event, finds the execution by its name and starts nothing. The bootstrap image (the
  stack's `BootstrapImageUri`, pushed before the stack existed) is not a push to release.
- `redrive_dead_letters`: each message of the starter's dead-letter queue (the push event, as
  EventBridge or Lambda left it) is given to `start_release`; the message is deleted only after
  that returned, so a message whose start failed is received again on a later run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from podrelease.release.events import ARTIFACT_TAG_RE, execution_name
from podrelease.release.ledger import Ledger
from podrelease.release.start import start_release

DEFAULT_LOOKBACK_SECONDS = 24 * 3600
#: SQS hands out at most 10 messages per receive; a run stops after this many receives.
MAX_RECEIVES = 20


@dataclass
class Report:
    """What one reconciler run did: release ids it started, digests it found already released or
    in flight, artifacts it skipped, dead letters it redrove (and how many are left for later)."""

    started: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)
    dead_letters_left: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"started": self.started, "already": self.already, "artifacts": self.artifacts,
                "redriven": self.redriven, "dead_letters_left": self.dead_letters_left}


@dataclass(frozen=True)
class Reconciler:
    """The clients and settings of one stack (clients injected)."""

    ecr: Any
    sfn: Any
    sqs: Any
    ledger: Ledger
    state_machine_arn: str
    watched: tuple[str, ...]
    dead_letter_queue_url: str = ""
    lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS
    #: Digests that are no push to release: the bootstrap image the stack was created with.
    skip_digests: frozenset[str] = frozenset()

    @property
    def account(self) -> str:
        return self.state_machine_arn.split(":")[4]

    @property
    def region(self) -> str:
        return self.state_machine_arn.split(":")[3]

    def run(self, now: float | None = None) -> Report:
        report = Report()
        self.reconcile_pushes(report, time.time() if now is None else now)
        self.redrive_dead_letters(report)
        return report

    # --- pushes whose event never arrived -------------------------------------------------------------
    def recent_images(self, repository: str, since: float) -> Iterator[dict[str, Any]]:
        for page in self.ecr.get_paginator("describe_images").paginate(repositoryName=repository):
            for image in page.get("imageDetails", []):
                pushed = image.get("imagePushedAt")
                stamp = pushed.timestamp() if isinstance(pushed, datetime) else float(pushed or 0)
                if stamp >= since:
                    yield image

    def push_event(self, image: dict[str, Any]) -> dict[str, Any]:
        """The ECR push event the image's push would have sent (the shape `parse_push` reads). A tag of
        cosign's artifact layout is preferred, so the starter's artifact rule sees what ECR would show."""
        tags = sorted(image.get("imageTags") or [])
        tag = next((t for t in tags if ARTIFACT_TAG_RE.match(t)), tags[0] if tags else None)
        pushed = image.get("imagePushedAt")
        detail: dict[str, Any] = {
            "result": "SUCCESS",
            "action-type": "PUSH",
            "repository-name": image["repositoryName"],
            "image-digest": image["imageDigest"],
        }
        if image.get("imageManifestMediaType"):
            detail["manifest-media-type"] = image["imageManifestMediaType"]
        if image.get("artifactMediaType"):
            detail["artifact-media-type"] = image["artifactMediaType"]
        if tag:
            detail["image-tag"] = tag
        return {
            "version": "0",
            "id": f"reconciler-{image['imageDigest'][7:31]}",
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": self.account,
            "region": self.region,
            "time": pushed.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(pushed, datetime) else "",
            "resources": [],
            "detail": detail,
            "reconciled": True,
        }

    def reconcile_pushes(self, report: Report, now: float) -> None:
        for repository in self.watched:
            for image in self.recent_images(repository, now - self.lookback_seconds):
                digest = image["imageDigest"]
                if digest in self.skip_digests:
                    continue
                if self.ledger.get_release(execution_name(repository, digest)) is not None:
                    report.already.append(digest)
                    continue
                self._start(self.push_event(image), digest, report)

    def _start(self, event: Any, label: str, report: Report) -> None:
        result = start_release(self.sfn, self.state_machine_arn, event, self.watched)
        if result.get("started"):
            report.started.append(str(result["name"]))
        elif result.get("duplicate"):
            report.already.append(label)
        else:
            report.artifacts.append(label)

    # --- the starter's dead letters -------------------------------------------------------------------
    def redrive_dead_letters(self, report: Report) -> None:
        if not self.dead_letter_queue_url:
            return
        for _ in range(MAX_RECEIVES):
            messages = self.sqs.receive_message(QueueUrl=self.dead_letter_queue_url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    event: Any = json.loads(message.get("Body", ""))
                except ValueError:
                    event = message.get("Body", "")  # not JSON: still a refusal execution, visible by name
                self._start(event, message["MessageId"], report)
                self.sqs.delete_message(QueueUrl=self.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
                report.redriven.append(message["MessageId"])
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dead_letter_queue_url,
                                                   AttributeNames=["ApproximateNumberOfMessages"]).get("Attributes", {})
        report.dead_letters_left = int(attributes.get("ApproximateNumberOfMessages", 0))
