"""The approval page's HTTP edge on Powertools' `LambdaFunctionUrlResolver`: GET /callback finishes a
sign-in, GET shows (or sends to sign in), POST decides, any other method is 405, and the exception
handlers turn each named error into its page.

A POST is checked in the order that costs least and leaks least: Content-Type, then Origin /
Sec-Fetch-Site, then the form, then (in `ApprovalPage.decide`) session, link, approver and nonce."""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent

from podrelease.approval import page
from podrelease.approval.refusal import ApprovalRefused
from podrelease.approval.session import read_cookies
from podrelease.approval.signin import SignInFailed
from podrelease.core.errors import ReleaseError

ANY_PATH = ".+"  # the Function URL serves the page at every path


def _reply(html: page.HtmlPage) -> Response[str]:
    return Response(status_code=html.status, body=html.document, headers=html.headers, cookies=list(html.cookies))


def _cookies(event: LambdaFunctionUrlEvent) -> dict[str, str]:
    # Function URLs (payload 2.0) move the Cookie header into `cookies`.
    return read_cookies(list(event.cookies or []))


def resolver(approvals: page.ApprovalPage, logger: Logger) -> LambdaFunctionUrlResolver:
    """The page's routes and exception handlers over `approvals`."""
    app = LambdaFunctionUrlResolver()

    def refused_page(refusal: ApprovalRefused) -> Response[str]:
        logger.info("approval page refused", extra={"status": refusal.status, "reason": refusal.reason})
        return _reply(page.refusal_page(refusal))

    @app.get(page.CALLBACK_PATH)
    def callback() -> Response[str]:
        event = app.current_event
        return _reply(approvals.callback(event.resolved_query_string_parameters, _cookies(event)))

    @app.get(ANY_PATH)
    def show() -> Response[str]:
        event = app.current_event
        return _reply(approvals.show(page.token_from_query(event.resolved_query_string_parameters), _cookies(event)))

    @app.post(ANY_PATH)
    def decide() -> Response[str]:
        event = app.current_event
        headers = {k.lower(): v for k, v in (event.headers or {}).items()}
        form_type = headers.get("content-type")
        if (form_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            page.read_form(None, form_type)  # raises the named refusal
        page.check_post_origin(headers, approvals.sign_in().settings.origin)
        return _reply(approvals.decide(page.read_form(event.decoded_body, form_type), _cookies(event)))

    @app.exception_handler(ApprovalRefused)  # type: ignore[misc]  # Powertools' decorator is untyped
    def refused(refusal: ApprovalRefused) -> Response[str]:
        return refused_page(refusal)

    @app.not_found  # every path is served: only the method can be wrong
    def other_method(_: NotFoundError) -> Response[str]:
        return refused_page(page.method_not_allowed())

    # a base64 body that is not base64 of UTF-8
    @app.exception_handler([binascii.Error, UnicodeDecodeError])  # type: ignore[misc]
    def unreadable_body(_: ValueError) -> Response[str]:
        return refused_page(page.unreadable_form())

    # the sign-in provider could not be reached or read (discovery, JWKS): nothing was decided
    @app.exception_handler(SignInFailed)  # type: ignore[misc]
    def provider_unreachable(exc: SignInFailed) -> Response[str]:
        logger.warning("sign-in provider unavailable", extra={"reason": str(exc)[:200]})
        return _reply(page.unavailable_page(503, "The sign-in provider could not be reached. Please try again in a minute."))

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
