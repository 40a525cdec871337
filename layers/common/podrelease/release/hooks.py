"""CodeDeploy traffic hooks for the podinfo Lambda target.

BeforeAllowTraffic checks the new version directly (before it gets any traffic); AfterAllowTraffic
checks it through the `live` alias once all traffic has moved. Both call podinfo's `/healthz`,
`/readyz` and `/version` through the Lambda Web Adapter (a Function URL shaped event, see
`podrelease.release.podinfo`), carry the release id as `X-Correlation-Id`, and always report the
verdict to CodeDeploy, even on a crash, so a deployment never hangs waiting for a hook.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from podrelease.release import podinfo
from podrelease.release.lambda_target import ALIAS, appspec_versions, parse_description

if TYPE_CHECKING:
    from collections.abc import Callable

PATHS = ("/healthz", "/readyz", "/version")


def call(lambda_client: Any, function_name: str, qualifier: str, path: str, correlation_id: str) -> dict[str, Any]:
    headers = {"x-correlation-id": correlation_id, "user-agent": "podinfo-release-hook", "accept": "application/json"}
    reply = podinfo.invoke(lambda_client, function_name, qualifier, podinfo.request(path, headers=headers))
    if reply.status is None:
        return {"path": path, "ok": False, "status": None, "detail": reply.error}
    ok, body = reply.ok, reply.body
    if ok and path == "/version":
        try:
            version = reply.json()
            ok = isinstance(version, dict) and bool(version.get("version"))
            body = json.dumps({k: version.get(k) for k in ("version", "commit")}) if ok else "no version field"
        except ValueError:
            ok, body = False, "/version did not answer JSON"
    return {"path": path, "ok": ok, "status": reply.status, "detail": body[:200]}


def run_checks(
    lambda_client: Any, codedeploy: Any, deployment_id: str, phase: str, on_release: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Check the deployment's new version (phase BeforeAllowTraffic) or its alias (AfterAllowTraffic).

    `on_release` is called with the release id as soon as the deployment's description names it, so
    every log line of the checks (and of a crash) carries the correlation id.
    """
    info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
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


def check_and_report(lambda_client: Any, codedeploy: Any, deployment_id: str, execution_id: str, phase: str,
                     on_release: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the checks and report the verdict for the hook execution `execution_id`: Failed when the
    checks fail or crash (the crash is raised after the report), so CodeDeploy never waits on a hook."""
    try:
        result = run_checks(lambda_client, codedeploy, deployment_id, phase, on_release)
    except Exception:
        report(codedeploy, deployment_id, execution_id, passed=False)
        raise
    report(codedeploy, deployment_id, execution_id, passed=result["passed"])
    return result


def report(codedeploy: Any, deployment_id: str, execution_id: str, *, passed: bool) -> None:
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status="Succeeded" if passed else "Failed",
    )
