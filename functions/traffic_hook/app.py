"""CodeDeploy BeforeAllowTraffic / AfterAllowTraffic hook (the phase comes from HOOK_PHASE)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger
from podrelease.release import hooks

logger = get_logger()
lambda_client = boto3.client("lambda")
codedeploy = boto3.client("codedeploy")
PHASE = config.require("HOOK_PHASE")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = hooks.run_checks(lambda_client, codedeploy, event, PHASE, on_release=lambda rid: bind_release(logger, rid))
    except Exception:
        logger.exception("hook checks crashed; reporting Failed so CodeDeploy rolls back")
        hooks.report(codedeploy, event, passed=False)
        raise
    bind_release(logger, result["release_id"])
    hooks.report(codedeploy, event, passed=result["passed"])
    log = logger.info if result["passed"] else logger.error
    log("traffic hook verdict", extra={"hook": result})
    return result
