"""Promote the approved digest: the prod repository gets the same manifest bytes by digest, with the
digest's signatures, attestations and referrers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config, edge
from podrelease.core.obs import bind_release, get_logger, get_tracer
from podrelease.release.promote import promote
from podrelease.verify.registry import EcrRegistry

logger = get_logger()
tracer = get_tracer()
ecr = boto3.client("ecr")
registry = EcrRegistry(ecr)  # lists the digest's referrers (OCI referrers API) to carry them
PROD_REPOSITORY = config.require("PROD_REPOSITORY")


@dataclass(frozen=True)
class PromoteRequest:
    release_id: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, event: Any) -> PromoteRequest:
        release = edge.field(edge.mapping(event, "promote"), "release", dict, "promote")
        return cls(*(edge.field(release, name, str, "promote: release") for name in ("id", "repository", "digest")))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PromoteRequest.parse(event)
    bind_release(logger, request.release_id, tracer)
    result = promote(ecr, request.repository, PROD_REPOSITORY, request.digest, registry=registry)
    logger.info("digest promoted", extra={"promotion": result})
    return result
