"""Deploying a digest to one environment over both of its targets, side by side: its podinfo
function through a CodeDeploy canary (`lambda_target`) and, when the stack has one, its EC2 fleet
blue/green (`fleet`).

- `start`: update the function's code by digest, publish, start the deployment; start the fleet's
  idle colour. `Updating` while Lambda still applies the image.
- `status`: carry on an `Updating` start, poll CodeDeploy and advance the fleet (DeploymentFailed
  on rollback). `Succeeded` only once both targets are; the fleet keeps its previous colour
  running until the Lambda target is done, so either target failing still rolls both back.
- `abort` (the failure path): in the environment(s) the release still holds, stop in-flight
  deployments (CodeDeploy rolls them back), point a finished alias back, move fleet traffic back;
  then release its locks. An environment it already let go of (dev, once its canary passed) keeps
  the release: a rejected promotion does not roll dev back. It fences each lock it undoes first, so
  a start still running when its execution was stopped undoes itself (`LockLost`) or is found there.

The state handed back to the state machine is the Lambda deployment's, with `lambda_status` and
`fleet` beside it when the environment has a fleet (`status` is then the two combined).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podrelease.core import config, edge
from podrelease.core.errors import InvalidRequest, LockLost
from podrelease.core.obs import release_id_of
from podrelease.release import finish, fleet
from podrelease.release import lambda_target as deploy
from podrelease.release.ledger import Ledger

ENVIRONMENTS = ("dev", "prod")
ACTIONS = ("start", "status", "abort")
RELEASE_FIELDS = ("id", "digest", "repository", "account", "region")  # what start and status read of the release
FleetClients = Callable[[], tuple[Any, Any, Any]]  # () -> (elbv2, autoscaling, cloudwatch), built on first use


def _combined(result: dict[str, Any]) -> dict[str, Any]:
    """`status` is Succeeded only when the Lambda target and the fleet (if any) both are."""
    if "fleet" not in result:
        return result
    done = result["lambda_status"] == deploy.TERMINAL_OK and result["fleet"]["phase"] == "Succeeded"
    return result | {"status": deploy.TERMINAL_OK if done else "InProgress"}


@dataclass(frozen=True)
class Request:
    """The deploy function's event, as the state machine's DeployDev/CheckDev/.../Abort states pass it."""

    action: str
    release_id: str
    environment: str = ""
    release: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)  # status: the last state handed back
    state: dict[str, Any] = field(default_factory=dict)  # abort: the execution's whole state

    @classmethod
    def parse(cls, event: Any, where: str = "deploy") -> Request:
        """An unknown action, environment or a missing field is InvalidRequest (nothing is touched)."""
        body = edge.mapping(event, where)
        action = edge.action(body, ACTIONS, where)
        if action == "abort":
            state = edge.field(body, "state", dict, where, default={})
            return cls(action, release_id_of(state) or "", state=state)
        release = edge.field(body, "release", dict, where)
        facts = {name: edge.field(release, name, str, f"{where}: release") for name in RELEASE_FIELDS}
        environment = edge.field(body, "environment", str, where)
        if environment not in ENVIRONMENTS:
            msg = f"{where}: unknown environment {environment!r} (expected one of {', '.join(ENVIRONMENTS)})"
            raise InvalidRequest(msg)
        deployment = edge.field(body, "deployment", dict, where) if action == "status" else {}
        return cls(action, facts["id"], environment, release, deployment)


@dataclass
class Rollout:
    """One stack's targets: a LambdaTarget per environment, a FleetTarget (or None) per environment."""

    lambda_client: Any
    codedeploy: Any
    ledger: Ledger
    targets: dict[str, deploy.LambdaTarget]
    fleets: dict[str, fleet.FleetTarget | None]
    repositories: dict[str, str]  # environment -> the repository it deploys from (else the release's)
    fleet_clients: FleetClients
    #: Lets go of a lock and hands it to the next waiter (`LockQueue.release`); the ledger's plain release otherwise.
    release_lock: Callable[[str, str], bool] | None = None
    _clients: tuple[Any, Any, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str], lambda_client: Any, codedeploy: Any, ledger: Ledger,
                 fleet_clients: FleetClients) -> Rollout:
        """The deploy function's settings (a missing one is a ConfigurationError naming it)."""
        minute = float(config.optional("CANARY_MINUTE_SECONDS", "60", env))
        return cls(
            lambda_client, codedeploy, ledger,
            targets={e: deploy.LambdaTarget.from_env(e, dict(env)) for e in ENVIRONMENTS},
            fleets={e: fleet.FleetTarget.from_env(e, env.get(f"FLEET_{e.upper()}", ""), minute) for e in ENVIRONMENTS},
            repositories={"prod": config.require("PROD_REPOSITORY", env)},
            fleet_clients=fleet_clients,
        )

    def _fleet(self, environment: str) -> fleet.Fleet | None:
        target = self.fleets[environment]
        if target is None:
            return None
        if self._clients is None:
            self._clients = self.fleet_clients()
        return fleet.Fleet(*self._clients, target)

    def run(self, request: Request) -> dict[str, Any]:
        """The request's action."""
        if request.action == "abort":
            return self.abort(request.release_id, request.state)
        if request.action == "start":
            return self.start(request.release, request.environment)
        return self.status(request.environment, request.deployment)

    def image_uri(self, release: dict[str, Any], environment: str) -> str:
        repository = self.repositories.get(environment, release["repository"])
        registry = f"{release['account']}.dkr.ecr.{release['region']}.amazonaws.com"
        return f"{registry}/{repository}@{release['digest']}"

    def start(self, release: dict[str, Any], environment: str) -> dict[str, Any]:
        image_uri = self.image_uri(release, environment)
        rollback: dict[str, Any] = release["rollback"] if isinstance(release.get("rollback"), dict) else {}
        fast = rollback.get("fast") is True and rollback.get("environment") == environment  # podrelease rollback --fast
        asked = release | {"image_uri": image_uri} | ({"config": deploy.ALL_AT_ONCE} if fast else {})
        result = deploy.start(self.lambda_client, self.codedeploy, self.targets[environment], asked)
        controller = self._fleet(environment)
        if controller is not None:
            state = controller.start(release["id"], release["digest"], image_uri, all_at_once=fast)
            result = result | {"lambda_status": result["status"], "fleet": state}
        if not self.ledger.note_started(environment, release["id"], result):
            # Stopped while this ran (StopExecution does not stop a running Task): the abort that fenced
            # the lock could not see this deployment, so it is undone here.
            deploy.abort(self.codedeploy, [result], self.lambda_client)
            if controller is not None:
                controller.abort(result["fleet"])
            msg = (f"release {release['id']} no longer holds the {environment} lock (stopped, aborted or its lease ran "
                   f"out): the {environment} deployment it had just started was undone")
            raise LockLost(msg)
        return _combined(result)

    def status(self, environment: str, deployment: dict[str, Any]) -> dict[str, Any]:
        fleet_state = deployment.get("fleet")
        finishing = deployment.get(finish.MARK)  # an operator asked to end the bake now (podrelease finish)
        lambda_part = {k: v for k, v in deployment.items() if k not in ("fleet", "lambda_status")}
        lambda_part["status"] = deployment.get("lambda_status", deployment.get("status"))
        if lambda_part["status"] == deploy.UPDATING:  # Lambda was still applying the image: carry on the start
            lambda_part = deploy.resume(self.lambda_client, self.codedeploy, self.targets[environment], lambda_part)
        elif lambda_part["status"] != deploy.TERMINAL_OK and finishing:
            lambda_part = finish.lambda_now(self.lambda_client, self.codedeploy, lambda_part)
        elif lambda_part["status"] != deploy.TERMINAL_OK:
            lambda_part = deploy.status(self.codedeploy, lambda_part)
        controller = self._fleet(environment)
        if fleet_state is None or controller is None:
            return lambda_part
        lambda_done = lambda_part["status"] == deploy.TERMINAL_OK
        if finishing:
            fleet_state = fleet_state | {finish.MARK: finishing}
        advanced = controller.advance(fleet_state, retire=lambda_done)
        return _combined(lambda_part | {"lambda_status": lambda_part["status"], "fleet": advanced})

    def undo_step(self, environment: str, deployment: dict[str, Any]) -> list[str]:
        """Undo one watch step that ran beside an abort (`watch.Watcher._step`): stop a Lambda deployment
        still in flight, move the fleet's traffic back. What it undid."""
        undone = deploy.abort(self.codedeploy, [deployment])
        controller = self._fleet(environment)
        if controller is not None and isinstance(deployment.get("fleet"), dict):
            fleet_undone = controller.abort(deployment["fleet"])
            undone += [fleet_undone] if fleet_undone else []
        return undone

    def abort(self, release_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """Undo what the release `release_id` has in flight (its execution's `state`), release its locks."""
        in_flight = {env: state[env]["deployment"] for env in ENVIRONMENTS
                     if isinstance(state.get(env), dict) and isinstance(state[env].get("deployment"), dict)}
        # A watched deployment's latest state is in the ledger (the execution has only its start); its
        # watch is ended first, so no tick steps the deployment on while this undoes it.
        for env in ENVIRONMENTS:
            latest = self.ledger.end_watch(env, release_id) if release_id else None
            if latest is not None:
                in_flight[env] = latest
        # The environment(s) this release still holds were being deployed when it failed: everything
        # there is undone, finished targets included.
        # Fencing the lock stops a start still running (a stopped execution's DeployDev Task goes on)
        # from keeping its deployment; one it kept before is undone here like the others.
        fenced = {env: item for env in ENVIRONMENTS if release_id and (item := self.ledger.fence(env, release_id))}
        for env, item in fenced.items():
            if env not in in_flight and isinstance(item.get("started"), dict):
                in_flight[env] = item["started"]
        holding = set(fenced)
        stopped: list[str] = []
        for env, deployment in in_flight.items():
            stopped += deploy.abort(self.codedeploy, [deployment], self.lambda_client if env in holding else None)
            controller = self._fleet(env)
            if controller is not None and env in holding and isinstance(deployment.get("fleet"), dict):
                undone = controller.abort(deployment["fleet"])
                if undone:
                    stopped.append(undone)
        release_lock = self.release_lock or self.ledger.release_lock
        released = [env for env in ENVIRONMENTS if release_id and release_lock(env, release_id)]
        return {"stopped": stopped, "locks_released": released}
