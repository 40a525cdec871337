"""The approver-policy scenarios: who may approve, how many must, and reject-and-block.

- `self-approval`: prod forbids approving your own change; the build's provenance says alice
  (GitHub `alice-gh`) triggered it. Alice's approval is refused by name (`SelfApproval`: nothing
  decided, the attempt noted); bob's counts and the release reaches prod.
- `two-approvers`: prod needs 2 approvals of the group's members (alice, bob, carol). Alice's leaves
  it waiting (her second vote does not count twice); bob's releases it.
- `blocked-digest`: alice rejects and blocks the digest on the approval page; the same digest pushed
  again (a new tag) starts a release of its own that stops at its first state with `DigestBlocked`;
  `podrelease unblock` is the explicit, recorded way back.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from local.approver import Approver
from local.demo_report import Printer, check_outcome, follow_execution, print_release, verdict
from local.runtime import APPROVERS, CAROL, WORKLOAD_REPOSITORY, LocalRuntime
from local.serve import state_of
from podrelease.approval.store import ApprovalStore
from podrelease.release.actions import Actions
from podrelease.release.events import execution_name
from podrelease_cli.target import Target, from_state

if TYPE_CHECKING:
    from pathlib import Path

    from local.demo import Scenario
    from local.images import Pushed

ALICE, BOB = APPROVERS


def _arn(env: LocalRuntime, name: str) -> str:
    return f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"


def _wait_end(env: LocalRuntime, name: str, timeout: float) -> dict[str, Any]:
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    execution: dict[str, Any] = {"status": "NOT_STARTED"}
    while time.time() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=_arn(env, name))
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.2)
            continue
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.3)
    return execution


def _vote(env: LocalRuntime, printer: Printer, name: str, who: str, decision: str, comment: str = "") -> tuple[int, str]:
    from local.demo import approval_link  # the demo's mailbox reader (local.demo imports this module)

    link = approval_link(env, who, name, timeout=300)
    if link is None:
        return 0, f"{who} never received the approval email"
    status, page = Approver(who).decide(link, decision, comment)
    printer.line("approval", f"{who} signed in and pressed {decision}: HTTP {status}", name)
    return status, page


def _self_approval(env: LocalRuntime, printer: Printer, name: str, record: Any) -> list[str]:
    status, page = _vote(env, printer, name, ALICE, "approve", "my own change")
    problems = [] if status == 403 and "You cannot approve your own change" in page else [
        f"alice (the build's actor) approving answered HTTP {status}, expected 403 SelfApproval"]
    pending = record()
    if pending.get("status") != "pending" or pending.get("votes"):
        problems.append(f"alice's refused approval changed the decision: {pending.get('status')}, votes {pending.get('votes')}")
    status, _ = _vote(env, printer, name, BOB, "approve", "reviewed alice's change")
    return problems + ([] if status == 200 else [f"bob's approval answered HTTP {status}, expected 200"])


def _two_approvers(env: LocalRuntime, printer: Printer, name: str, record: Any) -> list[str]:
    problems = []
    status, page = _vote(env, printer, name, ALICE, "approve", "first of two")
    if status != 200 or "waits for more votes" not in page:
        problems.append(f"the first approval answered HTTP {status}, expected 200 and the release waiting")
    again, _ = _vote(env, printer, name, ALICE, "approve", "me again")
    if again != 409:
        problems.append(f"alice's second vote answered HTTP {again}, expected 409 (AlreadyVoted)")
    waiting = record()
    running = env.client("stepfunctions").describe_execution(executionArn=_arn(env, name))["status"]
    if (waiting.get("status"), len(waiting.get("votes") or []), running) != ("pending", 1, "RUNNING"):
        problems.append(f"after one approval: {waiting.get('status')}, {len(waiting.get('votes') or [])} vote(s), "
                        f"execution {running}; expected pending, 1, RUNNING")
    printer.line("approval", f"after alice's approval the release waits ({waiting.get('status')}, 1 of 2)", name)
    status, _ = _vote(env, printer, name, BOB, "approve", "second of two")
    if status != 200:
        problems.append(f"the second approval answered HTTP {status}, expected 200")
    decided = record()
    if decided.get("decided_by") != f"{ALICE}, {BOB}":
        problems.append(f"decided by {decided.get('decided_by')!r}, expected both approvers")
    return problems


def _blocked(env: LocalRuntime, printer: Printer, name: str, image: Pushed, target: Target) -> tuple[list[str], str]:
    status, _ = _vote(env, printer, name, ALICE, "reject-block", "CVE in the base image")
    problems = [] if status == 200 else [f"reject-and-block answered HTTP {status}, expected 200"]
    first = _wait_end(env, name, 300)
    if (first["status"], first.get("error")) != ("FAILED", "ApprovalRejected"):
        problems.append(f"the rejected release ended {first['status']} {first.get('error')}, expected FAILED ApprovalRejected")
    block = Actions(target.table()).blocked(image.digest) or {}
    if not str(block.get("blocked_by", "")).startswith(ALICE):
        problems.append(f"the digest's block does not name alice: {block}")
    # The same image pushed again (a new tag: ECR sends a new push event for the same digest)
    env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.1", tag="6.9.1-again")
    again = _started_after(env, name, 120)
    if again is None:
        problems.append("the blocked digest pushed again started no release (expected one that fails DigestBlocked)")
        return problems, name
    printer.line("local", f"pushed the blocked digest again: release {again}", again)
    return problems, again


def _started_after(env: LocalRuntime, name: str, timeout: float) -> str | None:
    """The execution the starter gave a new push of `name`'s blocked digest (`start.blocked_push_name`)."""
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        executions = sfn.list_executions(stateMachineArn=env.stack.outputs["ReleaseStateMachineArn"])["executions"]
        found = [e["name"] for e in executions if e["name"].startswith(f"{name}-b")]
        if found:
            return str(found[0])
        time.sleep(0.3)
    return None


def run_approvers(scenario: Scenario, minute_seconds: float, work_dir: Path) -> int:
    started = time.time()
    printer = Printer(started)
    print(f"== scenario {scenario.name}: {scenario.summary}", flush=True)
    approvers = (*APPROVERS, CAROL) if scenario.name == "two-approvers" else APPROVERS
    with LocalRuntime.start(work_dir, minute_seconds=minute_seconds, approval_timeout=scenario.approval_timeout,
                            policy=scenario.policy, approvers=approvers) as env:
        env.emulation.timeline.listeners.append(lambda e: printer.line(e[1], e[3], e[2]))
        image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.1", tag="6.9.1")
        env.pusher.sign_legacy(env.signing_key, image)
        env.pusher.sign_bundle(env.signing_key, image)
        if scenario.provenance:  # built by alice (her GitHub login is the provenance's actor)
            env.pusher.attest_provenance(env.signing_key, image, ref=scenario.provenance, actor="alice-gh")
        name = execution_name(WORKLOAD_REPOSITORY, image.digest)
        stop = threading.Event()
        threading.Thread(target=follow_execution, args=(env, _arn(env, name), printer, name, stop), daemon=True).start()
        target = from_state(state_of(env))
        store = ApprovalStore(target.table())

        def record() -> dict[str, Any]:
            return store.get(name) or {}

        release, problems = name, []
        if scenario.name == "self-approval":
            problems = _self_approval(env, printer, name, record)
        elif scenario.name == "two-approvers":
            problems = _two_approvers(env, printer, name, record)
        else:
            problems, release = _blocked(env, printer, name, image, target)
        execution = _wait_end(env, release, 600)
        time.sleep(0.5)
        stop.set()
        if scenario.name == "blocked-digest":
            problems += check_outcome(env, dataclasses.replace(scenario, expect_error="ApprovalRejected"), image,
                                      _wait_end(env, name, 10))
            if (execution["status"], execution.get("error")) != ("FAILED", "DigestBlocked"):
                problems.append(f"the second release ended {execution['status']} {execution.get('error')}, expected DigestBlocked")
        else:
            problems += check_outcome(env, scenario, image, execution)
        (work_dir / "known-secrets.json").write_text(json.dumps(env.known_secrets()))
        print_release(env, scenario, release, image, execution)
        return verdict(env, scenario, problems, started)
