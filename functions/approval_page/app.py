"""The approval page behind a Lambda Function URL (payload format 2.0), on Powertools' resolver.

GET `?t=<token>` sends the visitor to sign in (OIDC, code flow with PKCE), then shows the release;
GET `/callback` finishes the sign-in; POST (t, n, decision=approve|reject|reject-block, comment) votes
for the signed-in approver of the link, as prod's approver policy says (`podrelease.approval.approvers`);
reject-block also blocks the digest in the ledger. Routes: `podrelease.approval.web`.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

from podrelease.approval import page, web
from podrelease.approval.approvers import ApproverCheck, load_approvers
from podrelease.approval.keys import SigningKeys
from podrelease.approval.signin import OidcClient, SignInSettings
from podrelease.approval.store import ApprovalStore
from podrelease.core.obs import get_logger, get_tracer
from podrelease.release.actions import Actions

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from podrelease.core.approvers import ApproverPolicy

logger = get_logger()
tracer = get_tracer()
settings = page.PageSettings.from_env()
ssm = SSMProvider(boto3_client=boto3.client("ssm"))


@functools.cache  # one client per execution environment: it caches the provider's discovery and keys
def sign_in() -> OidcClient:
    return OidcClient(SignInSettings.parse(ssm.get(settings.sign_in_parameter)))


@functools.cache  # the policy version the stack runs: read once per execution environment
def approvers() -> ApproverPolicy | None:
    return load_approvers(os.environ, ssm.get)


table = boto3.resource("dynamodb").Table(settings.table)
approvals = page.ApprovalPage(
    store=ApprovalStore(table),
    keys=SigningKeys(SecretsProvider(boto3_client=boto3.client("secretsmanager")), settings.key_secret_id),
    sfn=boto3.client("stepfunctions"),
    sign_in=sign_in,
    tracer=tracer,
    approver_check=ApproverCheck(approvers),
    block=Actions(table).block,
)
app = web.resolver(approvals, logger)


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the query string, form and cookies carry secrets
@tracer.capture_lambda_handler(capture_response=False)  # the response is the page, with the token in its form
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
