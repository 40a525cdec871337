"""Finishing a canary now (`podrelease finish ID`): the current bake ends and the rest of the traffic
moves at once; the post-traffic checks still decide, and a failure still rolls back.

The operator's request is a `finish` mark on the watched deployment (`watch.Watcher.finish`: who,
when); every later step of the deployment honours it, so it survives retries and concurrent ticks:

- the EC2 fleet: the controller moves to its last step (100 %) at the next step instead of waiting
  out the bake, then runs its post-traffic checks through the ALB as always (`fleet.Fleet`);
- the Lambda target: CodeDeploy has no call that skips a Lambda canary's bake (`ContinueDeployment`
  is for EC2/ECS blue/green waits only), so the deployment is stopped *without* rollback (the
  alias stays where it is), then `lambda_now` shifts the `live` alias to the new version itself and
  runs the AfterAllowTraffic checks the hook runs (`hooks.run_checks`). Checks that fail point the
  alias back at the previous version: DeploymentFailed, as a rolled-back canary.

A deployment that CodeDeploy stopped *with* a rollback (an alarm, a hook, an abort) is a failure as
ever: only a stop that left traffic in place is taken as this finish's own.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from podrelease.core.errors import DeploymentFailed
from podrelease.release import hooks
from podrelease.release import lambda_target as deploy

#: The watched deployment's key for the operator's request: {"requested_by": ARN, "at": epoch seconds}.
MARK = "finish"
IN_FLIGHT = frozenset({"Created", "Queued", "InProgress", "Baking", "Ready"})


def _ours(info: dict[str, Any]) -> bool:
    """A deployment stopped without rollback (the finish's own stop leaves traffic where it was)."""
    rollback = info.get("rollbackInfo") or {}
    return info.get("status") == "Stopped" and not rollback.get("rollbackDeploymentId") and not rollback.get("rollbackMessage")


def lambda_now(lambda_client: Any, codedeploy: Any, deployment: dict[str, Any]) -> dict[str, Any]:
    """One step of finishing the Lambda canary `deployment` (safe to repeat): stop it without
    rollback; once CodeDeploy reports it stopped, move the alias and check it. Status stays
    `InProgress` until the stop has taken (its STOP event, or the next tick, carries on)."""
    if not deployment.get("id") or deployment.get("status") == deploy.TERMINAL_OK:
        return deployment
    info = codedeploy.get_deployment(deploymentId=deployment["id"])["deploymentInfo"]
    if info.get("status") in IN_FLIGHT:
        try:
            codedeploy.stop_deployment(deploymentId=deployment["id"], autoRollbackEnabled=False)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DeploymentAlreadyCompletedException":
                raise
        info = codedeploy.get_deployment(deploymentId=deployment["id"])["deploymentInfo"]
    if info.get("status") in IN_FLIGHT:
        return deployment | {"status": str(info.get("status"))}
    if not _ours(info):
        return deploy.status(codedeploy, deployment)  # succeeded on its own, or failed (DeploymentFailed)
    function, version, previous = deployment["function"], str(deployment["version"]), str(deployment["previous_version"])
    lambda_client.update_alias(FunctionName=function, Name=deploy.ALIAS, FunctionVersion=version,
                               RoutingConfig={"AdditionalVersionWeights": {}})
    checks = hooks.run_checks(lambda_client, codedeploy, deployment["id"], "AfterAllowTraffic")
    if not checks["passed"]:
        lambda_client.update_alias(FunctionName=function, Name=deploy.ALIAS, FunctionVersion=previous,
                                   RoutingConfig={"AdditionalVersionWeights": {}})
        failed = "; ".join(f"{c['path']} -> {c['status']}" for c in checks["checks"] if not c["ok"])
        msg = (f"{deployment.get('environment', '?')} deployment {deployment['id']} finished early by "
               f"{(deployment.get(MARK) or {}).get('requested_by', 'an operator')}: the post-traffic checks failed "
               f"({failed}); {function}:{deploy.ALIAS} was pointed back at version {previous}")
        raise DeploymentFailed(msg)
    return deployment | {"status": deploy.TERMINAL_OK, "finished_early": True,
                         "post_traffic_checks": [{k: c[k] for k in ("path", "ok", "status")} for c in checks["checks"]]}
