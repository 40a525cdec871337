"""What the command changes: rollback, abort, finish, re-release, block and unblock. Each action is recorded in
the ledger (`podrelease.release.actions`) with who did it (the caller's ARN).

- `rollback ENV`: a release of an earlier digest into ENV, started as the starter starts a re-release
  (`podrelease.release.start`), marked `rollback` so the state machine's entry Choice sends a prod
  rollback straight to the prod stages: re-verified under today's policy, promoted, canaried with the
  same hooks, recorded and notified as any release. A dev rollback runs the dev stages (and then asks
  for approval as every release does; reject it to keep prod as it is).
- `abort ID`: stop the execution and run what its failure path runs, in the same order, with the same
  functions: Record (outcome FAILED, `AbortedByOperator`), Abort (roll back what is in flight, release
  its locks, withdraw a pending approval: `podrelease.release.cleanup.undo_stopped`, the status-change
  rule's own undo), notify. `StopExecution` alone would leave the canary running and the locks held. An
  execution that already ended without its failure path (stopped by hand, timed out, no record or a
  lock still held) gets the same cleanup, without the stop.
- `finish ID`: end the current canary bake now and shift the rest of the traffic, post-traffic
  checks still run: the watch function's `finish` action (`podrelease.release.finish`).
- `rollback ENV --fast`: the rollback release switches all traffic at once (CodeDeploy's
  LambdaAllAtOnce, the fleet in one step), its hooks and checks still run.
"""

from __future__ import annotations

import json
import time
from typing import Any

from podrelease.approval.store import ApprovalStore
from podrelease.core.errors import InvalidRequest
from podrelease.release import actions as ledger_actions
from podrelease.release.cleanup import CleanupFailed, undo_stopped
from podrelease.release.events import DIGEST_RE, execution_name
from podrelease.release.ledger import Ledger
from podrelease.release.start import start_release
from podrelease_cli import views
from podrelease_cli.target import Target

ABORTED = "AbortedByOperator"


class OperationRefused(Exception):
    """The action cannot be done as asked (nothing was changed); the message says why."""


def _actions(target: Target) -> ledger_actions.Actions:
    return ledger_actions.Actions(target.table())


def _invoke(target: Target, logical_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    reply = target.client("lambda").invoke(FunctionName=target.function(logical_id), Payload=json.dumps(payload).encode())
    body = json.loads(reply["Payload"].read() or b"null")
    if reply.get("FunctionError"):
        error = body if isinstance(body, dict) else {"errorMessage": body}
        msg = f"{logical_id} failed: {error.get('errorType', '')}: {error.get('errorMessage')}"
        raise OperationRefused(msg)
    return body if isinstance(body, dict) else {}


def _next_attempt(target: Target, repository: str, digest: str) -> int:
    """The first attempt number (2..99) whose execution name is free: a new release of the same digest."""
    sfn = target.client("stepfunctions")
    for attempt in range(2, 100):
        try:
            sfn.describe_execution(executionArn=target.execution_arn(execution_name(repository, digest, attempt)))
        except sfn.exceptions.ExecutionDoesNotExist:
            return attempt
    msg = f"{repository}@{digest} was released 99 times already; the release names are used up"
    raise OperationRefused(msg)


def _repository_of(target: Target, digest: str, history: list[dict[str, Any]]) -> str:
    known = next((r["repository"] for r in history if r.get("digest") == digest and r.get("repository")), None)
    if known:
        return str(known)
    watched = target.function_environment("NormalizeFunction").get("WATCHED_REPOSITORIES", "")
    return watched.split(",")[0].strip()


def _start(target: Target, repository: str, digest: str, rollback: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"action": "rerelease", "repository": repository, "digest": digest,
                             "attempt": _next_attempt(target, repository, digest)}
    if rollback:
        event["rollback"] = rollback
    started = start_release(target.client("stepfunctions"), target.state_machine, event, ())
    if not started.get("started"):
        msg = f"no release started: {started}"
        raise OperationRefused(msg)
    return started


def rerelease(target: Target, digest: str) -> dict[str, Any]:
    """A new release of `digest` (the next attempt), through every stage as a push would."""
    if not DIGEST_RE.match(digest):
        msg = f"{digest!r} is not a digest (sha256:<64 hex>)"
        raise OperationRefused(msg)
    repository = _repository_of(target, digest, views.records(target))
    started = _start(target, repository, digest)
    _actions(target).record("rerelease", target.caller(), release_id=started["name"], digest=digest, repository=repository)
    return {"release_id": started["name"], "digest": digest, "repository": repository, "requested_by": target.caller()}


def rollback_choice(history: list[dict[str, Any]], environment: str, live_digest: str | None,
                    to_digest: str | None = None, to_release: str | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the release now live in `environment`, the release to go back to) from the ledger's records
    (newest first). By default the one before the live one: the newest release into `environment`
    with another digest. Raises OperationRefused when there is none."""
    into = [r for r in history if views.deployed_to(r, environment)]
    current = next((r for r in into if r.get("digest") == live_digest), None)
    if to_release:
        chosen = next((r for r in history if r.get("release_id") == to_release), None)
        if chosen is None or not chosen.get("digest"):
            msg = f"no release {to_release} in the ledger"
            raise OperationRefused(msg)
    elif to_digest:
        if not DIGEST_RE.match(to_digest):
            msg = f"{to_digest!r} is not a digest (sha256:<64 hex>)"
            raise OperationRefused(msg)
        chosen = next((r for r in into if r.get("digest") == to_digest), {"digest": to_digest})
    else:
        chosen = next((r for r in into if r.get("digest") != live_digest), None)
        if chosen is None:
            msg = f"no earlier successful release into {environment} than the live one ({live_digest}): name one with --to"
            raise OperationRefused(msg)
    if chosen.get("digest") == live_digest:
        msg = f"{environment} already runs {live_digest}"
        raise OperationRefused(msg)
    return current, chosen


def rollback(target: Target, environment: str, to_digest: str | None = None, to_release: str | None = None,
             *, fast: bool = False) -> dict[str, Any]:
    """Release an earlier digest into `environment` (re-verified, canaried, recorded with who asked);
    `fast`: all traffic at once instead of the canary steps (the hooks and checks still run)."""
    live = next(row["digest"] for row in views.status(target) if row["environment"] == environment and row["target"] == "lambda")
    history = views.records(target)
    current, chosen = rollback_choice(history, environment, live, to_digest, to_release)
    digest = str(chosen["digest"])
    repository = str(chosen.get("repository") or _repository_of(target, digest, history))
    who = target.caller()
    request = {"environment": environment, "requested_by": who, "replaces": (current or {}).get("release_id") or ""}
    asked: dict[str, Any] = {k: v for k, v in request.items() if v} | ({"fast": True} if fast else {})
    started = _start(target, repository, digest, asked)
    _actions(target).record("rollback", who, release_id=started["name"], digest=digest, environment=environment,
                            replaces=request["replaces"], from_digest=live, to_release=chosen.get("release_id"),
                            fast=fast or None)
    return {"release_id": started["name"], "environment": environment, "digest": digest, "from_digest": live,
            "replaces": request["replaces"] or None, "to_release": chosen.get("release_id"), "requested_by": who,
            "fast": fast}


def finish(target: Target, release_id: str) -> dict[str, Any]:
    """End the release's current bake and shift the rest now (post-traffic checks still run), recorded with who asked."""
    who = target.caller()
    done = _invoke(target, "WatchFunction", {"action": "finish", "release": {"id": release_id}, "requested_by": who})
    _actions(target).record("finish", who, release_id=release_id, environment=done.get("environment"))
    return {"release_id": release_id, "environment": done.get("environment"), "finished_by": who,
            "status": done.get("status")}


def abort(target: Target, release_id: str) -> dict[str, Any]:
    """Stop a running release and undo it as its failure path does: record, roll back, release locks, notify."""
    execution, events = views.history(target, release_id)
    if execution is None:
        msg = f"no release {release_id}"
        raise OperationRefused(msg)
    running = execution["status"] == "RUNNING"
    if not running and not _died_without_cleanup(target, release_id, execution["status"]):
        msg = f"release {release_id} is not running ({execution['status']}) and its failure path ran: there is nothing to abort"
        raise OperationRefused(msg)
    who = target.caller()
    cause = f"aborted by {who} (podrelease abort)"
    state = views.last_state(events) | {"error": {"Error": ABORTED, "Cause": cause}}
    # The failure path's states, in its order: RecordFailure, Abort, NotifyFailure. The record comes
    # before the stop: the status-change rule's cleanup then finds it and leaves the undo to this command.
    summary = _invoke(target, "RecordFunction", {"outcome": "FAILED", "state": state, "execution_name": release_id})
    if running:
        target.client("stepfunctions").stop_execution(executionArn=execution["executionArn"], error=ABORTED, cause=cause)
    try:
        undone = undo_stopped(target.client("lambda"), target.function("DeployFunction"), ApprovalStore(target.table()).withdraw,
                              release_id, state, cause, time.time())
    except CleanupFailed as exc:
        raise OperationRefused(str(exc)) from exc
    sns = target.client("sns")
    sns.publish(TopicArn=target.outputs["NotifyTopicArn"], Subject=summary["subject"], Message=summary["message"])
    _actions(target).record("abort", who, release_id=release_id, stopped=undone.get("stopped", []),
                            locks_released=undone.get("locks_released", []), approval_withdrawn=undone["approval_withdrawn"])
    return {"release_id": release_id, "aborted_by": who, "stopped": undone.get("stopped", []),
            "locks_released": undone.get("locks_released", []), "stopped_at": summary["record"].get("stopped_at")}


def _died_without_cleanup(target: Target, release_id: str, status: str) -> bool:
    """An execution that ended without its failure path (stopped by hand, timed out, States.Runtime):
    no release record, or a lock it still holds. Aborting it runs the cleanup it never ran."""
    if status == "SUCCEEDED":
        return False
    ledger = Ledger(target.table())
    return ledger.get_release(release_id) is None or release_id in (ledger.lock_holder(e) for e in views.ENVIRONMENTS)


def block(target: Target, digest: str, reason: str = "") -> dict[str, Any]:
    try:
        blocked: dict[str, Any] = views.plain(_actions(target).block(digest, target.caller(), reason))
    except InvalidRequest as exc:
        raise OperationRefused(str(exc)) from exc
    return blocked


def unblock(target: Target, digest: str) -> dict[str, Any]:
    try:
        was = _actions(target).unblock(digest, target.caller())
    except InvalidRequest as exc:
        raise OperationRefused(str(exc)) from exc
    return {"digest": digest, "was_blocked": was, "unblocked_by": target.caller()}
