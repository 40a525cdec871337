"""A finished release: its record in the ledger and the notification text, from its final state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from podrelease.core.notify import sns_subject

#: How an execution ended, as the Record states name it.
OUTCOMES = ("SUCCEEDED", "FAILED", "REJECTED")


def _deployed(environment: str) -> Callable[[dict[str, Any]], bool]:
    def done(state: dict[str, Any]) -> bool:
        section = state.get(environment)
        deployment = section.get("deployment") if isinstance(section, dict) else None
        return isinstance(deployment, dict) and deployment.get("status") == "Succeeded"

    return done


# The stages of a release, in order, and how to tell from the state that each has completed.
STAGES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("verify", lambda state: "evidence" in state),
    ("deploy dev", _deployed("dev")),
    ("approval", lambda state: "approval" in state),
    ("verify for prod", lambda state: "evidence_prod" in state),
    ("promote", lambda state: "promotion" in state),
    ("deploy prod", _deployed("prod")),
)


def _cause(error: dict[str, Any]) -> str:
    """The error's cause; a Lambda error's message when the cause is Lambda's JSON document."""
    cause = str(error.get("Cause", ""))
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    return str(parsed["errorMessage"]) if isinstance(parsed, dict) and "errorMessage" in parsed else cause


def _timing_and_rollback(release: dict[str, Any]) -> dict[str, Any]:
    """The push event's time (lead time push -> prod, `podrelease.release.dora`) and an operator's
    rollback (`podrelease rollback`: into which environment, who asked, what it replaced), when there."""
    facts: dict[str, Any] = {}
    if release.get("time"):
        facts["pushed_at"] = str(release["time"])
    if isinstance(release.get("rollback"), dict):
        facts["rollback"] = release["rollback"]
    return facts


def _what_was_left(outcome: str, error: Any, done: list[str]) -> str:
    """What a release that did not succeed left serving traffic, in one line of the outcome email."""
    if outcome == "REJECTED":
        return "Nothing was deployed: the event was refused before any stage ran."
    if error == "Superseded":
        return "Nothing was deployed: a newer push of the repository took its place (a rollback deploys it anyway)."
    if error == "ApprovalSuperseded":
        return "dev now runs the newer release that superseded this one; prod was left as it was."
    if "deploy dev" in done:
        # dev's canary passed and dev was let go of: it keeps the release; prod is as it was.
        return ("dev keeps running this release (its canary passed); prod was left as it was, "
                "any prod deployment in flight was rolled back.")
    return "Nothing from this release is left serving traffic: in-flight deployments were rolled back."


def _window_lines(state: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """A deploy window that held the release (podrelease.verify.windows): how long, and why; kept in the record."""
    windows: dict[str, Any] = state["windows"] if isinstance(state.get("windows"), dict) else {}
    if windows:
        record["windows"] = windows
    return [f"Waited for {environment}'s deploy window until {window['wait_until']} ({window.get('reason', '')})"
            for environment in ("dev", "prod")
            if isinstance(window := windows.get(environment), dict) and window.get("wait_until")]


def summarize(outcome: str, state: dict[str, Any], execution_name: str, console_url: str = "",
              approval_summary: str = "") -> dict[str, Any]:
    """The record of a finished release and the notification text (no secrets: facts only).
    `approval_summary`: the release's approval summary in plain text, as its approval email carried
    it (`podrelease.approval.render.summary_text`), with the decision and votes; empty without one."""
    release: dict[str, Any] = state["release"] if isinstance(state.get("release"), dict) else {}
    error: dict[str, Any] = state["error"] if isinstance(state.get("error"), dict) else {}
    done = [stage for stage, completed in STAGES if completed(state)]
    stopped_at = next((stage for stage, completed in STAGES if not completed(state)), None) if outcome != "SUCCEEDED" else None
    if outcome == "REJECTED":
        stopped_at = "normalize"  # the event itself was refused
    cause = _cause(error)
    digest = release.get("digest", "unknown digest")
    record = {
        "outcome": outcome,
        "release_id": release.get("id", execution_name),
        "repository": release.get("repository"),
        "digest": release.get("digest"),
        **({"tag": str(release["tag"])} if release.get("tag") else {}),  # prod's tag beside its digest (live#prod)
        "stages_done": done,
        "stopped_at": stopped_at,
        "error": error.get("Error"),
        "cause": cause[:2000] or None,
        **_timing_and_rollback(release),
    }
    # The gate's evidence (signatures with key ids or signer identities, SBOM digests, scan summary)
    # stays with the release record: what was checked, for whom, before dev and before prod.
    for key in ("evidence", "evidence_prod"):
        if isinstance(state.get(key), dict):
            record[key] = state[key]
    # Who ended a canary's bake early (`podrelease finish`), per environment.
    finished = {env: str(section["deployment"]["finish"].get("requested_by", "?")) for env in ("dev", "prod")
                if isinstance(section := state.get(env), dict) and isinstance(section.get("deployment"), dict)
                and isinstance(section["deployment"].get("finish"), dict)}
    if finished:
        record["finished_early_by"] = finished
    # Who let it into prod, for as long as the record lives (the approval record expires with its window).
    approval = state.get("approval")
    if isinstance(approval, dict) and approval.get("approved_by"):
        record["approved_by"] = str(approval["approved_by"])
        record["approved_at"] = str(approval.get("decided_at", ""))
    verb = {"SUCCEEDED": "released to prod", "FAILED": "failed", "REJECTED": "refused"}.get(outcome, outcome.lower())
    subject = sns_subject(f"podinfo {digest[:19]} {verb} [{record['release_id']}]")
    lines = [
        f"Release {record['release_id']} {verb}.",
        f"Image: {release.get('repository', '?')}@{digest}",
        f"Stages completed: {', '.join(done) or 'none'}",
    ]
    if "approved_by" in record:
        lines.append(f"Approved by {record['approved_by']} at {record['approved_at']}")
        # Each decision on the approval page: who signed in (provider subject, email), when, which link, the comment.
        if isinstance(approval, dict):
            lines += [f"  Decision: {vote}" for vote in approval.get("votes") or [] if isinstance(vote, str)]
    lines += _window_lines(state, record)
    lines += [f"Canary in {env} finished early by {who} (podrelease finish)" for env, who in finished.items()]
    if outcome != "SUCCEEDED":
        lines += [f"Stopped at: {stopped_at or 'start'}", f"Reason: {record['error']}: {record['cause']}",
                  _what_was_left(outcome, record["error"], done)]
    lines.append(f"Correlation id: {record['release_id']}")
    if approval_summary:
        lines += ["", "What was approved (the approval page's summary):", approval_summary, ""]
    if console_url:
        lines.append(f"Execution: {console_url}")
    return {"record": record, "subject": subject, "message": "\n".join(lines)}
