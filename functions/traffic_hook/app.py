"""CodeDeploy BeforeAllowTraffic / AfterAllowTraffic hook (the phase comes from HOOK_PHASE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import CodeDeployLifecycleHookEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release import hooks

logger = get_logger()
tracer = get_tracer()
lambda_client = boto3.client("lambda")
codedeploy = boto3.client("codedeploy")
PHASE = config.require("HOOK_PHASE")


@dataclass(frozen=True)
class HookRequest:
    deployment_id: str
    execution_id: str

    @classmethod
    def of(cls, event: CodeDeployLifecycleHookEvent) -> HookRequest:
        raw = edge.mapping(event.raw_event, "traffic_hook")
        return cls(*(edge.field(raw, key, str, "traffic_hook") for key in ("DeploymentId", "LifecycleEventHookExecutionId")))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=CodeDeployLifecycleHookEvent)
def handler(event: CodeDeployLifecycleHookEvent, context: LambdaContext) -> dict[str, Any]:
    request = HookRequest.of(event)
    try:
        result = hooks.check_and_report(lambda_client, codedeploy, request.deployment_id, request.execution_id, PHASE,
                                        on_release=lambda rid: bind_release(logger, rid, tracer))
    except Exception:
        logger.exception("hook checks crashed; reported Failed so CodeDeploy rolls back")
        raise
    (logger.info if result["passed"] else logger.error)("traffic hook verdict", extra={"hook": result})
    return result
