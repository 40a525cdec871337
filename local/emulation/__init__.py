"""Where the local runtime adds what moto does not do: one module per AWS service.

Each module fills the documented gaps of one service and owns its patches of moto (`install` /
`uninstall`); the README's "What is emulated locally" list mirrors them:

- `lambda_runtime`    every Lambda invocation runs the project's own handler in a worker process per
  function (`LambdaRuntime`), or the podinfo stand-in; alias weights; versions keep their code.
- `ecr`               layer blobs, the OCI `/v2/` read API with referrers, PutImage's digest check
  and the push event (`EcrExtension`).
- `eventbridge`       matching rules' Lambda targets receive events, asynchronously (`EventBridgeDelivery`).
- `codedeploy`        Lambda deployments run: hooks, canary/linear traffic shifting, CloudWatch
  alarms evaluated during each bake, rollback, StopDeployment, state-change events to EventBridge
  (`CodeDeployLifecycle`).
- `scheduler`         EventBridge Scheduler's one-time schedules fire their Lambda target (`SchedulerTimers`).
- Step Functions      `local.sfn_aws` holds moto's ASL engine to the AWS rules (installed from here);
  `waits`: a Wait state's timestamp is on the local clock (a minute lasts `minute_seconds`).
- `secrets_rotation`  RotateSecret runs the rotation steps as AWS does (`SecretsRotation`).
- `fleet`             the EC2 fleet's ALBs, instances, target health, 5xx alarms and secret files
  (`FleetEmulation`), with ELBv2 and Auto Scaling changes fed to it.
- `outbox`            SNS email subscriptions deliver to files (`EmailOutbox`).

`Emulation` holds one instance of each and installs every module's patches in the order above.
Everything observable is also appended to its `Timeline`, which `local.demo` prints.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from local import sfn_aws
from local.emulation import cloudwatch, codedeploy, ecr, fleet, lambda_runtime, outbox, scheduler, secrets_rotation, waits
from local.emulation.base import LocalError, Timeline
from local.emulation.codedeploy import CodeDeployLifecycle
from local.emulation.ecr import EcrExtension
from local.emulation.eventbridge import EventBridgeDelivery, execution_status_event
from local.emulation.fleet import FleetEmulation
from local.emulation.lambda_runtime import LambdaRuntime
from local.emulation.outbox import EmailOutbox
from local.emulation.scheduler import SchedulerTimers
from local.emulation.secrets_rotation import SecretsRotation
from local.stack import Stack

__all__ = ["Emulation", "LocalError", "Timeline"]


class Emulation:
    """Installs every emulator on moto (once per process) and holds their state."""

    current: Emulation | None = None
    _installed = False

    def __init__(self, account: str, region: str, minute_seconds: float, work_dir: Path) -> None:
        self.account, self.region = account, region
        self.timeline = Timeline()
        self.ecr = EcrExtension(account, region, self.timeline)
        self.runtime: LambdaRuntime | None = None
        self.events = EventBridgeDelivery(account, region, lambda: self.runtime, self.timeline)
        self.minute_seconds = minute_seconds
        self.codedeploy = CodeDeployLifecycle(account, region, lambda: self.runtime, self.timeline, minute_seconds,
                                              emit=self.events.deliver)
        self.scheduler = SchedulerTimers(account, region, lambda: self.runtime, self.timeline)
        self.outbox = EmailOutbox(work_dir / "outbox", self.timeline)
        self.rotation = SecretsRotation(self.timeline)
        self.fleet = FleetEmulation(account, region, self.ecr, self.timeline)
        self.work_dir = work_dir
        self.duplicate_push_events = False
        self.drop_push_events = False  # the lost-event scenario: ECR's event for a push never arrives
        self.status_events = True  # Step Functions status-change events go to EventBridge (off while stopping)
        self.registry_server: Any = None

    def attach(self, stack: Stack, endpoint: str) -> None:
        self.runtime = LambdaRuntime(stack, endpoint, self.work_dir / "logs", self.timeline, self.ecr)
        self.runtime.async_retry_delays = (self.minute_seconds, 2 * self.minute_seconds)
        # Functions reach the fleet's load balancers through the emulated ALB (their HTTP_PROXY).
        self.runtime.http_proxy = self.fleet.serve()
        rotation = stack.functions.get("RotateWorkloadSecretFunction")
        refresh = float(rotation.environment.get("FLEET_SECRET_REFRESH_SECONDS", "60") if rotation else 60)
        self.fleet.start_secret_timer(endpoint, self.work_dir / "fleet", refresh,
                                      float(stack.parameters.get("SecretCacheSeconds", 10)))

    def start_registry(self) -> str:
        self.registry_server = make_server("127.0.0.1", 0, self.ecr.wsgi, threaded=True)
        threading.Thread(target=self.registry_server.serve_forever, daemon=True).start()
        self.ecr.registry_url = f"http://127.0.0.1:{self.registry_server.server_port}"
        return self.ecr.registry_url

    def shutdown(self) -> None:
        # Deployments first: their threads end before the functions and servers they call go away.
        self.codedeploy.shutdown()
        self.scheduler.shutdown()
        if self.runtime:
            self.runtime.stop()
        if self.registry_server:
            self.registry_server.shutdown()
        self.fleet.shutdown()

    def on_image_pushed(self, repository: str, image: Any, tag: str | None) -> None:
        event = self.ecr.push_event(repository, image, tag)
        label = f"{repository}@{image.image_digest[:19]}" + (f" tag {tag}" if tag else "")
        self.timeline.add("ecr", f"push {label}")
        copies = 0 if self.drop_push_events else 2 if self.duplicate_push_events else 1
        if self.drop_push_events:
            self.timeline.add("ecr", f"the push event for {label} is lost (never delivered)")
        for _ in range(copies):
            self.events.deliver(event)

    def on_execution_ended(self, execution: Any) -> None:
        """Step Functions sends an ended execution's status-change event to EventBridge (local.sfn_aws rule 8)."""
        if not self.status_events:
            return
        event = execution_status_event(execution)
        self.timeline.add("stepfunctions", f"execution {event['detail']['status']} (status-change event)", execution.name)
        self.events.deliver(event)

    @classmethod
    def active(cls) -> Emulation:
        """The emulation the patched moto methods serve (the one `install` was last given)."""
        assert cls.current is not None, "no local emulation is active"
        return cls.current

    @classmethod
    def install(cls, emulation: Emulation) -> None:
        """Point moto's extension points at `emulation` (patches are installed once per process)."""
        cls.current = emulation
        if cls._installed:
            return
        cls._installed = True
        lambda_runtime.install(cls.active)
        fleet.install(cls.active)
        sfn_aws.install()  # Step Functions as AWS runs it (local/sfn_aws.py)
        sfn_aws.status_listeners.append(_execution_ended)  # ... and sends its status-change events
        ecr.install(cls.active)
        codedeploy.install(cls.active)
        cloudwatch.install()  # percentiles and alarm history (local/emulation/cloudwatch.py)
        scheduler.install(cls.active)
        secrets_rotation.install(cls.active)
        outbox.install(cls.active)
        waits.install(cls.active)  # Wait states on the local clock (local/emulation/waits.py)

    @classmethod
    def uninstall(cls) -> None:
        """Put moto back as it was (the runtime's stop does this, so later in-process moto use is plain)."""
        waits.uninstall()
        outbox.uninstall()
        secrets_rotation.uninstall()
        scheduler.uninstall()
        cloudwatch.uninstall()
        codedeploy.uninstall()
        ecr.uninstall()
        fleet.uninstall()
        lambda_runtime.uninstall()
        cls._installed = False
        cls.current = None
        sfn_aws.status_listeners.clear()
        sfn_aws.uninstall()


def _execution_ended(execution: Any) -> None:
    if Emulation.current is not None:
        Emulation.current.on_execution_ended(execution)
