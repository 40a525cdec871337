"""Synthetic checks: the scheduled prober calls each environment's live endpoints the way a client
does and says which failed.

Per environment: podinfo's Lambda target through its `live` alias (`/healthz`, `/readyz`,
`/version`, the traffic hooks' own `call`) and, when the stack has one, the fleet's load balancer
over HTTP. Every request carries one correlation id (`probe-<time>-<environment>`) as
`X-Correlation-Id`, so a failing probe can be found in podinfo's logs. The handler turns the result
into the `ProbeFailures` metric per environment, whose alarm is a rollback alarm of that
environment's deployments (during a canary) and pages (after it).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from podrelease.release.hooks import PATHS, call
from podrelease.release.lambda_target import ALIAS

FLEET_TIMEOUT_SECONDS = 5


def fleet_call(base_url: str, path: str, correlation_id: str) -> dict[str, Any]:
    """GET `base_url + path` (the fleet's load balancer); any answer but 200 is a failed check."""
    request = urllib.request.Request(base_url.rstrip("/") + path, headers={  # noqa: S310 - the stack's own load balancer URL
        "x-correlation-id": correlation_id, "user-agent": "podinfo-release-prober"})
    try:
        with urllib.request.urlopen(request, timeout=FLEET_TIMEOUT_SECONDS) as reply:  # noqa: S310
            return {"path": path, "ok": reply.status == 200, "status": reply.status, "detail": ""}
    except urllib.error.HTTPError as exc:
        return {"path": path, "ok": False, "status": exc.code, "detail": str(exc.reason)[:200]}
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return {"path": path, "ok": False, "status": None, "detail": str(exc)[:200]}


@dataclass(frozen=True)
class Prober:
    """The environments to probe: environment -> podinfo function name, and -> fleet URL (may be absent)."""

    lambda_client: Any
    functions: dict[str, str]
    fleets: dict[str, str] = field(default_factory=dict)

    def probe(self, environment: str, now: float | None = None) -> dict[str, Any]:
        correlation_id = f"probe-{int(time.time() if now is None else now)}-{environment}"
        started = time.monotonic()
        checks = [call(self.lambda_client, self.functions[environment], ALIAS, path, correlation_id) | {"target": "lambda"}
                  for path in PATHS]
        if self.fleets.get(environment):
            checks += [fleet_call(self.fleets[environment], path, correlation_id) | {"target": "fleet"}
                       for path in PATHS if path != "/version"]
        failed = [f"{c['target']} {c['path']}" for c in checks if not c["ok"]]
        return {"environment": environment, "correlation_id": correlation_id, "failed": failed,
                "seconds": round(time.monotonic() - started, 3), "checks": checks}

    def run(self) -> list[dict[str, Any]]:
        return [self.probe(environment) for environment in sorted(self.functions)]
