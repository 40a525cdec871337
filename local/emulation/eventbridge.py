"""EventBridge: rules with Lambda targets receive matching events (moto only delivers to a few
target types); delivery is asynchronous, as in AWS."""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from moto.events.models import events_backends

from local.emulation.base import Timeline
from local.emulation.lambda_runtime import LambdaRuntime


class EventBridgeDelivery:
    """Delivers events to the Lambda targets of matching rules on the default bus (asynchronously)."""

    def __init__(self, account: str, region: str, runtime_ref: Callable[[], LambdaRuntime | None], timeline: Timeline) -> None:
        self.account, self.region = account, region
        self.runtime_ref = runtime_ref
        self.timeline = timeline

    def deliver(self, event: dict[str, Any]) -> int:
        backend = events_backends[self.account][self.region]
        runtime = self.runtime_ref()
        delivered = 0
        for rule in backend.event_buses["default"].rules.values():
            # A rule with a schedule and no pattern matches no event (moto's empty pattern matches all).
            if rule.state != "ENABLED" or getattr(rule, "scheduled_expression", None) or not rule.event_pattern.matches_event(event):
                continue
            for target in rule.targets:
                if ":lambda:" in target["Arn"] and ":function:" in target["Arn"] and runtime is not None:
                    function = runtime.stack.function_by_name(target["Arn"])
                    if function is not None:
                        threading.Thread(target=runtime.run_async, args=(function, None, event), daemon=True).start()
                        delivered += 1
        return delivered


# --- scheduled rules and Step Functions status-change events ----------------------------------------
def scheduled_event(account: str, region: str, rule_arn: str) -> dict[str, Any]:
    """The event a schedule rule sends its targets (`Scheduled Event`, `aws.events`)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": region,
            "resources": [rule_arn], "detail": {}}


def schedule_of(account: str, region: str, function_arn: str) -> str | None:
    """The ARN of the schedule rule that targets `function_arn` (None when no schedule does)."""
    backend = events_backends[account][region]
    for rule in backend.event_buses["default"].rules.values():
        if getattr(rule, "scheduled_expression", None) and any(t["Arn"] == function_arn for t in rule.targets):
            return str(rule.arn)
    return None


def _millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime.datetime) else None


def execution_status_event(execution: Any) -> dict[str, Any]:
    """`Step Functions Execution Status Change` for a moto execution, in the shape AWS sends."""
    status = getattr(execution.exec_status, "value", str(execution.exec_status))
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": execution.account_id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": execution.region_name, "resources": [execution.exec_arn],
        "detail": {
            "executionArn": execution.exec_arn, "stateMachineArn": execution.state_machine_arn, "name": execution.name,
            "status": status, "startDate": _millis(execution.start_date), "stopDate": _millis(execution.stop_date),
            "input": json.dumps(execution.input_data), "output": None if execution.output is None else json.dumps(execution.output, default=str),
            "error": execution.error, "cause": execution.cause,
        },
    }
