"""What the handler tests share: the stack's names, the events the release sends, and the two
worlds the handlers run in (their fixtures are in conftest.py).

moto alone (`aws`, `ledger`, `starter`): starter, normalize, lock and record. Each test sets the
environment `template.yaml` gives the function, imports `functions/<name>/app.py` afresh inside
`mock_aws` (handlers read their settings and build clients at import), sends the event shape
`statemachines/release.asl.json` gives that state, and reads back what the handler left in AWS:
Step Functions executions (a real moto state machine), ledger items (a moto table shaped like the
template's). Environment errors are asserted at import, where a cold start would fail.

moto with `local.emulation` filling moto's documented gaps (`registry`, `site`): verify, promote,
deploy and traffic_hook. moto has no ECR layer API, no OCI `/v2/` API and no CodeDeploy
lifecycle-hook status, so every such test installs the project's one emulation (`Emulation.install`,
its registry on loopback) and pushes real podinfo demo images with `local.images.Pusher`. What each
handler left behind is read back through the AWS APIs (ECR images and blobs, Lambda code and
versions, CodeDeploy deployments, ledger items) or, for hook verdicts, from the emulated
CodeDeploy's record of PutLifecycleEventHookExecutionStatus.

Determinism: the emulation's CodeDeploy engine runs every created deployment in a thread. The
LambdaRuntime attached by `site` knows only the two podinfo functions (answered in process by
`local.standin`), not the hook functions, so the engine registers the BeforeAllowTraffic lifecycle
event, finds no hook function to run, and fails the deployment at once without shifting traffic.
Tests join the engine's threads before looking, then drive the hook handler themselves with the
lifecycle event id the engine registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from moto.codedeploy.models import codedeploy_backends

from local.emulation import Emulation
from local.images import Pushed, Pusher
from podrelease.release.events import execution_name
from tests.conftest import FakeLambdaContext

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "podrel"
TABLE = f"{STACK}-ledger"
REPOSITORY = "podinfo"
Context = FakeLambdaContext

# --- moto alone: starter, normalize, lock, record ---------------------------------------------------
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-release"
DIGEST = "sha256:" + "7e" * 32
RELEASE_ID = execution_name(REPOSITORY, DIGEST)
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{RELEASE_ID}"
OTHER_RELEASE_ID = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
PASS_DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
FAR_FUTURE = 4102444800  # 2100-01-01T00:00:00Z


def push_event(
    repository: str = REPOSITORY, digest: str | None = DIGEST, tag: str | None = "6.9.1", **detail: Any
) -> dict[str, Any]:
    """An `ECR Image Action` push event as EventBridge delivers it (shape of the AWS docs sample)."""
    body: dict[str, Any] = {"result": "SUCCESS", "repository-name": repository, "action-type": "PUSH"}
    if digest is not None:
        body["image-digest"] = digest
    if tag is not None:
        body["image-tag"] = tag
    return {
        "version": "0",
        "id": "13cde686-328b-6117-af20-0e5566167482",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2025-06-15T15:06:40Z",
        "region": REGION,
        "resources": [],
        "detail": body | detail,
    }


RELEASE = {
    "account": ACCOUNT,
    "region": REGION,
    "repository": REPOSITORY,
    "digest": DIGEST,
    "tag": "6.9.1",
    "event_id": "13cde686-328b-6117-af20-0e5566167482",
    "time": "2025-06-15T15:06:40Z",
    "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{DIGEST}",
    "id": RELEASE_ID,
    "execution": EXECUTION_ARN,
    "attempt": 1,
}


def item(table: Any, key: str) -> dict[str, Any] | None:
    found = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
    return dict(found) if found else None


@dataclass
class Starter:
    app: Any
    sfn: Any

    def start(self, event: Any) -> dict[str, Any]:
        return dict(self.app.handler(event, Context()))

    def executions(self) -> list[str]:
        return sorted(e["name"] for e in self.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"])

    def input_of(self, name: str) -> Any:
        arn = STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":" + name
        return json.loads(self.sfn.describe_execution(executionArn=arn)["input"])


# --- moto with local.emulation: verify, promote, deploy, traffic_hook -----------------------------
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PROD_REPOSITORY = "podinfo-prod"
DEV_FUNCTION = f"{STACK}-podinfo-dev"
PROD_FUNCTION = f"{STACK}-podinfo-prod"
APPLICATION = f"{STACK}-podinfo"
DEPLOY_ENV = {
    "LEDGER_TABLE": TABLE,
    "DEV_FUNCTION_NAME": DEV_FUNCTION,
    "PROD_FUNCTION_NAME": PROD_FUNCTION,
    "CODEDEPLOY_APPLICATION": APPLICATION,
    "DEV_DEPLOYMENT_GROUP": f"{STACK}-podinfo-dev",
    "PROD_DEPLOYMENT_GROUP": f"{STACK}-podinfo-prod",
    "PRE_TRAFFIC_HOOK": f"{STACK}-before-allow-traffic",
    "POST_TRAFFIC_HOOK": f"{STACK}-after-allow-traffic",
    "PROD_REPOSITORY": PROD_REPOSITORY,
}


def release_of(digest: str, repository: str = REPOSITORY) -> dict[str, Any]:
    """The `$.release` the normalize state builds for a push of repository@digest."""
    name = execution_name(repository, digest)
    return {
        "account": ACCOUNT,
        "region": REGION,
        "repository": repository,
        "digest": digest,
        "tag": None,
        "event_id": "",
        "time": "",
        "image_uri": f"{REGISTRY}/{repository}@{digest}",
        "id": name,
        "execution": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{name}",
        "attempt": 1,
    }


@dataclass
class Registry:
    emulation: Emulation
    ecr: Any
    pusher: Pusher


@dataclass
class Site:
    """Both podinfo functions (version 1 behind `live`), their CodeDeploy groups and the ledger."""

    registry: Registry
    lam: Any
    codedeploy: Any
    table: Any
    bootstrap: Pushed

    @property
    def emulation(self) -> Emulation:
        return self.registry.emulation

    def settle(self) -> None:
        """Wait for the emulated CodeDeploy engine to finish every deployment it started."""
        for thread in self.emulation.codedeploy.threads:
            thread.join(timeout=10)
            assert not thread.is_alive()

    def deployments(self, environment: str) -> list[str]:
        group = DEPLOY_ENV[f"{environment.upper()}_DEPLOYMENT_GROUP"]
        return list(self.codedeploy.list_deployments(applicationName=APPLICATION, deploymentGroupName=group)["deployments"])

    def image(self, function: str, qualifier: str = "$LATEST") -> str:
        return str(self.lam.get_function(FunctionName=function, Qualifier=qualifier)["Code"]["ImageUri"])

    def set_status(self, deployment_id: str, status: str) -> None:
        """Move a deployment along as CodeDeploy would (after the engine has settled)."""
        info = codedeploy_backends[ACCOUNT][REGION].deployments[deployment_id]
        info.status, info.error_information, info.rollback_message = status, {}, ""

    def lock(self, environment: str, holder: str) -> None:
        self.table.put_item(
            Item={
                "pk": f"lock#{environment}",
                "holder": holder,
                "environment": environment,
                "acquired_at": 1750000000,
                "expires_at": 4102444800,
            }
        )

    def lock_holder(self, environment: str) -> str | None:
        found = self.table.get_item(Key={"pk": f"lock#{environment}"}, ConsistentRead=True).get("Item")
        return str(found["holder"]) if found else None
