"""The local runtime's OpenID Connect provider: `oidc-provider-mock` with the demo's approvers.

It stands in for the stack's Cognito hosted UI: authorization code flow, RS256 ID tokens with `nonce`,
a JWKS, and a sign-in page listing the approvers (one button each; the demo's auto-approver presses
it, a browser test clicks it). It serves on `localhost`, a different site from the approval page's
`127.0.0.1`, so the return from sign-in is a cross-site navigation as it is on AWS.

oidc-provider-mock 0.4.8 accepts PKCE parameters but does not check them, so `PkceGate` (a WSGI layer
in front of it) does what Cognito does: the authorization request must carry an S256
`code_challenge`, and the token request must carry the `code_verifier` that hashes to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import werkzeug.serving
from oidc_provider_mock import User
from oidc_provider_mock import app as provider_app

#: The approval page's client id at the local provider (any id works there; this one is set in the stack).
CLIENT_ID = "podrelease-approval-local"
#: The groups claim of every demo approver (what an approver policy could require).
APPROVER_GROUP = "release-approvers"


def subject_of(email: str) -> str:
    """The provider subject of a demo approver: stable, and not the email (as with Cognito's UUIDs)."""
    return "sub-" + email.split("@", 1)[0]


def login_of(email: str) -> str:
    """The GitHub login of a demo approver (what the release policy's `identities` map it to)."""
    return email.split("@", 1)[0] + "-gh"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _refuse(start_response: Any, error: str, description: str) -> list[bytes]:
    body = json.dumps({"error": error, "error_description": description}).encode()
    start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class PkceGate:
    """WSGI middleware: S256 PKCE required on /oauth2/authorize, checked on /oauth2/token."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.challenges: dict[str, str] = {}  # authorization code -> its code_challenge
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            challenge = (query.get("code_challenge") or [""])[0]
            if (query.get("code_challenge_method") or [""])[0] != "S256" or not 43 <= len(challenge) <= 128:
                return _refuse(start_response, "invalid_request", "PKCE with code_challenge_method=S256 is required")

            def remember(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                for name, value in headers:
                    if name.lower() == "location":
                        code = (parse_qs(urlsplit(value).query).get("code") or [""])[0]
                        if code:
                            with self.lock:
                                self.challenges[code] = challenge
                return start_response(status, headers, *rest)

            return self.app(environ, remember)
        if path == "/oauth2/token" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            form = parse_qs(body.decode(errors="replace"))
            if (form.get("grant_type") or [""])[0] == "authorization_code":
                code, verifier = (form.get("code") or [""])[0], (form.get("code_verifier") or [""])[0]
                with self.lock:
                    expected = self.challenges.pop(code, None)
                if expected is None or not verifier or not hmac.compare_digest(_challenge(verifier), expected):
                    return _refuse(start_response, "invalid_grant", "PKCE code_verifier does not match the code_challenge")
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


@dataclass
class LocalOidcProvider:
    """The provider, serving on a free port of localhost until `stop`."""

    server: werkzeug.serving.BaseWSGIServer
    issuer: str
    thread: threading.Thread

    @classmethod
    def start(cls, approvers: tuple[str, ...]) -> LocalOidcProvider:
        users = [User(sub=subject_of(email), claims={"email": email, "email_verified": True, "groups": [APPROVER_GROUP],
                                                      "name": email.split("@", 1)[0].capitalize()})
                 for email in approvers]
        app = provider_app(require_nonce=True, issue_refresh_token=False, user_claims=users)
        server = werkzeug.serving.make_server("localhost", 0, PkceGate(app), threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        return cls(server, f"http://localhost:{server.server_port}", thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
