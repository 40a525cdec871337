"""CodeDeploy: a Lambda deployment actually runs, as CodeDeploy runs it on moto's stored deployments.

BeforeAllowTraffic hook, canary or linear traffic shifting on the alias, alarm checks during each
bake (CloudWatch: the group's error alarms go into ALARM on errors of synthetic requests sent through
the alias, its latency alarm when their p99 duration is over its threshold), AfterAllowTraffic hook, rollback on failure/alarm/stop. `PutLifecycleEventHookExecutionStatus`
and `StopDeployment` are added, and a deployment's `errorInformation`/`rollbackInfo` are reported.
Bake minutes are shortened to `minute_seconds` seconds locally.

Like CodeDeploy, each deployment's state changes (START, SUCCESS, FAILURE, STOP) are sent to
EventBridge as "CodeDeploy Deployment State-change Notification" events (`emit`); a test can drop
them (`drop_state_change_events`) to prove the release's backstop.

Each deployment runs in a thread of its own; `CodeDeployLifecycle.shutdown` (called when the local
runtime stops) ends them at their next wait, so none outlives the runtime and touches the next
one's moto (a reset AWS, where its deployment no longer exists).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.utils import get_backend as lambda_backend
from moto.cloudwatch.models import cloudwatch_backends
from moto.codedeploy.models import CodeDeployBackend, DeploymentGroup, DeploymentInfo, codedeploy_backends
from moto.codedeploy.responses import CodeDeployResponse

from local.emulation.base import Current, LocalError, Patches, Timeline, error_response, p99_seconds, server_seconds
from local.emulation.cloudwatch import put_points
from local.emulation.lambda_runtime import LambdaRuntime

_CONFIG_RE = re.compile(r"^CodeDeployDefault\.Lambda(?:(?P<kind>Canary|Linear)(?P<pct>\d+)Percent(?:Every)?(?P<min>\d+)Minutes?|AllAtOnce)$")


def traffic_steps(config_name: str) -> list[tuple[float, float]]:
    """(weight on the new version, bake minutes before the next step) for a Lambda deployment config."""
    match = _CONFIG_RE.match(config_name)
    if not match:
        raise LocalError("DeploymentConfigDoesNotExistException", f"unknown deployment config {config_name}")
    if not match["kind"]:
        return [(1.0, 0)]
    pct, minutes = int(match["pct"]) / 100, int(match["min"])
    if match["kind"] == "Canary":
        return [(pct, minutes), (1.0, 0)]
    steps, weight = [], pct
    while weight < 1.0 - 1e-9:
        steps.append((round(weight, 4), minutes))
        weight += pct
    return [*steps, (1.0, 0)]


class _Shutdown(Exception):
    """The local runtime stopped during a deployment: its thread ends there, leaving moto alone."""


@dataclass
class _Run:
    deployment_id: str
    hook_status: dict[str, str] = field(default_factory=dict)
    stop_requested: bool = False
    #: StopDeployment's autoRollbackEnabled: False leaves the alias where the stop found it (as on AWS).
    roll_back_on_stop: bool = True
    events: dict[str, str] = field(default_factory=dict)
    #: StopDeployment and the deployment's completion do not interleave.
    lock: threading.Lock = field(default_factory=threading.Lock)


class CodeDeployLifecycle:
    """Runs Lambda deployments the way CodeDeploy does, on moto's stored deployments."""

    def __init__(self, account: str, region: str, runtime_ref: Callable[[], LambdaRuntime | None], timeline: Timeline,
                 minute_seconds: float, hook_timeout: float = 60.0, canary_requests: int = 20,
                 emit: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.account, self.region = account, region
        self.runtime_ref = runtime_ref
        self.timeline = timeline
        self.minute_seconds = minute_seconds
        self.hook_timeout = hook_timeout
        self.canary_requests = canary_requests
        self.runs: dict[str, _Run] = {}
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.emit = emit
        #: Events are best effort on AWS: True loses every state-change event (the backstop's test).
        self.drop_state_change_events = False

    @property
    def backend(self) -> CodeDeployBackend:
        return codedeploy_backends[self.account][self.region]

    def register(self, deployment_id: str) -> None:
        """Know the deployment (its hook events, a stop) without running it: it stays in progress."""
        self.runs[deployment_id] = _Run(deployment_id)

    def start(self, deployment_id: str) -> None:
        self.register(deployment_id)
        thread = threading.Thread(target=self._run_safely, args=(deployment_id,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """End every running deployment's thread at its next wait (the local runtime is stopping)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=timeout)

    def put_hook_status(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.runs.get(params["deploymentId"])
        if run is None or params["lifecycleEventHookExecutionId"] not in run.events:
            raise LocalError("LifecycleEventAlreadyCompletedException" if run else "DeploymentDoesNotExistException",
                             "no pending lifecycle event with that id")
        if params["status"] not in ("Succeeded", "Failed"):
            raise LocalError("InvalidLifecycleEventHookExecutionStatusException", "status must be Succeeded or Failed")
        run.hook_status[params["lifecycleEventHookExecutionId"]] = params["status"]
        return {"lifecycleEventHookExecutionId": params["lifecycleEventHookExecutionId"]}

    def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.runs.get(params["deploymentId"])
        if run is None:
            raise LocalError("DeploymentDoesNotExistException", "no such deployment")
        with run.lock:
            if str(self._info(run.deployment_id).status) in ("Succeeded", "Failed", "Stopped"):
                raise LocalError("DeploymentAlreadyCompletedException", f"deployment {run.deployment_id} has already completed")
            run.roll_back_on_stop = bool(params.get("autoRollbackEnabled", True))
            run.stop_requested = True
        if not run.roll_back_on_stop:
            return {"status": "Pending", "statusMessage": "stop requested; traffic stays where it is"}
        return {"status": "Pending", "statusMessage": "stop requested; the deployment rolls back"}

    # --- the engine -----------------------------------------------------------------------------------
    def _run_safely(self, deployment_id: str) -> None:
        try:
            self._run(deployment_id)
        except _Shutdown:
            return
        except Exception as exc:
            if self.stopping.is_set():  # moto may be reset under it already: nothing left to record the failure on
                return
            self._finish(deployment_id, "Failed", "INTERNAL_ERROR", f"local CodeDeploy engine error: {exc}", rolled_back=True)

    def _info(self, deployment_id: str) -> Any:
        return self.backend.deployments[deployment_id]

    def _alias(self) -> Any:
        return lambda_backend(self.account, self.region)

    def _release_of(self, info: Any) -> str:
        match = re.search(r"release=(\S+)", info.description or "")
        return match.group(1) if match else ""

    def _run(self, deployment_id: str) -> None:
        info = self._info(deployment_id)
        release = self._release_of(info)
        revision = info.revision if isinstance(info.revision, dict) else json.loads(info.revision)
        spec = json.loads(revision["appSpecContent"]["content"])
        props = next(iter(spec["Resources"][0].values()))["Properties"]
        function, alias, current, target = props["Name"], props["Alias"], str(props["CurrentVersion"]), str(props["TargetVersion"])
        hooks = {k: v for hook in spec.get("Hooks", []) for k, v in hook.items()}
        group = self.backend.deployment_groups[info.application_name][info.deployment_group_name]
        steps = traffic_steps(str(info.deployment_config_name))
        info.status, info.start_time = "InProgress", time.time()
        self._state_change(info, "START")
        env = info.deployment_group_name
        self.timeline.add("codedeploy", f"{env}: deployment {deployment_id[:8]} started, version {current} -> {target} "
                          f"({info.deployment_config_name})", release)
        self._reset_alarms(group)

        if "BeforeAllowTraffic" in hooks and not self._hook(deployment_id, "BeforeAllowTraffic", hooks["BeforeAllowTraffic"], release, env):
            self._finish(deployment_id, "Failed", "HOOK_EXECUTION_FAILURE",
                         "the BeforeAllowTraffic hook reported Failed: the new version did not pass its health checks", rolled_back=True)
            return
        lam = self._alias()
        for weight, minutes in steps:
            if weight < 1.0:
                lam.update_alias(alias, function, current, "", {"AdditionalVersionWeights": {target: weight}})
                self.timeline.add("codedeploy", f"{env}: {int(weight * 100)}% of traffic on version {target}, baking "
                                  f"{minutes} min (locally {minutes * self.minute_seconds:.0f}s)", release)
                verdict = self._bake(deployment_id, group, function, alias, minutes * self.minute_seconds, release)
                if verdict and verdict[0] == "DEPLOYMENT_STOPPED" and not self.runs[deployment_id].roll_back_on_stop:
                    self._finish(deployment_id, "Stopped", verdict[0], "the deployment was stopped on request; "
                                 f"traffic left as it was ({int(weight * 100)}% on version {target})", rolled_back=False)
                    return
                if verdict:
                    self._rollback(function, alias, current)
                    code, message = verdict
                    self._finish(deployment_id, "Stopped", code, message, rolled_back=True)
                    return
            else:
                lam.update_alias(alias, function, target, "", {"AdditionalVersionWeights": {}})
                self.timeline.add("codedeploy", f"{env}: 100% of traffic on version {target}", release)
        if "AfterAllowTraffic" in hooks and not self._hook(deployment_id, "AfterAllowTraffic", hooks["AfterAllowTraffic"], release, env):
            self._rollback(function, alias, current)
            self._finish(deployment_id, "Failed", "HOOK_EXECUTION_FAILURE",
                         "the AfterAllowTraffic hook reported Failed: the live alias did not pass its checks", rolled_back=True)
            return
        with self.runs[deployment_id].lock:
            if self.runs[deployment_id].stop_requested:  # StopDeployment before it completed: it rolls back
                if not self.runs[deployment_id].roll_back_on_stop:
                    self._finish(deployment_id, "Stopped", "DEPLOYMENT_STOPPED", "the deployment was stopped on request; "
                                 "traffic left as it was", rolled_back=False)
                    return
                self._rollback(function, alias, current)
                self._finish(deployment_id, "Stopped", "DEPLOYMENT_STOPPED", "the deployment was stopped on request and rolled back",
                             rolled_back=True)
                return
            self._finish(deployment_id, "Succeeded", "", "", rolled_back=False)

    def _hook(self, deployment_id: str, phase: str, hook_function: str, release: str, env: str) -> bool:
        runtime = self.runtime_ref()
        run = self.runs[deployment_id]
        execution_id = str(uuid.uuid4())
        run.events[execution_id] = phase
        function = runtime.stack.function_by_name(hook_function) if runtime else None
        if function is None:
            return False
        event = {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}
        threading.Thread(target=runtime.run_async, args=(function, None, event), daemon=True).start()  # type: ignore[union-attr]
        deadline = time.time() + self.hook_timeout
        while time.time() < deadline and execution_id not in run.hook_status and not run.stop_requested:
            if self.stopping.wait(0.05):
                raise _Shutdown
        status = run.hook_status.get(execution_id, "Failed (no status reported in time)")
        self.timeline.add("codedeploy", f"{env}: {phase} hook {status}", release)
        return status == "Succeeded"

    def _reset_alarms(self, group: Any) -> None:
        """A new deployment starts with its alarms evaluated afresh (OK), as after a quiet period."""
        cw = cloudwatch_backends[self.account][self.region]
        for alarm in (group.alarm_configuration or {}).get("alarms", []) if isinstance(group.alarm_configuration, dict) else []:
            if alarm["name"] in cw.alarms:
                cw.set_alarm_state(alarm["name"], "new deployment: evaluated afresh", "{}", "OK")

    def _alarm_names(self, group: Any) -> list[str]:
        config = group.alarm_configuration
        if isinstance(config, dict):
            return [a["name"] for a in config.get("alarms", [])] if config.get("enabled", True) else []
        return [a["name"] if isinstance(a, dict) else str(a) for a in getattr(config, "alarms", [])]

    def _latency_alarms(self, names: list[str]) -> dict[str, float]:
        """Of the group's alarms, those on the function's p99 Duration: name -> threshold in seconds
        (the template's alarm is metric math, `duration / 1000`, against LatencyAlarmSeconds)."""
        cw = cloudwatch_backends[self.account][self.region]
        found = {}
        for name in names:
            alarm = cw.alarms.get(name)
            queries = getattr(alarm, "metric_data_queries", None) or []
            metrics = [getattr(q, "metric_stat", None) or {} for q in queries]
            if alarm is not None and (alarm.metric_name == "Duration" or any("Duration" in json.dumps(m, default=str) for m in metrics)):
                found[name] = float(alarm.threshold)
        return found

    def _bake(self, deployment_id: str, group: Any, function: str, alias: str, seconds: float, release: str) -> tuple[str, str] | None:
        """Synthetic traffic through the alias during the bake, evaluated as CloudWatch would: errors
        trip the group's error alarms, a p99 duration (podinfo's own time on each request) over a
        latency alarm's threshold trips that alarm."""
        runtime = self.runtime_ref()
        cw = cloudwatch_backends[self.account][self.region]
        alarms = self._alarm_names(group)
        latency = self._latency_alarms(alarms)
        local_fn = runtime.stack.function_by_name(function) if runtime else None
        deadline = time.time() + seconds
        sent = errors = 0
        durations: list[float] = []
        while True:
            if self.stopping.is_set():
                raise _Shutdown
            if self.runs[deployment_id].stop_requested:
                return ("DEPLOYMENT_STOPPED", "the deployment was stopped on request and rolled back")
            if runtime and local_fn and sent < self.canary_requests:
                for _ in range(self.canary_requests // 4 or 1):
                    reply = runtime.run(local_fn, alias, {"rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}})
                    sent += 1
                    errors += "error" in reply
                    # the stand-in's reply is under "result" (as Lambda's Invoke answers it)
                    if (took := server_seconds(reply.get("result") or reply)) is not None:
                        durations.append(took)
                    # What Lambda publishes for the alias (read back by the approval's bake figures).
                    put_points(self.account, self.region, "AWS/Lambda", {"FunctionName": function, "Resource": f"{function}:{alias}"},
                               {"Invocations": (1, "Count"), "Errors": (float("error" in reply), "Count")}
                               | ({"Duration": (took * 1000, "Milliseconds")} if took is not None else {}))
                    if self._evaluate(cw, [n for n in alarms if n not in latency], latency, errors, sent, durations, release):
                        break
            active = [name for name in alarms if name in cw.alarms and cw.alarms[name].state_value == "ALARM"]
            if active:
                return ("ALARM_ACTIVE", f"alarm(s) {', '.join(active)} went into ALARM during the canary; traffic was moved back")
            if time.time() >= deadline:
                return None
            self.stopping.wait(min(0.1, max(deadline - time.time(), 0)))

    def _evaluate(self, cw: Any, error_alarms: list[str], latency: dict[str, float], errors: int, sent: int,
                  durations: list[float], release: str) -> bool:
        """Put the alarms the canary traffic so far breaches into ALARM; True when one is."""
        breached: list[tuple[str, str]] = []
        if errors:
            breached += [(name, f"{errors} errors in {sent} canary requests") for name in error_alarms]
        p99 = p99_seconds(durations)
        breached += [(name, f"p99 duration {p99:.2f}s over {limit:g}s in {len(durations)} canary requests")
                     for name, limit in latency.items() if durations and p99 > limit]
        for name, why in breached:
            if name in cw.alarms and cw.alarms[name].state_value != "ALARM":
                cw.set_alarm_state(name, f"Threshold Crossed: {why} (evaluated locally)", json.dumps({"p99": p99, "errors": errors}), "ALARM")
                self.timeline.add("cloudwatch", f"alarm {name} -> ALARM ({why})", release)
        return bool(breached)

    def _rollback(self, function: str, alias: str, current: str) -> None:
        self._alias().update_alias(alias, function, current, "", {"AdditionalVersionWeights": {}})

    def _finish(self, deployment_id: str, status: str, code: str, message: str, rolled_back: bool) -> None:
        info = self._info(deployment_id)
        info.status, info.complete_time = status, time.time()
        release = self._release_of(info)
        if code:
            info.error_information = {"code": code, "message": message}
        if rolled_back:
            info.rollback_message = f"rolled back: {message}"
        text = f"{info.deployment_group_name}: deployment {deployment_id[:8]} {status}"
        self.timeline.add("codedeploy", text + (f" ({code}: {message})" if code else ""), release)
        self._state_change(info, {"Succeeded": "SUCCESS", "Failed": "FAILURE", "Stopped": "STOP"}[status])

    def _state_change(self, info: Any, state: str) -> None:
        """The event CodeDeploy sends to EventBridge on each deployment state change (as documented for
        "CodeDeploy Deployment State-change Notification")."""
        if self.emit is None or self.stopping.is_set():
            return
        if self.drop_state_change_events:
            self.timeline.add("eventbridge", f"{info.deployment_group_name}: {state} event of deployment "
                              f"{info.deployment_id[:8]} lost (test)", self._release_of(info))
            return
        group = self.backend.deployment_groups[info.application_name][info.deployment_group_name]
        self.emit({
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "CodeDeploy Deployment State-change Notification",
            "source": "aws.codedeploy", "account": self.account, "region": self.region,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resources": [f"arn:aws:codedeploy:{self.region}:{self.account}:application:{info.application_name}",
                          f"arn:aws:codedeploy:{self.region}:{self.account}:deploymentgroup:{info.application_name}/"
                          f"{info.deployment_group_name}"],
            "detail": {"region": self.region, "deploymentId": info.deployment_id, "instanceGroupId": str(group.deployment_group_id),
                       "deploymentGroup": info.deployment_group_name, "state": state, "application": info.application_name},
        })



_patches = Patches()


def report_group_alarms() -> None:
    """GetDeploymentGroup answers the group's alarm configuration (moto answers {}), as CodeDeploy does."""
    original = DeploymentGroup.to_dict

    def to_dict(self: Any) -> dict[str, Any]:
        return original(self) | ({"alarmConfiguration": self.alarm_configuration} if self.alarm_configuration else {})

    _patches.patch(DeploymentGroup, "to_dict", to_dict)


def install(current: Current) -> None:
    """A created deployment runs; hook status and stop are accepted; a deployment reports its error and rollback."""
    report_group_alarms()
    original_create = CodeDeployBackend.create_deployment

    def create_deployment(self: CodeDeployBackend, *args: Any, **kwargs: Any) -> str:
        deployment_id = original_create(self, *args, **kwargs)
        current().codedeploy.start(deployment_id)
        return deployment_id

    _patches.patch(CodeDeployBackend, "create_deployment", create_deployment)

    def action(method: str) -> Callable[[CodeDeployResponse], Any]:
        def respond(self: CodeDeployResponse) -> Any:
            try:
                return 200, {}, json.dumps(getattr(current().codedeploy, method)(json.loads(self.body or "{}")))
            except LocalError as exc:
                return error_response(exc)
        return respond

    _patches.patch(CodeDeployResponse, "put_lifecycle_event_hook_execution_status", action("put_hook_status"))
    _patches.patch(CodeDeployResponse, "stop_deployment", action("stop"))
    original_to_dict = DeploymentInfo.to_dict

    def to_dict(self: Any) -> dict[str, Any]:
        data = original_to_dict(self)
        data["errorInformation"] = getattr(self, "error_information", {})
        if getattr(self, "rollback_message", ""):
            data["rollbackInfo"] = {"rollbackMessage": self.rollback_message}
        return data

    _patches.patch(DeploymentInfo, "to_dict", to_dict)


def uninstall() -> None:
    _patches.restore()
