"""The approval page behind a Lambda Function URL (payload format 2.0), on Powertools' resolver.

GET `?t=<token>` shows the release read-only; POST (form: t, decision=approve|reject) decides and
resumes or fails the waiting release; any other method is 405. Every answer is HTML with strict
security headers (`podrelease.approval.page`); the exception handlers turn the named errors into pages.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import ClientError

from podrelease.approval import page
from podrelease.approval.keys import SigningKeys
from podrelease.approval.store import ApprovalStore
from podrelease.core.errors import ReleaseError
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
app = LambdaFunctionUrlResolver()
ANY_PATH = ".+"  # the Function URL serves the page at every path


def _reply(html: page.HtmlPage) -> Response[str]:
    return Response(status_code=html.status, body=html.document, headers=html.headers)


@app.get(ANY_PATH)
def show() -> Response[str]:
    return _reply(approvals.show(page.token_from_query(app.current_event.resolved_query_string_parameters)))


@app.post(ANY_PATH)
def decide() -> Response[str]:
    event = app.current_event
    return _reply(approvals.decide(*page.read_form(event.decoded_body, event.headers.get("content-type"))))


def _refused(refusal: page.ApprovalRefused) -> Response[str]:
    logger.info("approval page refused", extra={"status": refusal.status, "reason": refusal.title})
    return _reply(page.refusal_page(refusal))


@app.exception_handler(page.ApprovalRefused)
def refused(refusal: page.ApprovalRefused) -> Response[str]:
    return _refused(refusal)


@app.not_found  # every path is served: only the method can be wrong
def other_method(_: NotFoundError) -> Response[str]:
    return _refused(page.method_not_allowed())


@app.exception_handler([binascii.Error, UnicodeDecodeError])  # a base64 body that is not base64 of UTF-8
def unreadable_body(_: ValueError) -> Response[str]:
    return _refused(page.unreadable_form())


@app.exception_handler(ReleaseError)  # configuration problems: say so without detail
def misconfigured(exc: ReleaseError) -> Response[str]:
    logger.exception("approval page failed", extra={"error": exc.name})
    return _reply(page.unavailable_page(500, "The approval service is misconfigured. Tell the release owner."))


@app.exception_handler(ClientError)  # the ledger could not be read or written: nothing was decided
def ledger_unreachable(exc: ClientError) -> Response[str]:
    logger.exception("approval page failed", extra={"error_code": exc.response.get("Error", {}).get("Code")})
    return _reply(page.unavailable_page(503, "The ledger could not be reached. Please try again in a minute."))


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the query string and form carry the approval token
@tracer.capture_lambda_handler(capture_response=False)  # the response is the page, with the token in its form
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
