"""The approval page's HTTP edge on Powertools' `LambdaFunctionUrlResolver`: GET shows, POST decides,
any other method is 405, and the exception handlers turn each named error into its page."""

from __future__ import annotations

import binascii

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from botocore.exceptions import ClientError

from podrelease.approval import page
from podrelease.core.errors import ReleaseError

ANY_PATH = ".+"  # the Function URL serves the page at every path


def _reply(html: page.HtmlPage) -> Response[str]:
    return Response(status_code=html.status, body=html.document, headers=html.headers)


def resolver(approvals: page.ApprovalPage, logger: Logger) -> LambdaFunctionUrlResolver:
    """The page's routes and exception handlers over `approvals`."""
    app = LambdaFunctionUrlResolver()

    def refused_page(refusal: page.ApprovalRefused) -> Response[str]:
        logger.info("approval page refused", extra={"status": refusal.status, "reason": refusal.title})
        return _reply(page.refusal_page(refusal))

    @app.get(ANY_PATH)
    def show() -> Response[str]:
        return _reply(approvals.show(page.token_from_query(app.current_event.resolved_query_string_parameters)))

    @app.post(ANY_PATH)
    def decide() -> Response[str]:
        event = app.current_event
        return _reply(approvals.decide(*page.read_form(event.decoded_body, event.headers.get("content-type"))))

    @app.exception_handler(page.ApprovalRefused)  # type: ignore[misc]  # Powertools' decorator is untyped
    def refused(refusal: page.ApprovalRefused) -> Response[str]:
        return refused_page(refusal)

    @app.not_found  # every path is served: only the method can be wrong
    def other_method(_: NotFoundError) -> Response[str]:
        return refused_page(page.method_not_allowed())

    # a base64 body that is not base64 of UTF-8
    @app.exception_handler([binascii.Error, UnicodeDecodeError])  # type: ignore[misc]
    def unreadable_body(_: ValueError) -> Response[str]:
        return refused_page(page.unreadable_form())

    # configuration problems: say so without detail
    @app.exception_handler(ReleaseError)  # type: ignore[misc]
    def misconfigured(exc: ReleaseError) -> Response[str]:
        logger.exception("approval page failed", extra={"error": exc.name})
        return _reply(page.unavailable_page(500, "The approval service is misconfigured. Tell the release owner."))

    # the ledger could not be read or written: nothing was decided
    @app.exception_handler(ClientError)  # type: ignore[misc]
    def ledger_unreachable(exc: ClientError) -> Response[str]:
        logger.exception("approval page failed", extra={"error_code": exc.response.get("Error", {}).get("Code")})
        return _reply(page.unavailable_page(503, "The ledger could not be reached. Please try again in a minute."))

    return app
