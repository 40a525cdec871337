"""E9105 - every function's environment variables fit Lambda's 4 KB at the parameters' largest values.

What AWS does: "The total size of all environment variables doesn't exceed 4 KB" (Lambda Developer
Guide, "Lambda quotas", Function configuration). CreateFunction and UpdateFunctionConfiguration
fail with InvalidParameterValueException when it does; the message shows the string Lambda
measured, which is the variables serialized as a JSON object (`{"NAME":"value",...}`), so names,
quotes, separators and JSON escapes count too. The stack then rolls back, and the value that breaks
it is often a parameter nobody sized (a policy document, a PEM bundle) pasted in at deploy time.

What the rule checks: for every AWS::Lambda::Function of the transformed template (SAM Globals
already merged in), the largest JSON form of Environment.Variables is at most 4096 bytes. Values
are bounded as follows; every bound is a documented limit or a format this module writes down:
- literal text: its JSON-escaped UTF-8 length;
- a String parameter: its MaxLength (or its longest AllowedValue); without either it has no bound,
  which is itself a finding. Free text (neither AllowedPattern nor AllowedValues) counts twice its
  MaxLength: JSON escapes quotes, backslashes and newlines (a PEM key) as two bytes;
- a Number parameter: the digits of its MinValue/MaxValue (without a MaxValue: a finding);
- CommaDelimitedList, List<...> and SSM parameter types: no bound (a finding);
- pseudo parameters: AWS::AccountId 12, AWS::Region 20 (the longest Region code today has 14
  characters), AWS::Partition 16 (`aws-iso-b` has 9), AWS::StackName 128 (CloudFormation's
  limit), AWS::URLSuffix 32, AWS::StackId the stack ARN with a 36-character id;
- Ref/GetAtt of a resource: the name limit of its type (Lambda function 64, DynamoDB table 255,
  SNS topic 256, SQS queue 80, Secrets Manager secret 512 plus `-` and 6 random characters,
  state machine 80, CodeDeploy application/deployment group 100, load balancer and target group
  32, Auto Scaling group and alarm 255, IAM role 64 ...) or the name the template gives it (a Sub
  with `${AWS::StackName}` counts the stack name at 128), placed in the ARN or URL format of that
  type; a name CloudFormation generates counts as stack name, logical id and 13 random characters;
  a type without an entry below counts 2048 (IAM's limit for an ARN);
- Sub/Join: the sum of the parts; If: the larger branch; Select: the largest item; FindInMap:
  the longest value of the mapping; Base64: four bytes per three.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

LIMIT = 4096
ARN_MAX = 2048
STACK_NAME = 128
REGION = 20
PARTITION = 16
ACCOUNT = 12
RANDOM_SUFFIX = 13
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": 32,
    "AWS::NoValue": 0,
}


def arn(service: str, resource: int, *, regional: bool = True) -> int:
    """Length of `arn:<partition>:<service>:<region>:<account>:<resource>`."""
    return len("arn:") + PARTITION + 1 + len(service) + 1 + (REGION if regional else 0) + 1 + ACCOUNT + 1 + resource


PSEUDO["AWS::StackId"] = arn("cloudformation", len("stack/") + STACK_NAME + 1 + 36)

Bounds = Callable[[int], int]
# type -> (name property, name limit, bound of Ref, {attribute: bound}); each bound takes the name's bound.
ELB_ID = 16
ELB = "elasticloadbalancing"
TYPES: dict[str, tuple[str | None, int, Bounds, dict[str, Bounds]]] = {
    "AWS::Lambda::Function": ("FunctionName", 64, lambda n: n, {"Arn": lambda n: arn("lambda", len("function:") + n)}),
    "AWS::Lambda::Url": (None, 0, lambda _: arn("lambda", len("function:") + 64), {
        "FunctionUrl": lambda _: len("https://") + 32 + len(".lambda-url.") + REGION + len(".on.aws/"),
        "FunctionArn": lambda _: arn("lambda", len("function:") + 64),
    }),
    "AWS::Lambda::Alias": ("Name", 128, lambda n: arn("lambda", len("function:") + 64 + 1 + n), {}),
    "AWS::Lambda::Version": (None, 0, lambda _: arn("lambda", len("function:") + 64 + 1 + 10), {"Version": lambda _: 10}),
    "AWS::Lambda::LayerVersion": ("LayerName", 140, lambda n: arn("lambda", len("layer:") + n + 1 + 10), {}),
    "AWS::SNS::Topic": ("TopicName", 256, lambda n: arn("sns", n), {
        "TopicName": lambda n: n, "TopicArn": lambda n: arn("sns", n),
    }),
    "AWS::SQS::Queue": ("QueueName", 80, lambda n: len("https://sqs.") + REGION + len(".amazonaws.com/") + ACCOUNT + 1 + n, {
        "Arn": lambda n: arn("sqs", n), "QueueName": lambda n: n,
        "QueueUrl": lambda n: len("https://sqs.") + REGION + len(".amazonaws.com/") + ACCOUNT + 1 + n,
    }),
    "AWS::SecretsManager::Secret": ("Name", 512, lambda n: arn("secretsmanager", len("secret:") + n + 7), {
        "Id": lambda n: arn("secretsmanager", len("secret:") + n + 7),
    }),
    "AWS::DynamoDB::Table": ("TableName", 255, lambda n: n, {
        "Arn": lambda n: arn("dynamodb", len("table/") + n),
        "StreamArn": lambda n: arn("dynamodb", len("table/") + n + len("/stream/") + 23),
    }),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", 80, lambda n: arn("states", len("stateMachine:") + n), {
        "Arn": lambda n: arn("states", len("stateMachine:") + n), "Name": lambda n: n,
    }),
    "AWS::CodeDeploy::Application": ("ApplicationName", 100, lambda n: n, {}),
    "AWS::CodeDeploy::DeploymentGroup": ("DeploymentGroupName", 100, lambda n: n, {}),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("Name", 32, lambda n: arn(ELB, len("loadbalancer/app/") + n + 1 + ELB_ID), {
        "DNSName": lambda n: len("internal-") + n + 1 + 20 + 1 + REGION + len(".elb.amazonaws.com"),
        "LoadBalancerFullName": lambda n: len("app/") + n + 1 + ELB_ID,
        "LoadBalancerName": lambda n: n,
    }),
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("Name", 32, lambda n: arn(ELB, len("targetgroup/") + n + 1 + ELB_ID), {
        "TargetGroupFullName": lambda n: len("targetgroup/") + n + 1 + ELB_ID,
        "TargetGroupName": lambda n: n,
    }),
    "AWS::ElasticLoadBalancingV2::Listener": (None, 0, lambda _: arn(ELB, len("listener/app/") + 32 + 2 * (1 + ELB_ID)), {
        "ListenerArn": lambda _: arn(ELB, len("listener/app/") + 32 + 2 * (1 + ELB_ID)),
    }),
    "AWS::AutoScaling::AutoScalingGroup": ("AutoScalingGroupName", 255, lambda n: n, {}),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255, lambda n: n, {"Arn": lambda n: arn("cloudwatch", len("alarm:") + n)}),
    "AWS::KMS::Key": (None, 0, lambda _: 40, {"Arn": lambda _: arn("kms", len("key/") + 40), "KeyId": lambda _: 40}),
    "AWS::IAM::Role": ("RoleName", 64, lambda n: n, {
        "Arn": lambda n: arn("iam", len("role/") + 512 + n, regional=False), "RoleId": lambda _: 128,
    }),
    "AWS::Logs::LogGroup": ("LogGroupName", 512, lambda n: n, {"Arn": lambda n: arn("logs", len("log-group:") + n + 2)}),
    "AWS::Events::Rule": ("Name", 64, lambda n: n, {"Arn": lambda n: arn("events", len("rule/") + n)}),
    "AWS::EC2::SecurityGroup": (None, 0, lambda _: 20, {"GroupId": lambda _: 20, "VpcId": lambda _: 21}),
    "AWS::EC2::LaunchTemplate": (None, 0, lambda _: 20, {
        "LatestVersionNumber": lambda _: 20, "DefaultVersionNumber": lambda _: 20, "LaunchTemplateId": lambda _: 20,
    }),
}


def escaped(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


class Estimate:
    """Upper bounds of (JSON-escaped) value sizes; `problems` lists what has no bound."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.parameters = template.get("Parameters", {}) or {}
        self.resources = template.get("Resources", {}) or {}
        self.problems: list[str] = []

    def value(self, item: Any) -> int:
        key, argument = pf.intrinsic(item)
        if key is None:
            if isinstance(item, (str, int, float, bool)):
                return escaped(str(item).lower() if isinstance(item, bool) else str(item))
            self.problems.append(f"a value the rule cannot size: {item!r}")
            return 0
        handler = {
            "Ref": lambda: self.ref(str(argument)),
            "Fn::GetAtt": lambda: self.getatt(*pf.getatt_parts(argument)),
            "Fn::Sub": lambda: self.sub(argument),
            "Fn::Join": lambda: self.join(argument),
            "Fn::If": lambda: max(self.value(argument[1]), self.value(argument[2])),
            "Fn::Select": lambda: self.select(argument),
            "Fn::FindInMap": lambda: self.find_in_map(argument),
            "Fn::Base64": lambda: 4 * math.ceil(self.value(argument) / 3),
        }.get(key)
        if handler is None:
            self.problems.append(f"{key} has no bound the rule knows")
            return 0
        return handler()

    def ref(self, name: str) -> int:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameter(name)
        return self.resource(name, None)

    def getatt(self, logical_id: str, attribute: str) -> int:
        return self.resource(logical_id, attribute)

    def parameter(self, name: str) -> int:
        spec = self.parameters[name]
        kind = str(spec.get("Type", "String"))
        if kind == "String":
            if spec.get("AllowedValues"):
                return max(escaped(str(v)) for v in spec["AllowedValues"])
            if "MaxLength" in spec:
                free_text = "AllowedPattern" not in spec
                return int(spec["MaxLength"]) * (2 if free_text else 1)
            self.problems.append(f"parameter {name} has no MaxLength (its size is unbounded)")
            return 0
        if kind == "Number":
            if "MaxValue" not in spec:
                self.problems.append(f"Number parameter {name} has no MaxValue (its size is unbounded)")
                return 0
            return max(len(str(spec["MaxValue"])), len(str(spec.get("MinValue", ""))))
        self.problems.append(f"parameter {name} is a {kind}, whose size the template cannot bound")
        return 0

    def name_bound(self, logical_id: str, name_property: str | None, limit: int) -> int:
        props = self.resources.get(logical_id, {}).get("Properties") or {}
        if name_property and props.get(name_property) is not None:
            return min(limit, self.value(props[name_property]))
        return min(limit, STACK_NAME + 1 + len(logical_id) + 1 + RANDOM_SUFFIX)

    def resource(self, logical_id: str, attribute: str | None) -> int:
        kind = self.resources.get(logical_id, {}).get("Type")
        entry = TYPES.get(str(kind))
        if entry is None:
            return ARN_MAX
        name_property, limit, ref_bound, attributes = entry
        name = self.name_bound(logical_id, name_property, limit) if name_property else 0
        if attribute is None:
            return ref_bound(name)
        bound = attributes.get(attribute)
        return bound(name) if bound else ARN_MAX

    def sub(self, argument: Any) -> int:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1] if len(argument) > 1 else {})
        total = 0
        position = 0
        while True:
            start = text.find("${", position)
            if start < 0:
                break
            end = text.find("}", start)
            if end < 0:
                break
            total += escaped(text[position:start])
            name = text[start + 2:end]
            if name.startswith("!"):
                total += escaped("${" + name[1:] + "}")
            elif name in variables:
                total += self.value(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                total += self.getatt(*name.split(".", 1))
            else:
                total += self.ref(name)
            position = end + 1
        return total + escaped(text[position:])

    def join(self, argument: Any) -> int:
        delimiter, items = argument[0], argument[1]
        if not isinstance(items, list):
            self.problems.append("Fn::Join of a list the template does not spell out (its length is unbounded)")
            return 0
        return sum(self.value(item) for item in items) + escaped(str(delimiter)) * max(len(items) - 1, 0)

    def select(self, argument: Any) -> int:
        items = argument[1]
        if not isinstance(items, list):
            self.problems.append("Fn::Select from a list the template does not spell out")
            return 0
        return max((self.value(item) for item in items), default=0)

    def find_in_map(self, argument: Any) -> int:
        mapping = (self.template.get("Mappings") or {}).get(argument[0]) if isinstance(argument[0], str) else None
        if not isinstance(mapping, dict):
            self.problems.append("Fn::FindInMap of a mapping the rule cannot read")
            return 0
        return max((escaped(str(v)) for first in mapping.values() for v in (first or {}).values()), default=0)


def environment_bound(template: dict[str, Any], variables: dict[str, Any]) -> tuple[int, list[tuple[str, int]], list[str]]:
    """(largest JSON size, [(name, bound of its entry)], problems) of one function's variables."""
    estimate = Estimate(template)
    entries = []
    for name, value in variables.items():
        before = len(estimate.problems)
        size = escaped(name) + 2 + 1 + 2 + estimate.value(value)  # "NAME":"value"
        estimate.problems[before:] = [f"{name}: {p}" for p in estimate.problems[before:]]
        entries.append((name, size))
    total = 2 + sum(size for _, size in entries) + max(len(entries) - 1, 0)  # braces and commas
    return total, entries, estimate.problems


class EnvironmentWithinLambdaLimit(CloudFormationLintRule):
    id = "E9105"
    shortdesc = "Function environments fit Lambda's 4 KB at the parameters' largest values"
    description = (
        "The JSON form of each function's environment variables stays within 4096 bytes with every parameter at "
        "its MaxLength and every resource name at its limit; a parameter without a bound is a finding."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
    tags: ClassVar[list[str]] = ["preflight", "lambda"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches = []
        for logical_id, resource in sorted(cfn.template.get("Resources", {}).items()):
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")
            if not isinstance(variables, dict) or not variables:
                continue
            path = ["Resources", logical_id, "Properties", "Environment", "Variables"]
            total, entries, problems = environment_bound(cfn.template, variables)
            matches.extend(RuleMatch(path, f"{logical_id}: {problem}; Lambda refuses an environment over 4 KB")
                           for problem in problems)
            if total > LIMIT:
                largest = ", ".join(f"{name} {size}" for name, size in sorted(entries, key=lambda e: -e[1])[:4])
                matches.append(RuleMatch(path, (
                    f"{logical_id}: its environment variables can reach {total} bytes, over Lambda's {LIMIT}-byte limit "
                    f"(largest: {largest}); CreateFunction/UpdateFunctionConfiguration would fail"
                )))
        return matches
