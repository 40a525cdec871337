"""`make demo`: a whole release on this machine, with a readable timeline.

    python -m local.demo [--scenario NAME] [--approval auto|manual]

Each scenario pushes a podinfo image (signed or not, healthy or not) to the local ECR and follows
the release the push starts: the state machine's stages, the CodeDeploy canary, the emails, the
approval. It ends by saying where the release ended and why, and exits 0 only when that is what
the scenario expects.

Here: the scenarios, pushing and approving for them, and the command line. The timeline, the
end-state checks and the summary are `local.demo_report`'s; the rotation scenario is `local.demo_rotation`.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import signing
from local.approver import Approver, link_approver
from local.demo_approvers import run_approvers
from local.demo_report import Printer, check_outcome, fleet_problems, follow_execution, print_release, verdict
from local.demo_rollback import run_rollback
from local.demo_rotation import run_rotation
from local.images import Pushed
from local.runtime import APPROVERS, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name, fallback_execution_name

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    expect_status: str
    expect_error: str | None
    decision: str | None = "approve"  # what the (simulated) approver does; None = nobody decides
    fault: str = ""
    signing: str = "legacy+bundle"  # legacy+bundle | none | tampered | wrong-key | keyless | keyless-rekor-v2
    duplicate_events: bool = False
    approval_timeout: int = 300
    event_only: bool = False  # deliver a digest-less push event instead of pushing an image
    policy: str = "keys"  # the local release policy (see local.runtime.release_policy)
    sbom: str = ""  # "" | "spdx" | "other-digest": the signed SBOM attestation pushed with the image
    secret_rotation: bool = False  # no release: rotate the dev workload secret under live traffic (run_rotation)
    superseded: bool = False  # while the release waits for approval, a newer image is pushed and approved
    provenance: str = ""  # "" | the git ref the signed SLSA provenance pushed with the image says it was built from
    rollback: bool = False  # two releases to prod, then `podrelease rollback prod` (run_rollback)
    lost_event: bool = False  # ECR's push event never arrives: the scheduled reconciler starts the release
    stop: bool = False  # StopExecution mid-canary; then the next release runs and is stopped at its approval
    #: The shortest canary minute the scenario can show its point in: slow requests need a bake long enough
    #: for canary traffic to reach the new version and be measured (a 10 % canary: 1 request in 10).
    min_minute_seconds: float = 0.0
    approver_policy: bool = False  # an approver-policy scenario (local.demo_approvers)


SCENARIOS = {s.name: s for s in [
    Scenario("happy", "signed, healthy image: verified, canaried in dev, approved, promoted, canaried in prod", "SUCCEEDED", None),
    Scenario("unsigned", "no cosign signature: refused before anything is deployed", "FAILED", "SignatureMissing", None, signing="none"),
    Scenario("tampered", "the signature payload was altered after signing", "FAILED", "SignatureInvalid", None, signing="tampered"),
    Scenario("wrong-key", "signed with a key the policy does not trust", "FAILED", "SignatureInvalid", None, signing="wrong-key"),
    Scenario("pre-traffic-fail", "/readyz fails: the BeforeAllowTraffic hook stops the dev canary", "FAILED", "DeploymentFailed", None,
             fault="unready"),
    Scenario("alarm-rollback", "errors under canary traffic trip the alarm: CodeDeploy rolls dev back", "FAILED", "DeploymentFailed",
             None, fault="errors"),
    Scenario("rejected", "the approver rejects on the approval page: prod is untouched", "FAILED", "ApprovalRejected", "reject"),
    Scenario("approval-timeout", "nobody decides before the approval window closes", "FAILED", "ApprovalTimedOut", None,
             approval_timeout=8),
    Scenario("duplicate-event", "EventBridge delivers the push event twice: one release only", "SUCCEEDED", None,
             duplicate_events=True),
    Scenario("keyless", "signed, SBOM- and provenance-attested keyless as the build workflow (local sigstore): the default policy "
             "trusts exactly that", "SUCCEEDED", None, signing="keyless", sbom="spdx", policy="default", provenance="refs/heads/main"),
    Scenario("keyless-rekor-v2", "signed, SBOM- and provenance-attested keyless, logged in a Rekor v2 log (no integrated time) and "
             "timestamped by a TSA of the trusted root, as cosign v3 signs with a Rekor v2 signing config",
             "SUCCEEDED", None, signing="keyless-rekor-v2", sbom="spdx", policy="default",
             provenance="refs/heads/main"),
    Scenario("missing-sbom", "signed, but no SBOM attestation while the policy requires one", "FAILED", "SbomMissing", None,
             policy="keys+sbom"),
    Scenario("sbom-other-digest", "the only SBOM attestation is about another image: it counts for nothing", "FAILED",
             "SbomMissing", None, sbom="other-digest", policy="keys+sbom"),
    Scenario("malformed-event", "a push event without a digest (tag only): refused at once, nothing deployed", "FAILED",
             "MalformedEvent", None, event_only=True),
    Scenario("superseded", "a newer image reaches approval while this one waits: this one ends, the newer one is promoted",
             "FAILED", "ApprovalSuperseded", None, superseded=True),
    Scenario("provenance", "prod requires provenance from the build workflow on main; this image was built from another ref: "
             "dev runs it, prod refuses it after approval", "FAILED", "ProvenanceMismatch", policy="keys+provenance",
             provenance="refs/heads/feature"),
    Scenario("lost-event", "the push event is lost: the scheduled reconciler starts exactly one release; its next run starts nothing",
             "SUCCEEDED", None, lost_event=True),
    Scenario("stopped", "StopExecution mid-canary: the cleanup rule rolls dev back, frees the lock; the next release runs at once, "
             "and once stopped at its approval its link refuses", "ABORTED", "ReleaseStopped", None, stop=True),
    Scenario("rotation", "the dev JWT secret rotates in the middle of authenticated traffic (Lambda and fleet): zero failed requests",
             "SUCCEEDED", None, None, secret_rotation=True),
    Scenario("outside-window", "prod's change window is closed when the approval arrives: the approval is recorded, the release "
             "waits (the page and the timeline say until when), then the window opens and it deploys", "SUCCEEDED", None,
             policy="keys+window"),
    Scenario("window-too-far", "prod's next window is further away than the policy's max wait: after the approval the "
             "release fails with OutsideDeployWindow and prod is untouched", "FAILED", "OutsideDeployWindow", policy="keys+window-far"),
    Scenario("rollback", "two releases reach prod; `podrelease rollback prod` puts the first one's digest back, re-verified, "
             "recorded with who asked", "SUCCEEDED", None, rollback=True),
    Scenario("latency-rollback", "slow responses (1.5 s) under canary traffic trip the latency alarms (p99 Lambda duration, "
             "ALB target response time): dev rolls back", "FAILED", "DeploymentFailed", None, fault="slow",
             min_minute_seconds=4.0),
    # --- the approver policy (local.demo_approvers) ---
    Scenario("self-approval", "alice triggered the build (its provenance's actor) and prod forbids self-approval: her approval "
             "is refused by name, bob's counts", "SUCCEEDED", None, policy="keys+self-approval", provenance="refs/heads/main",
             approver_policy=True),
    Scenario("two-approvers", "prod needs 2 of 3 approvers: alice's approval leaves it waiting (her second vote does not count), "
             "bob's releases it", "SUCCEEDED", None, policy="keys+two-approvers", approver_policy=True),
    Scenario("blocked-digest", "alice rejects and blocks the digest; pushed again, it stops at once with DigestBlocked",
             "FAILED", "DigestBlocked", "reject", approver_policy=True),
]}


def approval_link(env: LocalRuntime, approver: str, release: str, timeout: float = 120) -> str | None:
    """The link in the approval email `approver` received for `release` (waits for the email)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for message in list(env.emulation.outbox.messages):
            if message["to"] == approver and release in message["subject"]:
                match = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", message["body"])
                if match:
                    return match.group(1)
        time.sleep(0.2)
    return None


def _approver(env: LocalRuntime, scenario: Scenario, release: str, printer: Printer, manual: bool,
              failures: list[str] | None = None) -> None:
    # The thread starts with the release: on a loaded machine dev alone can take minutes to pass.
    link = approval_link(env, APPROVERS[0], release, timeout=900)
    if link is None:
        return
    if manual:
        printer.line("approval", f"open this link to decide (GET shows, only the buttons decide): {link}", release)
        return
    # An email link scanner fetches the link first: it is sent to sign in, and nothing changes.
    scanned, _ = Approver("scanner@example.com").open(link)
    printer.line("approval", f"link scanner GET: sent to sign in (HTTP {scanned} at the provider), nothing decided", release)
    if scenario.decision is None:
        printer.line("approval", "nobody decides (scenario)", release)
        return
    status, page = decide(link, scenario.decision, f"demo: {scenario.name}")
    printer.line("approval", f"{APPROVERS[0]} signed in at the local OIDC provider and pressed "
                 f"{scenario.decision.capitalize()}: HTTP {status}", release)
    waits = re.search(r"The approval is recorded\. (Prod window: [^<]*)", page)
    if waits:
        printer.line("approval", f"the page says: {html.unescape(waits.group(1))[:300]}", release)
    if status >= 500 and failures is not None:  # the decision did not reach the release: say why, stop waiting
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", part)) for part in re.findall(r"<(?:h1|p)>(.*?)</(?:h1|p)>", page))
        said = " ".join(text.split())
        printer.line("approval", f"the page says: {said[:400]}", release)
        failures.append(f"the approval page answered HTTP {status}: {said[:300]}")


def _push_newer(env: LocalRuntime, release: str, printer: Printer, stop: threading.Event, newer: list[Pushed]) -> None:
    """Once `release` waits for approval, push a newer signed image; approve it when its email comes."""
    if approval_link(env, APPROVERS[0], release) is None:
        return
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.2", tag="6.9.2")
    env.pusher.sign_legacy(env.signing_key, image)
    newer.append(image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    printer.line("local", f"pushed a newer image {image.digest[:19]} while {release} waits for approval", name)
    arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"
    threading.Thread(target=follow_execution, args=(env, arn, printer, name, stop), daemon=True).start()
    link = approval_link(env, APPROVERS[0], name, timeout=300)
    if link is not None:
        status, _ = decide(link, "approve")
        printer.line("approval", f"{APPROVERS[0]} pressed Approve on the newer release: HTTP {status}", name)


def _newer_outcome(env: LocalRuntime, newer: list[Pushed], printer: Printer) -> list[str]:
    """The newer release of the superseded scenario must end promoted, on both targets of both environments."""
    if not newer:
        return ["the newer image was never pushed"]
    image = newer[0]
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"
    sfn = env.client("stepfunctions")
    deadline = time.time() + 300
    execution = sfn.describe_execution(executionArn=arn)
    while execution["status"] == "RUNNING" and time.time() < deadline:
        time.sleep(0.3)
        execution = sfn.describe_execution(executionArn=arn)
    print(f"== newer release {name} ended {execution['status']}", flush=True)
    if execution["status"] != "SUCCEEDED":
        return [f"the newer release ended {execution['status']} ({execution.get('error')}), expected SUCCEEDED"]
    return [p for env_ in ("dev", "prod") for p in fleet_problems(env, env_, image.digest, should_run=True)]


def decide(link: str, decision: str, comment: str = "") -> tuple[int, str]:
    """The link's approver opens it, signs in at the local OIDC provider as themself, and presses a
    button on the page's form (`local.approver`). Returns (status, page)."""
    return Approver(link_approver(link)).decide(link, decision, comment)


def push_for(env: LocalRuntime, scenario: Scenario) -> Pushed:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.1", tag="6.9.1", fault=scenario.fault)
    if scenario.signing == "legacy+bundle":
        env.pusher.sign_legacy(env.signing_key, image)
        env.pusher.sign_bundle(env.signing_key, image)
    elif scenario.signing == "tampered":
        env.pusher.sign_legacy(env.signing_key, image, tamper=True)
    elif scenario.signing == "wrong-key":
        other, _ = signing.generate_key()
        env.pusher.sign_legacy(other, image)
    elif scenario.signing in ("keyless", "keyless-rekor-v2"):
        env.pusher.sign_keyless(env.sigstore, image, identity=env.build_identity,
                                rekor_v2=scenario.signing == "keyless-rekor-v2")
    if scenario.sbom == "spdx" and scenario.signing in ("keyless", "keyless-rekor-v2"):
        env.pusher.attest_sbom_keyless(env.sigstore, image, identity=env.build_identity,
                                       rekor_v2=scenario.signing == "keyless-rekor-v2")
    elif scenario.sbom == "spdx":
        env.pusher.attest_sbom(env.signing_key, image)
    elif scenario.sbom == "other-digest":
        # Another image's digest, not pushed: a push to the watched repository is a release of its own,
        # newer than this one, which would take the dev lock after it.
        other_digest = "sha256:" + hashlib.sha256(b"podinfo 6.9.0-other").hexdigest()
        env.pusher.attest_sbom(env.signing_key, image, other_digest=other_digest)
    if scenario.provenance and scenario.signing in ("keyless", "keyless-rekor-v2"):
        env.pusher.attest_provenance_keyless(env.sigstore, image, identity=env.build_identity, ref=scenario.provenance,
                                             rekor_v2=scenario.signing == "keyless-rekor-v2")
    elif scenario.provenance:
        env.pusher.attest_provenance(env.signing_key, image, ref=scenario.provenance)
    return image


def _time_sources(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [str(value["time_source"])] if "time_source" in value else []
        return found + [t for v in value.values() for t in _time_sources(v)]
    if isinstance(value, list):
        return [t for v in value for t in _time_sources(v)]
    return []


def _time_source_problems(scenario: Scenario, execution: dict[str, Any]) -> list[str]:
    """keyless-rekor-v2: every keyless signature the gate accepted got its time from the TSA (its
    Rekor v2 entries carry none)."""
    if scenario.signing != "keyless-rekor-v2" or execution.get("status") != "SUCCEEDED":
        return []
    sources = _time_sources(json.loads(execution.get("output") or "{}"))
    if not sources or set(sources) != {"timestamp authority"}:
        return [f"keyless evidence time sources {sorted(set(sources))}, expected only 'timestamp authority'"]
    return []


def reconcile(env: LocalRuntime, printer: Printer, release: str) -> list[str]:
    """The lost-event scenario: no execution started from the push; the reconciler's scheduled run starts it."""
    sfn = env.client("stepfunctions")
    if sfn.list_executions(stateMachineArn=env.stack.outputs["ReleaseStateMachineArn"])["executions"]:
        return ["an execution started although the push event was dropped"]
    report = env.run_schedule("ReconcilerFunction")
    printer.line("reconciler", f"scheduled run: started {report['started']}, artifacts skipped {len(report['artifacts'])}", release)
    return [] if report["started"] == [release] else [f"the reconciler started {report['started']}, expected [{release}]"]


def reconcile_again(env: LocalRuntime, printer: Printer, release: str) -> list[str]:
    """The reconciler's next run finds the release (recorded) and starts nothing."""
    report = env.run_schedule("ReconcilerFunction")
    printer.line("reconciler", f"next scheduled run: started {report['started']} (already released: {len(report['already'])})", release)
    return [] if report["started"] == [] else [f"the reconciler's second run started {report['started']}, expected nothing"]


def _wait(predicate: Any, timeout: float, step: float = 0.2) -> Any:
    """`predicate()`'s first truthy value within `timeout` seconds, else None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def _cleaned_up(env: LocalRuntime, release: str) -> bool:
    item = env.client("dynamodb").get_item(TableName=env.stack.outputs["LedgerTableName"],
                                           Key={"pk": {"S": f"cleanup#{release}"}}).get("Item", {})
    return item.get("status", {}).get("S") == "done"


def _stop(env: LocalRuntime, printer: Printer, arn: str, release: str, when: str) -> list[str]:
    """StopExecution, then wait for the status-change rule's cleanup to be done."""
    env.client("stepfunctions").stop_execution(executionArn=arn, error="ReleaseStopped", cause=f"stopped by the operator {when} (demo)")
    printer.line("local", f"StopExecution {when}", release)
    if not _wait(lambda: _cleaned_up(env, release), 300):
        return [f"the stopped release {release} was never cleaned up by the status-change rule"]
    printer.line("local", "the cleanup rule undid the release, withdrew its approval, recorded and notified", release)
    return []


def stop_mid_canary(env: LocalRuntime, printer: Printer, arn: str, release: str, stop: threading.Event) -> list[str]:
    """The stopped scenario: stop the release while the dev canary shifts traffic; then the next
    release must take dev at once (no LockBusy) and, stopped while it waits for approval, its link refuses."""
    lam, dev = env.client("lambda"), env.stack.outputs["PodinfoDevFunctionName"]
    weights = _wait(lambda: (lam.get_alias(FunctionName=dev, Name="live").get("RoutingConfig") or {}).get("AdditionalVersionWeights"),
                    300, 0.05)
    if not weights:
        return ["the dev canary never shifted traffic"]
    problems = _stop(env, printer, arn, release, f"during the dev canary (weights {weights})")
    if problems:
        return problems
    if not _wait(lambda: not (lam.get_alias(FunctionName=dev, Name="live").get("RoutingConfig") or {}).get("AdditionalVersionWeights")
                 and not fleet_problems(env, "dev", "sha256:none", should_run=False), 120):
        return ["dev was not rolled back onto one version and one colour after the stop"]
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.2", tag="6.9.2")
    env.pusher.sign_legacy(env.signing_key, image)
    name = execution_name(WORKLOAD_REPOSITORY, image.digest)
    next_arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"
    threading.Thread(target=follow_execution, args=(env, next_arn, printer, name, stop), daemon=True).start()
    link = approval_link(env, APPROVERS[0], name, timeout=300)
    if link is None:
        return ["the next release never reached its approval"]
    history = env.client("stepfunctions").get_execution_history(executionArn=next_arn)["events"]
    if any("LockBusy" in json.dumps(event, default=str) for event in history):
        problems.append("the next release waited for the dev lock (LockBusy): the stopped release still held it")
    problems += _stop(env, printer, next_arn, name, "while it waits for approval")
    status, page = decide(link, "approve")
    printer.line("approval", f"{APPROVERS[0]} pressed Approve on the stopped release: HTTP {status}", name)
    if status != 410 or "withdrawn" not in page:
        problems.append(f"the stopped release's approval link answered HTTP {status}, expected 410 (withdrawn)")
    return problems


def window_problems(env: LocalRuntime, scenario: Scenario, arn: str, release: str, printer: Printer) -> list[str]:
    """outside-window: the approval email said prod's window was closed and until when; the release
    waited in WaitForProdWindow after the approval and before promoting, until that time."""
    if scenario.policy != "keys+window":
        return []
    events = env.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [(e["stateEnteredEventDetails"]["name"], e["stateEnteredEventDetails"].get("input", "{}"))
               for e in events if e["type"].endswith("StateEntered")]
    names = [name for name, _ in entered]
    if "WaitForProdWindow" not in names:
        return ["the release never waited for prod's window (no WaitForProdWindow state)"]
    if not names.index("RequestApproval") < names.index("WaitForProdWindow") < names.index("Promote"):
        return [f"WaitForProdWindow is not between the approval and the promotion: {names}"]
    until = json.loads(entered[names.index("WaitForProdWindow")][1])["windows"]["prod"]["wait_until"]
    printer.line("release", f"waited for prod's window until {until} (the policy's wall clock; locally scaled)", release)
    mails = [m["body"] for m in list(env.emulation.outbox.messages) if m["to"] == APPROVERS[0] and release in m["subject"]]
    if not any("Prod window:" in body and "waits until" in body for body in mails):
        return ["the approval email did not say that prod's window was closed and until when"]
    return []


def tag_only_event(env: LocalRuntime) -> dict[str, Any]:
    """An ECR push event for the watched repository that names a tag but no digest."""
    return {"version": "0", "id": "malformed-demo-event", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": env.stack.account, "region": env.stack.region, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resources": [], "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": WORKLOAD_REPOSITORY,
                                        "image-tag": "latest"}}


def run(scenario: Scenario, manual: bool, minute_seconds: float, work_dir: Path) -> int:  # noqa: PLR0915 - the scenario told top to bottom: start, push, follow, then print what happened
    special = (run_rotation if scenario.secret_rotation else run_rollback if scenario.rollback
               else run_approvers if scenario.approver_policy else None)
    if special is not None:
        return special(scenario, minute_seconds, work_dir)
    started = time.time()
    printer = Printer(started)
    minute_seconds = max(minute_seconds, scenario.min_minute_seconds)
    print(f"== scenario {scenario.name}: {scenario.summary}", flush=True)
    print(f"   local AWS: moto server + emulation; canary minutes last {minute_seconds:g}s here; "
          f"approval window {scenario.approval_timeout}s", flush=True)
    timeout = 3600 if manual else scenario.approval_timeout
    with LocalRuntime.start(work_dir, minute_seconds=minute_seconds, approval_timeout=timeout, policy=scenario.policy) as env:
        printer.line("local", f"ready in {time.time() - started:.1f}s: stack created from template.yaml, "
                              f"{len(env.stack.functions)} functions warm")
        env.emulation.timeline.listeners.append(lambda e: printer.line(e[1], e[3], e[2]))
        env.emulation.duplicate_push_events = scenario.duplicate_events
        if scenario.event_only:
            event = tag_only_event(env)
            env.emulation.events.deliver(event)
            release = fallback_execution_name(event)
            image = Pushed(WORKLOAD_REPOSITORY, "sha256:" + "0" * 64, b"")  # nothing was pushed
        else:
            env.emulation.drop_push_events = scenario.lost_event
            image = push_for(env, scenario)
            release = execution_name(WORKLOAD_REPOSITORY, image.digest)
        reconciled = reconcile(env, printer, release) if scenario.lost_event else []
        arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{release}"
        stop = threading.Event()
        threading.Thread(target=follow_execution, args=(env, arn, printer, release, stop), daemon=True).start()
        approval_failures: list[str] = []
        threading.Thread(target=_approver, args=(env, scenario, release, printer, manual, approval_failures), daemon=True).start()
        newer: list[Pushed] = []
        if scenario.superseded:
            threading.Thread(target=_push_newer, args=(env, release, printer, stop, newer), daemon=True).start()
        stopped = stop_mid_canary(env, printer, arn, release, stop) if scenario.stop else []
        sfn = env.client("stepfunctions")
        execution: dict[str, Any] = {"status": "NOT_STARTED"}
        deadline = time.time() + (timeout + 600)
        starter = env.stack.functions["StarterFunction"].name
        while time.time() < deadline:
            try:
                execution = sfn.describe_execution(executionArn=arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                failed = [error for name, error in env.emulation.runtime.async_failures if name == starter] if env.emulation.runtime else []
                if failed:  # the push did not become a release (on AWS: the starter's dead-letter queue)
                    execution = {"status": "NOT_STARTED", "error": failed[0].get("errorType"), "cause": failed[0].get("errorMessage", "")}
                    break
                time.sleep(0.2)
                continue
            if execution["status"] != "RUNNING" or approval_failures:
                break
            time.sleep(0.3)
        time.sleep(0.5)
        stop.set()
        executions = [e for e in sfn.list_executions(stateMachineArn=env.stack.outputs["ReleaseStateMachineArn"])["executions"]
                      if e["name"].startswith(release[:30])]
        # The newer release of the superseded scenario runs on after this one ended: its outcome first.
        newer_problems = _newer_outcome(env, newer, printer) if scenario.superseded else []
        problems = approval_failures + reconciled + stopped + check_outcome(env, scenario, image, execution) + newer_problems
        problems += _time_source_problems(scenario, execution)
        problems += window_problems(env, scenario, arn, release, printer)
        if scenario.lost_event:
            problems += reconcile_again(env, printer, release)
        if scenario.fault == "slow" and "latency" not in str(execution.get("cause", "")):
            problems.append(f"the release did not fail on a latency alarm: {str(execution.get('cause', ''))[:300]}")
        # The demo's own (local, throw-away) secrets, for the e2e tier's log scan: a separate process
        # cannot otherwise know them. Never written anywhere but this local work directory.
        (work_dir / "known-secrets.json").write_text(json.dumps(env.known_secrets()))
        if (scenario.duplicate_events or scenario.lost_event) and len(executions) != 1:
            problems.append(f"{len(executions)} executions for one digest, expected exactly 1")
        print_release(env, scenario, release, image, execution)
        return verdict(env, scenario, problems, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="happy", help=f"one of: {', '.join(SCENARIOS)}, or 'all'")
    parser.add_argument("--approval", default="auto", choices=["auto", "manual"])
    parser.add_argument("--minute-seconds", type=float, default=1.0, help="how long one canary bake minute lasts locally")
    parser.add_argument("--work-dir", default=str(ROOT / ".demo"))
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose one of: {', '.join(SCENARIOS)}")
    failures = []
    for name in names:
        try:
            code = run(SCENARIOS[name], args.approval == "manual", args.minute_seconds, Path(args.work_dir) / name)
        except Exception as exc:
            print(f"== scenario {name}: the demo itself failed: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()  # where, for whoever debugs the demo (stderr)
            code = 1
        if code != 0:
            failures.append(name)
    if len(names) > 1:
        print(f"== {len(names) - len(failures)}/{len(names)} scenarios ended as expected" + (f"; not: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
