"""The `rollback` scenario: prod rolled back on demand to the previous release's digest.

Two signed images are released to prod one after the other (approved on the approval page); then
the operator runs `podrelease --local rollback prod` (the command, in this process, against this
runtime). The scenario ends as expected only when the rollback release succeeded, re-verified under
today's prod policy, prod (its function and its fleet) runs the first release's digest again, dev is
untouched, the ledger records the rollback with who asked and what it replaced, and no lock is held.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.demo_report import Printer, fleet_problems, follow_execution, print_release, verdict
from local.images import Pushed
from local.runtime import APPROVERS, WORKLOAD_REPOSITORY, LocalRuntime
from local.serve import state_of
from podrelease.release.actions import Actions
from podrelease.release.events import execution_name
from podrelease.release.ledger import Ledger
from podrelease_cli import operate, render
from podrelease_cli.target import Target, from_state

if TYPE_CHECKING:
    from local.demo import Scenario  # the scenario table, which runs this scenario


def _follow(env: LocalRuntime, name: str, printer: Printer, timeout: float = 600) -> dict[str, Any]:
    """Follow release `name` on the timeline until it ends; its describe_execution."""
    arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"
    stop = threading.Event()
    threading.Thread(target=follow_execution, args=(env, arn, printer, name, stop), daemon=True).start()
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    execution: dict[str, Any] = {"status": "NOT_STARTED"}
    try:
        while time.time() < deadline:
            try:
                execution = sfn.describe_execution(executionArn=arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                time.sleep(0.2)
                continue
            if execution["status"] != "RUNNING":
                break
            time.sleep(0.3)
    finally:
        time.sleep(0.5)
        stop.set()
    return execution


def _release(env: LocalRuntime, version: str, printer: Printer) -> tuple[Pushed, str, dict[str, Any]]:
    from local.demo import approval_link, decide  # the demo's approver (local.demo imports this module)

    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version, tag=version)
    env.pusher.sign_legacy(env.signing_key, image)
    env.pusher.sign_bundle(env.signing_key, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    printer.line("local", f"pushed podinfo {version} {image.digest[:19]}", name)

    def approve() -> None:
        link = approval_link(env, APPROVERS[0], name, timeout=300)
        if link is not None:
            printer.line("approval", f"{APPROVERS[0]} pressed Approve: HTTP {decide(link, 'approve')[0]}", name)

    threading.Thread(target=approve, daemon=True).start()
    return image, name, _follow(env, name, printer)


def _live_digest(env: LocalRuntime, environment: str) -> str:
    lam = env.client("lambda")
    function = env.stack.outputs[f"Podinfo{environment.capitalize()}FunctionName"]
    alias = lam.get_alias(FunctionName=function, Name="live")
    if (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
        return "mid-shift"
    return str(lam.get_function(FunctionName=function, Qualifier=alias["FunctionVersion"])["Code"]["ImageUri"]).rpartition("@")[2]


def _problems(env: LocalRuntime, target: Target, first: Pushed, second: str, done: dict[str, Any],
              execution: dict[str, Any]) -> list[str]:
    problems = [] if execution["status"] == "SUCCEEDED" else [f"the rollback ended {execution['status']}, expected SUCCEEDED"]
    record = Ledger(target.table()).get_release(done["release_id"]) or {}
    if record.get("rollback") != {"environment": "prod", "requested_by": target.caller(), "replaces": second}:
        problems.append(f"the rollback's record does not say who asked and what it replaced: {record.get('rollback')}")
    if not (record.get("evidence_prod") or {}).get("verified"):
        problems.append("the rollback was not verified under the prod policy")
    if record.get("stages_done") != ["verify for prod", "promote", "deploy prod"]:
        problems.append(f"the rollback ran {record.get('stages_done')}, expected the prod stages only")
    if _live_digest(env, "prod") != first.digest:
        problems.append("prod's function does not run the previous release's digest")
    problems += fleet_problems(env, "prod", first.digest, should_run=True)
    actions = [(a["action"], a["who"]) for a in Actions(target.table()).history(release_id=done["release_id"])]
    if actions != [("rollback", target.caller())]:
        problems.append(f"the ledger's actions for the rollback are {actions}, expected one rollback by {target.caller()}")
    return problems


def run_rollback(scenario: Scenario, minute_seconds: float, work_dir: Path) -> int:
    started = time.time()
    printer = Printer(started)
    print(f"== scenario {scenario.name}: {scenario.summary}", flush=True)
    with LocalRuntime.start(work_dir, minute_seconds=minute_seconds, approval_timeout=scenario.approval_timeout,
                            policy=scenario.policy) as env:
        env.emulation.timeline.listeners.append(lambda e: printer.line(e[1], e[3], e[2]))
        first, first_name, one = _release(env, "6.9.1", printer)
        _, second_name, two = _release(env, "6.9.2", printer)
        if (one["status"], two["status"]) != ("SUCCEEDED", "SUCCEEDED"):
            return verdict(env, scenario, [f"the releases before the rollback ended {one['status']} and {two['status']}"], started)
        target = from_state(state_of(env))
        done = operate.rollback(target, "prod")
        print("\n$ podrelease --local rollback prod\n" + render.block(done) + "\n", flush=True)
        execution = _follow(env, done["release_id"], printer)
        problems = _problems(env, target, first, second_name, done, execution)
        if done["replaces"] != second_name or done["to_release"] != first_name:
            problems.append(f"rolled back {done['replaces']} to {done['to_release']}, expected {second_name} to {first_name}")
        # The demo's own (local, throw-away) secrets, for the e2e tier's log scan (as local.demo.run leaves them).
        (work_dir / "known-secrets.json").write_text(json.dumps(env.known_secrets()))
        print_release(env, scenario, done["release_id"], first, execution)
        return verdict(env, scenario, problems, started)
