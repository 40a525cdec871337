"""The workload image's secret gate (`secretgate`): tokens, sources, token endpoints, proxy, entrypoint.

GIVEN podinfo-compatible tokens and the staged values of the workload secret (from a file or from
the Parameters and Secrets extension's HTTP API, served here by a small fake)
WHEN the gate answers `/token` and `/token/validate` and proxies everything else to a real upstream
HTTP server on 127.0.0.1
THEN tokens signed with AWSCURRENT, AWSPREVIOUS and AWSPENDING are accepted, anything else gets
podinfo's 401, a rotation is picked up (file change, cache expiry), AWSCURRENT unreadable is the
named error, and proxied requests arrive unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import secretgate
from secretgate import (
    ExtensionSource,
    FileSource,
    StagedSource,
    TokenRefused,
    WorkloadSecretUnreadable,
    check_token,
    make_server,
    sign_token,
    token_reply,
    verify_token,
)
from tests.log_scan import known_secret

if TYPE_CHECKING:
    from collections.abc import Iterator

CURRENT = "current-" + "c" * 40
PREVIOUS = "previous-" + "p" * 40
PENDING = "pending-" + "n" * 40
OTHER = "other-" + "o" * 40
SESSION = "session-token-" + "s" * 30
SAME_LENGTH = "x" * len(PREVIOUS)
for _value in (CURRENT, PREVIOUS, PENDING, OTHER, SESSION, SAME_LENGTH, PREVIOUS * 2):
    known_secret(_value, "workload secret (test)")
NOW = 1_700_000_000
GATE_MODULE = Path(secretgate.__file__)
ROOT = Path(__file__).resolve().parents[2]


class Fixed(StagedSource):
    """A source with fixed values (or a fixed failure)."""

    def __init__(self, values: dict[str, str] | None = None, error: str | None = None) -> None:
        super().__init__(ttl=60)
        self.values, self.error = values or {}, error

    def _read(self) -> dict[str, str]:
        if self.error:
            raise WorkloadSecretUnreadable(self.error)
        return dict(self.values)


STAGED = Fixed({"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS, "AWSPENDING": PENDING})


def _jwt(header: dict[str, Any], claims: dict[str, Any], secret: str, digest: Any = hashlib.sha256) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret.encode(), signing_input.encode(), digest).digest())}"


# --- tokens ---------------------------------------------------------------------------------------------
def test_a_signed_token_carries_podinfo_claims_and_verifies_only_with_its_secret() -> None:
    token, expires = sign_token(CURRENT, name="alice", now=NOW)
    assert expires == NOW + 60
    assert check_token(token, [OTHER, CURRENT], now=NOW + 59) == {"name": "alice", "iss": "podinfo", "exp": NOW + 60}
    assert verify_token(token, [OTHER], now=NOW) is None


def test_tokens_interoperate_with_an_independent_jwt_library() -> None:
    jwt = pytest.importorskip("jwt")
    ours, _ = sign_token(CURRENT, name="bob")
    assert jwt.decode(ours, CURRENT, algorithms=["HS256"], issuer="podinfo")["name"] == "bob"
    long_key = PREVIOUS * 2  # HS512 wants a 64-byte key
    theirs = jwt.encode({"name": "carol", "iss": "podinfo", "exp": int(time.time()) + 60}, long_key, algorithm="HS512")
    assert check_token(theirs, [CURRENT, long_key])["name"] == "carol"  # podinfo accepts any HMAC method


REFUSALS = [
    ("two segments", lambda: "a.b", "token contains an invalid number of segments"),
    ("not base64 JSON", lambda: "!!.??.xx", "token is malformed"),
    ("alg none", lambda: _jwt({"alg": "none"}, {"iss": "podinfo", "exp": NOW + 60}, CURRENT), "invalid signing method"),
    ("RS256 header", lambda: _jwt({"alg": "RS256"}, {"iss": "podinfo", "exp": NOW + 60}, CURRENT), "invalid signing method"),
    ("another secret", lambda: sign_token(OTHER, now=NOW)[0], "signature is invalid"),
    ("expired", lambda: sign_token(CURRENT, now=NOW - 61)[0], "token is expired"),
    ("no exp", lambda: _jwt({"alg": "HS256"}, {"iss": "podinfo"}, CURRENT), "token has no expiry"),
    ("other issuer", lambda: _jwt({"alg": "HS256"}, {"iss": "evil", "exp": NOW + 60}, CURRENT), "invalid issuer"),
]


@pytest.mark.parametrize(("case", "make", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_tokens_are_named_as_podinfo_names_them(case: str, make: Any, message: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        check_token(make(), [CURRENT, PREVIOUS], now=NOW)
    assert str(refused.value) == message, case


# --- the token endpoints -----------------------------------------------------------------------------------
def _json(reply: secretgate.Reply | None) -> tuple[int, Any]:
    assert reply is not None
    return reply.status, json.loads(reply.body) if reply.body else None


def test_post_token_issues_a_one_minute_token_signed_with_awscurrent() -> None:
    reply = token_reply("POST", "/token", None, b"dave", STAGED, now=NOW)
    status, body = _json(reply)
    assert status == 200
    assert set(body) == {"token", "expires_at"}
    assert body["expires_at"] == "2023-11-14T22:14:20Z"  # NOW + 60 s, RFC 3339 UTC as podinfo prints it
    assert check_token(body["token"], [CURRENT], now=NOW)["name"] == "dave"
    assert verify_token(body["token"], [PREVIOUS, PENDING], now=NOW) is None
    assert reply is not None
    assert reply.headers == {"Content-Type": "application/json; charset=utf-8", "X-Content-Type-Options": "nosniff"}
    assert reply.body.startswith(b'{\n  "token": ')  # podinfo's indented JSON


def test_an_empty_body_names_the_token_anonymous() -> None:
    _, body = _json(token_reply("POST", "/token", None, b"", STAGED, now=NOW))
    assert check_token(body["token"], [CURRENT], now=NOW)["name"] == "anonymous"


@pytest.mark.parametrize("stage_secret", [CURRENT, PREVIOUS, PENDING], ids=["current", "previous", "pending"])
def test_validate_accepts_every_staged_value(stage_secret: str) -> None:
    token, _ = sign_token(stage_secret, name="erin", now=NOW)
    assert _json(token_reply("GET", "/token/validate", f"Bearer {token}", b"", STAGED, now=NOW)) == (
        200, {"token_name": "erin", "expires_at": "2023-11-14T22:14:20Z"})


VALIDATE_REFUSALS = [
    ("no header", None, "authorization bearer header required"),
    ("basic auth", "Basic dXNlcjpwYXNz", "authorization bearer header required"),
    ("bearer without token", "Bearer", "authorization bearer header required"),
    ("three parts", "Bearer a b", "authorization bearer header required"),
    ("another secret", "Bearer " + sign_token(OTHER, now=NOW)[0], "signature is invalid"),
    ("expired", "bearer " + sign_token(CURRENT, now=NOW - 120)[0], "token is expired"),
]


@pytest.mark.parametrize(("case", "header", "message"), VALIDATE_REFUSALS, ids=[r[0] for r in VALIDATE_REFUSALS])
def test_validate_refuses_with_a_401_in_podinfo_shape(case: str, header: str | None, message: str) -> None:
    assert _json(token_reply("GET", "/token/validate", header, b"", STAGED, now=NOW)) == (401, {"code": 401, "message": message}), case


def test_wrong_methods_other_paths_and_no_source() -> None:
    assert token_reply("GET", "/token", None, b"", STAGED) == secretgate.Reply(405)
    assert token_reply("POST", "/token/validate", None, b"", STAGED) == secretgate.Reply(405)
    assert token_reply("GET", "/readyz", None, b"", STAGED) is None
    assert token_reply("GET", "/token/validate/", None, b"", STAGED) is None  # podinfo's router: not this route
    assert _json(token_reply("POST", "/token", None, b"", None)) == (500, {"code": 500, "message": "no workload secret configured"})


@pytest.mark.parametrize("raw", ["/%74oken", "//token", "/x/../token", "/token?x=1", "/./token"])
def test_encoded_or_unclean_paths_cannot_reach_podinfos_own_token_endpoint(raw: str) -> None:
    status, body = _json(token_reply("POST", raw, None, b"", STAGED, now=NOW))
    assert status == 200
    assert check_token(body["token"], [CURRENT], now=NOW)


@pytest.mark.parametrize(("raw", "token_path"), [
    ("/token", True), ("/token/validate?x=1", True), ("/%74oken/validate", True), ("http://h/token", True),
    ("/tokens", False), ("/token/validate/", False), ("/TOKEN", False), ("/api/token", False),
])
def test_is_token_path_routes_like_podinfos_router(raw: str, token_path: bool) -> None:
    assert secretgate.is_token_path(raw) is token_path


def test_awscurrent_unreadable_is_a_named_500_and_logged_without_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="secretgate")
    broken = Fixed(error="secret arn:aws:secretsmanager:us-east-1:1:secret:x AWSCURRENT: HTTP 400: access denied")
    assert _json(token_reply("POST", "/token", None, b"", broken)) == (500, {"code": 500, "message": "workload secret unreadable"})
    assert any("workload secret unreadable" in r.getMessage() and "access denied" in r.getMessage() for r in caplog.records)
    assert _json(token_reply("POST", "/token", None, b"", Fixed({"AWSPREVIOUS": PREVIOUS})))[0] == 500  # no AWSCURRENT


# --- FileSource ---------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, values: dict[str, str]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(values))
    temporary.replace(path)  # as podinfo-secret-fetch does: a new file renamed over the old one


def test_file_source_picks_up_a_rotation_as_soon_as_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "jwt.json"
    _write(path, {"AWSCURRENT": PREVIOUS})
    source = FileSource(path, ttl=3600, clock=Clock())
    assert source.staged() == {"AWSCURRENT": PREVIOUS}
    assert source.staged() == {"AWSCURRENT": PREVIOUS}
    assert source.reads == 1  # unchanged file: no second read
    _write(path, {"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS})
    assert source.staged() == {"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS}  # no wait for the hour-long cache


def test_file_source_reads_again_after_its_cache_time_even_when_the_stat_looks_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "jwt.json"
    path.write_text(json.dumps({"AWSCURRENT": PREVIOUS}))
    clock = Clock()
    source = FileSource(path, ttl=10, clock=clock)
    assert source.staged() == {"AWSCURRENT": PREVIOUS}
    before = path.stat()
    with path.open("r+") as handle:  # same inode, same size, mtime put back: invisible to the stat check
        handle.write(json.dumps({"AWSCURRENT": SAME_LENGTH}))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    clock.now += 9.9
    assert source.staged() == {"AWSCURRENT": PREVIOUS}
    clock.now += 0.1
    assert source.staged() == {"AWSCURRENT": SAME_LENGTH}


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("not json", "not a JSON object"),
    (json.dumps(["AWSCURRENT"]), "not a JSON object"),
    (json.dumps({"AWSPREVIOUS": PREVIOUS}), "no AWSCURRENT value"),
    (json.dumps({"AWSCURRENT": ""}), "no AWSCURRENT value"),
])
def test_file_source_errors_are_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "jwt.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadSecretUnreadable, match=message):
        FileSource(path, ttl=10).staged()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_file_source_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "jwt.json"
    path.write_text(json.dumps({"AWSCURRENT": CURRENT}))
    path.chmod(0)
    with pytest.raises(WorkloadSecretUnreadable, match="not readable"):
        FileSource(path, ttl=10).staged()


# --- ExtensionSource, against a fake extension ----------------------------------------------------------------
class FakeExtension:
    """The extension's HTTP API as the gate uses it: GetSecretValue JSON, errors as text naming the error."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"AWSCURRENT": CURRENT}
        self.errors: dict[str, tuple[int, str]] = {}
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                fake.requests.append((url.path, query, self.headers.get("X-Aws-Parameters-Secrets-Token")))
                stage = query.get("versionStage", ["AWSCURRENT"])[0]
                if self.headers.get("X-Aws-Parameters-Secrets-Token") != SESSION:
                    status, text = 401, "missing token"
                elif stage in fake.errors:
                    status, text = fake.errors[stage]
                elif stage not in fake.values:
                    status, text = 400, f"ResourceNotFoundException: Secrets Manager can't find the specified secret value for staging label: {stage}"
                else:
                    status, text = 200, json.dumps({"ARN": "arn", "Name": "n", "VersionStages": [stage],
                                                    "SecretString": json.dumps({"jwt-secret": fake.values[stage]})})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeExtension]:
    fake = FakeExtension()
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(fake.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    yield fake
    fake.close()


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:podrel/podinfo-jwt-dev-AbCdEf"


def test_extension_source_asks_for_each_stage_with_the_session_token(extension: FakeExtension) -> None:
    extension.values = {"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS}
    source = ExtensionSource(ARN, ttl=10, host="127.0.0.1")
    assert source.staged() == {"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS}  # AWSPENDING: no version, skipped
    assert [(p, q["secretId"], q["versionStage"], t) for p, q, t in extension.requests] == [
        ("/secretsmanager/get", [ARN], [stage], SESSION) for stage in ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")]


def test_extension_source_rereads_after_its_cache_time(extension: FakeExtension) -> None:
    clock = Clock()
    source = ExtensionSource(ARN, ttl=10, host="127.0.0.1", clock=clock)
    assert source.staged() == {"AWSCURRENT": CURRENT}
    extension.values = {"AWSCURRENT": PENDING, "AWSPREVIOUS": CURRENT}  # a rotation finished meanwhile
    clock.now += 9
    assert source.staged() == {"AWSCURRENT": CURRENT}
    assert len(extension.requests) == 3
    clock.now += 1
    assert source.staged() == {"AWSCURRENT": PENDING, "AWSPREVIOUS": CURRENT}


@pytest.mark.parametrize(("error", "message"), [
    ((400, "AccessDeniedException: User is not authorized to perform secretsmanager:GetSecretValue"), "access denied"),
    ((400, "AccessDeniedException: Access to KMS is not allowed"), "KMS"),
    ((400, "ResourceNotFoundException: Secrets Manager can't find the specified secret."), "ResourceNotFoundException"),
    ((500, "InternalServiceError"), "HTTP 500"),
])
def test_extension_source_awscurrent_unreadable_is_named(extension: FakeExtension, error: tuple[int, str], message: str) -> None:
    extension.errors["AWSCURRENT"] = error
    with pytest.raises(WorkloadSecretUnreadable, match=message) as unreadable:
        ExtensionSource(ARN, ttl=10, host="127.0.0.1").staged()
    assert "AWSCURRENT" in str(unreadable.value)
    assert CURRENT not in str(unreadable.value)


def test_extension_source_wrong_token_and_no_extension_are_named(extension: FakeExtension) -> None:
    with pytest.raises(WorkloadSecretUnreadable, match="HTTP 401"):
        ExtensionSource(ARN, ttl=10, host="127.0.0.1", session_token="not-the-session").staged()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unused = s.getsockname()[1]
    with pytest.raises(WorkloadSecretUnreadable, match="not reachable"):
        ExtensionSource(ARN, ttl=10, host="127.0.0.1", port=unused).staged()


def test_source_from_env_prefers_the_file() -> None:
    file_source = secretgate.source_from_env({"PODINFO_SECRET_FILE": "/run/x/jwt.json", "WORKLOAD_SECRET_ARN": ARN,
                                              "SECRET_CACHE_SECONDS": "3"})
    assert isinstance(file_source, FileSource)
    assert (file_source.path, file_source.ttl) == (Path("/run/x/jwt.json"), 3.0)
    extension_source = secretgate.source_from_env({"WORKLOAD_SECRET_ARN": ARN})
    assert isinstance(extension_source, ExtensionSource)
    assert (extension_source.secret_id, extension_source.ttl) == (ARN, 10.0)
    assert secretgate.source_from_env({}) is None


# --- the gate's proxy, against a real upstream -----------------------------------------------------------------
class Upstream:
    """A podinfo stand-in on 127.0.0.1: records each request and answers as told."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                      "body": body})
                if self.path.startswith("/chunked"):
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (b"one,", b"two,", b"three"):
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                reply = json.dumps({"method": self.command, "path": self.path, "body": body.decode(errors="replace")}).encode()
                self.send_response(418, "I'm a teapot")
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream", "podinfo")
                self.send_header("Set-Cookie", "a=1")
                self.send_header("Set-Cookie", "b=2")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = ("127.0.0.1", int(self.server.server_address[1]))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate() -> Iterator[tuple[http.client.HTTPConnection, Upstream]]:
    upstream = Upstream()
    server = make_server(STAGED, ("127.0.0.1", 0), upstream.address, upstream_timeout=5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    yield connection, upstream
    connection.close()
    server.shutdown()
    server.server_close()
    upstream.close()


def test_the_gate_proxies_method_path_query_headers_body_and_status(gate: tuple[http.client.HTTPConnection, Upstream]) -> None:
    client, upstream = gate
    client.request("PUT", "/store/x?a=1&b=%2F", body=b"payload \x00\xff", headers={"X-Trace": "t-1", "Authorization": "Bearer z"})
    response = client.getresponse()
    body = response.read()
    assert (response.status, response.reason) == (418, "I'm a teapot")
    assert response.getheader("X-Upstream") == "podinfo"
    assert [v for k, v in response.getheaders() if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert json.loads(body)["path"] == "/store/x?a=1&b=%2F"
    (seen,) = upstream.seen
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/store/x?a=1&b=%2F", b"payload \x00\xff")
    assert seen["headers"]["X-Trace"] == "t-1"
    assert seen["headers"]["Authorization"] == "Bearer z"
    # the same connection is kept alive for the next request
    client.request("HEAD", "/version")
    head = client.getresponse()
    assert (head.status, head.read()) == (418, b"")
    assert upstream.seen[1]["method"] == "HEAD"


def test_the_gate_drops_hop_by_hop_headers_and_relays_chunked_bodies(gate: tuple[http.client.HTTPConnection, Upstream]) -> None:
    client, upstream = gate
    client.putrequest("POST", "/echo")
    client.putheader("Transfer-Encoding", "chunked")
    client.putheader("Connection", "keep-alive, X-Hop")
    client.putheader("X-Hop", "private")
    client.putheader("Keep-Alive", "timeout=5")
    client.endheaders()
    for part in (b"hello ", b"world"):
        client.send(b"%x\r\n%b\r\n" % (len(part), part))
    client.send(b"0\r\n\r\n")
    response = client.getresponse()
    assert response.status == 418
    response.read()
    seen = upstream.seen[0]
    assert seen["body"] == b"hello world"
    assert seen["headers"]["Content-Length"] == "11"
    assert not {"Transfer-Encoding", "Connection", "X-Hop", "Keep-Alive"} & set(seen["headers"])
    client.request("GET", "/chunked")
    streamed = client.getresponse()
    assert (streamed.status, streamed.read()) == (200, b"one,two,three")


def test_the_gate_answers_token_requests_itself(gate: tuple[http.client.HTTPConnection, Upstream]) -> None:
    client, upstream = gate
    for path in ("/token", "/%74oken", "//token"):
        client.request("POST", path, body=b"frank")
        response = client.getresponse()
        token = json.loads(response.read())["token"]
        assert response.status == 200
        assert check_token(token, [CURRENT])["name"] == "frank"
    client.request("GET", "/token/validate", headers={"Authorization": f"Bearer {sign_token(PREVIOUS)[0]}"})
    response = client.getresponse()
    assert (response.status, json.loads(response.read())["token_name"]) == (200, "anonymous")
    client.request("GET", "/token/validate", headers={"Authorization": f"Bearer {sign_token(OTHER)[0]}"})
    refused = client.getresponse()
    assert (refused.status, json.loads(refused.read())) == (401, {"code": 401, "message": "signature is invalid"})
    assert upstream.seen == []  # podinfo's own token endpoints were never reached


def test_the_gate_refuses_oversized_bodies_and_names_an_unreachable_podinfo(gate: tuple[http.client.HTTPConnection, Upstream]) -> None:
    client, upstream = gate
    client.putrequest("POST", "/store")
    client.putheader("Content-Length", str(secretgate.MAX_BODY_BYTES + 1))
    client.endheaders()
    response = client.getresponse()
    assert (response.status, json.loads(response.read())) == (413, {"code": 413, "message": "request body too large"})
    assert upstream.seen == []
    upstream.close()
    client.close()
    client.request("GET", "/readyz")
    down = client.getresponse()
    assert (down.status, json.loads(down.read())) == (502, {"code": 502, "message": "podinfo is not reachable"})


# --- the entrypoint ---------------------------------------------------------------------------------------------
def test_podinfo_gets_neither_credentials_nor_the_secret_whereabouts() -> None:
    env = secretgate.podinfo_env({"PATH": "/usr/bin", "AWS_SESSION_TOKEN": SESSION, "AWS_SECRET_ACCESS_KEY": "k",
                                  "AWS_ACCESS_KEY_ID": "a", "PODINFO_JWT_SECRET": OTHER, "PODINFO_UI_COLOR": "#fff",
                                  "WORKLOAD_SECRET_ARN": ARN, "PODINFO_SECRET_FILE": "/run/x", "AWS_REGION": "us-east-1"})
    assert env == {"PATH": "/usr/bin", "PODINFO_UI_COLOR": "#fff", "AWS_REGION": "us-east-1"}
    assert secretgate.podinfo_command("/home/app/podinfo", 9898, ["--level=info"]) == [
        "/home/app/podinfo", "--host=127.0.0.1", "--port=9898", "--level=info"]


FAKE_PODINFO = """\
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(next(a for a in sys.argv if a.startswith("--port=")).split("=")[1])
host = next(a for a in sys.argv if a.startswith("--host=")).split("=")[1]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"path": self.path, "env": dict(os.environ), "argv": sys.argv[1:]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
server = HTTPServer((host, port), H)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_main_runs_podinfo_behind_the_gate_and_exits_with_it(tmp_path: Path) -> None:
    podinfo = tmp_path / "podinfo"
    podinfo.write_text(f"#!{sys.executable}\n{FAKE_PODINFO}")
    podinfo.chmod(0o755)
    secret_file = tmp_path / "jwt.json"
    secret_file.write_text(json.dumps({"AWSCURRENT": CURRENT, "AWSPREVIOUS": PREVIOUS}))
    port, upstream_port = _free_port(), _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PODINFO_SECRET_FILE": str(secret_file), "AWS_SESSION_TOKEN": SESSION,
           "AWS_SECRET_ACCESS_KEY": "k", "SECRET_CACHE_SECONDS": "1"}
    command = [sys.executable, "-I", str(GATE_MODULE), "--podinfo", str(podinfo), "--port", str(port),
               "--upstream-port", str(upstream_port), "--", "--level=info"]
    gate = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: S603 - this repository's module
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                client.request("GET", "/env")
                break
            except OSError:
                assert time.monotonic() < deadline, "the gate never listened"
                time.sleep(0.05)
        seen = json.loads(client.getresponse().read())
        assert seen["argv"] == ["--host=127.0.0.1", f"--port={upstream_port}", "--level=info"]
        assert {"AWS_SESSION_TOKEN", "AWS_SECRET_ACCESS_KEY", "PODINFO_SECRET_FILE", "SECRET_CACHE_SECONDS"}.isdisjoint(seen["env"])
        client.request("POST", "/token", body=b"grace")
        issued = json.loads(client.getresponse().read())["token"]
        assert check_token(issued, [CURRENT])["name"] == "grace"
        client.close()
        gate.send_signal(signal.SIGTERM)
        assert gate.wait(timeout=10) == 7  # podinfo got the SIGTERM; the gate exits with podinfo's status
    finally:
        if gate.poll() is None:
            os.killpg(gate.pid, signal.SIGKILL)  # the gate and its podinfo (which holds the pipes too)
        out, err = gate.communicate(timeout=10)
    for value in (CURRENT, PREVIOUS, SESSION):
        assert value.encode() not in out + err


# --- the image that ships the gate --------------------------------------------------------------------------------
def test_the_image_runs_the_gate_as_non_root_from_digest_pinned_bases_without_run() -> None:
    root = ROOT
    lines = [line.strip() for line in (root / "workload" / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    instructions = [line.split()[0] for line in lines]
    assert "RUN" not in instructions
    assert all("@${" in line and "_DIGEST}" in line for line in lines if line.startswith("FROM "))
    copies = [line.split()[1:] for line in lines if line.startswith("COPY ") and "--from=" not in line]
    for source, _ in copies:
        assert (root / source).exists(), source  # the gate and the EC2 host files are in the build context
    assert ["workload/gate/secretgate.py", "/opt/podinfo-gate/secretgate.py"] in copies
    assert ["workload/ec2/", "/opt/podinfo-host/"] in copies
    env = " ".join(line for line in lines if line.startswith(("ENV", "AWS_", "SECRETS_", "PORT")))
    assert "PORT=8080" in env
    assert "AWS_LWA_PORT=8080" in env
    assert "SECRETS_MANAGER_TTL=0" in env
    user = next(line for line in lines if line.startswith("USER "))
    assert user == "USER 9898:9898"
    entrypoint = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT ")).removeprefix("ENTRYPOINT "))
    assert entrypoint[:3] == ["python3", "-I", "/opt/podinfo-gate/secretgate.py"]
