"""The approval page behind a Lambda Function URL (payload format 2.0).

GET `?t=<token>` shows the release read-only; POST (form: t, decision=approve|reject) decides and
resumes or fails the waiting release. Every response is HTML with strict security headers.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

import boto3

from podrelease.approval.links import PageSettings, handle_http
from podrelease.core.obs import get_logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = get_logger()
settings = PageSettings.from_env()
dynamodb = boto3.client("dynamodb")
sfn = boto3.client("stepfunctions")
secretsmanager = boto3.client("secretsmanager")


def _body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "\x00"  # not a form: handle_http answers 400


@logger.inject_lambda_context(log_event=False, clear_state=True)  # the query string and form carry the approval token
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    http = (event.get("requestContext") or {}).get("http") or {}
    raw_query = event.get("rawQueryString")
    status, headers, html = handle_http(
        http.get("method", ""),
        raw_query if isinstance(raw_query, str) else event.get("queryStringParameters"),
        _body(event),
        event.get("headers") or {},
        dynamodb=dynamodb,
        sfn=sfn,
        secretsmanager=secretsmanager,
        settings=settings,
    )
    return {"statusCode": status, "headers": headers, "body": html}
