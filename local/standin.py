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
  `slow`      health endpoints pass, but every other request takes SLOW_SECONDS (a latency alarm)

Every answer carries the time podinfo spent on it as `Server-Timing: app;dur=<ms>` (what Lambda's
Duration and the ALB's TargetResponseTime measure: the target's own time, not the caller's queue
or a cold start), which the local CloudWatch evaluation reads (`local.emulation.base.p99_seconds`).

podinfo's JWT endpoints are answered by the code the image runs in front of podinfo,
`secretgate.token_reply`: `POST /token` issues a token signed with the workload secret's
AWSCURRENT value, `GET /token/validate` accepts a token signed with AWSCURRENT, AWSPREVIOUS or
AWSPENDING. The local runtime reads the staged values as the image does on Lambda: through the
Parameters and Secrets extension's HTTP API (emulated by `local.secrets_extension`), with the gate's
`SECRET_CACHE_SECONDS` snapshot per execution environment, so a rotated value is picked up without
a redeploy and the previous one stays accepted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from local.secrets_extension import SecretsExtension
from podrelease.release import podinfo
from podrelease.rotation.workload_secret import secret_value
from secretgate import CURRENT, StagedSource, WorkloadSecretUnreadable, is_token_path, token_reply

__all__ = ["FAULT_LABEL", "VERSION_LABEL", "FunctionError", "SdkSource", "SecretsExtension", "StagedSource",
           "handle"]

FAULT_LABEL = "dev.podinfo-release.demo-fault"
#: How long the `slow` fault makes a request take: over the template's LatencyAlarmSeconds default (1 s).
SLOW_SECONDS = 1.5
VERSION_LABEL = "org.opencontainers.image.version"


class FunctionError(Exception):
    """The function itself failed (Lambda reports FunctionError: Unhandled)."""


class SdkSource(StagedSource):
    """The staged values read with a Secrets Manager client, for in-process tests where no extension
    runs (moto's `mock_aws`). The snapshot, its cache time and the stage rules are secretgate's."""

    MISSING = frozenset({"ResourceNotFoundException", "InvalidRequestException"})

    def __init__(self, client: Callable[[], Any], secret_arn: str, ttl: float) -> None:
        super().__init__(ttl)
        self.client, self.secret_arn = client, secret_arn

    def describe(self) -> str:
        return f"secret {self.secret_arn} (Secrets Manager API)"

    def _read_stage(self, stage: str) -> str | None:
        try:
            reply = self.client().get_secret_value(SecretId=self.secret_arn, VersionStage=stage)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if stage != CURRENT and code in self.MISSING:
                return None  # no version carries this stage (or it has no value yet)
            raise WorkloadSecretUnreadable(f"{self.describe()} {stage}: {code}") from None
        text = reply.get("SecretString")
        return secret_value(text) if text else None


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return podinfo.response(status, json.dumps(body), {"content-type": "application/json; charset=utf-8"})


def _token_endpoint(request: podinfo.Incoming, secrets: StagedSource | None) -> dict[str, Any]:
    reply = token_reply(request.method, request.path, request.headers.get("authorization"), request.body, secrets, now=time.time())
    assert reply is not None  # is_token_path(path) holds
    return podinfo.response(reply.status, reply.body.decode(), reply.headers)


def handle(event: dict[str, Any], image_uri: str, labels: dict[str, str], secrets: StagedSource | None = None) -> dict[str, Any]:
    started = time.monotonic()
    reply = _handle(event, image_uri, labels, secrets)
    reply.setdefault("headers", {})["server-timing"] = f"app;dur={(time.monotonic() - started) * 1000:.1f}"
    return reply


def _handle(event: dict[str, Any], image_uri: str, labels: dict[str, str], secrets: StagedSource | None) -> dict[str, Any]:
    fault = labels.get(FAULT_LABEL, "")
    version = labels.get(VERSION_LABEL, "0.0.0")
    request = podinfo.parse_request(event)
    path = request.path
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
    if is_token_path(path):
        return _token_endpoint(request, secrets)
    if fault == "errors":
        raise FunctionError(f"podinfo {version}: demo fault 'errors' on {path}")
    if fault == "slow":
        time.sleep(SLOW_SECONDS)
    return _reply(200, {"hostname": "podinfo-standin", "version": version, "message": f"greetings from podinfo v{version}",
                        "image": image_uri})
