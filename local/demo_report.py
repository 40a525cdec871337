"""What the demo prints, and how it judges a scenario's end.

While a release runs: its timeline (each state entered and left, each failed task) from the
execution history. When it has ended: what is wrong with the end state for the scenario (Lambda
aliases, the fleets, the prod repository, the locks), the release's summary, and the verdict the
demo exits with. The scenarios themselves are `local.demo`'s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from local.images import Pushed
from local.runtime import PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime

if TYPE_CHECKING:
    from local.demo import Scenario  # the scenario table, which runs its scenarios with this module

HIDDEN_STATES = re.compile(r"^(Wait|Check)(Dev|Prod)$|\?$")


class Printer:
    """Prints timeline lines: elapsed, source, what happened, correlation id."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock = threading.Lock()

    def line(self, source: str, text: str, release: str = "") -> None:
        with self.lock:
            rid = f"  [{release}]" if release else ""
            print(f"{time.time() - self.started:7.1f}s  {source:<11} {text}{rid}", flush=True)


def follow_execution(env: LocalRuntime, arn: str, printer: Printer, release: str, stop: threading.Event) -> None:
    sfn = env.client("stepfunctions")
    seen = 0
    entered: dict[str, float] = {}
    while not stop.is_set():
        try:
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        except Exception:
            time.sleep(0.2)
            continue
        for event in events[seen:]:
            kind = event["type"]
            stamp = event["timestamp"].timestamp()
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                entered[name] = stamp
                if not HIDDEN_STATES.search(name):
                    printer.line("release", f"{name:<17} started", release)
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                took = stamp - entered.get(name, stamp)
                if not HIDDEN_STATES.search(name):
                    printer.line("release", f"{name:<17} done      {took:6.1f}s", release)
            elif kind in ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut"):
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                cause = _cause(details.get("cause", ""))
                printer.line("release", f"task failed: {details.get('error', '?')}: {cause[:160]}", release)
        seen = len(events)
        time.sleep(0.2)


def _cause(cause: str) -> str:
    try:
        parsed = json.loads(cause)
        return str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause
    except ValueError:
        return cause


#: Refusals that come after dev was deployed (at or after the approval): dev keeps the new digest.
DEV_RUNS_AFTER = ("ApprovalRejected", "ApprovalTimedOut", "ProvenanceMismatch", "OutsideDeployWindow")


def check_outcome(env: LocalRuntime, scenario: Scenario, image: Pushed, execution: dict[str, Any]) -> list[str]:
    """What is wrong with the end state for this scenario (empty when all is as expected)."""
    problems = []
    status = execution["status"]
    error = execution.get("error")
    if status != scenario.expect_status:
        problems.append(f"release ended {status}, expected {scenario.expect_status}")
    if scenario.expect_error and error != scenario.expect_error:
        problems.append(f"release failed with {error}, expected {scenario.expect_error}")
    lam = env.client("lambda")
    ecr = env.client("ecr")
    outputs = env.stack.outputs
    prod_images = ecr.describe_images(repositoryName=PROD_REPOSITORY)["imageDetails"]
    promoted = any(detail["imageDigest"] == image.digest for detail in prod_images)
    for key, environment in (("PodinfoDevFunctionName", "dev"), ("PodinfoProdFunctionName", "prod")):
        alias = lam.get_alias(FunctionName=outputs[key], Name="live")
        code = lam.get_function(FunctionName=outputs[key], Qualifier=alias["FunctionVersion"])["Code"]
        live = code["ImageUri"].endswith(image.digest)
        should = scenario.expect_status == "SUCCEEDED" or (environment == "dev" and scenario.expect_error in DEV_RUNS_AFTER)
        if (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
            problems.append(f"{environment} alias is left mid-shift: {alias['RoutingConfig']}")
        if live != should:
            problems.append(f"{environment} live alias {'runs' if live else 'does not run'} the new digest")
        problems.extend(fleet_problems(env, environment, image.digest, should))
    if promoted != (scenario.expect_status == "SUCCEEDED"):
        problems.append(f"prod repository {'has' if promoted else 'lacks'} the digest")
    holders = [env_ for env_ in ("dev", "prod")
               if env.client("dynamodb").get_item(TableName=outputs["LedgerTableName"], Key={"pk": {"S": f"lock#{env_}"}}).get("Item")]
    if holders:
        problems.append(f"locks still held: {holders}")
    return problems


def fleet_view(env: LocalRuntime, environment: str) -> dict[str, Any]:
    """The environment's fleet as AWS describes it: listener weights, and per colour the image its
    Auto Scaling group launches and how many instances it runs."""
    elb, asg = env.client("elbv2"), env.client("autoscaling")
    physical = env.stack.physical
    prefix = f"Fleet{environment.capitalize()}"
    listener = elb.describe_listeners(ListenerArns=[physical[f"{prefix}Listener"]])["Listeners"][0]
    by_arn = {physical[f"{prefix}{c.capitalize()}"]: c for c in ("blue", "green")}
    forward = listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    view: dict[str, Any] = {"weights": {by_arn[g["TargetGroupArn"]]: int(g["Weight"]) for g in forward}}
    for colour in ("blue", "green"):
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[physical[f"{prefix}{colour.capitalize()}Group"]])["AutoScalingGroups"][0]
        tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        view[colour] = {"image": tags.get("podinfo-image", ""), "instances": len(group.get("Instances", []))}
    return view


def fleet_problems(env: LocalRuntime, environment: str, digest: str, should_run: bool) -> list[str]:
    """What is wrong with the environment's fleet: traffic must be whole on one colour, that colour
    must run the new digest exactly when `should_run`, and the other colour must be scaled to zero."""
    view = fleet_view(env, environment)
    live = [c for c, w in view["weights"].items() if w == 100]
    if len(live) != 1:
        return [f"{environment} fleet is left mid-shift: {view['weights']}"]
    idle = "green" if live[0] == "blue" else "blue"
    problems = []
    if view[live[0]]["image"].endswith(digest) != should_run:
        problems.append(f"{environment} fleet's live colour {live[0]} {'runs' if not should_run else 'does not run'} the new digest")
    if view[live[0]]["instances"] == 0:
        problems.append(f"{environment} fleet's live colour {live[0]} has no instances")
    if view[idle]["instances"]:
        problems.append(f"{environment} fleet's idle colour {idle} still runs {view[idle]['instances']} instances")
    return problems


def print_release(env: LocalRuntime, scenario: Scenario, release: str, image: Pushed, execution: dict[str, Any]) -> None:
    """The release's summary: its image, how it ended and why, the ledger's record, the emails sent."""
    record = env.client("dynamodb").get_item(TableName=env.stack.outputs["LedgerTableName"],
                                             Key={"pk": {"S": f"release#{release}"}}).get("Item", {})
    print(flush=True)
    print(f"== release {release}", flush=True)
    print(f"   image    {'(none: only an event was delivered)' if scenario.event_only else f'{WORKLOAD_REPOSITORY}@{image.digest}'}",
          flush=True)
    print(f"   ended    {execution['status']}" + (f" with {execution.get('error')}" if execution.get("error") else ""), flush=True)
    if execution.get("cause"):
        print(f"   why      {_cause(execution['cause'])[:300]}", flush=True)
    if record:
        print(f"   ledger   outcome={record.get('outcome', {}).get('S')} stopped_at={record.get('stopped_at', {}).get('S', '-')}",
              flush=True)
    print(f"   emails   {len(env.emulation.outbox.messages)} in {env.emulation.outbox.folder}", flush=True)


def verdict(env: LocalRuntime, scenario: Scenario, problems: list[str], started: float) -> int:
    """The scenario's last lines: where the logs are, how long it took, and whether it ended as expected."""
    print(f"   logs     {env.work_dir / 'logs'}", flush=True)
    print(f"   took     {time.time() - started:.1f}s", flush=True)
    if problems:
        print(f"== scenario {scenario.name}: NOT as expected: " + "; ".join(problems), flush=True)
        return 1
    print(f"== scenario {scenario.name}: ended as expected", flush=True)
    return 0
