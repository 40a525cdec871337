"""`make demo`: a whole release on this machine, with a readable timeline.

    python -m local.demo [--scenario NAME] [--approval auto|manual]

Each scenario pushes a podinfo image (signed or not, healthy or not) to the local ECR and follows
the release the push starts: the state machine's stages, the CodeDeploy canary, the emails, the
approval. It ends by saying where the release ended and why, and exits 0 only when that is what
the scenario expects.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import signing
from local.images import Pushed
from local.runtime import APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release import podinfo
from podrelease.release.events import execution_name, fallback_execution_name
from podrelease.rotation.workload_secret import secret_value, staging_labels, verify_token

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_STATES = re.compile(r"^(Wait|Check)(Dev|Prod)$|\?$")


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    expect_status: str
    expect_error: str | None
    decision: str | None = "approve"  # what the (simulated) approver does; None = nobody decides
    fault: str = ""
    signing: str = "legacy+bundle"  # legacy+bundle | none | tampered | wrong-key
    duplicate_events: bool = False
    approval_timeout: int = 300
    event_only: bool = False  # deliver a digest-less push event instead of pushing an image
    policy: str = "keys"  # the local release policy (see local.runtime.release_policy)
    sbom: str = ""  # "" | "spdx" | "other-digest": the signed SBOM attestation pushed with the image
    secret_rotation: bool = False  # no release: rotate the dev workload secret under live traffic (run_rotation)
    superseded: bool = False  # while the release waits for approval, a newer image is pushed and approved


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
    Scenario("keyless", "signed and SBOM-attested keyless as the build workflow (local sigstore): the default policy trusts exactly that",
             "SUCCEEDED", None, signing="keyless", sbom="spdx", policy="default"),
    Scenario("missing-sbom", "signed, but no SBOM attestation while the policy requires one", "FAILED", "SbomMissing", None,
             policy="keys+sbom"),
    Scenario("sbom-other-digest", "the only SBOM attestation is about another image: it counts for nothing", "FAILED",
             "SbomMissing", None, sbom="other-digest", policy="keys+sbom"),
    Scenario("malformed-event", "a push event without a digest (tag only): refused at once, nothing deployed", "FAILED",
             "MalformedEvent", None, event_only=True),
    Scenario("superseded", "a newer image reaches approval while this one waits: this one ends, the newer one is promoted",
             "FAILED", "ApprovalSuperseded", None, superseded=True),
    Scenario("rotation", "the dev JWT secret rotates in the middle of authenticated traffic (Lambda and fleet): zero failed requests",
             "SUCCEEDED", None, None, secret_rotation=True),
]}


class Printer:
    """Prints timeline lines: elapsed, source, what happened, correlation id."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock = threading.Lock()

    def line(self, source: str, text: str, release: str = "") -> None:
        with self.lock:
            rid = f"  [{release}]" if release else ""
            print(f"{time.time() - self.started:7.1f}s  {source:<11} {text}{rid}", flush=True)


def _follow_execution(env: LocalRuntime, arn: str, printer: Printer, release: str, stop: threading.Event) -> None:
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
    link = approval_link(env, APPROVERS[0], release)
    if link is None:
        return
    if manual:
        printer.line("approval", f"open this link to decide (GET shows, only the buttons decide): {link}", release)
        return
    # An email link scanner fetches the link first: that must change nothing.
    with urllib.request.urlopen(link, timeout=10) as page:
        shown = page.read().decode()
    state = "still pending" if "Approve" in shown else "?"
    printer.line("approval", f"link scanner GET {page.status}: page shown, release {state}", release)
    if scenario.decision is None:
        printer.line("approval", "nobody decides (scenario)", release)
        return
    status, page = decide(link, scenario.decision)
    printer.line("approval", f"{APPROVERS[0]} pressed {scenario.decision.capitalize()}: HTTP {status}", release)
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
    threading.Thread(target=_follow_execution, args=(env, arn, printer, name, stop), daemon=True).start()
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


def decide(link: str, decision: str) -> tuple[int, str]:
    """Press a button on the approval page: POST the form the page shows. Returns (status, page)."""
    token = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["t"][0]
    body = urllib.parse.urlencode({"t": token, "decision": decision}).encode()
    request = urllib.request.Request(link.split("?")[0], data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


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
    elif scenario.signing == "keyless":
        env.pusher.sign_keyless(env.sigstore, image, identity=env.build_identity)
    if scenario.sbom == "spdx" and scenario.signing == "keyless":
        env.pusher.attest_sbom_keyless(env.sigstore, image, identity=env.build_identity)
    elif scenario.sbom == "spdx":
        env.pusher.attest_sbom(env.signing_key, image)
    elif scenario.sbom == "other-digest":
        other_image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.0-other", tag="other")
        env.pusher.attest_sbom(env.signing_key, image, other_digest=other_image.digest)
    return image


def tag_only_event(env: LocalRuntime) -> dict[str, Any]:
    """An ECR push event for the watched repository that names a tag but no digest."""
    return {"version": "0", "id": "malformed-demo-event", "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": env.stack.account, "region": env.stack.region, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resources": [], "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": WORKLOAD_REPOSITORY,
                                        "image-tag": "latest"}}


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
        should = scenario.expect_status == "SUCCEEDED" or (environment == "dev" and scenario.expect_error in ("ApprovalRejected", "ApprovalTimedOut"))
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


def verdict(env: LocalRuntime, scenario: Scenario, problems: list[str], started: float) -> int:
    """The scenario's last lines: where the logs are, how long it took, and whether it ended as expected."""
    print(f"   logs     {env.work_dir / 'logs'}", flush=True)
    print(f"   took     {time.time() - started:.1f}s", flush=True)
    if problems:
        print(f"== scenario {scenario.name}: NOT as expected: " + "; ".join(problems), flush=True)
        return 1
    print(f"== scenario {scenario.name}: ended as expected", flush=True)
    return 0


def run(scenario: Scenario, manual: bool, minute_seconds: float, work_dir: Path) -> int:  # noqa: PLR0915 - the scenario told top to bottom: start, push, follow, then print what happened
    if scenario.secret_rotation:
        return run_rotation(scenario, minute_seconds, work_dir)
    started = time.time()
    printer = Printer(started)
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
            image = push_for(env, scenario)
            release = execution_name(WORKLOAD_REPOSITORY, image.digest)
        arn = f"{env.stack.outputs['ReleaseStateMachineArn'].replace(':stateMachine:', ':execution:')}:{release}"
        stop = threading.Event()
        threading.Thread(target=_follow_execution, args=(env, arn, printer, release, stop), daemon=True).start()
        approval_failures: list[str] = []
        threading.Thread(target=_approver, args=(env, scenario, release, printer, manual, approval_failures), daemon=True).start()
        newer: list[Pushed] = []
        if scenario.superseded:
            threading.Thread(target=_push_newer, args=(env, release, printer, stop, newer), daemon=True).start()
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
        problems = approval_failures + check_outcome(env, scenario, image, execution) + newer_problems
        # The demo's own (local, throw-away) secrets, for the e2e tier's log scan: a separate process
        # cannot otherwise know them. Never written anywhere but this local work directory.
        (work_dir / "known-secrets.json").write_text(json.dumps(env.known_secrets()))
        if scenario.duplicate_events and len(executions) != 1:
            problems.append(f"{len(executions)} executions for one digest, expected exactly 1")
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
        return verdict(env, scenario, problems, started)


class TokenClient:
    """A podinfo API client on the dev `live` alias (through the Lambda API) or, with `fleet_url`,
    on the dev fleet's load balancer (over HTTP, through the emulated ALB): gets a token with
    `POST /token`, calls `GET /token/validate` with it, and on a 401 gets a new token and retries
    once, like a real client. Every answer that is not 200 counts as a failed request, the 401 too.
    `refresh_seconds`: how often it asks for a new token anyway (None: only on 401 or expiry)."""

    def __init__(self, env: LocalRuntime, function: str, name: str, refresh_seconds: float | None, fleet_url: str = "") -> None:
        self.lam, self.function, self.name, self.refresh_seconds = env.client("lambda"), function, name, refresh_seconds
        self.fleet_url = fleet_url
        proxy = urllib.request.ProxyHandler({"http": env.emulation.fleet.proxy_url})
        self.http = urllib.request.build_opener(proxy)
        self.ok = 0
        self.failed: list[str] = []
        self.tokens = 0
        self.stop = threading.Event()
        self.token: str | None = None
        self.token_at = 0.0

    def call(self, path: str, method: str = "GET", token: str | None = None, body: str = "") -> tuple[int, dict[str, Any]]:
        if self.fleet_url:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = urllib.request.Request(self.fleet_url + path, data=body.encode() if method == "POST" else None,
                                             headers=headers, method=method)
            try:
                with self.http.open(request, timeout=10) as answer:
                    return int(answer.status), json.loads(answer.read() or b"{}")
            except urllib.error.HTTPError as exc:
                return int(exc.code), {}
        request = podinfo.request(path, method, headers=podinfo.bearer(token) if token else None, body=body)
        reply = podinfo.invoke(self.lam, self.function, "live", request)
        if reply.status is None:
            return 502, {"error": reply.error}
        return reply.status, reply.json() or {}

    def new_token(self) -> None:
        status, body = self.call("/token", "POST", body=self.name)
        if status != 200:
            self.failed.append(f"POST /token: {status}")
            self.token = None
            return
        self.ok += 1
        self.tokens += 1
        self.token, self.token_at = body["token"], time.time()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.token is None or (self.refresh_seconds is not None and time.time() - self.token_at > self.refresh_seconds):
                self.new_token()
                continue
            status, _ = self.call("/token/validate", token=self.token)
            if status == 200:
                self.ok += 1
            else:
                self.failed.append(f"GET /token/validate: {status}")
                self.new_token()  # a real client's answer to a 401; the retry is the next loop
            time.sleep(0.01)


def run_rotation(scenario: Scenario, minute_seconds: float, work_dir: Path) -> int:  # noqa: PLR0915 - the rotation scenario top to bottom: traffic, RotateSecret, checks, report
    """Rotate the dev workload secret while four clients keep calling the dev service (two on the
    Lambda function, two through the fleet's load balancer)."""
    started = time.time()
    printer = Printer(started)
    print(f"== scenario {scenario.name}: {scenario.summary}", flush=True)
    with LocalRuntime.start(work_dir, minute_seconds=minute_seconds) as env:
        env.emulation.timeline.listeners.append(lambda e: printer.line(e[1], e[3], e[2]))
        outputs = env.stack.outputs
        secret, function = outputs["WorkloadSecretDevArn"], outputs["PodinfoDevFunctionName"]
        sm = env.client("secretsmanager")
        before = staging_labels(sm, secret)
        printer.line("local", f"ready in {time.time() - started:.1f}s; dev secret staging labels before: {_labels(before)}")
        fleet_url = "http://" + env.stack.attributes["FleetDevLoadBalancer"]["DNSName"]
        clients = [TokenClient(env, function, "fresh", refresh_seconds=0.5), TokenClient(env, function, "sticky", refresh_seconds=None),
                   TokenClient(env, function, "fleet-fresh", 0.5, fleet_url), TokenClient(env, function, "fleet-sticky", None, fleet_url)]
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        time.sleep(2)
        printer.line("traffic", f"{sum(c.ok for c in clients)} requests ok so far; RotateSecret on the dev secret")
        sm.rotate_secret(SecretId=secret)
        middle = staging_labels(sm, secret)
        printer.line("secrets", f"RotateSecret returned; staging labels: {_labels(middle)}")
        cache = float(env.stack.parameters.get("SecretCacheSeconds", 10))
        time.sleep(2 * cache + 2)  # every execution environment and instance has re-read the secret; clients keep going
        for client in clients:
            client.stop.set()
        for thread in threads:
            thread.join(timeout=10)
        after = staging_labels(sm, secret)
        problems = []
        current_before = next(v for v, s in before.items() if "AWSCURRENT" in s)
        current_after = [v for v, s in after.items() if "AWSCURRENT" in s]
        if current_after == [current_before] or len(current_after) != 1:
            problems.append(f"AWSCURRENT did not move to one new version: {_labels(after)}")
        if "AWSPREVIOUS" not in after.get(current_before, []):
            problems.append("the previous value is not AWSPREVIOUS")
        if any("AWSPENDING" in s for s in after.values()):
            problems.append("an AWSPENDING version is left")
        new_value = secret_value(sm.get_secret_value(SecretId=secret, VersionStage="AWSCURRENT")["SecretString"])
        for client in (clients[0], clients[2]):
            status, body = client.call("/token", "POST", body="after")
            if status != 200 or verify_token(body.get("token", ""), [new_value]) is None:
                where = "the fleet" if client.fleet_url else "the Lambda function"
                problems.append(f"{where} does not issue tokens with the new value (no pickup without a redeploy)")
        lock = env.client("dynamodb").get_item(TableName=outputs["LedgerTableName"], Key={"pk": {"S": "lock#dev"}}).get("Item")
        if lock:
            problems.append("the dev lock is still held")
        failed = [f for c in clients for f in c.failed]
        if failed:
            problems.append(f"{len(failed)} failed requests: {failed[:5]}")
        ok = sum(c.ok for c in clients)
        (work_dir / "known-secrets.json").write_text(json.dumps(env.known_secrets()))  # for the e2e log scan
        if ok < 20:
            problems.append(f"only {ok} successful requests: not enough traffic to mean anything")
        print(flush=True)
        print(f"== secret {secret.split(':')[-1]}", flush=True)
        print(f"   before   {_labels(before)}", flush=True)
        print(f"   after    {_labels(after)}", flush=True)
        print(f"   traffic  {ok} requests ok, {len(failed)} failed; tokens issued: "
              + ", ".join(f"{c.name} {c.tokens}" for c in clients), flush=True)
        print(f"   ended    {'SUCCEEDED' if not problems else 'FAILED'}", flush=True)
        return verdict(env, scenario, problems, started)


def _labels(labels: dict[str, list[str]]) -> str:
    return " ".join(f"{version[:8]}={'+'.join(stages)}" for version, stages in sorted(labels.items()) if stages) or "(none)"


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
            code = 1
        if code != 0:
            failures.append(name)
    if len(names) > 1:
        print(f"== {len(names) - len(failures)}/{len(names)} scenarios ended as expected" + (f"; not: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
