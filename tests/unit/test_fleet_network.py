"""The fleet's network and group sizes as template.yaml declares them.

An instance boots in a private subnet with no public IP: everything its boot script and host files
call must be reachable through a VPC endpoint the stack creates (FleetVpcEndpoints "true"), and the
instances' security group must reach those endpoints. The internet-facing load balancers go in the
public subnets. The Auto Scaling groups' sizes belong to the releases: no stack update may set them.
No AWS here: tests/integration/test_fleet_provisioned.py creates the same resources in moto.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT_PREFIX = "com.amazonaws.${AWS::Region}."

# What the instances call, where, and the AWS service endpoints that carries. The two tests below
# find every call in those files and require it to be listed here, then require an endpoint for
# each service listed.
CALLS: list[tuple[str, str, set[str]]] = [
    ("boot script", "aws ecr get-login-password", {"ecr.api"}),
    ("boot script", 'docker login --username AWS --password-stdin "${IMAGE%%/*}"', {"ecr.dkr"}),
    ("boot script", 'docker pull "$IMAGE"', {"ecr.dkr", "s3"}),  # the manifest from the registry, the layers from S3
    ("boot script", "dnf install", {"s3"}),  # Amazon Linux 2023's repositories are S3-hosted
    ("workload/ec2/install.sh", "dnf install", {"s3"}),
    ("workload/ec2/podinfo-secret-fetch", 'boto3.client("secretsmanager"', {"secretsmanager"}),
]
# A call that needs the network, in shell (aws CLI, docker, dnf/yum, curl to a non-local host) or Python (boto3).
_SHELL_CALL = re.compile(r"\baws [a-z0-9-]+ [a-z0-9-]+|\bdocker (?:pull|login|push)\b[^\n]*|\b(?:dnf|yum) install\b|\bcurl\b[^\n]*")
_PYTHON_CALL = re.compile(r'boto3\.(?:client|resource)\("[a-z0-9-]+"')
_LOCAL = ("169.254.169.254", "127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def sources(template: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Everything an instance runs that could call out: name -> (language, text without comment lines)."""
    texts = {"boot script": str(template["Mappings"]["FleetBootstrap"]["UserData"]["Script"])}
    for path in sorted((ROOT / "workload" / "ec2").rglob("*")):
        if path.is_file() and path.suffix not in (".md", ".conf"):
            texts[str(path.relative_to(ROOT))] = path.read_text()
    return {name: ("python" if text.startswith("#!/usr/bin/python") else "shell",
                   "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
            for name, text in texts.items()}


# --- subnets --------------------------------------------------------------------------------------------
def test_load_balancers_go_in_the_public_subnets_and_the_groups_in_the_private_ones(resources: dict[str, Any]) -> None:
    balancers = of_type(resources, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    groups = of_type(resources, "AWS::AutoScaling::AutoScalingGroup")
    assert sorted(balancers) == ["FleetDevLoadBalancer", "FleetProdLoadBalancer"]
    assert sorted(groups) == ["FleetDevBlueGroup", "FleetDevGreenGroup", "FleetProdBlueGroup", "FleetProdGreenGroup"]
    for balancer in balancers.values():
        assert balancer["Properties"]["Scheme"] == "internet-facing"
        assert balancer["Properties"]["Subnets"] == {"Ref": "FleetLoadBalancerSubnetIds"}
    for group in groups.values():
        assert group["Properties"]["VPCZoneIdentifier"] == {"Ref": "FleetInstanceSubnetIds"}


def test_the_old_shared_subnet_list_is_gone(template: dict[str, Any]) -> None:
    assert "FleetSubnetIds" not in template["Parameters"]
    assert "FleetSubnetIds" not in (ROOT / "template.yaml").read_text()
    assert template["Conditions"]["HasFleet"] == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "FleetInstanceSubnetIds"}]}, ""]}]}


# --- the way out: VPC endpoints ------------------------------------------------------------------------------
def test_every_network_call_of_the_instances_is_known(template: dict[str, Any]) -> None:
    listed = {(where, call) for where, call, _ in CALLS}
    calling: set[str] = set()
    for where, (language, text) in sources(template).items():
        found = (_PYTHON_CALL if language == "python" else _SHELL_CALL).findall(text)
        if found:
            calling.add(where)
        for call in found:
            if call.startswith("curl") and any(host in call for host in _LOCAL):
                continue  # IMDS and podinfo's own /readyz
            assert any(where == w and (call.startswith(c) or c.startswith(call)) for w, c in listed), (
                f"{where} calls `{call}`: list it in CALLS with the endpoints it needs")
    for where, call, _ in CALLS:
        assert call in sources(template)[where][1], f"{where} no longer calls `{call}`: drop it from CALLS"
    assert calling == {"boot script", "workload/ec2/install.sh", "workload/ec2/podinfo-secret-fetch"}


def test_each_service_the_instances_call_has_an_endpoint(resources: dict[str, Any]) -> None:
    endpoints = of_type(resources, "AWS::EC2::VPCEndpoint")
    by_service = {e["Properties"]["ServiceName"]["Fn::Sub"].removeprefix(ENDPOINT_PREFIX): (name, e) for name, e in endpoints.items()}
    needed = set().union(*(services for _, _, services in CALLS))
    assert needed == {"ecr.api", "ecr.dkr", "s3", "secretsmanager"}
    assert set(by_service) == needed  # and nothing nobody calls
    for service, (name, endpoint) in by_service.items():
        props = endpoint["Properties"]
        assert endpoint["Condition"] == "HasFleetVpcEndpoints", name
        assert props["VpcId"] == {"Ref": "FleetVpcId"}, name
        if service == "s3":  # the layers' bucket and the package repositories, through the route tables
            assert props["VpcEndpointType"] == "Gateway"
            assert props["RouteTableIds"] == {"Ref": "FleetInstanceRouteTableIds"}
        else:  # the SDK's and docker's default host names must resolve to the endpoint
            assert props["VpcEndpointType"] == "Interface", name
            assert props["PrivateDnsEnabled"] is True, name
            assert props["SubnetIds"] == {"Ref": "FleetInstanceSubnetIds"}, name
            assert props["SecurityGroupIds"] == [{"Ref": "FleetEndpointSecurityGroup"}], name


def _reaches_443(rule: dict[str, Any]) -> bool:
    return rule["IpProtocol"] == "tcp" and int(rule["FromPort"]) <= 443 <= int(rule["ToPort"])


@pytest.mark.parametrize("environment", ["Dev", "Prod"])
def test_the_instances_reach_the_endpoints_on_443(resources: dict[str, Any], environment: str) -> None:
    instances = f"Fleet{environment}InstanceSecurityGroup"
    # the instances' group lets HTTPS out to the endpoints' group and to S3's addresses (the gateway's prefix list)
    egress = [r for r in resources[instances]["Properties"]["SecurityGroupEgress"] if _reaches_443(r)]
    assert any(r.get("CidrIp") == "0.0.0.0/0" or r.get("DestinationSecurityGroupId") == {"Ref": "FleetEndpointSecurityGroup"}
               for r in egress), "no HTTPS egress to the interface endpoints"
    assert any(r.get("CidrIp") == "0.0.0.0/0" or "DestinationPrefixListId" in r for r in egress), "no HTTPS egress to S3"
    # and the endpoints' group lets them in
    ingress = resources["FleetEndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert any(_reaches_443(r) and r.get("SourceSecurityGroupId") == {"Ref": instances} for r in ingress)


def test_the_endpoints_admit_only_the_instances_and_open_nothing(resources: dict[str, Any]) -> None:
    group = resources["FleetEndpointSecurityGroup"]
    assert group["Condition"] == "HasFleetVpcEndpoints"
    sources_ = [r.get("SourceSecurityGroupId") for r in group["Properties"]["SecurityGroupIngress"]]
    assert sources_ == [{"Ref": "FleetDevInstanceSecurityGroup"}, {"Ref": "FleetProdInstanceSecurityGroup"}]
    assert [r["CidrIp"] for r in group["Properties"]["SecurityGroupEgress"]] == ["127.0.0.1/32"]


def test_the_groups_wait_for_the_endpoints_they_boot_through(resources: dict[str, Any]) -> None:
    endpoint_ids = sorted(of_type(resources, "AWS::EC2::VPCEndpoint"))
    for name, group in of_type(resources, "AWS::AutoScaling::AutoScalingGroup").items():
        tag = next(t for t in group["Properties"]["Tags"] if t["Key"] == "podinfo-vpc-endpoints")
        condition, named, otherwise = tag["Value"]["Fn::If"]
        assert (condition, otherwise) == ("HasFleetVpcEndpoints", "none"), name
        assert sorted(re.findall(r"\$\{(\w+)\}", named["Fn::Sub"])) == endpoint_ids, name


# --- parameters that only work together -------------------------------------------------------------------
def _value(expr: Any, params: dict[str, Any]) -> Any:
    """CloudFormation's rule functions (the ones the template uses), on parameter values."""
    if not isinstance(expr, dict):
        return expr
    (function, arg), = expr.items()
    if function == "Ref":
        return params[arg]
    if function == "Fn::Not":
        return not _value(arg[0], params)
    if function == "Fn::And":
        return all(_value(a, params) for a in arg)
    if function == "Fn::Equals":
        return _value(arg[0], params) == _value(arg[1], params)
    if function == "Fn::EachMemberEquals":
        return all(member == _value(arg[1], params) for member in _value(arg[0], params))
    raise AssertionError(f"{function} is not a rule function this test knows")


def refused(template: dict[str, Any], given: dict[str, str]) -> list[str]:
    """The AssertDescriptions CloudFormation would refuse a deploy with these parameters for."""
    params: dict[str, Any] = {}
    given = {"ReleasePolicyParameter": "/podrel/release-policy"} | given  # the release policy's own rule is met
    for name, spec in template["Parameters"].items():
        raw = given.get(name, spec.get("Default", ""))
        params[name] = str(raw).split(",") if spec["Type"] == "CommaDelimitedList" else raw
    return [assertion["AssertDescription"] for rule in template["Rules"].values() if _value(rule["RuleCondition"], params)
            for assertion in rule["Assertions"] if not _value(assertion["Assert"], params)]


VPC = {"FleetVpcId": "vpc-0a1b2c3d"}
PUBLIC = {"FleetLoadBalancerSubnetIds": "subnet-0pub1,subnet-0pub2"}
PRIVATE = {"FleetInstanceSubnetIds": "subnet-0priv1,subnet-0priv2"}
TABLES = {"FleetInstanceRouteTableIds": "rtb-0private"}
NEEDS_VPC = "FleetVpcId is required with FleetInstanceSubnetIds (the VPC of the fleet's subnets)."
NEEDS_PUBLIC = ("FleetLoadBalancerSubnetIds is required with FleetInstanceSubnetIds (public subnets for the internet-facing "
                "load balancers).")
NEEDS_PRIVATE = ("FleetInstanceSubnetIds (private subnets for the instances) is required with FleetLoadBalancerSubnetIds; "
                 "leave both empty for no fleet.")
NEEDS_TABLES = ('FleetInstanceRouteTableIds is required when FleetVpcEndpoints is "true" (the S3 gateway endpoint adds its '
                'route to the instance subnets\' route tables); set FleetVpcEndpoints to "false" if they route through a NAT gateway.')

NO_POLICY = ("Set ReleasePolicyParameter (an SSM parameter holding the release policy) or GitHubOrg and GitHubRepo (the "
             "default policy trusts their build workflow's keyless signature).")


@pytest.mark.parametrize(("given", "expected"), [
    ({}, []),
    (VPC | PUBLIC | PRIVATE | TABLES, []),
    (VPC | PUBLIC | PRIVATE | {"FleetVpcEndpoints": "false"}, []),
    (VPC | PUBLIC | PRIVATE, [NEEDS_TABLES]),
    (PRIVATE | TABLES, [NEEDS_VPC, NEEDS_PUBLIC]),
    (VPC | PUBLIC, [NEEDS_PRIVATE]),
    ({"FleetVpcEndpoints": "true"} | TABLES, []),  # no fleet: the endpoint settings do not matter
    ({"ReleasePolicyParameter": ""}, [NO_POLICY]),
    ({"ReleasePolicyParameter": "", "GitHubOrg": "acme", "GitHubRepo": "podinfo"}, []),
], ids=["no fleet", "private subnets with endpoints", "private subnets behind a NAT", "endpoints without route tables",
        "instance subnets alone", "load balancer subnets alone", "no fleet, endpoint settings", "no release policy",
        "the default release policy"])
def test_incomplete_fleet_parameters_are_refused_by_name(template: dict[str, Any], given: dict[str, str],
                                                         expected: list[str]) -> None:
    assert refused(template, given) == expected


# --- group sizes belong to the releases ---------------------------------------------------------------------
def test_no_group_has_a_desired_capacity_a_stack_update_would_reapply(resources: dict[str, Any]) -> None:
    for name, group in of_type(resources, "AWS::AutoScaling::AutoScalingGroup").items():
        assert "DesiredCapacity" not in group["Properties"], name
        # unmodified MinSize/MaxSize are not written back either (the releases set them)
        assert group["UpdatePolicy"] == {"AutoScalingScheduledAction": {"IgnoreUnmodifiedGroupSizeProperties": True}}, name
        assert group["Properties"]["MaxSize"] == {"Ref": "FleetSize"}, name


def test_blue_starts_with_fleet_size_instances_and_green_with_none(resources: dict[str, Any]) -> None:
    # a group created without DesiredCapacity starts at MinSize
    sizes = {name: group["Properties"]["MinSize"] for name, group in of_type(resources, "AWS::AutoScaling::AutoScalingGroup").items()}
    assert sizes == {"FleetDevBlueGroup": {"Ref": "FleetSize"}, "FleetProdBlueGroup": {"Ref": "FleetSize"},
                     "FleetDevGreenGroup": "0", "FleetProdGreenGroup": "0"}
    roles = {name: next(t["Value"] for t in group["Properties"]["Tags"] if t["Key"] == "podinfo-role")
             for name, group in of_type(resources, "AWS::AutoScaling::AutoScalingGroup").items()}
    assert roles == {"FleetDevBlueGroup": "live", "FleetProdBlueGroup": "live", "FleetDevGreenGroup": "idle",
                     "FleetProdGreenGroup": "idle"}
