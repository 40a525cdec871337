"""A stand-in for podinfo behind the Lambda Web Adapter.

podinfo itself cannot run here (no Go toolchain, no container engine), so invocations of the
podinfo functions are answered by this module. It speaks the same event format the adapter accepts
(a Function URL request) and answers podinfo's `/healthz`, `/readyz`, `/version` and `/`.

The image decides the behaviour: the version comes from the image config's
`org.opencontainers.image.version` label, and a demo image can carry the label
`dev.podinfo-release.demo-fault` to misbehave:
  `unready`   /readyz answers 503 (a failing pre-traffic hook)
  `errors`    health endpoints pass, but every other request is a function error (a canary alarm)
  `crash`     every request is a function error

podinfo's JWT endpoints are answered too: `POST /token` issues a token signed with the workload
secret's AWSCURRENT value, `GET /token/validate` accepts a token signed with AWSCURRENT, AWSPREVIOUS
or AWSPENDING. The values come from Secrets Manager (the function's `WORKLOAD_SECRET_ARN`), read
when first needed and again after `SECRET_CACHE_SECONDS`, as the workload does on Lambda: a rotated
value is picked up without a redeploy, and the previous one stays accepted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from podrelease.rotation import secret_value, sign_token, verify_token

FAULT_LABEL = "dev.podinfo-release.demo-fault"
VERSION_LABEL = "org.opencontainers.image.version"


class FunctionError(Exception):
    """The function itself failed (Lambda reports FunctionError: Unhandled)."""


class SecretCache:
    """The staged values of one workload secret, re-read from Secrets Manager after `ttl` seconds."""

    STAGES = ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")

    def __init__(self, client: Callable[[], Any], secret_arn: str, ttl: float) -> None:
        self.client, self.secret_arn, self.ttl = client, secret_arn, ttl
        self.values: dict[str, str] = {}
        self.read_at = 0.0
        self.lock = threading.Lock()

    def staged(self) -> dict[str, str]:
        with self.lock:
            if time.monotonic() - self.read_at >= self.ttl:
                sm = self.client()
                values = {}
                for stage in self.STAGES:
                    try:
                        reply = sm.get_secret_value(SecretId=self.secret_arn, VersionStage=stage)
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException", "InvalidRequestException"):
                            continue  # no version carries this stage (or it has no value yet)
                        raise
                    if reply.get("SecretString"):
                        values[stage] = secret_value(reply["SecretString"])
                self.values, self.read_at = values, time.monotonic()
            return dict(self.values)


def _token_endpoint(event: dict[str, Any], path: str, secrets: SecretCache | None) -> dict[str, Any]:
    if secrets is None:
        return _reply(500, {"code": 500, "message": "no workload secret configured"})
    staged = secrets.staged()
    if path == "/token":
        if "AWSCURRENT" not in staged:
            return _reply(500, {"code": 500, "message": "workload secret unreadable"})
        name = event.get("body") or "anonymous"
        token, expires = sign_token(staged["AWSCURRENT"], name=name)
        return _reply(200, {"token": token, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))})
    header = (event.get("headers") or {}).get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _reply(401, {"code": 401, "message": "authorization bearer header required"})
    claims = verify_token(token, staged.values())
    if claims is None:
        return _reply(401, {"code": 401, "message": "Invalid authorization token"})
    return _reply(200, {"token_name": claims.get("name"), "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))})


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json; charset=utf-8"},
            "body": json.dumps(body), "isBase64Encoded": False}


def handle(event: dict[str, Any], image_uri: str, labels: dict[str, str], secrets: SecretCache | None = None) -> dict[str, Any]:
    fault = labels.get(FAULT_LABEL, "")
    version = labels.get(VERSION_LABEL, "0.0.0")
    path = event.get("rawPath") or event.get("requestContext", {}).get("http", {}).get("path", "/")
    if fault == "crash":
        raise FunctionError("podinfo exited: demo fault 'crash'")
    if path == "/healthz":
        return _reply(200, {"status": "OK"})
    if path == "/readyz":
        if fault == "unready":
            return _reply(503, {"status": "not ready"})
        return _reply(200, {"status": "OK"})
    if path == "/version":
        return _reply(200, {"version": version, "commit": image_uri.rsplit("@", 1)[-1][7:19]})
    if path in ("/token", "/token/validate"):
        return _token_endpoint(event, path, secrets)
    if fault == "errors":
        raise FunctionError(f"podinfo {version}: demo fault 'errors' on {path}")
    return _reply(200, {"hostname": "podinfo-standin", "version": version, "message": f"greetings from podinfo v{version}",
                        "image": image_uri})
