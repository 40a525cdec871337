"""Record a release's outcome in the ledger and compose its notification."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.core import config
from podrelease.core.obs import bind_release, get_logger, release_id_of
from podrelease.release.ledger import Ledger
from podrelease.release.start import summarize

logger = get_logger()
ledger = Ledger(boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE")))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = event.get("state") or {}
    release_id = release_id_of(state) or event["execution_name"]
    bind_release(logger, release_id)
    summary = summarize(event["outcome"], state, event["execution_name"])
    ledger.record_release(release_id, summary["record"])
    log = logger.info if event["outcome"] == "SUCCEEDED" else logger.error
    log("release recorded", extra={"record": summary["record"]})
    return summary
