"""Dev's bake, measured: what the approval page and emails say about dev beyond "it succeeded".

Gathered once, when the approval is requested (dev's deployment has just finished), and kept in the
approval record (`bake`), so the page and every email show the same figures:

- the Lambda target: the CodeDeploy deployment's window (create to complete time), its canary steps
  (from the deployment configuration's name), the traffic hooks, the deployment group's alarms over
  the window (DescribeAlarmHistory: any move to ALARM), and the alias's Invocations, Errors and p99
  Duration over the window (GetMetricData, namespace AWS/Lambda, dimensions FunctionName and Resource);
- the fleet: its traffic steps, the pre/post-traffic checks and the new colour's target health as the
  controller recorded them, its rollback alarms over the window, and the load balancer's RequestCount,
  HTTPCode_Target_5XX_Count and p99 TargetResponseTime (namespace AWS/ApplicationELB).

A figure that cannot be had is recorded as `{"not_measured": why}`: never guessed. CloudWatch takes a
minute or two to publish a data point, so the last minute of the bake may be missing on AWS.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from podrelease.core.obs import get_logger
from podrelease.core.times import epoch

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = get_logger("approval")

_CANARY = re.compile(r"Canary(?P<pct>\d+)Percent(?P<min>\d+)Minutes?$")
_LINEAR = re.compile(r"Linear(?P<pct>\d+)PercentEvery(?P<min>\d+)Minutes?$")
HOOKS = ("BeforeAllowTraffic", "AfterAllowTraffic")
_FAILURES = (ClientError, BotoCoreError)


def steps_text(config_name: str) -> str:
    """A CodeDeploy deployment configuration's traffic steps in words ("10% for 5 min, then 100%")."""
    name = str(config_name or "").rsplit(".", 1)[-1]
    if name.endswith("AllAtOnce"):
        return "100% at once"
    if match := _CANARY.search(name):
        return f"{match['pct']}% for {match['min']} min, then 100%"
    if match := _LINEAR.search(name):
        return f"+{match['pct']}% every {match['min']} min to 100%"
    return f"as configured in {config_name or '?'}"


def fleet_steps_text(steps: list[int], seconds: float | None) -> str:
    """The fleet's weighted steps in words ("10% for 5 min, then 100%")."""
    if not steps:
        return "?"
    if len(steps) == 1:
        return f"{steps[0]}% at once"
    every = (f" for {seconds / 60:g} min" if seconds >= 60 else f" for {seconds:g} s") if seconds else ""
    return ", then ".join([*(f"{pct}%{every}" for pct in steps[:-1]), f"{steps[-1]}%"])


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__


def alarms_over(cloudwatch: Any, names: list[str], start: float, end: float) -> dict[str, Any]:
    """The alarms' moves to ALARM between `start` and `end`, and any alarm in ALARM now."""
    if not names:
        return {"not_measured": "no alarm is attached to the deployment"}
    begin, finish = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    fired: list[dict[str, Any]] = []
    try:
        for name in names:
            pages = cloudwatch.get_paginator("describe_alarm_history").paginate(
                AlarmName=name, HistoryItemType="StateUpdate", StartDate=begin, EndDate=finish)
            fired.extend({"name": name, "at": _iso(item.get("Timestamp")), "summary": str(item["HistorySummary"])}
                         for item in (i for page in pages for i in page.get("AlarmHistoryItems", []))
                         if "to ALARM" in str(item.get("HistorySummary", "")))
        current = cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
    except _FAILURES as exc:
        return {"names": names, "not_measured": f"CloudWatch did not answer ({_why(exc)})"}
    fired += [{"name": a["AlarmName"], "at": _iso(a.get("StateUpdatedTimestamp")), "summary": "in ALARM now"}
              for a in current if a.get("StateValue") == "ALARM" and not any(f["name"] == a["AlarmName"] for f in fired)]
    return {"names": names, "fired": fired}


def _iso(value: Any) -> str:
    stamp = epoch(value)
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp is not None else "?"


def metrics_over(cloudwatch: Any, namespace: str, dimensions: dict[str, str], stats: dict[str, tuple[str, str]],
                 start: float, end: float) -> dict[str, Any]:
    """One figure per `stats` entry (key -> (metric, statistic)) over the whole window, as one period.
    A metric without data points in the window is left out (no traffic is not zero errors)."""
    begin = math.floor(start / 60) * 60
    period = max(60, math.ceil((end - begin) / 60) * 60)
    dims = [{"Name": k, "Value": v} for k, v in dimensions.items()]
    queries = [{"Id": key, "ReturnData": True,
                "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
                               "Period": period, "Stat": stat}}
               for key, (metric, stat) in stats.items()]
    try:
        reply = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=datetime.fromtimestamp(begin, UTC),
                                           EndTime=datetime.fromtimestamp(begin + period, UTC))
    except _FAILURES as exc:
        return {"not_measured": f"CloudWatch did not answer ({_why(exc)})"}
    figures: dict[str, Any] = {}
    for result in reply.get("MetricDataResults", []):
        values = [float(v) for v in result.get("Values") or [] if v is not None]
        if values:
            figures[result["Id"]] = sum(values) if stats[result["Id"]][1] == "Sum" else max(values)
    return figures


def _traffic(figures: dict[str, Any], requests: str, errors: str, latency: str, scale: float) -> dict[str, Any]:
    """Requests, errors, error rate and p99 latency (ms), or why they are not measured."""
    if "not_measured" in figures:
        return figures
    if not figures.get(requests):
        return {"not_measured": "no requests were recorded during the bake"}
    out: dict[str, Any] = {"requests": int(figures[requests]), "errors": int(figures.get(errors, 0))}
    out["error_rate"] = out["errors"] / out["requests"]
    if latency in figures:
        out["p99_ms"] = round(figures[latency] * scale, 1)
    return out


def lambda_bake(codedeploy: Any, cloudwatch: Any, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda target's canary, measured (see the module's docstring)."""
    deployment_id = deployment.get("id")
    if not deployment_id:
        return {"not_measured": str(deployment.get("note") or "no CodeDeploy deployment ran (nothing to shift)")}
    try:
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        group = codedeploy.get_deployment_group(applicationName=info["applicationName"],
                                                deploymentGroupName=info["deploymentGroupName"])["deploymentGroupInfo"]
    except _FAILURES as exc:
        return {"deployment": deployment_id, "not_measured": f"CodeDeploy did not answer ({_why(exc)})"}
    start, end = epoch(info.get("createTime")), epoch(info.get("completeTime"))
    config = str(info.get("deploymentConfigName") or "")
    status = str(info.get("status") or "?")
    facts: dict[str, Any] = {"deployment": deployment_id, "status": status, "config": config, "steps": steps_text(config),
                             # CodeDeploy completes a Lambda deployment only when both hooks reported Succeeded.
                             "hooks": dict.fromkeys(HOOKS, "Succeeded" if status == "Succeeded" else "unknown")}
    if start is None or end is None:
        return facts | {"not_measured": "the deployment has no start or end time yet"}
    facts["window"] = {"start": _iso(start), "end": _iso(end), "seconds": round(end - start)}
    alarm_config = group.get("alarmConfiguration") or {}
    names = [str(a["name"]) for a in alarm_config.get("alarms", []) if a.get("name")] if alarm_config.get("enabled") else []
    facts["alarms"] = alarms_over(cloudwatch, names, start, end)
    function = str(deployment.get("function") or "")
    if not function:
        facts["traffic"] = {"not_measured": "the deployment state names no function"}
        return facts
    figures = metrics_over(cloudwatch, "AWS/Lambda", {"FunctionName": function, "Resource": f"{function}:live"},
                           {"invocations": ("Invocations", "Sum"), "errors": ("Errors", "Sum"), "p99": ("Duration", "p99")},
                           start, end)
    facts["traffic"] = _traffic(figures, "invocations", "errors", "p99", 1.0)
    return facts


def _checks(fleet: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in fleet.get("checks") or []:
        results = [r for r in entry.get("results") or [] if isinstance(r, dict)]
        failed = [f"{r.get('path')} -> {r.get('status')}" for r in results if not r.get("ok")]
        out.append({"phase": str(entry.get("phase", "?")), "passed": len(results) - len(failed), "total": len(results),
                    "failed": failed})
    return out


def fleet_bake(cloudwatch: Any, fleet: Mapping[str, Any]) -> dict[str, Any]:
    """The fleet's blue/green, measured (see the module's docstring)."""
    steps = [int(p) for p in fleet.get("steps_planned") or fleet.get("steps") or []]
    health = fleet.get("health") if isinstance(fleet.get("health"), dict) else {}
    facts: dict[str, Any] = {
        "phase": str(fleet.get("phase", "?")), "colour": str(fleet.get("idle", "?")),
        "steps": fleet_steps_text(steps, fleet.get("step_seconds")) if steps else "not recorded",
        "checks": _checks(fleet),
        "health": {"healthy": sum(1 for s in health.values() if s == "healthy"), "total": len(health)} if health else {},
    }
    if fleet.get("note"):
        facts["note"] = str(fleet["note"])
    start, end = epoch(fleet.get("started")), epoch(fleet.get("since"))
    if start is None or end is None or end <= start:
        return facts | {"not_measured": "the fleet state has no start and end time (a release from before they were recorded)"}
    facts["window"] = {"start": _iso(start), "end": _iso(end), "seconds": round(end - start)}
    facts["alarms"] = alarms_over(cloudwatch, [n for n in str(fleet.get("alarms") or "").split(",") if n], start, end)
    balancer = str(fleet.get("listener") or "").partition(":listener/")[2].rsplit("/", 1)[0]
    if not balancer:
        facts["traffic"] = {"not_measured": "the fleet state names no listener"}
        return facts
    figures = metrics_over(cloudwatch, "AWS/ApplicationELB", {"LoadBalancer": balancer},
                           {"requests": ("RequestCount", "Sum"), "errors": ("HTTPCode_Target_5XX_Count", "Sum"),
                            "p99": ("TargetResponseTime", "p99")}, start, end)
    facts["traffic"] = _traffic(figures, "requests", "errors", "p99", 1000.0)
    return facts


def gather(codedeploy: Any, cloudwatch: Any, dev: Mapping[str, Any]) -> dict[str, Any]:
    """Dev's bake, measured, from dev's last deployment state (`dev.deployment`, as the watch handed it back)."""
    deployment = dev.get("deployment") if isinstance(dev.get("deployment"), dict) else {}
    if not deployment:
        return {"not_measured": "the release carries no dev deployment"}
    bake: dict[str, Any] = {"lambda": lambda_bake(codedeploy, cloudwatch, deployment)}
    if isinstance(deployment.get("fleet"), dict):
        bake["fleet"] = fleet_bake(cloudwatch, deployment["fleet"])
    logger.info("dev bake gathered", extra={"bake": bake})
    return bake
