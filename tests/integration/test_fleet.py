"""The EC2 fleet controller (podrelease.release.fleet) against moto's ELBv2, Auto Scaling and CloudWatch.

GIVEN an environment's fleet as the template builds it (ALB listener forwarding by weight to blue
and green target groups, an Auto Scaling group per colour, the fleet alarm)
WHEN a release starts, advances through its phases, meets an alarm, a failed check or an abort
THEN the listener's weights, the groups' sizes and image tags are what the phase promises.

podinfo's answers through the ALB are the one thing moto cannot give: the controller's HTTP GET
is replaced by a function answering as podinfo would (or failing where the test says).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from podrelease.core.errors import ConfigurationError, DeploymentFailed
from podrelease.release.fleet import Fleet, FleetTarget, canary_plan

REGION = "us-east-1"
DIGEST_OLD = "sha256:" + "a" * 64
DIGEST_NEW = "sha256:" + "b" * 64
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Podinfo:
    """podinfo's answers through the ALB; `failing` paths answer 503."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, headers: dict[str, str]) -> tuple[int, str]:
        self.requests.append((url, headers))
        path = "/" + url.split("/", 3)[3]
        if path in self.failing:
            return 503, '{"status": "not ready"}'
        return 200, json.dumps({"version": "6.9.2"} if path == "/version" else {"status": "OK"})


@contextmanager
def fleet_world(blue_size: int) -> Iterator[dict[str, Any]]:
    """The dev fleet in moto; blue (live) runs `blue_size` instances of DIGEST_OLD, green none."""
    with mock_aws():
        ec2 = boto3.client("ec2", REGION)
        elb = boto3.client("elbv2", REGION)
        asg = boto3.client("autoscaling", REGION)
        cw = boto3.client("cloudwatch", REGION)
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
        lb = elb.create_load_balancer(Name="podinfo-dev", Subnets=subnets)["LoadBalancers"][0]
        tgs = {c: elb.create_target_group(Name=f"dev-{c}", Protocol="HTTP", Port=80, VpcId=vpc, HealthCheckPath="/readyz")
               ["TargetGroups"][0]["TargetGroupArn"] for c in ("blue", "green")}
        listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=[
            {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": tgs["blue"], "Weight": 100},
                                                                   {"TargetGroupArn": tgs["green"], "Weight": 0}]}}])["Listeners"][0]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        template = ec2.create_launch_template(LaunchTemplateName="dev", LaunchTemplateData={"ImageId": image, "InstanceType": "t4g.small"})
        for colour, size in (("blue", blue_size), ("green", 0)):
            asg.create_auto_scaling_group(
                AutoScalingGroupName=f"dev-{colour}", MinSize=0, MaxSize=2, DesiredCapacity=size, VPCZoneIdentifier=",".join(subnets),
                LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Latest"},
                TargetGroupARNs=[tgs[colour]],
                Tags=[{"Key": "podinfo-image", "Value": f"{REPO}@{DIGEST_OLD}", "PropagateAtLaunch": True},
                      {"Key": "podinfo-role", "Value": "live" if colour == "blue" else "idle", "PropagateAtLaunch": False}])
        cw.put_metric_alarm(AlarmName="fleet-dev-errors", Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
        spec = {"listener": listener["ListenerArn"], "blue_group": "dev-blue", "green_group": "dev-green",
                "blue_target_group": tgs["blue"], "green_target_group": tgs["green"], "alarm": "fleet-dev-errors",
                "url": "http://podinfo-dev.example", "size": 2, "canary": "CodeDeployDefault.LambdaCanary10Percent5Minutes"}
        yield {"elb": elb, "asg": asg, "cw": cw, "ec2": ec2, "spec": spec}


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with fleet_world(blue_size=2) as world:
        yield world


@pytest.fixture
def aws_live_never_up() -> Iterator[dict[str, Any]]:
    """blue is live by the listener's weights but never came up (or was scaled to zero by hand)."""
    with fleet_world(blue_size=0) as world:
        yield world


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def podinfo() -> Podinfo:
    return Podinfo()


def fleet_of(aws: dict[str, Any], podinfo: Podinfo, clock: Clock, **changes: Any) -> Fleet:
    target = FleetTarget.from_env("dev", json.dumps(aws["spec"] | changes), minute_seconds=60.0)
    assert target is not None
    return Fleet(aws["elb"], aws["asg"], aws["cw"], target, get=podinfo, clock=clock)


def sizes(aws: dict[str, Any]) -> dict[str, int]:
    groups = aws["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=["dev-blue", "dev-green"])["AutoScalingGroups"]
    return {g["AutoScalingGroupName"].split("-")[1]: len(g["Instances"]) for g in groups}


def image_tag(aws: dict[str, Any], colour: str) -> str:
    group = aws["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=[f"dev-{colour}"])["AutoScalingGroups"][0]
    return next(t["Value"] for t in group["Tags"] if t["Key"] == "podinfo-image")


def started(fleet: Fleet) -> dict[str, Any]:
    return fleet.start("rel-1", DIGEST_NEW, f"{REPO}@{DIGEST_NEW}")


# --- the schedule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "steps", "minutes"), [
    ("CodeDeployDefault.LambdaCanary10Percent5Minutes", [10, 100], 5),
    ("CodeDeployDefault.LambdaCanary10Percent15Minutes", [10, 100], 15),
    ("CodeDeployDefault.LambdaLinear10PercentEvery1Minute", [10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 1),
    ("CodeDeployDefault.LambdaLinear30PercentEvery2Minutes", [30, 60, 90, 100], 2),
    ("CodeDeployDefault.LambdaAllAtOnce", [100], 0),
])
def test_canary_plan_follows_the_deployment_config(name: str, steps: list[int], minutes: int) -> None:
    assert canary_plan(name) == (steps, minutes)


def test_unknown_schedule_and_bad_description_are_named_errors(aws: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="names no canary"):
        canary_plan("MyCustomConfig")
    with pytest.raises(ConfigurationError, match="FLEET_DEV is not a fleet description"):
        FleetTarget.from_env("dev", '{"listener": "x"}')
    assert FleetTarget.from_env("dev", "") is None  # no fleet in this stack


# --- the whole way through --------------------------------------------------------------------------------
def test_release_moves_traffic_in_canary_steps_then_retires_the_old_colour(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    state = started(fleet)
    assert (state["phase"], state["live"], state["idle"]) == ("launching", "blue", "green")
    assert image_tag(aws, "green") == f"{REPO}@{DIGEST_NEW}"
    assert image_tag(aws, "blue") == f"{REPO}@{DIGEST_OLD}"
    assert sizes(aws) == {"blue": 2, "green": 2}

    state = fleet.advance(state)  # healthy: pre-traffic checks on green, then 10 %
    assert state["phase"] == "shifting"
    assert fleet.weights() == {"blue": 90, "green": 10}
    # the pre-traffic checks reached the green colour only, with the correlation id
    assert all(h.get("X-Podinfo-Colour") == "green" and h["X-Correlation-Id"] == "rel-1" for _, h in podinfo.requests)

    clock.now += 299  # the 5-minute bake is not over: nothing moves
    state = fleet.advance(state)
    assert fleet.weights() == {"blue": 90, "green": 10}

    clock.now += 1
    state = fleet.advance(state)
    assert fleet.weights() == {"blue": 0, "green": 100}
    state = fleet.advance(state)  # post-traffic checks through the listener
    assert state["phase"] == "shifted"
    # held while the Lambda target is still shifting: blue keeps running, so both can still roll back
    assert fleet.advance(state, retire=False)["phase"] == "shifted"
    assert sizes(aws) == {"blue": 2, "green": 2}

    state = fleet.advance(state, retire=True)
    assert sizes(aws)["blue"] == 0
    state = fleet.advance(state)
    assert state["phase"] == "Succeeded"

    assert fleet.tags_of("green")["podinfo-role"] == "live"
    assert fleet.tags_of("blue")["podinfo-role"] == "idle"
    # the next release goes to blue, the now idle colour
    following = fleet.start("rel-2", DIGEST_OLD, f"{REPO}@{DIGEST_OLD}")
    assert (following["live"], following["idle"]) == ("green", "blue")


def test_a_digest_already_live_is_not_redeployed(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.start("rel-0", DIGEST_OLD, f"{REPO}@{DIGEST_OLD}")
    assert state["phase"] == "Succeeded"
    assert sizes(aws) == {"blue": 2, "green": 0}


def test_tags_are_refused(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    with pytest.raises(DeploymentFailed, match="by digest only"):
        fleet_of(aws, podinfo, clock).start("rel-1", DIGEST_NEW, f"{REPO}:latest")
    assert sizes(aws) == {"blue": 2, "green": 0}
    assert image_tag(aws, "green") == f"{REPO}@{DIGEST_OLD}"


# --- failures roll back ------------------------------------------------------------------------------------
def test_alarm_during_the_canary_moves_traffic_back(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.advance(started(fleet))
    assert fleet.weights() == {"blue": 90, "green": 10}
    aws["cw"].set_alarm_state(AlarmName="fleet-dev-errors", StateValue="ALARM", StateReason="5xx from green")
    with pytest.raises(DeploymentFailed, match=r"alarm fleet-dev-errors is in ALARM \(5xx from green\)"):
        fleet.advance(state)
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert sizes(aws) == {"blue": 2, "green": 0}


def test_any_of_the_fleets_rollback_alarms_moves_traffic_back(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    # GIVEN the fleet's alarms as the template lists them: errors, latency, the prober
    for name in ("fleet-dev-latency", "probe-dev"):
        aws["cw"].put_metric_alarm(AlarmName=name, Namespace="X", MetricName=name, Statistic="Sum", Period=60, EvaluationPeriods=1,
                                   Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    aws["spec"]["alarm"] = "fleet-dev-errors,fleet-dev-latency,probe-dev"
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.advance(started(fleet))
    assert fleet.advance(state)["phase"] == "shifting"  # all OK: the canary goes on
    # WHEN the latency alarm (not the first listed) goes into ALARM THEN the canary rolls back, naming it
    aws["cw"].set_alarm_state(AlarmName="fleet-dev-latency", StateValue="ALARM", StateReason="p99 2.1 s")
    with pytest.raises(DeploymentFailed, match=r"alarm fleet-dev-latency is in ALARM \(p99 2.1 s\)"):
        fleet.advance(state)
    assert fleet.weights() == {"blue": 100, "green": 0}


def test_failed_pre_traffic_check_keeps_all_traffic_on_the_old_colour(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    podinfo.failing = {"/readyz"}
    with pytest.raises(DeploymentFailed, match=r"pre-traffic checks failed on the green colour \(/readyz -> 503\)"):
        fleet.advance(started(fleet))
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert sizes(aws) == {"blue": 2, "green": 0}


def test_failed_post_traffic_check_rolls_back(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock, canary="CodeDeployDefault.LambdaAllAtOnce")
    state = fleet.advance(started(fleet))
    assert fleet.weights() == {"blue": 0, "green": 100}
    podinfo.failing = {"/version"}
    with pytest.raises(DeploymentFailed, match="post-traffic checks failed"):
        fleet.advance(state)
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert sizes(aws) == {"blue": 2, "green": 0}


def test_instances_that_never_get_healthy_time_out(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    state = started(fleet)
    green = [i["InstanceId"] for i in aws["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=["dev-green"])
             ["AutoScalingGroups"][0]["Instances"]]
    aws["ec2"].stop_instances(InstanceIds=green)  # the target group reports them unused, never healthy
    state = fleet.advance(state)
    assert state["phase"] == "launching"  # still within the launch window
    clock.now += 15 * 60 + 1
    with pytest.raises(DeploymentFailed, match="did not pass the /readyz health check"):
        fleet.advance(state)
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert sizes(aws) == {"blue": 2, "green": 0}


def test_abort_undoes_a_release_in_flight_and_nothing_once_done(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.advance(started(fleet))
    assert "traffic back on blue" in (fleet.abort(state) or "")
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert sizes(aws) == {"blue": 2, "green": 0}
    assert fleet.abort({"phase": "Succeeded"}) is None


def test_a_split_left_by_a_crashed_release_is_taken_back_first(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    fleet.scale("green", 2)
    fleet.set_weights({"blue": 70, "green": 30})
    state = started(fleet)
    assert (state["live"], state["idle"]) == ("blue", "green")
    assert fleet.weights() == {"blue": 100, "green": 0}
    assert state["phase"] == "draining"  # green had instances: they go before new ones start
    state = fleet.advance(state)
    assert state["phase"] == "launching"
    assert image_tag(aws, "green") == f"{REPO}@{DIGEST_NEW}"


def test_a_crash_past_half_way_still_gives_traffic_back_to_the_checked_colour(aws: dict[str, Any], podinfo: Podinfo,
                                                                               clock: Clock) -> None:
    fleet = fleet_of(aws, podinfo, clock)
    fleet.scale("green", 2)
    # GIVEN a release died with green (never fully checked) holding most of the traffic
    fleet.set_weights({"blue": 20, "green": 80})
    state = started(fleet)
    # THEN the next release treats blue, the colour that last passed a whole release, as live
    assert (state["live"], state["idle"]) == ("blue", "green")
    assert fleet.weights() == {"blue": 100, "green": 0}


# --- a live colour with nothing healthy ------------------------------------------------------------------
def test_first_release_on_a_live_colour_that_never_came_up(aws_live_never_up: dict[str, Any], podinfo: Podinfo,
                                                           clock: Clock) -> None:
    aws = aws_live_never_up
    fleet = fleet_of(aws, podinfo, clock)
    assert sizes(aws) == {"blue": 0, "green": 0}
    state = started(fleet)
    assert (state["phase"], state["live"], state["idle"]) == ("launching", "blue", "green")
    assert sizes(aws) == {"blue": 0, "green": 2}

    # green passes its pre-traffic checks; blue serves no one, so there is no canary to run
    state = fleet.advance(state)
    assert state["phase"] == "shifting"
    assert fleet.weights() == {"blue": 0, "green": 100}
    assert state["note"] == "blue had no healthy instance, so all traffic moved to green at once"

    state = fleet.advance(state)  # post-traffic checks through the listener
    assert state["phase"] == "shifted"
    state = fleet.advance(fleet.advance(state, retire=True))
    assert state["phase"] == "Succeeded"
    # THEN the new live colour runs FleetSize instances of the release, the idle one none
    assert sizes(aws) == {"blue": 0, "green": 2}
    assert fleet.weights() == {"blue": 0, "green": 100}
    assert image_tag(aws, "green") == f"{REPO}@{DIGEST_NEW}"
    assert (fleet.tags_of("green")["podinfo-role"], fleet.tags_of("blue")["podinfo-role"]) == ("live", "idle")


def test_a_digest_is_not_already_live_on_a_colour_with_no_healthy_instance(aws_live_never_up: dict[str, Any],
                                                                           podinfo: Podinfo, clock: Clock) -> None:
    fleet = fleet_of(aws_live_never_up, podinfo, clock)
    # WHEN the digest blue is tagged with (the bootstrap image) is released while blue runs nothing
    state = fleet.start("rel-0", DIGEST_OLD, f"{REPO}@{DIGEST_OLD}")
    # THEN it is deployed like any other release instead of being reported live
    assert state["phase"] == "launching"
    assert sizes(aws_live_never_up) == {"blue": 0, "green": 2}
    assert image_tag(aws_live_never_up, "green") == f"{REPO}@{DIGEST_OLD}"


# --- an operator's finish and a fast rollback ----------------------------------------------------------------
def test_finish_moves_to_the_last_step_at_the_next_step_and_still_checks(aws: dict[str, Any], podinfo: Podinfo,
                                                                           clock: Clock) -> None:
    # GIVEN a release baking at 10 % of a 5-minute canary
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.advance(started(fleet))
    assert fleet.weights() == {"blue": 90, "green": 10}
    # WHEN an operator finishes it a second into the bake THEN the next step moves all traffic at once
    clock.now += 1
    state = fleet.advance(state | {"finish": {"requested_by": "arn:aws:iam::123456789012:user/ops", "at": 1001}})
    assert (state["phase"], fleet.weights()) == ("shifting", {"blue": 0, "green": 100})
    # and the post-traffic checks still decide: a failing one rolls back
    podinfo.failing = {"/readyz"}
    with pytest.raises(DeploymentFailed, match="post-traffic checks failed"):
        fleet.advance(state)
    assert fleet.weights() == {"blue": 100, "green": 0}


def test_an_all_at_once_release_shifts_in_one_step_after_its_checks(aws: dict[str, Any], podinfo: Podinfo, clock: Clock) -> None:
    # GIVEN the 5-minute canary configured WHEN a fast rollback asks for all at once
    fleet = fleet_of(aws, podinfo, clock)
    state = fleet.start("rel-1", DIGEST_NEW, f"{REPO}@{DIGEST_NEW}", all_at_once=True)
    state = fleet.advance(state)  # pre-traffic checks on green, then one step
    assert (state["phase"], fleet.weights()) == ("shifting", {"blue": 0, "green": 100})
    assert any(h.get("X-Podinfo-Colour") == "green" for _, h in podinfo.requests)
    state = fleet.advance(state)  # post-traffic checks through the listener, no bake
    assert state["phase"] == "shifted"
