"""CodeDeploy traffic hooks for the podinfo Lambda target.

BeforeAllowTraffic checks the new version directly (before it gets any traffic); AfterAllowTraffic
checks it through the `live` alias once all traffic has moved. Both call podinfo's `/healthz`,
`/readyz` and `/version` through the Lambda Web Adapter (a Function URL shaped event), carry the
release id as `X-Correlation-Id`, and always report the verdict to CodeDeploy, even on a crash,
so a deployment never hangs waiting for a hook.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from podrelease.release.lambda_target import ALIAS, appspec_versions, parse_description

if TYPE_CHECKING:
    from collections.abc import Callable

PATHS = ("/healthz", "/readyz", "/version")


def http_event(path: str, correlation_id: str) -> dict[str, Any]:
    """A Lambda Function URL (payload 2.0) GET request, which the Lambda Web Adapter forwards to podinfo."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"x-correlation-id": correlation_id, "user-agent": "podinfo-release-hook", "accept": "application/json"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "podinfo-release-hook",
            "domainName": "localhost",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "podinfo-release-hook",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }


def call(lambda_client: Any, function_name: str, qualifier: str, path: str, correlation_id: str) -> dict[str, Any]:
    response = lambda_client.invoke(
        FunctionName=function_name, Qualifier=qualifier, Payload=json.dumps(http_event(path, correlation_id)).encode()
    )
    raw = response["Payload"].read()
    if response.get("FunctionError"):
        return {"path": path, "ok": False, "status": None, "detail": f"function error: {raw[:200]!r}"}
    try:
        reply = json.loads(raw)
        body = reply.get("body") or ""
        if reply.get("isBase64Encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        code = int(reply.get("statusCode", 0))
    except (ValueError, AttributeError, TypeError):
        return {"path": path, "ok": False, "status": None, "detail": "the adapter's reply is not an HTTP response"}
    ok = code == 200
    if ok and path == "/version":
        try:
            version = json.loads(body)
            ok = isinstance(version, dict) and bool(version.get("version"))
            body = json.dumps({k: version.get(k) for k in ("version", "commit")}) if ok else "no version field"
        except ValueError:
            ok, body = False, "/version did not answer JSON"
    return {"path": path, "ok": ok, "status": code, "detail": body[:200]}


def run_checks(
    lambda_client: Any, codedeploy: Any, event: dict[str, Any], phase: str, on_release: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Check the deployment's new version (phase BeforeAllowTraffic) or its alias (AfterAllowTraffic).

    `on_release` is called with the release id as soon as the deployment's description names it, so
    every log line of the checks (and of a crash) carries the correlation id.
    """
    info = codedeploy.get_deployment(deploymentId=event["DeploymentId"])["deploymentInfo"]
    facts = parse_description(info.get("description", ""))
    correlation_id = facts.get("release", "unknown")
    if on_release is not None and "release" in facts:
        on_release(correlation_id)
    revision = info.get("revision", {})
    versions = appspec_versions(revision["appSpecContent"]["content"])
    function, target = versions["function"], versions["target"]
    checks: list[dict[str, Any]] = []
    # The version under test must run exactly the digest being released.
    code = lambda_client.get_function(FunctionName=function, Qualifier=target).get("Code", {})
    image = code.get("ResolvedImageUri") or code.get("ImageUri", "")
    digest_ok = bool(facts.get("digest")) and image.endswith(facts["digest"])
    checks.append({"path": "image", "ok": digest_ok, "status": None, "detail": image})
    qualifier = target if phase == "BeforeAllowTraffic" else ALIAS
    checks.extend(call(lambda_client, function, qualifier, path, correlation_id) for path in PATHS)
    passed = all(check["ok"] for check in checks)
    return {"release_id": correlation_id, "phase": phase, "qualifier": qualifier, "passed": passed, "checks": checks}


def report(codedeploy: Any, event: dict[str, Any], passed: bool) -> None:
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status="Succeeded" if passed else "Failed",
    )
