"""What the command shows: release history, one release's timeline, what runs where. Read only.

Facts come from where they are kept: outcomes, evidence and approvers from the ledger's release
records (`podrelease.release.summary`); stage times from the execution history; what serves traffic
from the targets themselves (the podinfo function's `live` alias, the fleet's listener weights and
its colours' image tags); what is in flight from the ledger's locks and the running executions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from podrelease.core.times import epoch
from podrelease.release import fleet
from podrelease.release.actions import Actions, scan_prefix
from podrelease.release.ledger import Ledger
from podrelease_cli.target import Target

ENVIRONMENTS = ("dev", "prod")
#: The release's stages as the state machine's states make them (a state not listed is its own stage).
#: WaitDev/WaitProd are the poll loop of executions started before the deploy waits became callbacks.
STAGE_OF = {
    "Normalize": "normalize", "Rollback?": "normalize",
    "AcquireDevLock": "dev lock", "Verify": "verify", "DevWindowOpen?": "verify",
    "NoteDevWindow": "dev window", "WaitForDevWindow": "dev window",  # waits for dev's deploy window (release policy)
    "DeployDev": "deploy dev", "WatchDev": "deploy dev", "WaitDev": "deploy dev", "CheckDev": "deploy dev",
    "DevDeployed?": "deploy dev",
    "ReleaseDevLock": "deploy dev", "RequestApproval": "approval", "ApprovalTimedOut": "approval",
    "AcquireProdLock": "prod lock", "VerifyProd": "verify for prod", "ProdWindowOpen?": "verify for prod",
    "NoteProdWindow": "prod window", "WaitForProdWindow": "prod window",  # an approval in a freeze waits here
    "Promote": "promote", "VerifyPromoted": "promote",
    "DeployProd": "deploy prod", "WatchProd": "deploy prod", "WaitProd": "deploy prod", "CheckProd": "deploy prod",
    "ProdDeployed?": "deploy prod",
    "ReleaseProdLock": "deploy prod",
    **dict.fromkeys(("RecordSuccess", "RecordFailure", "RecordRejected", "RecordFallback", "Abort", "NotifySuccess",
                     "NotifyFailure", "CauseIsText?", "Released", "ReleaseFailed", "ReleaseFailedWithoutCause",
                     "FailedUnrecorded"), "record"),
}
#: Where a stage completing means the environment got the release (`stages_done` in the record).
DEPLOYED_STAGE = {"dev": "deploy dev", "prod": "deploy prod"}


def iso(ts: Any) -> str | None:
    seconds = epoch(ts)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(value: Any) -> Any:
    """A DynamoDB value as JSON would have it (Decimals as numbers), secrets left out."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if "token" not in k}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


def records(target: Target) -> list[dict[str, Any]]:
    """Every release record in the ledger, newest first."""
    found = [plain(r) for r in scan_prefix(target.table(), "release#")]
    return sorted(found, key=lambda r: int(r.get("recorded_at", 0)), reverse=True)


def deployed_to(record: dict[str, Any], environment: str) -> bool:
    return DEPLOYED_STAGE[environment] in (record.get("stages_done") or [])


def running(target: Target) -> list[dict[str, Any]]:
    sfn = target.client("stepfunctions")
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=target.state_machine, statusFilter="RUNNING"):
        found += page["executions"]
    return found


def releases(target: Target, environment: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """The release history: one row per release (running ones first), filtered by environment and time."""
    rows = [{"release_id": e["name"], "outcome": "RUNNING", "digest": None, "stopped_at": None, "error": None,
             "approved_by": None, "rollback": None, "at": iso(e["startDate"].timestamp())}
            for e in running(target) if since is None or e["startDate"].timestamp() >= since]
    keys = ("release_id", "outcome", "digest", "stopped_at", "error", "approved_by", "rollback")
    for record in records(target):
        if since is not None and int(record.get("recorded_at", 0)) < since:
            continue
        rolled_back_into = (record.get("rollback") or {}).get("environment")
        if environment and not (deployed_to(record, environment) or rolled_back_into == environment):
            continue
        rows.append({key: record.get(key) for key in keys} | {"at": iso(record.get("recorded_at"))})
    return rows


def history(target: Target, release_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The execution (describe) and its history events, or (None, []) when it no longer exists."""
    sfn = target.client("stepfunctions")
    try:
        execution = sfn.describe_execution(executionArn=target.execution_arn(release_id))
    except sfn.exceptions.ExecutionDoesNotExist:
        return None, []
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=target.execution_arn(release_id)):
        events += page["events"]
    return dict(execution), events


def timeline(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The release's stages in order: when each began and ended, how long it took, its last state."""
    stages: list[dict[str, Any]] = []
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        details = entered or exited
        if not details:
            continue
        stage = STAGE_OF.get(details["name"], details["name"])
        at = event["timestamp"].timestamp()
        if not stages or stages[-1]["stage"] != stage:
            stages.append({"stage": stage, "started": at, "ended": None, "state": details["name"]})
        if exited:
            stages[-1] |= {"ended": at, "state": details["name"]}
    return [s | {"started": iso(s["started"]), "ended": iso(s["ended"]),
                 "seconds": round(s["ended"] - s["started"], 3) if s["ended"] is not None else None} for s in stages]


def last_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The execution's latest state document (what the failure path's Record and Abort states get)."""
    for event in reversed(events):
        details = event.get("stateExitedEventDetails") or event.get("stateEnteredEventDetails") or {}
        text = details.get("output", details.get("input"))
        try:
            state = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(state, dict) and isinstance(state.get("release"), dict):
            return state
    return {}


def release(target: Target, release_id: str) -> dict[str, Any] | None:
    """One release: its record, timeline, evidence, deployments, approval and the operators' actions on it."""
    table = target.table()
    record = Ledger(table).get_release(release_id)
    execution, events = history(target, release_id)
    if record is None and execution is None:
        return None
    record = plain(record or {})
    state = last_state(events)
    approval = table.get_item(Key={"pk": f"approval#{release_id}"}, ConsistentRead=True).get("Item")
    facts = state.get("release") or {}
    return {
        "release_id": release_id,
        "status": execution["status"] if execution else record.get("outcome"),
        "outcome": record.get("outcome"),
        "repository": record.get("repository") or facts.get("repository"),
        "digest": record.get("digest") or facts.get("digest"),
        "pushed_at": record.get("pushed_at") or facts.get("time"),
        "started": iso(execution["startDate"].timestamp()) if execution else None,
        "stopped": iso(execution["stopDate"].timestamp()) if execution and execution.get("stopDate") else None,
        "recorded_at": iso(record.get("recorded_at")),
        "stages_done": record.get("stages_done", []),
        "stopped_at": record.get("stopped_at"),
        "error": record.get("error"),
        "cause": record.get("cause"),
        "rollback": record.get("rollback") or facts.get("rollback"),
        "timeline": timeline(events),
        "evidence": {k: record.get(k, plain(state.get(k))) for k in ("evidence", "evidence_prod")
                     if record.get(k) or state.get(k)},
        "deployments": {env: plain(state[env]["deployment"]) for env in ENVIRONMENTS
                        if isinstance(state.get(env), dict) and isinstance(state[env].get("deployment"), dict)},
        "approval": plain(approval) if approval else None,
        "approved_by": record.get("approved_by"),
        "approved_at": record.get("approved_at"),
        "actions": [a | {"at": iso(a.get("at"))} for a in plain(Actions(table).history(release_id=release_id))],
    }


def _lambda_live(target: Target, environment: str) -> dict[str, Any]:
    lam = target.client("lambda")
    function = target.podinfo_function(environment)
    alias = lam.get_alias(FunctionName=function, Name="live")
    version = alias["FunctionVersion"]
    image = str(lam.get_function(FunctionName=function, Qualifier=version)["Code"].get("ImageUri", ""))
    shifting = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return {"target": "lambda", "digest": image.rpartition("@")[2] or None, "version": version,
            "in_flight": {"versions": shifting} if shifting else None}


def _fleet_live(target: Target, environment: str) -> dict[str, Any] | None:
    spec = target.function_environment("DeployFunction").get(f"FLEET_{environment.upper()}", "")
    where = fleet.FleetTarget.from_env(environment, spec)
    if where is None:
        return None
    controller = fleet.Fleet(target.client("elbv2"), target.client("autoscaling"), target.client("cloudwatch"), where)
    weights = controller.weights()
    colour = controller.live_colour(weights)
    image = controller.image_of(colour)
    split = {c: w for c, w in weights.items() if w}
    return {"target": "fleet", "digest": image.rpartition("@")[2] or None, "colour": colour,
            "in_flight": {"weights": split} if len(split) > 1 else None}


def status(target: Target) -> list[dict[str, Any]]:
    """Per environment and target: the digest live now, since when, its release and approver, what is in flight."""
    history_ = records(target)
    # A release still running (dev done, waiting for approval) is not recorded yet: its execution says since when.
    in_flight = [{"release_id": e["name"], "recorded_at": e["startDate"].timestamp()} for e in running(target)]
    ledger = Ledger(target.table())
    rows = []
    for environment in ENVIRONMENTS:
        holder = ledger.lock_holder(environment)
        for live in (_lambda_live(target, environment), _fleet_live(target, environment)):
            if live is None:
                continue
            digest = str(live["digest"])
            source = next((r for r in history_ if r.get("digest") == digest and deployed_to(r, environment)), None) or \
                next((r for r in in_flight if f"-{digest[7:19]}-" in r["release_id"]), None) or {}
            rows.append({
                "environment": environment,
                **live,
                "release_id": source.get("release_id"),
                "since": iso(source.get("recorded_at")),
                "approved_by": source.get("approved_by"),
                "release_in_flight": holder,
            })
    return rows
