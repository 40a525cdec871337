"""The fleet's network from the real template.yaml, created in moto (in process) by the local runtime's
provisioner, as it would be in a VPC with public subnets (the default ones, routed to the internet
gateway) and private subnets of their own route table.

GIVEN the fleet's resources (security groups, VPC endpoints, load balancers, Auto Scaling groups and
what they need) created with FleetLoadBalancerSubnetIds = the public subnets and
FleetInstanceSubnetIds = the private ones THEN the load balancers sit in the public subnets, every
group and instance in the private ones, the endpoints in the private subnets and route table, the
endpoints admit the instances on 443, and blue came up with FleetSize instances while green has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import provision
from local.provision import create_stack
from local.stack import Stack
from local.template import references
from tests.conftest import FAKE_CREDENTIALS

REGION = "us-east-1"
ACCOUNT = "123456789012"
FLEET_TYPES = ("AWS::EC2::SecurityGroup", "AWS::EC2::VPCEndpoint", "AWS::ElasticLoadBalancingV2::LoadBalancer",
               "AWS::AutoScaling::AutoScalingGroup")
INTERFACES = {"ecr.api", "ecr.dkr", "secretsmanager"}


def fleet_only(translated: dict[str, Any]) -> dict[str, Any]:
    """The translated template cut down to the fleet's network and groups and everything they refer to."""
    resources = translated["Resources"]
    wanted = {name for name, r in resources.items() if name.startswith("Fleet") and r["Type"] in FLEET_TYPES}
    todo = list(wanted)
    while todo:
        for ref in references(resources[todo.pop()].get("Properties", {})):
            if ref in resources and ref not in wanted:
                wanted.add(ref)
                todo.append(ref)
    return translated | {"Resources": {name: r for name, r in resources.items() if name in wanted}, "Outputs": {}}


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        ec2 = boto3.client("ec2", REGION)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        public = sorted(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
                        key=lambda s: s["AvailabilityZone"])[:2]
        private = [ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=s["AvailabilityZone"])["Subnet"]["SubnetId"]
                   for cidr, s in zip(("172.31.96.0/20", "172.31.112.0/20"), public, strict=True)]
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        for subnet in private:
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        original = provision.translate

        def translate_fleet_only(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
            translated, paths, source = original(*args, **kwargs)
            return fleet_only(translated), paths, source

        monkeypatch.setattr(provision, "translate", translate_fleet_only)
        parameters = {
            "BootstrapImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/podinfo@sha256:{'a' * 64}",
            "ReleasePolicyParameter": "/podrel/release-policy", "ApproverEmails": "approver@example.com", "NotifyEmail": "releases@example.com",
            "FleetVpcId": vpc, "FleetLoadBalancerSubnetIds": ",".join(s["SubnetId"] for s in public),
            "FleetInstanceSubnetIds": ",".join(private), "FleetInstanceRouteTableIds": table, "FleetSize": "2",
        }
        yield {"ec2": ec2, "vpc": vpc, "public": {s["SubnetId"] for s in public}, "private": set(private), "table": table,
               "parameters": parameters, "create": lambda **changes: create_stack(boto3.Session(), "fleetnet", REGION, ACCOUNT,
                                                                                  parameters | changes)}


def groups(stack: Stack) -> dict[str, dict[str, Any]]:
    names = {stack.physical[n]: n for n in stack.physical if n.endswith("Group") and n.startswith("Fleet") and "Security" not in n}
    found = boto3.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=list(names))["AutoScalingGroups"]
    return {names[g["AutoScalingGroupName"]]: g for g in found}


def ingress_sources(ec2: Any, group_id: str) -> set[tuple[int, str]]:
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return {(p["FromPort"], pair["GroupId"]) for p in group["IpPermissions"] for pair in p.get("UserIdGroupPairs", [])}


def test_load_balancers_public_instances_private(network: dict[str, Any]) -> None:
    stack = network["create"]()
    elb = boto3.client("elbv2", REGION)
    for name in ("FleetDevLoadBalancer", "FleetProdLoadBalancer"):
        lb = elb.describe_load_balancers(LoadBalancerArns=[stack.physical[name]])["LoadBalancers"][0]
        assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == network["public"], name
        assert lb["Scheme"] == "internet-facing"
    found = groups(stack)
    assert sorted(found) == ["FleetDevBlueGroup", "FleetDevGreenGroup", "FleetProdBlueGroup", "FleetProdGreenGroup"]
    for name, group in found.items():
        assert set(group["VPCZoneIdentifier"].split(",")) == network["private"], name
    # blue (live until the first release) came up with FleetSize instances, all in the private subnets; green with none
    sizes = {name: (g["MinSize"], g["DesiredCapacity"], len(g["Instances"])) for name, g in found.items()}
    assert sizes == {"FleetDevBlueGroup": (2, 2, 2), "FleetProdBlueGroup": (2, 2, 2),
                     "FleetDevGreenGroup": (0, 0, 0), "FleetProdGreenGroup": (0, 0, 0)}
    instances = [i["InstanceId"] for g in found.values() for i in g["Instances"]]
    placed = network["ec2"].describe_instances(InstanceIds=instances)["Reservations"]
    assert {i["SubnetId"] for r in placed for i in r["Instances"]} <= network["private"]


def test_the_endpoints_serve_the_private_subnets_and_admit_the_instances(network: dict[str, Any]) -> None:
    stack = network["create"]()
    ec2 = network["ec2"]
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [network["vpc"]]}])["VpcEndpoints"]
    by_service = {e["ServiceName"].removeprefix(f"com.amazonaws.{REGION}."): e for e in endpoints}
    assert set(by_service) == INTERFACES | {"s3"}
    endpoint_group = stack.physical["FleetEndpointSecurityGroup"]
    for service in INTERFACES:
        endpoint = by_service[service]
        assert endpoint["VpcEndpointType"] == "Interface", service
        assert set(endpoint["SubnetIds"]) == network["private"], service
        assert [g["GroupId"] for g in endpoint["Groups"]] == [endpoint_group], service
        assert endpoint["PrivateDnsEnabled"] is True, service
    assert (by_service["s3"]["VpcEndpointType"], by_service["s3"]["RouteTableIds"]) == ("Gateway", [network["table"]])
    # S3 is routed through the gateway from the private subnets' route table
    routes = ec2.describe_route_tables(RouteTableIds=[network["table"]])["RouteTables"][0]["Routes"]
    assert any(r.get("GatewayId") == by_service["s3"]["VpcEndpointId"] and r.get("DestinationPrefixListId") for r in routes)
    # the endpoints admit both environments' instances on 443, and the instances may send HTTPS out
    instance_groups = {stack.physical["FleetDevInstanceSecurityGroup"], stack.physical["FleetProdInstanceSecurityGroup"]}
    assert ingress_sources(ec2, endpoint_group) == {(443, g) for g in instance_groups}
    closed = ec2.describe_security_groups(GroupIds=[endpoint_group])["SecurityGroups"][0]["IpPermissionsEgress"]
    assert [(p["IpProtocol"], [r["CidrIp"] for r in p["IpRanges"]]) for p in closed] == [("icmp", ["127.0.0.1/32"])]
    for group_id in instance_groups:
        egress = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissionsEgress"]
        assert [(p["IpProtocol"], p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in egress] == [
            ("tcp", 443, 443, ["0.0.0.0/0"])]
    # the groups name the endpoints they boot through (and so were created after them)
    ids = sorted(e["VpcEndpointId"] for e in endpoints)
    for name, group in groups(stack).items():
        tag = next(t["Value"] for t in group["Tags"] if t["Key"] == "podinfo-vpc-endpoints")
        assert sorted(tag.split(",")) == ids, name


def test_behind_a_nat_the_stack_creates_no_endpoints(network: dict[str, Any]) -> None:
    stack = network["create"](FleetVpcEndpoints="false", FleetInstanceRouteTableIds="")
    endpoints = network["ec2"].describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [network["vpc"]]}])["VpcEndpoints"]
    assert endpoints == []
    assert "FleetEndpointSecurityGroup" not in stack.physical
    for name, group in groups(stack).items():
        assert next(t["Value"] for t in group["Tags"] if t["Key"] == "podinfo-vpc-endpoints") == "none", name
        assert set(group["VPCZoneIdentifier"].split(",")) == network["private"], name
