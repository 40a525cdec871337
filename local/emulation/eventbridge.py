"""EventBridge: rules with Lambda targets receive matching events (moto only delivers to a few
target types); delivery is asynchronous, as in AWS."""

from __future__ import annotations

import threading
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
            if rule.state != "ENABLED" or not rule.event_pattern.matches_event(event):
                continue
            for target in rule.targets:
                if ":lambda:" in target["Arn"] and ":function:" in target["Arn"] and runtime is not None:
                    function = runtime.stack.function_by_name(target["Arn"])
                    if function is not None:
                        threading.Thread(target=runtime.run_async, args=(function, None, event), daemon=True).start()
                        delivered += 1
        return delivered
