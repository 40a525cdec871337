"""Record a release's outcome in the ledger and compose its notification."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from podrelease.approval.render import summary_text
from podrelease.approval.store import ApprovalStore
from podrelease.core import config, edge
from podrelease.core.errors import InvalidRequest
from podrelease.core.obs import bind_release, get_logger, get_tracer, release_id_of
from podrelease.release import outcome
from podrelease.release.ledger import Ledger
from podrelease.release.summary import OUTCOMES, summarize

logger = get_logger()
tracer = get_tracer()
table = boto3.resource("dynamodb").Table(config.require("LEDGER_TABLE"))
ledger, approvals = Ledger(table), ApprovalStore(table)
sfn = boto3.client("stepfunctions")
EXECUTIONS = config.require("STATE_MACHINE_ARN").replace(":stateMachine:", ":execution:")


@dataclass(frozen=True)
class RecordRequest:
    outcome: str  # SUCCEEDED | FAILED | REJECTED
    state: dict[str, Any]  # the execution's whole state
    execution_name: str

    @classmethod
    def parse(cls, event: Any) -> RecordRequest:
        body = edge.mapping(event, "record")
        outcome = edge.field(body, "outcome", str, "record")
        if outcome not in OUTCOMES:
            raise InvalidRequest(f"record: unknown outcome {outcome!r} (expected one of {', '.join(OUTCOMES)})")
        state = edge.field(body, "state", dict, "record", default={})
        return cls(outcome, state, edge.field(body, "execution_name", str, "record"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RecordRequest.parse(event)
    bind_release(logger, release_id_of(request.state) or request.execution_name, tracer)
    approval, now = approvals.get(release_id_of(request.state) or request.execution_name), time.time()
    summary = summarize(request.outcome, request.state, request.execution_name,
                        approval_summary=summary_text(approval, now) if approval else "")
    record = ledger.record_release(summary["record"]["release_id"], summary["record"])
    outcome.emit(record, str(request.state.get("release", {}).get("time", "")), now,
                 outcome.history(sfn, f"{EXECUTIONS}:{request.execution_name}"), approval)
    (logger.info if request.outcome == "SUCCEEDED" else logger.error)("release recorded", extra={"record": summary["record"]})
    return summary
