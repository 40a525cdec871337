"""The EC2 fleet (ELBv2, EC2, Auto Scaling, CloudWatch), which moto keeps only as records.

`FleetEmulation` plays the load balancers and instances: an HTTP proxy plays the ALBs (header
rules, weights, healthy targets; the functions use it as HTTP_PROXY), each instance is answered by
the stand-in for its `podinfo-image` tag, target health is its `/readyz`, canary traffic during a
split trips the fleet's 5xx alarm, and the image's `podinfo-secret-fetch` runs on a timer into each
instance's secret file. The patches here feed it moto's target health, listener and group changes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from moto.autoscaling.models import AutoScalingBackend
from moto.cloudwatch.models import cloudwatch_backends
from moto.ec2.models import ec2_backends
from moto.elbv2.models import ELBv2Backend, FakeTargetGroup, elbv2_backends

from local import standin
from local.emulation.base import Current, Patches, Timeline, p99_seconds, server_seconds
from local.emulation.cloudwatch import put_points
from local.emulation.ecr import EcrExtension
from local.template import ROOT
from podrelease.release import podinfo


class FleetEmulation:
    """The EC2 fleet's load balancers and instances, which moto keeps only as records.

    - An HTTP proxy plays every ALB: a request for `http://<the ALB's DNS name>/...` (functions get
      it as their HTTP_PROXY) follows the listener's header rules, else its weighted forward,
      round-robins over the target group's healthy instances, and is answered by the podinfo
      stand-in for the image on that instance (its `podinfo-image` tag, as the boot script reads it).
    - Target health: moto says "healthy" for every registered instance; here it is the stand-in's
      `/readyz` for the instance's image, and instances that are no longer running drop out.
    - Alarms: while a listener splits traffic between two colours, synthetic requests go through it
      (like client traffic during a canary); 5xx answers put the load balancer's 5xx alarms in ALARM.
      A listener back on one colour has its alarms evaluated afresh (OK).
    """

    def __init__(self, account: str, region: str, ecr: EcrExtension, timeline: Timeline, canary_requests: int = 20) -> None:
        self.account, self.region, self.ecr, self.timeline = account, region, ecr, timeline
        self.canary_requests = canary_requests
        self.counters: dict[str, itertools.count[int]] = {}
        self.server: Any = None
        self.proxy_url = ""
        self.secret_files: dict[str, Any] = {}  # instance id -> secretgate.FileSource
        self.secret_client: Any = None
        self.secret_dir: Path | None = None
        self.refresh_seconds = 60.0
        self.cache_seconds = 10.0
        self.stopping = threading.Event()
        self.secret_lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # -- moto's records ------------------------------------------------------------------------------
    @property
    def elbv2(self) -> Any:
        return elbv2_backends[self.account][self.region]

    @property
    def ec2(self) -> Any:
        return ec2_backends[self.account][self.region]

    def tags_of(self, instance_id: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.ec2.describe_tags(filters={"resource-id": [instance_id]})}

    def running(self, instance_id: str) -> bool:
        try:
            return str(self.ec2.get_instance_by_id(instance_id).state) == "running"
        except Exception:  # terminated and gone
            return False

    def answer(self, instance_id: str, event: dict[str, Any]) -> dict[str, Any]:
        image = self.tags_of(instance_id).get("podinfo-image", "")
        try:
            return standin.handle(event, image, self.ecr.labels_of(image), self.secrets_for(instance_id))
        except standin.FunctionError as exc:
            return {"statusCode": 502, "headers": {"content-type": "text/plain"}, "body": f"502 Bad Gateway: {exc}"}

    # -- the instances' secret file: podinfo-secret-fetch on a timer, the gate's FileSource ---------------------
    def start_secret_timer(self, endpoint: str, work_dir: Path, refresh_seconds: float, cache_seconds: float) -> None:
        """Run the image's own `podinfo-secret-fetch` for every running instance every
        `refresh_seconds` (its systemd timer), writing `<work_dir>/<instance>/jwt.json` (0400)."""
        import boto3

        self.secret_client = boto3.client("secretsmanager", region_name=self.region, endpoint_url=endpoint,
                                          aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
        self.secret_dir, self.refresh_seconds, self.cache_seconds = work_dir, refresh_seconds, cache_seconds

        def timer() -> None:
            while not self.stopping.wait(self.refresh_seconds):
                for instance_id in list(self.secret_files):
                    with contextlib.suppress(Exception):  # a failed fetch leaves the last file, as on EC2
                        self._fetch(instance_id)

        threading.Thread(target=timer, daemon=True).start()

    def _fetch(self, instance_id: str) -> Path:
        assert self.secret_dir is not None
        secret_id = self.tags_of(instance_id).get("podinfo-secret", "")
        path = self.secret_dir / instance_id / "jwt.json"
        fetch = _secret_fetcher()
        values = fetch.staged_values(self.secret_client, secret_id)
        changed = fetch.write_atomically(path, values, os.getuid(), os.getgid())
        if changed:
            self.timeline.add("fleet", f"{instance_id}: podinfo-secret-fetch wrote stages {', '.join(sorted(values))}")
        return path

    def secrets_for(self, instance_id: str) -> Any:
        """The instance's gate reads the file the timer keeps fresh (fetched once at boot)."""
        if self.secret_client is None or not self.tags_of(instance_id).get("podinfo-secret"):
            return None
        with self.secret_lock:
            if instance_id not in self.secret_files:
                from secretgate import FileSource

                self.secret_files[instance_id] = FileSource(self._fetch(instance_id), self.cache_seconds)
            return self.secret_files[instance_id]

    def health(self, instance_id: str) -> str:
        if not self.running(instance_id):
            return "draining"
        reply = self.answer(instance_id, _http_event("GET", "/readyz", "", {}, ""))
        return "healthy" if int(reply.get("statusCode", 0)) == 200 else "unhealthy"

    # -- the load balancer ----------------------------------------------------------------------------
    def _listener(self, host: str, port: int) -> Any:
        for lb in self.elbv2.load_balancers.values():
            if lb.dns_name.lower() == host.lower():
                for listener in lb.listeners.values():
                    if int(listener.port) == port:
                        return lb, listener
        return None, None

    def _target_group(self, listener: Any, headers: dict[str, str]) -> str | None:
        rules = [r for r in self.elbv2.describe_rules(listener.arn, None) if not getattr(r, "is_default", False)]
        for rule in sorted(rules, key=lambda r: int(r.priority)):
            matched = all(
                c.get("Field") == "http-header"
                and headers.get(c["HttpHeaderConfig"]["HttpHeaderName"].lower()) in c["HttpHeaderConfig"]["Values"]
                for c in rule.conditions
            )
            if matched and rule.conditions:
                return str(rule.actions[0].data["TargetGroupArn"])
        action = listener.default_actions[0].data
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        total = sum(int(g.get("Weight", 1)) for g in groups)
        if total <= 0:
            return None
        n = next(self.counters.setdefault(listener.arn, itertools.count()))
        slot = (n * 37) % total  # spreads consecutive requests over the weights deterministically
        for group in groups:
            slot -= int(group.get("Weight", 1))
            if slot < 0:
                return str(group["TargetGroupArn"])
        return None

    def route(self, host: str, port: int, method: str, path: str, query: str, headers: dict[str, str], body: str) -> dict[str, Any]:
        _lb, listener = self._listener(host, port)
        if listener is None:
            return {"statusCode": 502, "body": f"no load balancer listens on {host}:{port}", "headers": {}}
        arn = self._target_group(listener, headers)
        group = self.elbv2.target_groups.get(arn) if arn else None
        healthy = [t for t in (group.targets if group else {}) if self.health(t) == "healthy"]
        if not healthy:
            return {"statusCode": 503, "body": "503 Service Temporarily Unavailable (no healthy target)", "headers": {}}
        n = next(self.counters.setdefault(arn or "", itertools.count()))
        instance = sorted(healthy)[n % len(healthy)]
        reply = self.answer(instance, _http_event(method, path, query, headers, body))
        reply.setdefault("headers", {})["x-local-target"] = f"{group.name}/{instance}"
        return reply

    def serve(self) -> str:
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                host, _, port = (url.netloc or self.headers.get("Host", "")).partition(":")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = fleet.route(host, int(port or 80), self.command, url.path or "/", url.query, headers, body)
                data = str(reply.get("body") or "").encode()
                self.send_response(int(reply.get("statusCode", 502)))
                for key, value in (reply.get("headers") or {}).items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.proxy_url = f"http://127.0.0.1:{self.server.server_port}"
        return self.proxy_url

    def shutdown(self) -> None:
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- canary traffic and alarms ------------------------------------------------------------------------
    def _alarms_of(self, lb: Any) -> list[str]:
        """The load balancer's 5xx alarms."""
        return [name for name in self._lb_alarms(lb) if name not in self._latency_alarms_of(lb)]

    def _latency_alarms_of(self, lb: Any) -> dict[str, float]:
        """The load balancer's p99 TargetResponseTime alarms: name -> threshold in seconds."""
        cw = cloudwatch_backends[self.account][self.region]
        return {name: float(cw.alarms[name].threshold) for name in self._lb_alarms(lb)
                if cw.alarms[name].metric_name == "TargetResponseTime"}

    def _lb_alarms(self, lb: Any) -> list[str]:
        full_name = lb.arn.split(":loadbalancer/", 1)[1]
        cw = cloudwatch_backends[self.account][self.region]
        return [name for name, alarm in cw.alarms.items()
                if any(d.name == "LoadBalancer" and d.value == full_name for d in alarm.dimensions)]

    def on_listener_changed(self, listener_arn: str) -> None:
        lb = next((lb for lb in self.elbv2.load_balancers.values() if listener_arn in lb.listeners), None)
        if lb is None:
            return
        listener = lb.listeners[listener_arn]
        groups = (listener.default_actions[0].data.get("ForwardConfig") or {}).get("TargetGroups", [])
        names = {g["TargetGroupArn"]: self.elbv2.target_groups[g["TargetGroupArn"]].name for g in groups}
        split = ", ".join(f"{names[g['TargetGroupArn']].rsplit('-', 1)[-1]} {g['Weight']}%" for g in groups)
        self.timeline.add("fleet", f"{lb.name}: traffic {split}")
        cw = cloudwatch_backends[self.account][self.region]
        if sum(1 for g in groups if int(g.get("Weight", 0)) > 0) < 2:
            for name in self._lb_alarms(lb):
                if cw.alarms[name].state_value != "OK":
                    cw.set_alarm_state(name, "traffic on one colour again: evaluated afresh", "{}", "OK")
            return
        thread = threading.Thread(target=self._canary_traffic, args=(lb,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _canary_traffic(self, lb: Any) -> None:
        """Client traffic while the listener is split, evaluated as CloudWatch would after each request:
        5xx answers trip the 5xx alarms, a p99 target response time (the target's own time on each
        request) over a latency alarm's threshold trips that alarm."""
        cw = cloudwatch_backends[self.account][self.region]
        errors_alarms, latency = self._alarms_of(lb), self._latency_alarms_of(lb)
        errors, durations = 0, []
        for sent in range(1, self.canary_requests + 1):
            if self.stopping.is_set():  # the runtime stopped: no client traffic any more
                return
            reply = self.route(lb.dns_name, 80, "GET", "/", "", {"user-agent": "local-client-traffic"}, "")
            errors += int(reply.get("statusCode", 0)) >= 500
            if (took := server_seconds(reply)) is not None:
                durations.append(took)
            # What the load balancer publishes (read back by the approval's bake figures).
            put_points(self.account, self.region, "AWS/ApplicationELB", {"LoadBalancer": lb.arn.split(":loadbalancer/", 1)[1]},
                       {"RequestCount": (1, "Count"), "HTTPCode_Target_5XX_Count": (float(int(reply.get("statusCode", 0)) >= 500), "Count")}
                       | ({"TargetResponseTime": (took, "Seconds")} if took is not None else {}))
            p99 = p99_seconds(durations)
            breached = [(name, f"{errors} 5xx in {sent} requests") for name in errors_alarms if errors]
            breached += [(name, f"p99 target response time {p99:.2f}s over {limit:g}s in {sent} requests")
                         for name, limit in latency.items() if durations and p99 > limit]
            for name, why in breached:
                if cw.alarms[name].state_value != "ALARM":
                    cw.set_alarm_state(name, f"Threshold Crossed: {why} (evaluated locally)", "{}", "ALARM")
                    self.timeline.add("cloudwatch", f"alarm {name} -> ALARM ({why})")

    def on_group_scaled(self, name: str, desired: int) -> None:
        self.timeline.add("fleet", f"{name}: desired capacity {desired}")


def _secret_fetcher() -> Any:
    """workload/ec2/podinfo-secret-fetch (a script without a .py suffix), loaded as a module."""
    import importlib.machinery
    import importlib.util

    path = ROOT / "workload" / "ec2" / "podinfo-secret-fetch"
    loader = importlib.machinery.SourceFileLoader("podinfo_secret_fetch", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    if loader.name not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[loader.name] = module
    return sys.modules[loader.name]


def _http_event(method: str, path: str, query: str, headers: dict[str, str], body: str) -> dict[str, Any]:
    """A request as podinfo's front receives it (the stand-in takes the Function URL event shape)."""
    return podinfo.request(path, method, headers=headers, query=query, body=body)


_patches = Patches()


def install(current: Current) -> None:
    """Target health from the instances' stand-ins; canary traffic on weight changes; scaling on the timeline."""
    health_for = FakeTargetGroup.health_for

    def emulated_health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = health_for(self, target, ec2_backend)
        if status.status == "healthy" and str(target["Id"]).startswith("i-"):
            status.status = current().fleet.health(str(target["Id"]))
            if status.status == "unhealthy":
                status.reason, status.description = "Target.ResponseCodeMismatch", "Health checks failed with these codes: [503]"
        return status

    _patches.patch(FakeTargetGroup, "health_for", emulated_health_for)
    modify_listener = ELBv2Backend.modify_listener

    def emulated_modify_listener(self: ELBv2Backend, arn: str, *args: Any, **kwargs: Any) -> Any:
        listener = modify_listener(self, arn, *args, **kwargs)
        current().fleet.on_listener_changed(arn)
        return listener

    _patches.patch(ELBv2Backend, "modify_listener", emulated_modify_listener)
    update_group = AutoScalingBackend.update_auto_scaling_group

    def emulated_update_group(self: AutoScalingBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        group = update_group(self, name, *args, **kwargs)
        current().fleet.on_group_scaled(name, int(group.desired_capacity))
        return group

    _patches.patch(AutoScalingBackend, "update_auto_scaling_group", emulated_update_group)


def uninstall() -> None:
    _patches.restore()
