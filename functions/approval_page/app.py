"""The approval page behind a Lambda Function URL (payload format 2.0), on Powertools' resolver.

GET `?t=<token>` shows the release read-only; POST (form: t, decision=approve|reject) decides and
resumes or fails the waiting release; any other method is 405. Every answer is HTML with strict
security headers (`podrelease.approval.page`); the routes and exception handlers are in
`podrelease.approval.web`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from podrelease.approval import page, web
from podrelease.approval.keys import SigningKeys
from podrelease.approval.store import ApprovalStore
from podrelease.core.obs import get_logger, get_tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
tracer = get_tracer()
settings = page.PageSettings.from_env()
sfn = boto3.client("stepfunctions")
secretsmanager = boto3.client("secretsmanager")
approvals = page.ApprovalPage(
    store=ApprovalStore(boto3.resource("dynamodb").Table(settings.table)),
    keys=SigningKeys(SecretsProvider(boto3_client=secretsmanager), settings.key_secret_id),
    sfn=sfn,
    tracer=tracer,
)
app = web.resolver(approvals, logger)


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the query string and form carry the approval token
@tracer.capture_lambda_handler(capture_response=False)  # the response is the page, with the token in its form
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
