"""podinfo's JWT endpoints with a rotating secret: the reader that ships in the workload image.

STANDARD LIBRARY ONLY. This one file is copied into the podinfo image (no boto3 there) and runs as
its entrypoint; the control plane imports the token functions from here too (one copy). That is
why it is one module of about 600 lines, over the project's ~500: the image copies a single file.

Stock podinfo holds one JWT secret, read once from `PODINFO_JWT_SECRET` or its config file (both
served back by its `/env` and `/configs`), and can neither pick up a rotated value nor accept two.
So the image runs this module in front of podinfo ("the gate"):

- it answers `POST /token` (a token signed with the secret's AWSCURRENT value) and
  `GET /token/validate` (a token signed with AWSCURRENT, AWSPREVIOUS or AWSPENDING is accepted)
  itself, with podinfo's reply shapes;
- it reverse-proxies every other request, unchanged, to podinfo on 127.0.0.1:9898;
- `main()` starts podinfo as its child, waits for it, forwards SIGTERM and exits when it exits.

Where the staged values come from (each source keeps a snapshot of all three stages for
`SECRET_CACHE_SECONDS`, so the set it answers with is always one consistent read):

- `ExtensionSource` (Lambda, `WORKLOAD_SECRET_ARN`): the AWS Parameters and Secrets Lambda
  Extension's local HTTP API, `GET /secretsmanager/get?secretId=...&versionStage=...` with the
  `X-Aws-Parameters-Secrets-Token` header (the function's session token). The extension answers
  only during an invocation (never during INIT), so nothing is read before the first token request.
- `FileSource` (EC2, `PODINFO_SECRET_FILE`): the JSON file `podinfo-secret-fetch` keeps up to date
  (`{"AWSCURRENT": ..., "AWSPREVIOUS": ..., "AWSPENDING": ...}`), re-read as soon as it changes.

A stage that no version carries is skipped; AWSCURRENT unreadable is `WorkloadSecretUnreadable`,
answered as podinfo answers an error (HTTP 500) and logged without any value. The secret never goes
into an environment variable, a log line, a command line or a podinfo config path: podinfo's child
process gets the gate's environment minus AWS credentials and the secret's whereabouts.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import posixpath
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

SECRET_KEY = "jwt-secret"  # noqa: S105 - the field name in the secret's JSON value, not a secret
ISSUER = "podinfo"
CURRENT, PREVIOUS, PENDING = "AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"
STAGES = (CURRENT, PREVIOUS, PENDING)
TOKEN_TTL_SECONDS = 60  # podinfo's tokens live one minute
DEFAULT_CACHE_SECONDS = 10.0
MAX_BODY_BYTES = 10 << 20  # podinfo's own request body limit (10 MiB), answered the same way (413)
TOKEN_PATH, VALIDATE_PATH = "/token", "/token/validate"
UPSTREAM = ("127.0.0.1", 9898)
EXTENSION_PORT = 2773
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"  # noqa: S105 - a header name

log = logging.getLogger("secretgate")


class WorkloadSecretUnreadable(Exception):
    """The workload secret's AWSCURRENT value (or another stage's read) failed: no token can be issued."""


class TokenRefused(ValueError):
    """A bearer token that is not accepted; the message is what podinfo says (no secret in it)."""


# --- podinfo-compatible tokens (HS256 JWT, issuer "podinfo") ------------------------------------------
_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}  # podinfo accepts any HMAC


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(secret: str, name: str = "anonymous", ttl: int = TOKEN_TTL_SECONDS, now: float | None = None) -> tuple[str, int]:
    """A token as podinfo's `POST /token` issues it: (token, expires_at epoch seconds)."""
    expires = int((time.time() if now is None else now) + ttl)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"name": name, "iss": ISSUER, "exp": expires}, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}", expires


def check_token(token: str, accepted: Iterable[str], now: float | None = None) -> dict[str, Any]:
    """The claims of a token signed (HMAC) by any of the `accepted` secrets, unexpired, of issuer
    podinfo; `TokenRefused` with podinfo's wording otherwise. The signature is checked before any claim."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRefused("token contains an invalid number of segments")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError as exc:
        raise TokenRefused("token is malformed") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenRefused("token is malformed")
    digest = _HMAC.get(str(header.get("alg")))
    if digest is None:
        raise TokenRefused("invalid signing method")
    signed = f"{parts[0]}.{parts[1]}".encode()
    if not any(hmac.compare_digest(hmac.new(s.encode(), signed, digest).digest(), signature) for s in accepted if s):
        raise TokenRefused("signature is invalid")
    expires = claims.get("exp")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise TokenRefused("token has no expiry")
    if expires < (time.time() if now is None else now):
        raise TokenRefused("token is expired")
    if claims.get("iss") != ISSUER:
        raise TokenRefused("invalid issuer")
    return claims


def verify_token(token: str, accepted: Iterable[str], now: float | None = None) -> dict[str, Any] | None:
    """The token's claims when `check_token` accepts it; None otherwise."""
    try:
        return check_token(token, accepted, now)
    except TokenRefused:
        return None


def parse_secret_string(text: object, where: str) -> str:
    """The `jwt-secret` of a SecretString; `WorkloadSecretUnreadable` naming `where` (never the text)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    secret = value.get(SECRET_KEY) if isinstance(value, dict) else None
    if not isinstance(secret, str) or not secret:
        raise WorkloadSecretUnreadable(f"{where}: the value is not JSON with a non-empty {SECRET_KEY!r} string")
    return secret


# --- where the staged values come from ----------------------------------------------------------------
class StagedSource:
    """The staged values of the workload secret (stage -> `jwt-secret`), read together and kept
    for `ttl` seconds. Subclasses read one stage (`_read_stage`: None when no version carries it)
    or the whole set (`_read`), and may say the cache is stale before its time (`_changed`)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.reads = 0  # how many times the values were read (for tests and diagnostics)
        self._values: dict[str, str] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return type(self).__name__

    def staged(self) -> dict[str, str]:
        """Stage -> value: AWSCURRENT always, AWSPREVIOUS and AWSPENDING when a version carries them."""
        with self._lock:
            if self._values is None or self.clock() - self._read_at >= self.ttl or self._changed():
                values = self._read()
                self.reads += 1
                if not values.get(CURRENT):
                    raise WorkloadSecretUnreadable(f"{self.describe()}: no {CURRENT} value")
                self._values, self._read_at = values, self.clock()
            return dict(self._values)

    def accepted(self) -> list[str]:
        return list(self.staged().values())

    def invalidate(self) -> None:
        with self._lock:
            self._values = None

    def _read(self) -> dict[str, str]:
        values = {}
        for stage in STAGES:
            value = self._read_stage(stage)
            if value is not None:
                values[stage] = value
        return values

    def _read_stage(self, stage: str) -> str | None:
        raise NotImplementedError

    def _changed(self) -> bool:
        return False


def _explain(text: str) -> str:
    """A short, value-free reason from an error reply (the first line, the error name first)."""
    line = text.strip().splitlines()[0][:300] if text.strip() else "no details"
    lowered = line.lower()
    if "kms" in lowered or "decrypt" in lowered:
        return f"KMS refused to decrypt the secret ({line}); the role needs kms:Decrypt on the secret's key"
    if "accessdenied" in lowered or "not authorized" in lowered:
        return f"access denied ({line}); the role needs secretsmanager:GetSecretValue on the secret"
    return line


class ExtensionSource(StagedSource):
    """The AWS Parameters and Secrets Lambda Extension's local HTTP API. Its reply is GetSecretValue's
    JSON; an error reply names the Secrets Manager error in its body (a stage no version carries is
    `ResourceNotFoundException`, skipped). The port and the session token are read from the
    environment at each read unless given (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`, `AWS_SESSION_TOKEN`)."""

    def __init__(self, secret_id: str, ttl: float, *, port: int | None = None, session_token: str | None = None,
                 host: str = "localhost", timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl, clock)
        self.secret_id, self.port, self.session_token, self.host, self.timeout = secret_id, port, session_token, host, timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never through a proxy

    def describe(self) -> str:
        return f"secret {self.secret_id} (Parameters and Secrets extension)"

    def url(self, stage: str) -> str:
        port = self.port or int(os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") or EXTENSION_PORT)
        query = urllib.parse.urlencode({"secretId": self.secret_id, "versionStage": stage})
        return f"http://{self.host}:{port}/secretsmanager/get?{query}"

    def _read_stage(self, stage: str) -> str | None:
        token = self.session_token if self.session_token is not None else os.environ.get("AWS_SESSION_TOKEN", "")
        request = urllib.request.Request(self.url(stage), headers={TOKEN_HEADER: token})  # noqa: S310 - http to localhost only
        where = f"{self.describe()} {stage}"
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:
            text = exc.read(4096).decode(errors="replace")
            if stage != CURRENT and "ResourceNotFoundException" in text:
                return None  # no version carries this stage
            raise WorkloadSecretUnreadable(f"{where}: HTTP {exc.code}: {_explain(text)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WorkloadSecretUnreadable(f"{where}: the extension is not reachable at {self.host} ({reason})") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise WorkloadSecretUnreadable(f"{where}: the extension's reply is not JSON") from None
        if not isinstance(document, dict):
            raise WorkloadSecretUnreadable(f"{where}: the extension's reply is not a GetSecretValue reply")
        return parse_secret_string(document.get("SecretString"), where)


class FileSource(StagedSource):
    """The JSON file `{"AWSCURRENT": ..., "AWSPREVIOUS": ..., "AWSPENDING": ...}` that
    podinfo-secret-fetch replaces atomically on EC2; read again as soon as its mtime, size or inode
    changes (a stat per request), and at the latest after `ttl` seconds."""

    def __init__(self, path: str | Path, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl, clock)
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None

    def describe(self) -> str:
        return f"secret file {self.path}"

    def _changed(self) -> bool:
        try:
            st = self.path.stat()
        except OSError:
            return True  # gone: read again, which names the error
        return (st.st_mtime_ns, st.st_size, st.st_ino) != self._seen

    def _read(self) -> dict[str, str]:
        try:
            with self.path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                data = handle.read()
        except FileNotFoundError:
            raise WorkloadSecretUnreadable(f"{self.describe()} does not exist (has podinfo-secret-fetch run?)") from None
        except PermissionError:
            raise WorkloadSecretUnreadable(f"{self.describe()} is not readable by uid {os.getuid()}") from None
        except OSError as exc:
            raise WorkloadSecretUnreadable(f"{self.describe()}: {exc.strerror}") from None
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise WorkloadSecretUnreadable(f"{self.describe()} is not a JSON object of staged values")
        self._seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        return {stage: value for stage in STAGES if isinstance(value := document.get(stage), str) and value}


def source_from_env(environ: Mapping[str, str]) -> StagedSource | None:
    """`PODINFO_SECRET_FILE` set: FileSource; else `WORKLOAD_SECRET_ARN`: ExtensionSource; else None."""
    ttl = float(environ.get("SECRET_CACHE_SECONDS") or DEFAULT_CACHE_SECONDS)
    if environ.get("PODINFO_SECRET_FILE"):
        return FileSource(environ["PODINFO_SECRET_FILE"], ttl)
    if environ.get("WORKLOAD_SECRET_ARN"):
        return ExtensionSource(environ["WORKLOAD_SECRET_ARN"], ttl)
    return None


# --- the token endpoints, as podinfo answers them -----------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_reply(status: int, document: Mapping[str, Any]) -> Reply:
    """podinfo's JSON reply: indented, `application/json; charset=utf-8`, nosniff."""
    return Reply(status, {"Content-Type": "application/json; charset=utf-8", "X-Content-Type-Options": "nosniff"},
                 json.dumps(document, indent=2).encode())


def error_reply(status: int, message: str) -> Reply:
    """podinfo's error shape, `{"code": ..., "message": ...}`, with the HTTP status set to the code.
    (Stock podinfo writes the code into the body and answers 200; a 401 on the wire is what clients
    and the rotation's acceptance checks rely on, so the gate sends the real status.)"""
    return json_reply(status, {"code": status, "message": message})


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def route_path(raw: str) -> str:
    """The path a router sees: percent-decoded, duplicate slashes and dot segments removed (so
    `/%74oken` or `//token/./validate` cannot slip past the gate to podinfo's own token endpoints)."""
    target = raw.split("?", 1)[0].split("#", 1)[0]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target):  # absolute form: http://host/path
        target = urllib.parse.urlsplit(target).path
    path = urllib.parse.unquote(target or "/")
    cleaned = posixpath.normpath("/" + re.sub("/+", "/", path))
    cleaned = re.sub("^/+", "/", cleaned)
    return cleaned + "/" if path.endswith("/") and cleaned != "/" else cleaned


def is_token_path(raw: str) -> bool:
    return route_path(raw) in (TOKEN_PATH, VALIDATE_PATH)


def token_reply(method: str, raw_path: str, authorization: str | None, body: bytes, source: StagedSource | None,
                now: float | None = None) -> Reply | None:
    """podinfo's answer to `POST /token` and `GET /token/validate`; None for any other path."""
    path = route_path(raw_path)
    if path not in (TOKEN_PATH, VALIDATE_PATH):
        return None
    if method.upper() != ("POST" if path == TOKEN_PATH else "GET"):
        return Reply(405)  # podinfo's router: method not allowed, empty body
    if len(body) > MAX_BODY_BYTES:
        return error_reply(413, "request body too large")
    bearer = (authorization or "").split(" ")
    if path == VALIDATE_PATH and (len(bearer) != 2 or bearer[0].lower() != "bearer" or not bearer[1]):
        return error_reply(401, "authorization bearer header required")
    if source is None:
        return error_reply(500, "no workload secret configured")
    try:
        staged = source.staged()
    except WorkloadSecretUnreadable as exc:
        log.error("workload secret unreadable: %s", exc)  # noqa: TRY400 - named and value-free; no traceback
        return error_reply(500, "workload secret unreadable")
    if path == TOKEN_PATH:
        name = body.decode(errors="replace") or "anonymous"
        token, expires = sign_token(staged[CURRENT], name=name, now=now)
        return json_reply(200, {"token": token, "expires_at": _rfc3339(expires)})
    try:
        claims = check_token(bearer[1], staged.values(), now)
    except TokenRefused as exc:
        return error_reply(401, str(exc))
    return json_reply(200, {"token_name": str(claims.get("name", "")), "expires_at": _rfc3339(claims["exp"])})


# --- the gate: token endpoints here, everything else proxied to podinfo ---------------------------------
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})


class _BodyTooLarge(Exception):
    pass


class GateHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "podinfo-secretgate"
    timeout = 75  # an idle keep-alive connection outlives the ALB's 60 s idle timeout
    source: ClassVar[StagedSource | None] = None
    upstream: ClassVar[tuple[str, int]] = UPSTREAM
    upstream_timeout: ClassVar[float] = 60.0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """No access log: podinfo logs the requests it serves, and the gate's own answers carry tokens."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65536).strip():
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BodyTooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(length)
        if length > MAX_BODY_BYTES:
            raise _BodyTooLarge
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self.close_connection = True  # the rest of the body is not read
            self._send(error_reply(413, "request body too large"))
            return
        except ValueError:
            self.close_connection = True
            self._send(error_reply(400, "invalid request body"))
            return
        reply = token_reply(self.command, self.path, self.headers.get("Authorization"), body, self.source)
        if reply is not None:
            self._send(reply)
            return
        self._proxy(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815

    def _proxy(self, body: bytes) -> None:
        listed = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        upstream = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                lowered = name.lower()
                if lowered in HOP_BY_HOP or lowered in listed or lowered in ("content-length", "expect"):
                    continue
                upstream.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
        except OSError as exc:
            upstream.close()
            log.warning("podinfo is not reachable on %s:%s: %s", *self.upstream, exc)
            self._send(error_reply(502, "podinfo is not reachable"))
            return
        try:
            self._relay(response)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        listed = {t.strip().lower() for t in (response.getheader("Connection") or "").split(",")}
        length = response.getheader("Content-Length")
        bodyless = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = False
        if not bodyless and length is None:
            if self.request_version == "HTTP/1.1":
                self.send_header("Transfer-Encoding", "chunked")
                chunked = True
            else:
                self.close_connection = True
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() not in listed:
                self.send_header(name, value)
        self.end_headers()
        if bodyless:
            return
        try:
            while chunk := response.read1(65536):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # podinfo or the client went away mid-body


class GateServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(source: StagedSource | None, address: tuple[str, int] = ("0.0.0.0", 8080),  # noqa: S104 - the container's port
                upstream: tuple[str, int] = UPSTREAM, upstream_timeout: float = 60.0) -> GateServer:
    """The gate, bound to `address` (port 0: any free port) and not yet serving."""
    handler = type("BoundGateHandler", (GateHandler,), {"source": source, "upstream": upstream,
                                                        "upstream_timeout": upstream_timeout})
    return GateServer(address, handler)


# --- the image's entrypoint: podinfo as the child of the gate -------------------------------------------
#: Never handed to podinfo, which serves its whole environment on /env.
CHILD_ENV_DROPPED = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "PODINFO_JWT_SECRET", "PODINFO_SECRET_FILE", "WORKLOAD_SECRET_ARN", "SECRET_CACHE_SECONDS",
})


def podinfo_env(environ: Mapping[str, str]) -> dict[str, str]:
    """podinfo's environment: the gate's, minus credentials and the secret's whereabouts."""
    return {k: v for k, v in environ.items() if k not in CHILD_ENV_DROPPED}


def podinfo_command(binary: str, port: int, extra: Iterable[str]) -> list[str]:
    """podinfo on loopback only: its own (unrotated) token endpoints are reachable through nothing but the gate."""
    return [binary, "--host=127.0.0.1", f"--port={port}", *extra]


def wait_for_port(address: tuple[str, int], child: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="podinfo behind the workload secret gate")
    parser.add_argument("--podinfo", default="/home/app/podinfo", help="the podinfo binary")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080), help="where the gate listens")
    parser.add_argument("--upstream-port", type=int, default=UPSTREAM[1], help="podinfo's port on 127.0.0.1")
    parser.add_argument("--ready-timeout", type=float, default=30.0, help="seconds podinfo has to open its port")
    parser.add_argument("podinfo_args", nargs=argparse.REMAINDER, help="passed to podinfo (after --)")
    args = parser.parse_args(argv)
    extra = [a for a in args.podinfo_args if a != "--"]
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="secretgate %(levelname)s %(message)s")
    if "PODINFO_JWT_SECRET" in os.environ:
        log.warning("PODINFO_JWT_SECRET is set and ignored: the gate reads the secret itself; podinfo never sees it")
    source = source_from_env(os.environ)
    log.info("token endpoints answered from %s", source.describe() if source else "nothing (no secret configured: 500)")
    upstream = ("127.0.0.1", args.upstream_port)
    child = subprocess.Popen(podinfo_command(args.podinfo, args.upstream_port, extra),  # noqa: S603 - our own binary
                             env=podinfo_env(os.environ), cwd=str(Path(args.podinfo).parent))

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    server: GateServer | None = None
    if wait_for_port(upstream, child, args.ready_timeout):
        server = make_server(source, ("0.0.0.0", args.port), upstream)  # noqa: S104 - the container's port
        threading.Thread(target=server.serve_forever, name="gate", daemon=True).start()
        log.info("listening on :%d, podinfo on %s:%d", args.port, *upstream)
    elif child.poll() is None:
        log.error("podinfo did not open %s:%d within %gs; stopping it", *upstream, args.ready_timeout)
        child.terminate()
    code = child.wait()
    if server is not None:
        server.shutdown()
        server.server_close()
    log.info("podinfo exited with %s", code)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
