"""The approval request measures dev's bake in CloudWatch (moto, see approval_world.py): the dev
CodeDeploy deployment's window, its alarms' history over that window and the alias's invocations,
errors and p99 duration, kept in the approval record and shown in every approval email.

moto keeps metric data and alarm states but answers neither a percentile nor DescribeAlarmHistory:
`local.emulation.cloudwatch` adds both (as the local runtime does; `local.emulation.codedeploy`
has the deployment group report its alarms, which moto leaves out), so the figures read here are the
data points put below, as Lambda would publish them for the alias."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.codedeploy.models import codedeploy_backends
from moto.core import DEFAULT_ACCOUNT_ID

from local.emulation import cloudwatch as local_cloudwatch
from local.emulation import codedeploy as local_codedeploy
from tests.integration.approval_world import REGION, World

FUNCTION = "podinfo-dev"
ALARMS = ("podrel-dev-errors", "podrel-dev-latency")


@pytest.fixture
def dev_deployment(world: World) -> Iterator[tuple[Any, str]]:
    """GIVEN dev's CodeDeploy group (two alarms) and its finished canary deployment: (cloudwatch, deployment id)."""
    local_cloudwatch.install()
    local_codedeploy.report_group_alarms()
    cloudwatch, codedeploy = boto3.client("cloudwatch", region_name=REGION), boto3.client("codedeploy", region_name=REGION)
    for name in ALARMS:
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
                                    EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    codedeploy.create_application(applicationName="podinfo", computePlatform="Lambda")
    codedeploy.create_deployment_group(
        applicationName="podinfo", deploymentGroupName="dev", serviceRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/cd",
        deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes",
        alarmConfiguration={"enabled": True, "alarms": [{"name": name} for name in ALARMS]})
    deployment_id = codedeploy.create_deployment(applicationName="podinfo", deploymentGroupName="dev")["deploymentId"]
    try:
        yield cloudwatch, deployment_id
    finally:
        local_codedeploy.uninstall()
        local_cloudwatch.uninstall()


def _bake_traffic(cloudwatch: Any, durations_ms: list[float], errors: int) -> None:
    """What Lambda publishes for the live alias while the canary bakes."""
    dims = [{"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Resource", "Value": f"{FUNCTION}:live"}]
    cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Dimensions": dims, "Value": float(len(durations_ms)), "Unit": "Count"},
        {"MetricName": "Errors", "Dimensions": dims, "Value": float(errors), "Unit": "Count"},
        {"MetricName": "Duration", "Dimensions": dims, "Values": durations_ms, "Unit": "Milliseconds"},
    ])


def _finish(deployment_id: str) -> None:
    """CodeDeploy completes the deployment (the local runtime's emulation does the same)."""
    info = codedeploy_backends[DEFAULT_ACCOUNT_ID][REGION].deployments[deployment_id]
    info.status, info.complete_time = "Succeeded", time.time() + 1


def _request(world: World, deployment_id: str) -> dict[str, Any]:
    execution, task_token = world.start_release()
    event = world.event(execution, task_token)
    event["dev"] = {"deployment": {"id": deployment_id, "status": "Succeeded", "environment": "dev", "function": FUNCTION,
                                   "version": "7"}}
    world.request(event)
    return world.ledger()


def test_the_approval_record_and_emails_carry_the_bake_figures_from_cloudwatch(world: World, dev_deployment: Any) -> None:
    cloudwatch, deployment_id = dev_deployment
    # GIVEN a bake of 40 invocations through the alias, one error, p99 duration 250 ms; its alarms stayed OK
    _bake_traffic(cloudwatch, [20.0] * 39 + [250.0], errors=1)
    _finish(deployment_id)
    # WHEN the release asks for approval
    record = _request(world, deployment_id)
    # THEN the record keeps the figures CloudWatch gave for the deployment's window
    lambda_bake = record["bake"]["lambda"]
    assert lambda_bake["traffic"] == {"requests": 40, "errors": 1, "error_rate": 0.025, "p99_ms": 250.0}
    assert lambda_bake["alarms"] == {"names": list(ALARMS), "fired": []}
    assert lambda_bake["steps"] == "10% for 5 min, then 100%"
    assert lambda_bake["hooks"] == {"BeforeAllowTraffic": "Succeeded", "AfterAllowTraffic": "Succeeded"}
    # ... and every approval email says them in plain text
    for _, body, _, _, _ in world.emails():
        assert re.search(r"ok\s+Dev canary:\s+succeeded: 10% for 5 min, then 100%, version 7, \S+Z to \S+Z", body), body
        assert re.search(r"ok\s+Dev alarms:\s+quiet: none of podrel-dev-errors, podrel-dev-latency went to ALARM", body), body
        assert re.search(r"NO\s+Dev traffic:\s+40 invocations, 1 errors \(2.50%\), p99 250 ms", body), body


def test_an_alarm_that_fired_during_the_bake_is_shown_not_quiet(world: World, dev_deployment: Any) -> None:
    cloudwatch, deployment_id = dev_deployment
    # GIVEN the latency alarm went to ALARM and back to OK during the bake
    _bake_traffic(cloudwatch, [20.0] * 10, errors=0)
    cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="ALARM", StateReason="p99 over threshold")
    cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="OK", StateReason="back under")
    _finish(deployment_id)
    # WHEN the release asks for approval
    record = _request(world, deployment_id)
    # THEN the record names the alarm and the emails say the alarms were NOT quiet
    fired = record["bake"]["lambda"]["alarms"]["fired"]
    assert [(f["name"], f["summary"].endswith("to ALARM")) for f in fired] == [(ALARMS[1], True)]
    for _, body, _, _, _ in world.emails():
        assert re.search(r"NO\s+Dev alarms:\s+NOT quiet: podrel-dev-latency went to ALARM at \S+Z", body), body


def test_a_bake_without_traffic_is_not_measured_never_zero(world: World, dev_deployment: Any) -> None:
    _, deployment_id = dev_deployment
    _finish(deployment_id)
    record = _request(world, deployment_id)
    assert record["bake"]["lambda"]["traffic"] == {"not_measured": "no requests were recorded during the bake"}
    for _, body, _, _, _ in world.emails():
        assert re.search(r"Dev traffic:\s+not measured: no requests were recorded during the bake", body), body
