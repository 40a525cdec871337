"""RequestApproval Task (`lambda:invoke.waitForTaskToken`): store the task token, email one signed link per approver.

Event: {"task_token": "...", "release": {"id", "execution", "repository", "digest", "image_uri", ...},
        "evidence": {...}, "dev": {...}}
Returns a summary without tokens; the release continues when someone decides on the approval page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from podrelease.approval.links import RequestSettings, request_approval
from podrelease.core.errors import MalformedEvent
from podrelease.core.obs import bind_release, get_logger, release_id_of

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
settings = RequestSettings.from_env()
dynamodb = boto3.client("dynamodb")
sns = boto3.client("sns")
secretsmanager = boto3.client("secretsmanager")
sfn = boto3.client("stepfunctions")


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the event carries the task token: never log it
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event))
    if not isinstance(event, dict):
        msg = "approval request: the event must be an object"
        raise MalformedEvent(msg)
    evidence, dev = event.get("evidence"), event.get("dev")
    return request_approval(
        dynamodb=dynamodb,
        sns=sns,
        secretsmanager=secretsmanager,
        settings=settings,
        release=event.get("release") or {},
        task_token=event.get("task_token", ""),
        evidence=evidence if isinstance(evidence, dict) else None,
        dev=dev if isinstance(dev, dict) else None,
        sfn=sfn,
    )
