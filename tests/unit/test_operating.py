"""The operating pieces that need no AWS: the release metrics (EMF as Powertools writes them), the
stage durations read from an execution's history, and the template's promises about alarms,
dashboards and retries."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.yaml_helper import yaml_parse

from podrelease.release import outcome

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def emitted(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, dimensions) of every EMF document printed so far."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line)
        directive = document["_aws"]["CloudWatchMetrics"][0]
        for metric in directive["Metrics"]:
            dimensions = {name: document[name] for name in directive["Dimensions"][0]}
            found.append((metric["Name"], document[metric["Name"]][0], dimensions))
    return found


def event(kind: str, name: str, seconds: float) -> dict[str, Any]:
    key = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
    return {"type": kind, "timestamp": T0 + timedelta(seconds=seconds), key: {"name": name}}


def test_stage_durations_sum_each_task_states_visits() -> None:
    history = [event("TaskStateEntered", "Verify", 0), event("TaskStateExited", "Verify", 4),
               event("TaskStateEntered", "CheckDev", 10), event("TaskStateExited", "CheckDev", 11),
               event("TaskStateEntered", "CheckDev", 20), event("TaskStateExited", "CheckDev", 22.5),
               event("TaskStateEntered", "DeployProd", 30)]  # still running: no duration
    assert outcome.stage_durations(history) == {"Verify": 4.0, "CheckDev": 3.5}


@pytest.mark.parametrize(("record", "expected"), [
    ({"outcome": "SUCCEEDED", "error": None}, [("ReleasesSucceeded", 1.0, {})]),
    ({"outcome": "FAILED", "error": "DeploymentFailed"}, [("ReleasesFailed", 1.0, {"reason": "DeploymentFailed"})]),
    ({"outcome": "FAILED", "error": "SignatureMissing"},
     [("ReleasesFailed", 1.0, {"reason": "SignatureMissing"}), ("Refusals", 1.0, {"reason": "SignatureMissing"})]),
    ({"outcome": "REJECTED", "error": "MalformedEvent"},
     [("ReleasesFailed", 1.0, {"reason": "MalformedEvent"}), ("Refusals", 1.0, {"reason": "MalformedEvent"})]),
], ids=["succeeded", "failed", "refused by the gate", "refused event"])
def test_a_finished_release_counts_by_outcome_and_named_reason(
        record: dict[str, Any], expected: list[tuple[str, float, dict[str, str]]], capsys: pytest.CaptureFixture[str]) -> None:
    outcome.emit(record, "", T0.timestamp())
    got = [(name, value, {k: v for k, v in dims.items() if k != "service"}) for name, value, dims in emitted(capsys)]
    assert got == expected


def test_durations_stage_times_and_the_approval_wait_are_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    history = [event("TaskStateEntered", "Verify", 0), event("TaskStateExited", "Verify", 4)]
    approval = {"created_at": T0.timestamp() + 60, "decided_at": T0.timestamp() + 360}
    outcome.emit({"outcome": "SUCCEEDED"}, "2026-11-27T12:00:00Z", T0.timestamp() + 900, history, approval)
    got = {(name, value, dims.get("outcome", dims.get("stage", ""))) for name, value, dims in emitted(capsys)}
    assert got == {("ReleasesSucceeded", 1.0, ""), ("ReleaseDuration", 900.0, "SUCCEEDED"), ("StageDuration", 4.0, "Verify"),
                   ("ApprovalWait", 300.0, "")}


def _alarm_names(value: Any) -> list[str]:
    return [a["Name"]["Ref"] for a in value]


@pytest.mark.parametrize("environment", ["Dev", "Prod"])
def test_each_canary_rolls_back_on_errors_latency_and_the_prober(environment: str) -> None:
    group = RESOURCES[f"Podinfo{environment}DeploymentGroup"]["Properties"]["AlarmConfiguration"]
    assert _alarm_names(group["Alarms"]) == [f"Podinfo{environment}ErrorsAlarm", f"Podinfo{environment}LatencyAlarm",
                                             f"Probe{environment}Alarm"]
    fleet = RESOURCES["DeployFunction"]["Properties"]["Environment"]["Variables"][f"FLEET_{environment.upper()}"]["Fn::If"][1]["Fn::Sub"]
    e = environment.lower()
    assert f'"alarm_prefix": "${{AWS::StackName}}-", "alarms": "fleet-{e}-errors,fleet-{e}-latency,probe-{e}"' in fleet
    # ... which are those alarms' names
    for suffix, alarm in ((f"fleet-{e}-errors", f"Fleet{environment}ErrorsAlarm"), (f"fleet-{e}-latency", f"Fleet{environment}LatencyAlarm"),
                          (f"probe-{e}", f"Probe{environment}Alarm")):
        assert RESOURCES[alarm]["Properties"]["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{suffix}"}


def test_every_alarm_is_on_a_dashboard_and_pages_unless_it_is_only_a_canary_alarm() -> None:
    alarms = {lid for lid, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    bodies = " ".join(json.dumps(r["Properties"]["DashboardBody"]) for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Dashboard")
    shown = set(re.findall(r"\$\{(\w+)\.Arn\}", bodies))
    assert alarms - shown == set()
    silent = {lid for lid in alarms if not RESOURCES[lid]["Properties"].get("AlarmActions")}
    # The error alarms stop a canary; the errors reach the operator as the release's failure (its email).
    assert silent == {"PodinfoDevErrorsAlarm", "PodinfoProdErrorsAlarm", "FleetDevErrorsAlarm", "FleetProdErrorsAlarm"}


def test_every_function_retries_throttling_in_adaptive_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert (variables["AWS_RETRY_MODE"], variables["AWS_MAX_ATTEMPTS"]) == ("adaptive", "8")
    # ... which is what botocore builds every client of a handler with
    monkeypatch.setenv("AWS_RETRY_MODE", variables["AWS_RETRY_MODE"])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", variables["AWS_MAX_ATTEMPTS"])
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 8}
