"""Watching a deployment with callbacks instead of a poll loop in the execution.

The state machine's WatchDev/WatchProd task hands its task token to `watch`, which keeps it in the
ledger item `watch#<environment>` with the deployment's latest state (`deployment`, a JSON text) and
a `version` every change is conditioned on. From then on the execution costs nothing while it
waits; the deployment is moved on by:

- CodeDeploy's deployment state-change events (EventBridge -> the watch function): the Lambda
  target's canary ended (SUCCESS, FAILURE, STOP);
- one-time EventBridge Scheduler schedules (`at(...)`, one per environment, moved forward on each
  tick): the fleet controller's steps (health, weights, alarm) and a Lambda image still being applied.

Each `tick` runs one step of `Rollout.status` on the stored state and, when the environment is done,
answers the token: SendTaskSuccess with the deployment, or SendTaskFailure `DeploymentFailed` with
the same reason the poll loop gave. Events are best effort: the task's TimeoutSeconds is the
backstop, after which the execution asks `check` once (the same step, on the same stored state).

`finish` (an operator's `podrelease finish`) marks the watched deployment to end its bake now (who,
when; see `podrelease.release.finish`) and takes a step at once; every later step honours the mark.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core import edge
from podrelease.core.errors import DeploymentFailed, InvalidRequest
from podrelease.release import finish as finishing
from podrelease.release import lambda_target as deploy
from podrelease.release.lockqueue import GONE
from podrelease.release.rollout import ENVIRONMENTS, Rollout

WATCH_RETENTION_SECONDS = 8 * 24 * 3600
STEP_ATTEMPTS = 5
CONFLICT = "Conflict"  # another tick stored its step first
ABORTED = "Aborted"  # an abort ended the watch while the step ran (the step was undone)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class Timer:
    """Where the watch function's one-time schedules go and what they invoke."""

    prefix: str  # schedule names: <prefix>-<environment>
    target_arn: str  # the watch function
    role_arn: str  # the role EventBridge Scheduler invokes it with
    tick_seconds: int
    group: str = "default"

    @classmethod
    def for_function(cls, function_arn: str, tick_seconds: int) -> Timer:
        """The watch function's own schedules: named after it, invoking it (its unqualified ARN) with the
        role `<function name>-scheduler` (template.yaml's WatchSchedulerRole), in its account."""
        parts = function_arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda":
            msg = f"not a Lambda function ARN: {function_arn!r}"
            raise InvalidRequest(msg)
        partition, account, name = parts[1], parts[4], parts[6]
        return cls(name, ":".join(parts[:7]), f"arn:{partition}:iam::{account}:role/{name}-scheduler", tick_seconds)


def needs_timer(deployment: dict[str, Any]) -> bool:
    """Whether nothing but a timer moves this deployment on: a fleet not yet done, or an image Lambda still applies."""
    fleet = deployment.get("fleet")
    if isinstance(fleet, dict) and fleet.get("phase") != "Succeeded":
        return True
    return deployment.get("lambda_status", deployment.get("status")) == deploy.UPDATING


class Watcher:
    def __init__(self, table: Any, rollout: Rollout, sfn: Any, scheduler: Any, timer: Timer | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.table, self.rollout, self.sfn, self.scheduler, self.timer, self.clock = table, rollout, sfn, scheduler, timer, clock

    def run(self, request: WatchRequest) -> dict[str, Any]:
        """The request's action."""
        return run(self, request)

    def _item(self, environment: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": f"watch#{environment}"}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def latest(self, environment: str, release_id: str) -> dict[str, Any] | None:
        """The latest state of `release_id`'s deployment in `environment`, if it is watched."""
        item = self._item(environment)
        if not item or item.get("release") != release_id:
            return None
        return dict(json.loads(str(item["deployment"])))

    def watch(self, environment: str, release_id: str, deployment: dict[str, Any], task_token: str) -> dict[str, Any]:
        """Keep the token with the deployment's state, then take the first step at once."""
        known = self.latest(environment, release_id)
        state = known if known is not None else deployment  # a backstop lap re-watches: keep the newer state
        item = self._item(environment)
        version = int(item.get("version", 0)) + 1 if item else 1
        self.table.put_item(Item={"pk": f"watch#{environment}", "release": release_id, "task_token": task_token,
                                  "deployment": json.dumps(state), "version": version, "done": False,
                                  "expires_at": int(self.clock() + WATCH_RETENTION_SECONDS)})
        return self.tick(environment, release_id)

    def tick(self, environment: str, release_id: str | None = None) -> dict[str, Any]:
        """One step of the watched deployment; answers the task when the environment is done. When
        another tick wrote first, the step is taken again on its state (so no answer is lost)."""
        result: dict[str, Any] = {"environment": environment, "watching": False}
        for _ in range(STEP_ATTEMPTS):
            item = self._item(environment)
            if not item or (release_id and item.get("release") != release_id) or item.get("done"):
                return {"environment": environment, "watching": False}
            try:
                result = self._step(environment, item)
            except DeploymentFailed as exc:
                if self._finish_marked_since(environment, item):
                    continue  # `podrelease finish` stopped the canary after this step read the state: step the marked state
                self._finish(item, "failed", str(exc))
                self._answer(str(item["task_token"]), failure=str(exc))
                return {"environment": environment, "release": item["release"], "status": "Failed", "reason": str(exc)}
            if result["status"] != CONFLICT:
                return result
        return result

    def finish(self, release_id: str, requested_by: str) -> dict[str, Any]:
        """End the current bake of `release_id`'s deployment in flight and shift the rest now (the
        post-traffic checks still run): mark the watched state, then step it. Repeating it is harmless."""
        for environment in ENVIRONMENTS:
            for _ in range(STEP_ATTEMPTS):
                item = self._item(environment)
                if not item or item.get("release") != release_id or item.get("done"):
                    break
                deployment = json.loads(str(item["deployment"]))
                if deployment.get(finishing.MARK) or self._store(item, deployment | {
                        finishing.MARK: {"requested_by": requested_by, "at": int(self.clock())}}, done=False):
                    return self.tick(environment, release_id) | {"finish_requested_by": requested_by}
        msg = f"release {release_id} has no deployment in flight to finish (nothing of it is being watched)"
        raise InvalidRequest(msg)

    def check(self, environment: str, release_id: str) -> dict[str, Any]:
        """The backstop: one step now, its state handed back (DeploymentFailed when it failed)."""
        item = self._item(environment)
        if not item or item.get("release") != release_id:
            msg = f"no {environment} deployment of release {release_id} is being watched"
            raise DeploymentFailed(msg)
        if item.get("done") == "failed":
            msg = str(item.get("reason") or f"the {environment} deployment failed")
            raise DeploymentFailed(msg)
        if item.get("done"):
            return dict(json.loads(str(item["deployment"])))
        for _ in range(STEP_ATTEMPTS):
            result = self._step(environment, item)  # DeploymentFailed goes to the execution's Catch
            if result["status"] == ABORTED:
                msg = f"the {environment} deployment of release {release_id} was aborted"
                raise DeploymentFailed(msg)
            if result["status"] != CONFLICT:
                break
            item = self._item(environment) or item
        return dict(result["deployment"])

    def _step(self, environment: str, item: dict[str, Any]) -> dict[str, Any]:
        deployment = json.loads(str(item["deployment"]))
        result = self.rollout.status(environment, deployment)
        done = result.get("status") == deploy.TERMINAL_OK
        if not self._store(item, result, done):
            now = self._item(environment) or {}
            if now.get("release") == item["release"] and now.get("done") == "aborted":
                # An abort ended this watch while the step ran: it undid the state it read, so what the
                # step did after (a fleet weight, a deployment started for an applied image) is undone here.
                self.rollout.undo_step(environment, result)
                return {"environment": environment, "release": item["release"], "status": ABORTED, "deployment": result}
            return {"environment": environment, "release": item["release"], "status": CONFLICT, "deployment": result}
        if done:
            self._answer(str(item["task_token"]), success=result)
        elif needs_timer(result):
            self._schedule(environment, str(item["release"]))
        return {"environment": environment, "release": item["release"], "status": result.get("status"), "deployment": result}

    def _store(self, item: dict[str, Any], deployment: dict[str, Any], done: bool) -> bool:
        """Write the step's state unless another tick wrote first (then it is that tick's to carry on)."""
        try:
            self.table.update_item(
                Key={"pk": item["pk"]}, UpdateExpression="SET deployment = :d, version = :next, done = :done",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":d": json.dumps(deployment), ":next": int(item["version"]) + 1,
                                           ":v": int(item["version"]), ":done": "succeeded" if done else False},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _finish_marked_since(self, environment: str, item: dict[str, Any]) -> bool:
        """Whether an operator's finish marked the deployment after `item` was read (its stop of the
        Lambda canary is then no failure: the marked state's step completes it)."""
        if json.loads(str(item["deployment"])).get(finishing.MARK):
            return False
        latest = self._item(environment) or {}
        return latest.get("release") == item.get("release") and not latest.get("done") and bool(
            json.loads(str(latest.get("deployment") or "{}")).get(finishing.MARK))

    def _finish(self, item: dict[str, Any], done: str, reason: str = "") -> None:
        self.table.update_item(Key={"pk": item["pk"]}, UpdateExpression="SET done = :done, reason = :reason",
                               ExpressionAttributeValues={":done": done, ":reason": reason})

    def _answer(self, token: str, success: dict[str, Any] | None = None, failure: str | None = None) -> None:
        try:
            if failure is not None:
                cause = json.dumps({"errorType": DeploymentFailed.__name__, "errorMessage": failure})
                self.sfn.send_task_failure(taskToken=token, error=DeploymentFailed.__name__, cause=cause)
            else:
                self.sfn.send_task_success(taskToken=token, output=json.dumps(success))
        except ClientError as exc:
            if _code(exc) not in GONE:  # the task timed out meanwhile: the backstop's check answers instead
                raise

    def _schedule(self, environment: str, release_id: str) -> None:
        """Move this environment's one-time schedule to the next tick (create it if it already fired)."""
        if self.timer is None:
            msg = "the watch function's timer is not set (Timer.for_function with its ARN)"
            raise InvalidRequest(msg)
        at = datetime.datetime.fromtimestamp(self.clock() + self.timer.tick_seconds, tz=datetime.UTC)
        request = {
            "Name": f"{self.timer.prefix}-{environment}",
            "GroupName": self.timer.group,
            "ScheduleExpression": f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": self.timer.target_arn, "RoleArn": self.timer.role_arn,
                       "Input": json.dumps({"tick": environment, "release": release_id})},
        }
        try:
            self.scheduler.update_schedule(**request)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            try:
                self.scheduler.create_schedule(**request, ActionAfterCompletion="DELETE")
            except ClientError as conflict:
                if _code(conflict) != "ConflictException":
                    raise
                self.scheduler.update_schedule(**request)


@dataclass(frozen=True)
class WatchRequest:
    """The watch function's three events: the state machine's `watch`/`check`, a schedule's tick,
    CodeDeploy's state-change event (EventBridge)."""

    action: str  # watch | check | tick | finish
    environment: str
    release_id: str = ""
    deployment: dict[str, Any] | None = None
    task_token: str = ""
    requested_by: str = ""  # finish: the operator's ARN

    @classmethod
    def parse(cls, event: Any, rollout: Rollout, where: str = "watch") -> WatchRequest:
        body = edge.mapping(event, where)
        if body.get("source") == "aws.codedeploy":
            detail = edge.field(body, "detail", dict, where)
            group = edge.field(detail, "deploymentGroup", str, f"{where}: detail")
            environment = next((e for e, t in rollout.targets.items() if t.deployment_group == group), "")
            if not environment:
                msg = f"{where}: deployment group {group!r} is not one this stack deploys"
                raise InvalidRequest(msg)
            return cls("tick", environment)
        if "tick" in body:
            return cls("tick", _environment(edge.field(body, "tick", str, where), where), str(body.get("release", "")))
        action = edge.action(body, ("watch", "check", "finish"), where)
        release = edge.field(body, "release", dict, where)
        release_id = edge.field(release, "id", str, f"{where}: release")
        if action == "finish":
            return cls(action, "", release_id, requested_by=edge.field(body, "requested_by", str, where))
        environment = _environment(edge.field(body, "environment", str, where), where)
        if action == "check":
            return cls(action, environment, release_id)
        return cls(action, environment, release_id, edge.field(body, "deployment", dict, where),
                   edge.field(body, "task_token", str, where))


def _environment(value: str, where: str) -> str:
    if value not in ENVIRONMENTS:
        msg = f"{where}: unknown environment {value!r} (expected one of {', '.join(ENVIRONMENTS)})"
        raise InvalidRequest(msg)
    return value


def run(watcher: Watcher, request: WatchRequest) -> dict[str, Any]:
    if request.action == "watch":
        return watcher.watch(request.environment, request.release_id, request.deployment or {}, request.task_token)
    if request.action == "check":
        return watcher.check(request.environment, request.release_id)
    if request.action == "finish":
        return watcher.finish(request.release_id, request.requested_by)
    return watcher.tick(request.environment, request.release_id or None)
