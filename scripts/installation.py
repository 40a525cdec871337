"""What `make deploy` and `make teardown` share: one installation of the control plane, as
`samconfig.toml` and `template.yaml` describe it.

An installation is a samconfig environment (`dev`, `prod`, or `default`): its stack name and
Region (`[<env>.global.parameters]`, overridden by `[<env>.deploy.parameters]`, as SAM CLI merges
them), the capabilities it deploys with and the template parameters it sets. Everything here is
offline (no AWS call), so `--dry-run` and the tests use the same code as a real deploy.

SAM CLI's `--parameter-overrides` parser reads each `Key=Value` argument with a regular
expression that stops a value at the first space and treats quotes and backslashes specially: a
value with any of those would reach CloudFormation cut or altered. `sam_argument` therefore
refuses them (no template parameter takes one), and writes an empty value as `Key=""`, the only
spelling of "empty" that parser accepts.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = ROOT / "samconfig.toml"
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
#: The SSM parameter `make deploy POLICY=...|KEYS=...` writes the release policy to.
POLICY_PARAMETER = "/{stack}/release-policy"


class InstallationError(Exception):
    """A named problem with what was asked for; the message says what to do about it."""

    name = "InstallationError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class UnknownEnvironment(InstallationError):
    name = "UnknownEnvironment"


class BadParameter(InstallationError):
    name = "BadParameter"


@dataclass(frozen=True)
class Installation:
    """One samconfig environment: where its stack lives and what it deploys with."""

    env: str
    stack_name: str
    region: str
    capabilities: tuple[str, ...]
    #: Template parameters samconfig sets (`parameter_overrides`), as SAM CLI reads them.
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def policy_parameter(self) -> str:
        return POLICY_PARAMETER.format(stack=self.stack_name)


def load_samconfig(path: Path = SAMCONFIG) -> dict[str, Any]:
    with path.open("rb") as stream:
        return tomllib.load(stream)


def environments(config: dict[str, Any]) -> list[str]:
    """The samconfig environments that can be deployed (they have a deploy section)."""
    return sorted(name for name, body in config.items() if isinstance(body, dict) and "deploy" in body)


def parse_overrides(value: object, where: str) -> dict[str, str]:
    """samconfig's `parameter_overrides` (a string of space-separated Key=Value pairs, values
    optionally quoted, or a list of such strings) as the parameter values SAM CLI passes on."""
    items = value if isinstance(value, list) else [value]
    result: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            msg = f"{where}: parameter_overrides must be Key=Value pairs in a string or a list, not {type(item).__name__}"
            raise BadParameter(msg)
        for token in shlex.split(item):
            key, sep, val = token.partition("=")
            if not sep or not key:
                msg = f"{where}: {token!r} in parameter_overrides is not Key=Value"
                raise BadParameter(msg)
            result[key] = val
    return result


def load_installation(env: str, config: dict[str, Any] | None = None) -> Installation:
    config = load_samconfig() if config is None else config
    known = environments(config)
    if env not in known:
        shown = env or "(none)"
        msg = f"ENV={shown} is not an environment of samconfig.toml: use ENV={' or ENV='.join(known)}"
        raise UnknownEnvironment(msg)
    body = config[env]
    merged: dict[str, Any] = {**body.get("global", {}).get("parameters", {}), **body["deploy"].get("parameters", {})}
    where = f"samconfig.toml [{env}.deploy.parameters]"
    for required in ("stack_name", "region"):
        if not isinstance(merged.get(required), str) or not merged[required]:
            msg = f"{where}: {required} is missing (set it in [{env}.global.parameters])"
            raise BadParameter(msg)
    raw_capabilities = merged.get("capabilities", "")
    capabilities = tuple(raw_capabilities.split() if isinstance(raw_capabilities, str) else [str(c) for c in raw_capabilities])
    overrides = parse_overrides(merged.get("parameter_overrides", ""), where)
    return Installation(env, merged["stack_name"], merged["region"], capabilities, overrides)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    from local.template import load_template as load  # noqa: PLC0415 - samtranslator's YAML loader, only when needed

    return load(path)


# --- parameter values ---------------------------------------------------------------------------
#: What SAM CLI's --parameter-overrides parser would cut or rewrite (a space, quotes, backslash
#: escapes), and what no template parameter takes (line breaks, tabs: a multi-line value is a policy
#: or a PEM key, which belongs in SSM), with how to say so.
_UNSAFE = (
    (re.compile(r"[\r\n]"), "a line break", "multi-line"),
    (re.compile(r" "), "a space", "cut"),
    (re.compile(r"\s"), "a tab or other whitespace", "multi-line"),
    (re.compile(r"[\"']"), "a quote", "altered"),
    (re.compile(r"\\"), "a backslash", "altered"),
)


def sam_argument(key: str, value: str) -> str:
    """`Key=Value` for `sam deploy --parameter-overrides`, refusing values its parser would not
    pass on intact, and whitespace no parameter takes."""
    for pattern, what, effect in _UNSAFE:
        if not pattern.search(value):
            continue
        if effect == "cut":
            why = (f"sam deploy's --parameter-overrides parser cuts a value at the first space, so {key} would arrive "
                   f"as {value.split(' ')[0]!r}")
        elif effect == "altered":
            why = (f"sam deploy's --parameter-overrides parser strips quotes and reads backslashes as escapes, so {key} "
                   "would arrive altered")
        else:
            why = "no template parameter takes a multi-line value"
        msg = (f"{key}: the value contains {what}; {why}. A list is comma-separated without spaces, and the release "
               "policy or PEM keys go through SSM (make deploy POLICY=policy.json or KEYS=cosign.pub)")
        raise BadParameter(msg)
    return f'{key}=""' if value == "" else f"{key}={value}"


#: Parameters that older instructions named; what replaced them.
RETIRED = {
    "CosignPublicKeys": "the keys now live in the release policy: make deploy KEYS=cosign.pub (or POLICY=policy.json)",
    "ReleasePolicy": "the policy now lives in SSM: make deploy POLICY=policy.json",
}


def check_names(names: list[str] | dict[str, str], template: dict[str, Any], where: str) -> None:
    parameters = template.get("Parameters", {})
    for name in names:
        if name in parameters:
            continue
        hint = RETIRED.get(name, f"its parameters: {', '.join(parameters)}")
        msg = f"{where}: {name} is not a parameter of template.yaml ({hint})"
        raise BadParameter(msg)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def constraint_errors(template: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The values that CloudFormation would refuse for the template's parameter constraints
    (AllowedPattern, AllowedValues, MinLength/MaxLength, MinValue/MaxValue, Number), each said as
    the template says it; CommaDelimitedList constraints apply to every member."""
    errors: list[str] = []
    for name, value in values.items():
        spec = template["Parameters"][name]
        kind = str(spec.get("Type", "String"))
        if kind.startswith("AWS::"):
            continue
        members = value.split(",") if kind == "CommaDelimitedList" else [value]
        why = spec.get("ConstraintDescription") or spec.get("Description", "")
        why = f" ({' '.join(str(why).split())})" if why else ""
        for member in members:
            if kind == "Number":
                number = _number(member)
                if number is None:
                    errors.append(f"{name}={member!r} is not a number")
                    continue
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    errors.append(f"{name}={member} is below its MinValue {spec['MinValue']}{why}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    errors.append(f"{name}={member} is above its MaxValue {spec['MaxValue']}{why}")
                continue
            pattern = spec.get("AllowedPattern")
            if pattern is not None and re.fullmatch(str(pattern), member) is None:
                errors.append(f"{name}={member!r} does not match its AllowedPattern {pattern}{why}")
            allowed = spec.get("AllowedValues")
            if allowed is not None and member not in [str(a) for a in allowed]:
                errors.append(f"{name}={member!r} is not one of {', '.join(str(a) for a in allowed)}")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            errors.append(f"{name} is {len(value)} characters long, over its MaxLength {spec['MaxLength']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            errors.append(f"{name} is {len(value)} characters long, under its MinLength {spec['MinLength']}")
    return errors


def defaults(template: dict[str, Any]) -> dict[str, str]:
    return {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}


def required(template: dict[str, Any]) -> list[str]:
    """Parameters without a default: a new stack needs a value for each."""
    return [name for name, spec in template["Parameters"].items() if "Default" not in spec]


def _typed(template: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        value = values.get(name, "")
        typed[name] = value.split(",") if spec.get("Type") == "CommaDelimitedList" else value
    return typed


def rule_errors(template: dict[str, Any], values: dict[str, str], installation: Installation) -> list[str]:
    """The template's Rules on these parameter values, evaluated by the local runtime's own rule
    checker: the AssertDescription of each rule CloudFormation would refuse the deploy for."""
    from local.stack import Stack  # noqa: PLC0415
    from local.template import Resolver  # noqa: PLC0415

    stack = Stack(installation.stack_name, installation.region, "000000000000", _typed(template, values), {})
    resolver = Resolver(stack)
    errors: list[str] = []
    for name, rule in template.get("Rules", {}).items():
        try:
            resolver.check_rules({name: rule})
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def reserved_concurrency(template: dict[str, Any], values: dict[str, str], installation: Installation) -> int:
    """How many concurrent executions the stack reserves with these parameter values: every
    function's ReservedConcurrentExecutions (SAM functions inherit the Globals one), conditions and
    references resolved with the local runtime's resolver."""
    from local.stack import Stack  # noqa: PLC0415
    from local.template import Resolver  # noqa: PLC0415

    stack = Stack(installation.stack_name, installation.region, "000000000000", _typed(template, values), {})
    resolver = Resolver(stack)
    conditions = resolver.evaluate_conditions(template.get("Conditions", {}))
    inherited = template.get("Globals", {}).get("Function", {}).get("ReservedConcurrentExecutions")
    total = 0
    for resource in template.get("Resources", {}).values():
        if not conditions.get(resource.get("Condition", ""), True):
            continue
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            value = props.get("ReservedConcurrentExecutions", inherited)
        elif resource.get("Type") == "AWS::Lambda::Function":
            value = props.get("ReservedConcurrentExecutions")
        else:
            continue
        resolved = resolver.resolve(value) if value is not None else None
        if resolved is not None and str(resolved) != "":
            total += int(resolved)
    return total


#: Properties that give an IAM resource a custom name (CloudFormation then needs CAPABILITY_NAMED_IAM).
_IAM_NAMES = {"AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
              "AWS::IAM::InstanceProfile": "InstanceProfileName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName"}


def capability_errors(template: dict[str, Any], installation: Installation) -> list[str]:
    """CloudFormation refuses a change set that creates IAM resources without CAPABILITY_IAM, and
    one that names them without CAPABILITY_NAMED_IAM (InsufficientCapabilities): say so before."""
    resources = template.get("Resources", {})
    named = sorted(f"{lid} ({_IAM_NAMES[r['Type']]})" for lid, r in resources.items()
                   if r.get("Type") in _IAM_NAMES and _IAM_NAMES[r["Type"]] in r.get("Properties", {}))
    has_iam = any(str(r.get("Type", "")).startswith("AWS::IAM::") or r.get("Type") == "AWS::Serverless::Function"
                  for r in resources.values())
    where = f"samconfig.toml [{installation.env}.deploy.parameters] capabilities = \"{' '.join(installation.capabilities)}\""
    if named and "CAPABILITY_NAMED_IAM" not in installation.capabilities:
        return [f"template.yaml names IAM resources ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}), which "
                f"CloudFormation creates only with CAPABILITY_NAMED_IAM (else InsufficientCapabilities); {where}: "
                'set it to "CAPABILITY_NAMED_IAM"']
    if has_iam and not {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} & set(installation.capabilities):
        return [f"template.yaml creates IAM roles, which CloudFormation creates only with CAPABILITY_IAM; {where}: "
                'set it to "CAPABILITY_IAM"']
    return []


#: The name limits of the resource types the template names after the stack (the create APIs'
#: documented maximums): a stack name that pushes one over fails the deploy half way.
NAME_LIMITS: dict[tuple[str, str], int] = {
    ("AWS::Serverless::Function", "FunctionName"): 64, ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::IAM::Role", "RoleName"): 64, ("AWS::IAM::ManagedPolicy", "ManagedPolicyName"): 128,
    ("AWS::IAM::InstanceProfile", "InstanceProfileName"): 128,
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "Name"): 32, ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name"): 32,
    ("AWS::SQS::Queue", "QueueName"): 80, ("AWS::SNS::Topic", "TopicName"): 256, ("AWS::DynamoDB::Table", "TableName"): 255,
    ("AWS::SecretsManager::Secret", "Name"): 512, ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::Serverless::StateMachine", "Name"): 80, ("AWS::StepFunctions::StateMachine", "StateMachineName"): 80,
    ("AWS::Serverless::LayerVersion", "LayerName"): 140, ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::CloudWatch::Dashboard", "DashboardName"): 255, ("AWS::CodeDeploy::Application", "ApplicationName"): 100,
    ("AWS::CodeDeploy::DeploymentGroup", "DeploymentGroupName"): 100,
    ("AWS::AutoScaling::AutoScalingGroup", "AutoScalingGroupName"): 255, ("AWS::EC2::LaunchTemplate", "LaunchTemplateName"): 128,
}


def name_length_errors(template: dict[str, Any], values: dict[str, str], installation: Installation) -> list[str]:
    """Names the template derives from the stack name that would be too long with this stack name
    (only resources these parameter values create)."""
    from local.stack import Stack  # noqa: PLC0415
    from local.template import Resolver  # noqa: PLC0415

    stack = Stack(installation.stack_name, installation.region, "000000000000", _typed(template, values), {})
    resolver = Resolver(stack)
    conditions = resolver.evaluate_conditions(template.get("Conditions", {}))
    errors: list[str] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if not conditions.get(resource.get("Condition", ""), True):
            continue
        for (kind, prop), limit in NAME_LIMITS.items():
            value = resource.get("Properties", {}).get(prop) if resource.get("Type") == kind else None
            if value is None:
                continue
            try:
                name = str(resolver.resolve(value))
            except KeyError:  # a name built from another resource's attribute: not the stack name's doing
                continue
            if len(name) > limit:
                errors.append(f"{logical_id}'s {prop} {name} has {len(name)} characters, over the {limit} {kind} allows")
    if errors:
        errors.append(f"stack_name {installation.stack_name} ({len(installation.stack_name)} characters) is too long for "
                      f"these names: shorten it in samconfig.toml [{installation.env}.global.parameters]")
    return errors
