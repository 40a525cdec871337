"""RequestApproval Task (`lambda:invoke.waitForTaskToken`): store the task token, email one signed link per approver.

Event: {"task_token": "...", "release": {"id", "execution", "repository", "digest", "image_uri", ...},
        "evidence": {...}, "dev": {...}}
Returns a summary without tokens; the release continues when someone decides on the approval page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from podrelease.approval import bake
from podrelease.approval.keys import SigningKeys
from podrelease.approval.request import ApprovalRequest, RequestSettings, request_approval
from podrelease.approval.store import ApprovalStore
from podrelease.core.obs import bind_release, get_logger, get_tracer, release_id_of

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
tracer = get_tracer()
settings = RequestSettings.from_env()
store = ApprovalStore(boto3.resource("dynamodb").Table(settings.table))
sns = boto3.client("sns")
keys = SigningKeys(SecretsProvider(boto3_client=boto3.client("secretsmanager")), settings.key_secret_id)
sfn = boto3.client("stepfunctions")
codedeploy, cloudwatch = boto3.client("codedeploy"), boto3.client("cloudwatch")


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the event carries the task token: never log it
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event), tracer)
    request = ApprovalRequest.parse(event)
    return request_approval(store=store, sns=sns, keys=keys, settings=settings, release=request.release,
                            task_token=request.task_token, evidence=request.evidence, dev=request.dev, sfn=sfn,
                            measure=lambda dev: bake.gather(codedeploy, cloudwatch, dev))
