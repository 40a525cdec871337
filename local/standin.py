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
"""

from __future__ import annotations

import json
from typing import Any

FAULT_LABEL = "dev.podinfo-release.demo-fault"
VERSION_LABEL = "org.opencontainers.image.version"


class FunctionError(Exception):
    """The function itself failed (Lambda reports FunctionError: Unhandled)."""


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json; charset=utf-8"},
            "body": json.dumps(body), "isBase64Encoded": False}


def handle(event: dict[str, Any], image_uri: str, labels: dict[str, str]) -> dict[str, Any]:
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
    if fault == "errors":
        raise FunctionError(f"podinfo {version}: demo fault 'errors' on {path}")
    return _reply(200, {"hostname": "podinfo-standin", "version": version, "message": f"greetings from podinfo v{version}",
                        "image": image_uri})
