"""EventBridge Scheduler: one-time schedules (`at(yyyy-mm-ddThh:mm:ss)`) fire, as the service fires them.

moto stores schedules but never runs them. Here a created or updated one-time schedule with a
Lambda target invokes its function asynchronously at its time, with the schedule's `Input`, as the
target's role (the role must allow `lambda:InvokeFunction` on the function: `local.iam` checks it);
`ActionAfterCompletion: DELETE` then deletes it. An update before the time moves it (the earlier
timer does nothing); a deleted schedule never fires. Rate and cron schedules are not run.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from moto.iam.models import iam_backends
from moto.scheduler.models import EventBridgeSchedulerBackend, scheduler_backends

from local import iam
from local.emulation.base import Current, Patches, Timeline
from local.emulation.lambda_runtime import LambdaRuntime

_AT_RE = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")


class SchedulerTimers:
    """Fires the one-time schedules of one local AWS."""

    def __init__(self, account: str, region: str, runtime_ref: Callable[[], LambdaRuntime | None], timeline: Timeline) -> None:
        self.account, self.region = account, region
        self.runtime_ref = runtime_ref
        self.timeline = timeline
        self.generation: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.fired = 0
        #: True loses every schedule that comes due (a test of the release's backstop).
        self.drop_due_schedules = False

    @property
    def backend(self) -> EventBridgeSchedulerBackend:
        return scheduler_backends[self.account][self.region]

    def arm(self, group: str, name: str, expression: str) -> None:
        match = _AT_RE.match(expression or "")
        if not match:
            return
        when = datetime.datetime.fromisoformat(match.group(1)).replace(tzinfo=datetime.UTC).timestamp()
        with self.lock:
            generation = self.generation.get((group, name), 0) + 1
            self.generation[(group, name)] = generation
        threading.Thread(target=self._fire_at, args=(group, name, generation, when), daemon=True).start()

    def shutdown(self) -> None:
        self.stopping.set()

    def _fire_at(self, group: str, name: str, generation: int, when: float) -> None:
        delay = when - datetime.datetime.now(tz=datetime.UTC).timestamp()
        if self.stopping.wait(max(delay, 0)):
            return
        with self.lock:
            if self.generation.get((group, name)) != generation:
                return  # updated since: its new time has its own timer
            try:
                schedule = self.backend.get_schedule(group, name)
            except Exception:
                return  # deleted
            target = dict(schedule.target)
            if schedule.action_after_completion == "DELETE":
                self.backend.delete_schedule(group, name)
        if self.drop_due_schedules:
            self.timeline.add("scheduler", f"schedule {name} came due and was lost (test)")
            return
        self._invoke(name, target)

    def _invoke(self, name: str, target: dict[str, Any]) -> None:
        runtime = self.runtime_ref()
        function = runtime.stack.function_by_name(target["Arn"]) if runtime and ":function:" in target["Arn"] else None
        if runtime is None or function is None:
            self.timeline.add("scheduler", f"schedule {name}: target {target['Arn']} is not a function of the stack")
            return
        try:
            role = iam_backends[self.account]["aws"].get_role(target["RoleArn"].rsplit("/", 1)[-1])
            policies: list[Any] = [*role.policies.values(), *role.managed_policies.values()]
            iam.authorize("lambda", target["RoleArn"], policies, "lambda:InvokeFunction", [target["Arn"]])
        except Exception as exc:
            self.timeline.add("scheduler", f"schedule {name}: {exc}")
            return
        self.fired += 1
        runtime.run_async(function, None, json_input(target.get("Input")))


def json_input(text: str | None) -> Any:
    return json.loads(text) if text else {}


_patches = Patches()


def install(current: Current) -> None:
    original_create = EventBridgeSchedulerBackend.create_schedule
    original_update = EventBridgeSchedulerBackend.update_schedule

    def create_schedule(self: EventBridgeSchedulerBackend, *args: Any, **kwargs: Any) -> Any:
        schedule = original_create(self, *args, **kwargs)
        current().scheduler.arm(schedule.group_name, schedule.name, schedule.schedule_expression)
        return schedule

    def update_schedule(self: EventBridgeSchedulerBackend, *args: Any, **kwargs: Any) -> Any:
        schedule = original_update(self, *args, **kwargs)
        current().scheduler.arm(schedule.group_name, schedule.name, schedule.schedule_expression)
        return schedule

    _patches.patch(EventBridgeSchedulerBackend, "create_schedule", create_schedule)
    _patches.patch(EventBridgeSchedulerBackend, "update_schedule", update_schedule)


def uninstall() -> None:
    _patches.restore()
