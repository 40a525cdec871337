"""Metrics: Powertools Metrics (CloudWatch embedded metric format, written to the function's log;
no PutMetricData call and no permission for one).

The namespace is the stack's (`POWERTOOLS_METRICS_NAMESPACE`, set for every function in the
template's Globals), the service `POWERTOOLS_SERVICE_NAME`. `metrics` is the handler's
`@metrics.log_metrics` instance (one metric set per invocation, no dimensions beyond the service);
`count` and `seconds` write one metric with its own dimension (a release's outcome and reason, a
refusal's name, a stage) at once, so per-reason figures never mix in one metric set.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

#: The stack's namespace; the fallback only where no template set it (tests, a function run by hand).
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "PodinfoRelease"
metrics = Metrics(namespace=NAMESPACE)

#: Names the dashboards and alarms in template.yaml use: change both together.
RELEASES_STARTED = "ReleasesStarted"
RELEASES_SUCCEEDED = "ReleasesSucceeded"
RELEASES_FAILED = "ReleasesFailed"
REFUSALS = "Refusals"
STAGE_DURATION = "StageDuration"
APPROVAL_WAIT = "ApprovalWait"
APPROVAL_PENDING_HOURS = "ApprovalPendingHours"
RECONCILER_STARTED = "ReleasesStartedByReconciler"
DEAD_LETTERS_REDRIVEN = "DeadLettersRedriven"
RELEASE_DURATION = "ReleaseDuration"
UNCLEAN_ENDINGS = "ReleasesEndedWithoutRecord"
PROBE_FAILURES = "ProbeFailures"
PROBE_LATENCY = "ProbeLatency"
#: DORA metrics over the last DORA_WINDOW_DAYS, published by the dora function on its schedule.
DORA_DEPLOYMENTS = "DoraDeployments"
DORA_DEPLOYMENT_FREQUENCY = "DoraDeploymentsPerDay"
DORA_LEAD_TIME = "DoraLeadTime"
DORA_CHANGE_FAILURE_RATE = "DoraChangeFailureRate"
DORA_TIME_TO_RESTORE = "DoraTimeToRestore"


def count(name: str, dimension: str = "", value: str = "", amount: float = 1) -> None:
    """One count of `name`, with the dimension `dimension`=`value` when given."""
    with single_metric(name=name, unit=MetricUnit.Count, value=amount, namespace=NAMESPACE) as metric:
        if dimension:
            metric.add_dimension(name=dimension, value=value or "none")


def hours(name: str, amount: float) -> None:
    """A figure in hours (no CloudWatch unit; the alarm's threshold is in hours)."""
    with single_metric(name=name, unit=MetricUnit.NoUnit, value=max(amount, 0.0), namespace=NAMESPACE):
        pass


def seconds(name: str, amount: float, dimension: str = "", value: str = "") -> None:
    """A duration in seconds, with the dimension `dimension`=`value` when given."""
    with single_metric(name=name, unit=MetricUnit.Seconds, value=max(amount, 0.0), namespace=NAMESPACE) as metric:
        if dimension:
            metric.add_dimension(name=dimension, value=value or "none")


def gauge(name: str, amount: float, unit: str = "Count") -> None:
    """A figure as it stands now (`unit`: a CloudWatch unit name, e.g. Count or Seconds)."""
    with single_metric(name=name, unit=MetricUnit[unit], value=amount, namespace=NAMESPACE):
        pass
