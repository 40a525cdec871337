"""Promote the approved digest: the prod repository gets the same manifest bytes by digest."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, release_id_of
from podrelease.release.promote import promote

logger = get_logger()
ecr = boto3.client("ecr")
PROD_REPOSITORY = config.require("PROD_REPOSITORY")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bind_release(logger, release_id_of(event))
    release = event["release"]
    result = promote(ecr, release["repository"], PROD_REPOSITORY, release["digest"])
    logger.info("digest promoted", extra={"promotion": result})
    return result
