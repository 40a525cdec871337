"""A local emulation of the AWS Parameters and Secrets Lambda Extension's HTTP API (the Secrets Manager part).

On Lambda, the extension runs next to the function and answers on localhost:
`GET /secretsmanager/get?secretId=<id>&versionStage=<stage>` (or `versionId=`) with the
`X-Aws-Parameters-Secrets-Token` header set to the function's session token; the reply is
GetSecretValue's JSON. The workload image's gate (`secretgate.ExtensionSource`) reads the
JWT secret's staged values that way, and so does the local stand-in, through this server:

- a ThreadingHTTPServer on 127.0.0.1 and a free port, started and stopped by the local runtime;
- backed by boto3 against the moto endpoint (the same Secrets Manager the rotation writes to);
- a request without the token header, or with another token, is refused (401);
- an error from Secrets Manager is answered with `<Code>: <Message>` as a plain-text body, status
  400 as Secrets Manager's own for a client error, 500 for a service fault (a stage no version
  carries: `400 ResourceNotFoundException: ...`);
- no cache: the image disables the extension's own cache (`SECRETS_MANAGER_TTL=0`) so that the
  gate's snapshot of all three stages is the only one (see `workload/Dockerfile`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from botocore.exceptions import ClientError

from secretgate import TOKEN_HEADER, ExtensionSource

GET_PATH = "/secretsmanager/get"
REPLY_FIELDS = ("ARN", "Name", "VersionId", "SecretString", "VersionStages", "CreatedDate")


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()  # the JSON protocol's epoch seconds
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    extension: SecretsExtension

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Quiet: request lines carry secret ids, and test output stays readable."""

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._answer(status, text.encode(), "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") != GET_PATH:
            self._text(404, f"not emulated locally: {url.path} (only {GET_PATH})")
            return
        if not secrets.compare_digest(self.headers.get(TOKEN_HEADER, ""), self.extension.session_token):
            self._text(401, f"{TOKEN_HEADER} header missing or not this environment's session token")
            return
        query = urllib.parse.parse_qs(url.query)
        secret_id = query.get("secretId", [""])[0]
        if not secret_id:
            self._text(400, "secretId is required")
            return
        selector = {key: query[name][0] for name, key in (("versionStage", "VersionStage"), ("versionId", "VersionId"))
                    if query.get(name)}
        try:
            reply = self.extension.client().get_secret_value(SecretId=secret_id, **selector)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            # Secrets Manager answers client errors with 400 (moto uses 404 for some): 400 unless it is a server fault.
            status = 500 if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400) >= 500 else 400
            self._text(status, f"{error.get('Code', 'Error')}: {error.get('Message', '')}")
            return
        document = {name: _json_value(reply[name]) for name in REPLY_FIELDS if name in reply}
        if "SecretBinary" in reply:
            document["SecretBinary"] = base64.b64encode(reply["SecretBinary"]).decode()
        self._answer(200, json.dumps(document).encode(), "application/json")


class SecretsExtension:
    """The emulated extension: `start()`, then point an `ExtensionSource` at `port` with `session_token`."""

    def __init__(self, client_factory: Callable[[], Any], session_token: str | None = None) -> None:
        self._factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.session_token = session_token or secrets.token_urlsafe(24)
        handler = type("BoundHandler", (_Handler,), {"extension": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def start(self) -> Self:
        self.thread = threading.Thread(target=self.server.serve_forever, name="secrets-extension", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.server.server_close()

    def source(self, secret_id: str, ttl: float) -> ExtensionSource:
        """How the image's gate reads the secret on Lambda, pointed at this emulation."""
        return ExtensionSource(secret_id, ttl, port=self.port, session_token=self.session_token, host="127.0.0.1")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
