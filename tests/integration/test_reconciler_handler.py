"""The reconciler handler (the schedule's target) against moto (see handler_world.py): a push whose
event never arrived becomes exactly one release, artifacts and released digests start nothing, and
the starter's dead letters are redriven, deleted only once their release started."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from podrelease.release.events import execution_name
from podrelease.release.ledger import Ledger
from podrelease.release.reconcile import Reconciler, Report
from tests.conftest import import_handler
from tests.integration.handler_world import ACCOUNT, REGION, REPOSITORY, STATE_MACHINE_ARN, Context, Starter, push_event

QUEUE = "podrel-starter-dead-letters"
BOOTSTRAP_LAYER = "sha256:" + "b0" * 32
SCHEDULED = {"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "account": ACCOUNT,
             "region": REGION, "resources": [], "detail": {}}


def manifest(layer: str) -> str:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c0" * 32, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 1}],
    })


class World:
    def __init__(self, starter: Starter, ledger_table: Any) -> None:
        self.starter, self.table = starter, ledger_table
        self.ecr = boto3.client("ecr", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.ecr.create_repository(repositoryName=REPOSITORY)
        self.queue = self.sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        self.bootstrap = self.push("sha256:" + "b0" * 32, "bootstrap")
        self.app: Any = None

    def push(self, layer: str, tag: str | None) -> str:
        """An image pushed to the repository whose push event never arrives; its digest."""
        return str(self.ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest(layer),
                                      **({"imageTag": tag} if tag else {}))["image"]["imageId"]["imageDigest"])

    def run(self) -> dict[str, Any]:
        return dict(self.app.handler(SCHEDULED, Context()))

    def dead_letters(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@pytest.fixture
def world(starter: Starter, ledger: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    world = World(starter, ledger)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", world.queue)
    monkeypatch.setenv("BOOTSTRAP_IMAGE_URI", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{world.bootstrap}")
    world.app = import_handler("reconciler")
    return world


def test_a_push_whose_event_was_lost_becomes_exactly_one_release(world: World) -> None:
    # GIVEN an image pushed to the watched repository whose push event never arrived
    digest = world.push("sha256:" + "11" * 32, "6.9.1")
    release = execution_name(REPOSITORY, digest)
    # WHEN the schedule runs the reconciler
    report = world.run()
    # THEN exactly that release started, named as the starter names it, from the push as ECR would send it
    assert report["started"] == [release]
    assert world.starter.executions() == [release]
    event = world.starter.input_of(release)
    assert event["detail"] == {"result": "SUCCESS", "action-type": "PUSH", "repository-name": REPOSITORY, "image-digest": digest,
                               "manifest-media-type": "application/vnd.oci.image.manifest.v1+json", "image-tag": "6.9.1"}
    assert (event["source"], event["detail-type"], event["account"], event["region"]) == ("aws.ecr", "ECR Image Action", ACCOUNT, REGION)
    # AND the next run starts nothing: the release exists
    again = world.run()
    assert again["started"] == []
    assert digest in again["already"]
    assert world.starter.executions() == [release]


def test_the_pushs_own_late_event_after_the_reconciler_starts_nothing_more(world: World) -> None:
    digest = world.push("sha256:" + "12" * 32, "6.9.2")
    world.run()
    # WHEN EventBridge delivers the push event after all
    reply = world.starter.start(push_event(digest=digest, tag="6.9.2"))
    # THEN the starter finds the reconciler's release: still one execution
    assert reply["started"] is False
    assert reply["duplicate"] is True
    assert world.starter.executions() == [execution_name(REPOSITORY, digest)]


def test_signatures_the_bootstrap_image_and_recorded_releases_start_nothing(world: World) -> None:
    image = world.push("sha256:" + "13" * 32, "6.9.3")
    signature = world.push("sha256:" + "14" * 32, f"sha256-{image[7:]}.sig")
    Ledger(world.table).record_release(execution_name(REPOSITORY, image), {"outcome": "SUCCEEDED", "digest": image})
    report = world.run()
    # THEN: the signature is an artifact (the starter's rule), the released image is known, the
    # bootstrap image (the stack's BootstrapImageUri) is not a push to release
    assert report["started"] == []
    assert report["artifacts"] == [signature]
    assert report["already"] == [image]
    assert world.starter.executions() == []


def test_pushes_before_the_look_back_window_are_left_alone(world: World, ledger: Any) -> None:
    world.push("sha256:" + "15" * 32, "6.9.4")
    reconciler = world.app.reconciler
    report = reconciler.run(now=time.time() + reconciler.lookback_seconds + 60)
    assert report.started == []
    assert world.starter.executions() == []


def test_dead_letters_are_redriven_and_deleted_once_their_release_started(world: World) -> None:
    # GIVEN a push event the starter failed on, in its dead-letter queue (the body is the event)
    digest = "sha256:" + "16" * 32
    world.sqs.send_message(QueueUrl=world.queue, MessageBody=json.dumps(push_event(digest=digest)))
    # WHEN the reconciler runs
    report = world.run()
    # THEN the push's release started from the event itself, and the message is gone
    release = execution_name(REPOSITORY, digest)
    assert report["started"] == [release]
    assert len(report["redriven"]) == 1
    assert world.starter.input_of(release) == push_event(digest=digest)
    assert world.dead_letters() == 0
    assert report["dead_letters_left"] == 0


def test_a_dead_letter_whose_release_could_not_start_stays_in_the_queue(world: World, ledger: Any) -> None:
    world.sqs.send_message(QueueUrl=world.queue, MessageBody=json.dumps(push_event(digest="sha256:" + "17" * 32)))
    # GIVEN Step Functions refuses the start (here: a state machine that does not exist)
    broken = Reconciler(world.ecr, world.starter.sfn, world.sqs, Ledger(ledger), STATE_MACHINE_ARN + "-gone", (REPOSITORY,),
                        world.queue)
    # WHEN the redrive runs THEN it fails, and the message is still there for the next run
    with pytest.raises(ClientError, match="StateMachineDoesNotExist"):
        broken.redrive_dead_letters(Report())
    assert world.dead_letters() == 1
