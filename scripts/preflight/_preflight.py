"""Helpers shared by the preflight rules; not a rule itself.

cfn-lint loads every module of this folder whose name starts with a letter or a digit
(`--append-rules scripts/preflight`), so this module, whose name starts with `_`, is only imported
by the rule modules. It must not define or import a `CloudFormationLintRule` subclass: cfn-lint
instantiates every such class it finds in a rule module's namespace.

The rules see the template after cfn-lint's SAM transform: `AWS::Serverless::Function` has become
an `AWS::Lambda::Function` (with Globals applied) plus its generated `AWS::IAM::Role`, and so on.
Intrinsic functions are still there, so the helpers below reason about them symbolically: a value
is rendered as the text CloudFormation would substitute into (`${Name}` for a Ref, `${Name.Attr}`
for a GetAtt), which is enough to compare ARN patterns with each other.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMCONFIG = "samconfig.toml"
NO_VALUE = {"Ref": "AWS::NoValue"}
# The tag the stack puts on resources that IAM conditions scope by tag (KMS keys, launch
# templates). KMS tag keys admit letters, digits, whitespace and _ . / = + - (no colon).
STACK_TAG = "podinfo-release-stack"


# --- intrinsic values ----------------------------------------------------------------------------
def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def intrinsic(value: Any) -> tuple[str, Any] | tuple[None, None]:
    """(function name, argument) when `value` is a one-key intrinsic mapping, else (None, None)."""
    if isinstance(value, dict) and len(value) == 1:
        (key, argument), = value.items()
        if key == "Ref" or key.startswith(("Fn::", "Condition")):
            return key, argument
    return None, None


def getatt_parts(argument: Any) -> tuple[str, str]:
    if isinstance(argument, str):
        logical_id, _, attribute = argument.partition(".")
        return logical_id, attribute
    return str(argument[0]), str(argument[1])


def alternatives(value: Any) -> list[str]:
    """Every text a string-valued (possibly intrinsic) value can take, `Fn::If` branches expanded.

    A Ref renders as `${Name}`, a GetAtt as `${Name.Attr}`; `${AWS::Partition}` renders as `aws`
    (SAM writes some ARNs with a literal partition, others with the pseudo parameter).
    """
    key, argument = intrinsic(value)
    if key is None:
        if isinstance(value, (str, int, float, bool)):
            return [normalize(str(value))]
        return ["<?>"]
    if key == "Ref":
        return [] if argument == "AWS::NoValue" else [normalize("${" + str(argument) + "}")]
    if key == "Fn::GetAtt":
        logical_id, attribute = getatt_parts(argument)
        return ["${" + logical_id + "." + attribute + "}"]
    if key == "Fn::Sub":
        if isinstance(argument, str):
            return [normalize(argument)]
        text, variables = argument[0], argument[1] if len(argument) > 1 else {}
        results = [normalize(text)]
        for name, variable in variables.items():
            results = [r.replace("${" + name + "}", option) for r in results for option in alternatives(variable) or [""]]
        return results
    if key == "Fn::Join":
        delimiter, items = argument[0], argument[1]
        if not isinstance(items, list):
            return ["<?>"]
        results = [""]
        for index, item in enumerate(items):
            options = alternatives(item) or [""]
            results = [r + (delimiter if index else "") + option for r in results for option in options]
        return results
    if key == "Fn::If":
        return alternatives(argument[1]) + alternatives(argument[2])
    return ["<?>"]


def normalize(text: str) -> str:
    return text.replace("${AWS::Partition}", "aws").replace("arn:aws-cn:", "arn:aws:").replace("arn:aws-us-gov:", "arn:aws:")


def references(value: Any) -> set[str]:
    """Logical ids (and parameter names) a value refers to: Ref, GetAtt and ${X}/${X.Attr} in Sub."""
    found: set[str] = set()
    key, argument = intrinsic(value)
    if key == "Ref":
        found.add(str(argument))
    elif key == "Fn::GetAtt":
        found.add(getatt_parts(argument)[0])
    elif key == "Fn::Sub":
        text = argument if isinstance(argument, str) else argument[0]
        for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
            found.add(name.split(".", 1)[0])
        if isinstance(argument, list) and len(argument) > 1:
            found |= references(argument[1])
    elif isinstance(value, dict):
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def branches(value: Any) -> list[Any]:
    """A value with every `Fn::If` expanded into its branches (`AWS::NoValue` dropped)."""
    key, argument = intrinsic(value)
    if key == "Fn::If":
        return branches(argument[1]) + branches(argument[2])
    if value == NO_VALUE:
        return []
    return [value]


# --- IAM policy documents ---------------------------------------------------------------------------
def statements(document: Any) -> list[dict[str, Any]]:
    """The statements of a policy document, with `Fn::If` branches expanded (both branches kept)."""
    found: list[dict[str, Any]] = []
    for doc in branches(document):
        if not isinstance(doc, dict):
            continue
        for statement in branches(doc.get("Statement")):
            for item in as_list(statement):
                found.extend(s for s in branches(item) if isinstance(s, dict))
    return found


def action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), str(pattern).lower())


def covers(patterns: list[str], action: str) -> bool:
    return any(action_matches(p, action) for p in patterns)


def actions(statement: dict[str, Any]) -> list[str]:
    return [str(a) for a in as_list(statement.get("Action"))]


def resources(statement: dict[str, Any]) -> list[str]:
    return [text for item in as_list(statement.get("Resource")) for text in alternatives(item)]


def condition_keys(statement: dict[str, Any]) -> set[str]:
    keys: set[str] = set()
    for operator in branches(statement.get("Condition")):
        if isinstance(operator, dict):
            for block in operator.values():
                if isinstance(block, dict):
                    keys |= {str(k).lower() for k in block}
    return keys


def condition_values(statement: dict[str, Any], key: str) -> list[str]:
    values: list[str] = []
    for operator in branches(statement.get("Condition")):
        if isinstance(operator, dict):
            for block in operator.values():
                if isinstance(block, dict):
                    for name, value in block.items():
                        if str(name).lower() == key.lower():
                            values.extend(text for item in as_list(value) for text in alternatives(item))
    return values


def principal_texts(statement: dict[str, Any], kind: str) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if not isinstance(principal, dict):
        return []
    return [text for item in as_list(principal.get(kind)) for text in alternatives(item)]


ROOT_FORMS = re.compile(r"^(arn:aws:iam::(\$\{AWS::AccountId\}|\d{12}):root|\$\{AWS::AccountId\}|\d{12})$")


def allows_account_root(statement: dict[str, Any]) -> bool:
    """The statement names the account itself (so IAM policies of the account decide)."""
    return statement.get("Effect") == "Allow" and any(ROOT_FORMS.match(p) for p in principal_texts(statement, "AWS"))


def allows_service(statement: dict[str, Any], service: str) -> bool:
    return statement.get("Effect") == "Allow" and service in principal_texts(statement, "Service")


def policy_documents(template: dict[str, Any], role_id: str) -> list[tuple[list[Any], Any]]:
    """(path, policy document) of every grant attached to a role of the template.

    Inline `Policies`, customer managed policies of the template named in `ManagedPolicyArns`, and
    `AWS::IAM::Policy`/`AWS::IAM::ManagedPolicy` resources naming the role in `Roles`. A managed
    policy used as the role's `PermissionsBoundary` grants nothing and is not returned.
    """
    resources_ = template.get("Resources", {})
    role = resources_.get(role_id, {})
    props = role.get("Properties", {}) or {}
    found: list[tuple[list[Any], Any]] = []
    for index, policy in enumerate(as_list(props.get("Policies"))):
        found.extend((["Resources", role_id, "Properties", "Policies", index], branch.get("PolicyDocument"))
                     for branch in branches(policy) if isinstance(branch, dict))
    for arn in as_list(props.get("ManagedPolicyArns")):
        for name in references(arn):
            other = resources_.get(name, {})
            if other.get("Type") == "AWS::IAM::ManagedPolicy":
                document = (other.get("Properties") or {}).get("PolicyDocument")
                found.append((["Resources", name, "Properties", "PolicyDocument"], document))
    for name, other in resources_.items():
        if other.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = as_list((other.get("Properties") or {}).get("Roles"))
            if any(role_id in references(r) for r in roles):
                found.append((["Resources", name, "Properties", "PolicyDocument"], other["Properties"].get("PolicyDocument")))
    return found


# --- samconfig.toml ---------------------------------------------------------------------------------
@dataclass
class ConfigEnv:
    """One `[<env>.*.parameters]` family of samconfig.toml, as `sam deploy --config-env` reads it."""

    name: str
    region: str | None
    stack_name: str | None
    capabilities: list[str] | None
    overrides: dict[str, str] = field(default_factory=dict)
    has_deploy: bool = False


def samconfig_path(filename: str | None) -> Path | None:
    if not filename:
        return None
    path = Path(filename).resolve().parent / SAMCONFIG
    return path if path.is_file() else None


def parse_overrides(value: Any) -> dict[str, str]:
    """`parameter_overrides` as a string (`A=b C="d e"`) or a list of `A=b` strings."""
    words = shlex.split(value) if isinstance(value, str) else [str(v) for v in as_list(value)]
    overrides: dict[str, str] = {}
    for word in words:
        name, sep, setting = word.partition("=")
        if sep:
            overrides[name] = setting
    return overrides


def config_envs(path: Path) -> list[ConfigEnv]:
    document = tomllib.loads(path.read_text())
    envs: list[ConfigEnv] = []
    for name, commands in document.items():
        if not isinstance(commands, dict):
            continue  # `version = 0.1`
        merged: dict[str, Any] = {}
        for command in ("global", "deploy"):
            merged |= (commands.get(command) or {}).get("parameters", {}) or {}
        capabilities = merged.get("capabilities")
        if isinstance(capabilities, str):
            capabilities = capabilities.split()
        envs.append(ConfigEnv(
            name=name,
            region=merged.get("region"),
            stack_name=merged.get("stack_name"),
            capabilities=[str(c) for c in capabilities] if capabilities is not None else None,
            overrides=parse_overrides(merged.get("parameter_overrides", "")),
            has_deploy="deploy" in commands,
        ))
    return envs
