"""Deploying podinfo's EC2 target: blue/green Auto Scaling groups behind one ALB listener.

Each environment has a listener whose default action forwards by weight to two target groups
(blue, green), one Auto Scaling group per colour, and header rules (`X-Podinfo-Colour`) that reach
one colour directly. A release never changes a running instance: it starts fresh instances of the
idle colour with the release's image (the group's `podinfo-image` tag, read by each instance at
boot), checks them, and moves the listener's weights in canary steps. Rollback is moving the
weights back: the previous colour keeps running until the new one has all the traffic and passed
its post-traffic checks, and only then is it scaled to zero.

The controller is driven by the release's poll loop: `start` returns a state, each `advance`
takes the last state and returns the next one (or raises DeploymentFailed after rolling back), and
`abort` rolls back whatever a failed release left in flight. Every call is safe to repeat.

Phases: `draining` (old instances of the idle colour are going) -> `launching` (new ones boot and
pass the target group's health checks) -> pre-traffic checks -> `shifting` (canary steps, the fleet
alarm checked at every poll) -> post-traffic checks -> `shifted` (all traffic on the new colour, the
old one still running until the release's Lambda target is done as well, so either target failing
still rolls both back) -> `retiring` (old colour scaled to zero) -> `Succeeded`.

A live colour with no healthy instance (scaled to zero by hand, or never up) serves no one: a
release still brings up the idle colour and checks it, but then moves all traffic at once (a canary
would only keep most clients on errors longer), and a digest is "already live" only on a live
colour that has healthy instances.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podrelease.core.errors import ConfigurationError, DeploymentFailed

COLOURS = ("blue", "green")
IMAGE_TAG = "podinfo-image"
RELEASE_TAG = "podinfo-release"
ROLE_TAG = "podinfo-role"  # "live" on the colour that last passed a whole release, "idle" on the other
COLOUR_HEADER = "X-Podinfo-Colour"
CHECK_PATHS = ("/healthz", "/readyz", "/version")
_CANARY = re.compile(r"Canary(?P<pct>\d+)Percent(?P<min>\d+)Minutes?$")
_LINEAR = re.compile(r"Linear(?P<pct>\d+)PercentEvery(?P<min>\d+)Minutes?$")

HttpGet = Callable[[str, dict[str, str]], tuple[int, str]]  # (url, headers) -> (status, body)


def canary_plan(config_name: str) -> tuple[list[int], int]:
    """Traffic percentages for the new colour and the minutes between steps, from a CodeDeploy
    deployment configuration name (the same parameter that drives the Lambda canary)."""
    name = config_name.rsplit(".", 1)[-1]
    if name.endswith("AllAtOnce"):
        return [100], 0
    if match := _CANARY.search(name):
        return [int(match["pct"]), 100], int(match["min"])
    if match := _LINEAR.search(name):
        pct = int(match["pct"])
        return [min(100, pct * i) for i in range(1, -(-100 // pct) + 1)], int(match["min"])
    msg = f"deployment configuration {config_name!r} names no canary, linear or all-at-once schedule the fleet can follow"
    raise ConfigurationError(msg)


@dataclass(frozen=True)
class FleetTarget:
    """One environment's fleet, as the template passes it (FLEET_<ENV> JSON)."""

    environment: str
    listener: str
    groups: dict[str, str]
    target_groups: dict[str, str]
    alarm: str
    url: str
    size: int
    steps: tuple[int, ...]
    interval_seconds: float
    launch_timeout_seconds: float

    @classmethod
    def from_env(cls, environment: str, text: str, minute_seconds: float = 60.0) -> FleetTarget | None:
        """None when the stack has no fleet (empty value)."""
        if not text.strip():
            return None
        try:
            spec = json.loads(text)
            steps, minutes = canary_plan(spec["canary"])
            return cls(
                environment=environment,
                listener=spec["listener"],
                groups={c: spec[f"{c}_group"] for c in COLOURS},
                target_groups={c: spec[f"{c}_target_group"] for c in COLOURS},
                # One alarm name, or the stack's alarm name prefix once and the alarms' suffixes (the
                # template's form: the function's environment stays under Lambda's 4 KB).
                alarm=",".join(spec["alarm_prefix"] + suffix for suffix in spec["alarms"].split(","))
                if "alarms" in spec else spec["alarm"],
                url=spec["url"].rstrip("/"),
                size=int(spec["size"]),
                steps=tuple(steps),
                interval_seconds=minutes * minute_seconds,
                launch_timeout_seconds=15 * minute_seconds,
            )
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"FLEET_{environment.upper()} is not a fleet description ({type(exc).__name__}: {exc})"
            raise ConfigurationError(msg) from exc


def http_get(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - the fleet's own ALB URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            return int(reply.status), reply.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(4096).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"no answer: {exc}"


class Fleet:
    def __init__(self, elb: Any, autoscaling: Any, cloudwatch: Any, target: FleetTarget, get: HttpGet = http_get,
                 clock: Callable[[], float] = time.time) -> None:
        self.elb, self.asg, self.cw, self.target, self.get, self.clock = elb, autoscaling, cloudwatch, target, get, clock

    # -- what AWS says -----------------------------------------------------------------------------------
    def weights(self) -> dict[str, int]:
        listener = self.elb.describe_listeners(ListenerArns=[self.target.listener])["Listeners"][0]
        by_arn = {arn: colour for colour, arn in self.target.target_groups.items()}
        weights = dict.fromkeys(COLOURS, 0)
        for action in listener.get("DefaultActions", []):
            forward = action.get("ForwardConfig") or {}
            for group in forward.get("TargetGroups", []):
                if group["TargetGroupArn"] in by_arn:
                    weights[by_arn[group["TargetGroupArn"]]] = int(group.get("Weight", 0))
            if action.get("TargetGroupArn") in by_arn and not forward:
                weights[by_arn[action["TargetGroupArn"]]] = 100
        return weights

    def group(self, colour: str) -> dict[str, Any]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.target.groups[colour]])["AutoScalingGroups"]
        if not groups:
            msg = f"Auto Scaling group {self.target.groups[colour]} ({self.target.environment} {colour}) does not exist"
            raise DeploymentFailed(msg)
        return dict(groups[0])

    def tags_of(self, colour: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.group(colour).get("Tags", [])}

    def image_of(self, colour: str) -> str:
        return str(self.tags_of(colour).get(IMAGE_TAG, ""))

    def live_colour(self, weights: dict[str, int]) -> str:
        """The colour serving the environment: the one with all the traffic or, when a crashed
        release left it split, the one that last passed a whole release (its ROLE_TAG), however the
        weights lean: the other one never passed its checks."""
        whole = [c for c in COLOURS if weights[c] == 100]
        if whole:
            return whole[0]
        marked = [c for c in COLOURS if self.tags_of(c).get(ROLE_TAG) == "live"]
        if len(marked) == 1:
            return marked[0]
        return max(COLOURS, key=lambda c: (weights[c], c == "blue"))

    def _mark_live(self, colour: str) -> None:
        for each in COLOURS:
            self._set_tags(each, {ROLE_TAG: "live" if each == colour else "idle"}, propagate=False)

    def healthy(self, colour: str) -> list[str]:
        """The colour's instances that pass the target group's health check."""
        return [instance for instance, state in self.health(colour).items() if state == "healthy"]

    def health(self, colour: str) -> dict[str, str]:
        """Instance id -> target health state, for the instances of the colour's group."""
        instances = {i["InstanceId"] for i in self.group(colour).get("Instances", []) if i.get("LifecycleState") == "InService"}
        described = self.elb.describe_target_health(TargetGroupArn=self.target.target_groups[colour])["TargetHealthDescriptions"]
        states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in described}
        return {i: states.get(i, "unused") for i in sorted(instances)}

    def alarm_state(self) -> tuple[str, str, str]:
        """The fleet's rollback alarms (`alarm`: one name or several, comma-separated: errors, latency,
        the prober) as one: (state, reason, name), ALARM with the first alarm in ALARM."""
        names = [name for name in self.target.alarm.split(",") if name]
        alarms = self.cw.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
        if not alarms:
            return "INSUFFICIENT_DATA", f"alarm {self.target.alarm} not found", self.target.alarm
        chosen = next((a for a in alarms if a["StateValue"] == "ALARM"), alarms[0])
        return str(chosen["StateValue"]), str(chosen.get("StateReason", "")), str(chosen["AlarmName"])

    # -- what the controller changes -----------------------------------------------------------------------
    def set_weights(self, weights: dict[str, int]) -> None:
        groups = [{"TargetGroupArn": self.target.target_groups[c], "Weight": weights[c]} for c in COLOURS]
        self.elb.modify_listener(ListenerArn=self.target.listener,
                                 DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}])

    def scale(self, colour: str, size: int) -> None:
        self.asg.update_auto_scaling_group(AutoScalingGroupName=self.target.groups[colour], MinSize=0,
                                           MaxSize=max(size, self.target.size), DesiredCapacity=size)

    def tag(self, colour: str, image_uri: str, release_id: str) -> None:
        """What the colour's next instances boot (they read these tags at start)."""
        self._set_tags(colour, {IMAGE_TAG: image_uri, RELEASE_TAG: release_id}, propagate=True)

    def _set_tags(self, colour: str, tags: dict[str, str], propagate: bool) -> None:
        self.asg.create_or_update_tags(Tags=[
            {"ResourceId": self.target.groups[colour], "ResourceType": "auto-scaling-group", "Key": key, "Value": value,
             "PropagateAtLaunch": propagate}
            for key, value in tags.items()
        ])

    def checks(self, colour: str | None, correlation_id: str) -> list[dict[str, Any]]:
        """podinfo's health and version endpoints through the ALB: on one colour (header rule) or
        on the listener's weighted default (colour None)."""
        headers = {"X-Correlation-Id": correlation_id, "User-Agent": "podinfo-release-fleet-check", "Accept": "application/json"}
        if colour:
            headers[COLOUR_HEADER] = colour
        results = []
        for path in CHECK_PATHS:
            status, body = self.get(self.target.url + path, headers)
            ok = status == 200
            if ok and path == "/version":
                try:
                    ok = bool(json.loads(body).get("version"))
                except (ValueError, AttributeError):
                    ok = False
            results.append({"path": path, "ok": ok, "status": status, "detail": body[:200]})
        return results

    # -- the controller --------------------------------------------------------------------------------------
    def start(self, release_id: str, digest: str, image_uri: str, *, all_at_once: bool = False) -> dict[str, Any]:
        """`all_at_once` (a fast rollback): one step to 100 % after the pre-traffic checks, the post-traffic checks still run."""
        if "@sha256:" not in image_uri or not image_uri.endswith("@" + digest):
            msg = f"refusing to deploy {image_uri!r} to the {self.target.environment} fleet: a release deploys by digest only"
            raise DeploymentFailed(msg)
        weights = self.weights()
        live = self.live_colour(weights)
        idle = next(c for c in COLOURS if c != live)
        state = {"environment": self.target.environment, "release": release_id, "image": image_uri, "live": live,
                 "idle": idle, "weights": weights, "step": -1, "since": self.clock(), "checks": []}
        # What the approval page measures dev's bake with (podrelease.approval.bake): when it began, the
        # planned steps, the listener (its load balancer's metrics) and the rollback alarms.
        state |= {"started": state["since"], "steps_planned": [100] if all_at_once else list(self.target.steps),
                  "step_seconds": 0 if all_at_once else self.target.interval_seconds,
                  "listener": self.target.listener, "alarms": self.target.alarm}
        if all_at_once:
            state["steps"] = [100]
        if weights[live] == 100 and self.image_of(live) == image_uri and self.healthy(live):
            return state | {"phase": "Succeeded", "note": f"{digest} is already live on the {self.target.environment} fleet"}
        if weights[idle]:
            # A crashed release left traffic split: take it all back first.
            self.set_weights({live: 100, idle: 0})
        self.tag(idle, image_uri, release_id)
        if self.group(idle).get("Instances"):
            self.scale(idle, 0)
            return state | {"phase": "draining"}
        self.scale(idle, self.target.size)
        return state | {"phase": "launching"}

    def advance(self, state: dict[str, Any], retire: bool = True) -> dict[str, Any]:
        """The next state. `retire` False holds a fully shifted fleet with its previous colour still
        running (so it can still be rolled back) until the release's other target is done too."""
        phase = state["phase"]
        if phase == "Succeeded":
            return state
        now = self.clock()
        live, idle = state["live"], state["idle"]
        if phase == "draining":
            if self.group(idle).get("Instances"):
                return state
            self.scale(idle, self.target.size)
            return state | {"phase": "launching", "since": now}
        if phase == "launching":
            return self._launching(state, now)
        if phase == "shifting":
            return self._shifting(state, now)
        if phase == "shifted":
            if not retire:
                return state
            self._mark_live(idle)
            self.scale(live, 0)
            return state | {"phase": "retiring", "since": now}
        if phase == "retiring":
            if self.group(live).get("Instances"):
                return state
            return state | {"phase": "Succeeded", "since": now}
        msg = f"unknown fleet phase {phase!r}"
        raise DeploymentFailed(msg)

    def _launching(self, state: dict[str, Any], now: float) -> dict[str, Any]:
        idle, release = state["idle"], state["release"]
        health = self.health(idle)
        healthy = [i for i, s in health.items() if s == "healthy"]
        if len(healthy) < self.target.size:
            if now - state["since"] > self.target.launch_timeout_seconds:
                self._roll_back(state)
                detail = ", ".join(f"{i}: {s}" for i, s in health.items()) or "no instance in service"
                msg = (f"{self.target.environment} fleet: the {idle} instances did not pass the /readyz health check within "
                       f"{self.target.launch_timeout_seconds:g}s ({detail}) and were scaled to zero; "
                       f"{state['live']} kept all traffic")
                raise DeploymentFailed(msg)
            return state | {"health": health}
        checks = self.checks(idle, release)
        self._require(state, checks, f"pre-traffic checks failed on the {idle} colour ({{failed}}); "
                                     f"it was scaled to zero and {state['live']} kept all traffic")
        state = state | {"health": health, "checks": [{"phase": "pre-traffic", "results": checks}]}
        if not self.healthy(state["live"]):
            # Nothing to protect: skip the canary steps; the post-traffic checks and the alarm still decide.
            note = f"{state['live']} had no healthy instance, so all traffic moved to {idle} at once"
            return self._shift_to(state | {"note": note}, len(self._steps(state)) - 1, now)
        return self._shift_to(state, 0, now)

    def _steps(self, state: dict[str, Any]) -> list[int]:
        """The release's traffic steps: the target's canary, or one step when it asked for all at once."""
        return [int(p) for p in state.get("steps") or self.target.steps]

    def _shift_to(self, state: dict[str, Any], step: int, now: float) -> dict[str, Any]:
        percent = self._steps(state)[step]
        weights = {state["idle"]: percent, state["live"]: 100 - percent}
        self.set_weights(weights)
        return state | {"phase": "shifting", "step": step, "since": now, "weights": weights}

    def _shifting(self, state: dict[str, Any], now: float) -> dict[str, Any]:
        alarm, reason, name = self.alarm_state()
        if alarm == "ALARM":
            self._roll_back(state)
            msg = (f"{self.target.environment} fleet canary at {state['weights'][state['idle']]}%: alarm {name} "
                   f"is in ALARM ({reason}); traffic moved back to {state['live']} and {state['idle']} was scaled to zero")
            raise DeploymentFailed(msg)
        step, steps = state["step"], self._steps(state)
        if step + 1 < len(steps):
            if state.get("finish"):  # an operator ended the bake (podrelease finish): the last step now
                return self._shift_to(state, len(steps) - 1, now)
            if now - state["since"] < self.target.interval_seconds:
                return state
            return self._shift_to(state, step + 1, now)
        checks = self.checks(None, state["release"])
        self._require(state, checks, f"post-traffic checks failed ({{failed}}); traffic moved back to "
                                     f"{state['live']} and {state['idle']} was scaled to zero")
        checks_so_far = [*state["checks"], {"phase": "post-traffic", "results": checks}]
        return state | {"phase": "shifted", "since": now, "checks": checks_so_far}

    def _require(self, state: dict[str, Any], checks: list[dict[str, Any]], failure: str) -> None:
        """Roll back and raise DeploymentFailed (`failure` with the failed checks) unless all passed."""
        if all(c["ok"] for c in checks):
            return
        self._roll_back(state)
        failed = "; ".join(f"{c['path']} -> {c['status']}" for c in checks if not c["ok"])
        raise DeploymentFailed(f"{self.target.environment} fleet: " + failure.format(failed=failed))

    def _roll_back(self, state: dict[str, Any]) -> None:
        self.set_weights({state["live"]: 100, state["idle"]: 0})
        self.scale(state["idle"], 0)

    def abort(self, state: dict[str, Any]) -> str | None:
        """Roll back a deployment a failed release left in flight; None when there was nothing to undo."""
        if state.get("phase") in (None, "Succeeded", "retiring"):
            return None
        self._roll_back(state)
        return f"{self.target.environment} fleet: traffic back on {state['live']}, {state['idle']} scaled to zero"


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """The fields worth showing in the release record and the approval page."""
    keys = ("phase", "live", "idle", "weights", "image", "note")
    return {k: state[k] for k in keys if k in state}
