"""The approval page behind a Lambda Function URL (payload format 2.0), on Powertools' resolver.

GET `?t=<token>` sends the visitor to sign in (OIDC, code flow with PKCE), then shows the release;
GET `/callback` finishes the sign-in; POST (form: t, n, decision=approve|reject, comment) decides for
the signed-in approver of the link; any other method is 405. Every answer is HTML with strict
security headers (`podrelease.approval.page`); the routes are in `podrelease.approval.web`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

from podrelease.approval import page, web
from podrelease.approval.keys import SigningKeys
from podrelease.approval.signin import OidcClient, SignInSettings
from podrelease.approval.store import ApprovalStore
from podrelease.core.obs import get_logger, get_tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
tracer = get_tracer()
settings = page.PageSettings.from_env()
ssm = SSMProvider(boto3_client=boto3.client("ssm"))


@functools.cache  # one client per execution environment: it caches the provider's discovery and keys
def sign_in() -> OidcClient:
    return OidcClient(SignInSettings.parse(ssm.get(settings.sign_in_parameter)))


approvals = page.ApprovalPage(
    store=ApprovalStore(boto3.resource("dynamodb").Table(settings.table)),
    keys=SigningKeys(SecretsProvider(boto3_client=boto3.client("secretsmanager")), settings.key_secret_id),
    sfn=boto3.client("stepfunctions"),
    sign_in=sign_in,
    tracer=tracer,
)
app = web.resolver(approvals, logger)


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the query string, form and cookies carry secrets
@tracer.capture_lambda_handler(capture_response=False)  # the response is the page, with the token in its form
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
