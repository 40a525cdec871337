"""The `rotation` scenario: the dev workload secret rotates under live, authenticated traffic.

Four token clients keep calling the dev service (two on the Lambda function, two through the
fleet's load balancer) while Secrets Manager rotates the secret; the scenario ends as expected only
when no request failed and both targets issue tokens with the new value without a redeploy.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.demo_report import Printer, verdict
from local.runtime import LocalRuntime
from podrelease.release import podinfo
from podrelease.rotation.workload_secret import secret_value, staging_labels, verify_token

if TYPE_CHECKING:
    from local.demo import Scenario  # the scenario table, which runs this scenario


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
