"""CloudWatch as the release reads it back: the data points the emulated services publish, their
percentiles, and the alarms' state history.

moto keeps metric data and alarm states but answers neither a percentile statistic (`p99`) in
GetMetricData nor DescribeAlarmHistory. Here:

- `put_points`: what the CodeDeploy and fleet emulations publish for each synthetic request they
  evaluate (AWS/Lambda Invocations, Errors, Duration per alias; AWS/ApplicationELB RequestCount,
  HTTPCode_Target_5XX_Count, TargetResponseTime per load balancer), so GetMetricData answers with the
  very figures the alarms were evaluated on;
- a `pNN` statistic is the nearest-rank percentile of the period's values (CloudWatch's own is an
  estimate over the same values);
- DescribeAlarmHistory (StateUpdate items) from moto's record of each alarm's earlier states.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import Statistics, cloudwatch_backends
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult

from local.emulation.base import Patches

_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)$")
_patches = Patches()


def put_points(account: str, region: str, namespace: str, dimensions: dict[str, str],
               points: dict[str, tuple[float, str]]) -> None:
    """One data point per metric (name -> (value, unit)), stamped now."""
    dims = [{"Name": k, "Value": v} for k, v in dimensions.items()]
    cloudwatch_backends[account][region].put_metric_data(
        namespace, [{"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dims}
                    for name, (value, unit) in points.items()])


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile of `values` (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def _naive(stamp: Any) -> datetime:
    return stamp.astimezone(UTC).replace(tzinfo=None) if getattr(stamp, "tzinfo", None) else stamp


def alarm_history(alarm: Any, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    """The alarm's state changes, newest first, as DescribeAlarmHistory's StateUpdate items. moto
    keeps each earlier state (value, since when) on the alarm; the current one is the last."""
    states = [(item[3], item[4]) for item in alarm.history if item[0] == "StateUpdate"]
    states.append((alarm.state_value, alarm.state_updated_timestamp))
    items = []
    for (before, _), (after, at) in itertools.pairwise(states):
        when = _naive(at)
        if (start is None or when >= _naive(start)) and (end is None or when <= _naive(end)) and before != after:
            items.append({"AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": when.replace(tzinfo=UTC),
                          "HistoryItemType": "StateUpdate", "HistorySummary": f"Alarm updated from {before} to {after}"})
    return items[::-1]


def install() -> None:
    """Percentile statistics and DescribeAlarmHistory in moto's CloudWatch."""
    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Statistics, stat: str) -> Any:
        match = _PERCENTILE.match(stat)
        if match:
            return percentile(list(self.metric_single_values_list), float(match.group(1)))
        return original(self, stat)

    _patches.patch(Statistics, "get_statistics_for_type", get_statistics_for_type)

    def describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
        name, kind = self._get_param("AlarmName"), self._get_param("HistoryItemType")
        start, end = self._get_param("StartDate"), self._get_param("EndDate")
        alarms = self.cloudwatch_backend.alarms
        chosen = [alarms[name]] if name in alarms else [] if name else list(alarms.values())
        items = [] if kind not in (None, "StateUpdate") else [i for a in chosen for i in alarm_history(a, start, end)]
        return ActionResult({"AlarmHistoryItems": sorted(items, key=lambda i: i["Timestamp"], reverse=True)})

    _patches.patch(CloudWatchResponse, "describe_alarm_history", describe_alarm_history)


def uninstall() -> None:
    _patches.restore()
