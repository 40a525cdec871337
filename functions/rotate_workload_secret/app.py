"""Rotation of the workload secret (podinfo's JWT signing secret), the four Secrets Manager steps.

Secrets Manager invokes this with {"Step", "SecretId", "ClientRequestToken"}; SecretId may be the
secret's ARN or its name. See `podrelease.rotation.workload_secret` for what each step does.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import get_logger
from podrelease.release import fleet
from podrelease.release.ledger import Ledger
from podrelease.rotation.workload_secret import Rotator, Target

logger = get_logger()
_lambda = boto3.client("lambda")
_sm = boto3.client("secretsmanager")


def _invoke(function: str, qualifier: str, event: dict[str, Any]) -> dict[str, Any]:
    reply = _lambda.invoke(FunctionName=function, Qualifier=qualifier, Payload=json.dumps(event).encode())
    payload = json.loads(reply["Payload"].read() or b"{}")
    if reply.get("FunctionError"):
        return {"statusCode": 502, "error": payload.get("errorType", "FunctionError")}
    return payload if isinstance(payload, dict) else {}


def _versions_of(target: Target) -> list[str]:
    """The versions the alias routes traffic to (two during a canary)."""
    alias = _lambda.get_alias(FunctionName=target.function_name, Name=target.alias)
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {})
    return sorted({str(alias["FunctionVersion"]), *map(str, weights)})


def _targets() -> dict[str, Target]:
    targets = {}
    for environment in ("dev", "prod"):
        arn = config.require(f"WORKLOAD_SECRET_{environment.upper()}")
        targets[arn] = Target(environment, config.require(f"PODINFO_FUNCTION_{environment.upper()}"),
                              fleet_url=config.optional(f"FLEET_URL_{environment.upper()}", ""),
                              fleet_size=config.integer("FLEET_SIZE", 0))
    return targets


_cache_seconds = config.integer("SECRET_CACHE_SECONDS", 10)
rotator = Rotator(_sm, Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))), _targets(), _invoke,
                  _versions_of, lease_seconds=config.integer("ROTATION_LEASE_SECONDS", 900),
                  settle_seconds=float(_cache_seconds * 2), http_get=fleet.http_get,
                  # an instance re-reads the secret every FLEET_SECRET_REFRESH_SECONDS, its gate after the cache time
                  fleet_settle_seconds=float(config.integer("FLEET_SECRET_REFRESH_SECONDS", 60) + 2 * _cache_seconds))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step, secret_id, token = event.get("Step", ""), event.get("SecretId", ""), event.get("ClientRequestToken", "")
    logger.append_keys(rotation_step=step, rotation_version=token)
    logger.info("rotation step started", extra={"secret_id": secret_id})
    result = rotator.rotate(step, secret_id, token)
    logger.info("rotation step done", extra={"result": result["state"], "environment": result["environment"]})
    return result
