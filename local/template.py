"""The template side of the local stack: `template.yaml` as `sam build` built it, read as CloudFormation would.

Loads the built template (and refuses a build older than its sources), SAM-translates it, resolves
the intrinsic functions against the stack created so far, evaluates the template's Conditions and
Rules, checks what Lambda checks of a function's environment, and orders the resources by their
references. Creating each resource is `local.provision`'s part.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from local.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
LOCAL_URI = "s3://local-code/"
#: What `make build-local` builds: `sam build` of template.yaml for this machine's architecture. The
#: local stack is created from the template in there, and functions run from its folders.
BUILD_DIR = Path(os.environ.get("LOCAL_BUILD_DIR", str(ROOT / ".aws-sam" / "build-local")))
_SOURCES = ("template.yaml", "functions", "layers")


class BuildMissing(RuntimeError):
    """The local runtime needs `sam build`'s output, and it is missing or older than the sources."""


def built_template(build_dir: Path = BUILD_DIR, check_fresh: bool = True) -> Path:
    """The template `sam build` wrote (what `sam deploy` would ship), checked to be newer than the
    sources it was built from: a stale build would test code that is not the code in the tree."""
    template = build_dir / "template.yaml"
    if not template.exists():
        msg = f"{template} is missing: run `make build-local` (sam build for this machine) first"
        raise BuildMissing(msg)
    if check_fresh:
        built = template.stat().st_mtime
        for name in _SOURCES:
            source = ROOT / name
            files = [source] if source.is_file() else [f for f in source.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
            newer = [f for f in files if f.stat().st_mtime > built]
            if newer:
                msg = (f"{template} is older than {newer[0].relative_to(ROOT)}: run `make build-local` "
                       "so the local runtime runs what sam build makes of the current sources")
                raise BuildMissing(msg)
    return template


class _NoManagedPolicies:
    """The template names no AWS managed policy by name, so nothing needs looking up."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml_parse(path.read_text())


def _localize_uris(template: dict[str, Any], base: Path) -> dict[str, str]:
    """Point local CodeUri/ContentUri/DefinitionUri at placeholder S3 URIs; return the mapping from
    logical id to the folder or file (relative paths are relative to the template's folder, as for
    `sam deploy`)."""
    mapping: dict[str, str] = {}
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                local = str((base / value).resolve())
                mapping[logical_id] = local
                props[key] = f"{LOCAL_URI}{local.lstrip('/')}"
    return mapping


def translate(parameters: dict[str, Any], region: str = "us-east-1", path: Path = TEMPLATE) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """SAM-translate the template. Returns (CloudFormation template, local paths, SAM source)."""
    source = load_template(path)
    fragment = copy.deepcopy(source)
    local_paths = _localize_uris(fragment, path.parent)
    values = {**parameters, "AWS::Region": region, "AWS::Partition": "aws"}
    os.environ.setdefault("AWS_DEFAULT_REGION", region)  # the translator insists on a session region
    translated = transform(fragment, values, _NoManagedPolicies())  # type: ignore[arg-type]
    return translated, local_paths, source


class Resolver:
    """Resolves the intrinsic functions the template uses, against the stack created so far, and
    evaluates the template's Conditions and Rules with them."""

    def __init__(self, stack: Stack, conditions: dict[str, bool] | None = None) -> None:
        self.stack = stack
        self.conditions = conditions or {}

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.stack.region,
            "AWS::AccountId": self.stack.account,
            "AWS::StackName": self.stack.name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.stack.region}:{self.stack.account}:stack/{self.stack.name}/local",
            "AWS::NoValue": None,
        }.get(name)

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.stack.parameters:
            return self.stack.parameters[name]
        if name in self.stack.physical:
            return self.stack.physical[name]
        raise KeyError(f"Ref {name} is not created yet")

    def getatt(self, logical_id: str, attribute: str) -> Any:
        try:
            return self.stack.attributes[logical_id][attribute]
        except KeyError as exc:
            raise KeyError(f"GetAtt {logical_id}.{attribute} is not available yet") from exc

    def sub(self, template: str, variables: dict[str, Any] | None = None) -> str:
        variables = variables or {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.getatt(logical_id, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, template)

    def resolve(self, value: Any) -> Any:  # noqa: C901 - one flat branch per CloudFormation intrinsic function
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical_id, attribute)
            if key == "Fn::Sub":
                return self.sub(arg) if isinstance(arg, str) else self.sub(arg[0], arg[1])
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::If":
                return self.resolve(arg[1] if self.conditions.get(arg[0], False) else arg[2])
            if key == "Fn::FindInMap":
                name, first, second = (self.resolve(item) for item in arg)
                return self.stack.mappings[name][first][second]
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        return {k: self.resolve(v) for k, v in value.items()}

    def evaluate_conditions(self, definitions: dict[str, Any]) -> dict[str, bool]:
        """Evaluate the template's Conditions (Fn::Equals/Not/And/Or, Condition) on the parameters."""

        def evaluate(expr: Any) -> bool:
            (key, arg), = expr.items()
            if key == "Condition":
                if arg not in self.conditions:
                    self.conditions[arg] = evaluate(definitions[arg])
                return self.conditions[arg]
            if key == "Fn::Equals":
                left, right = (self.resolve(item) for item in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not evaluate(arg[0])
            if key == "Fn::And":
                return all(evaluate(item) for item in arg)
            if key == "Fn::Or":
                return any(evaluate(item) for item in arg)
            raise ValueError(f"unsupported condition function {key}")

        for name in definitions:
            evaluate({"Condition": name})
        return self.conditions

    def check_rules(self, rules: dict[str, Any]) -> None:
        """The template's Rules, as CloudFormation checks them before it creates anything."""
        for name, rule in rules.items():
            if "RuleCondition" in rule and not self._holds(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self._holds(assertion["Assert"]):
                    msg = f"Template rule {name} failed: {assertion.get('AssertDescription', 'assertion failed')}"
                    raise ValueError(msg)

    def _holds(self, expression: Any) -> bool:
        (key, arg), = expression.items()
        if key == "Fn::Equals":
            left, right = (self.resolve(item) for item in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._holds(arg[0])
        if key == "Fn::And":
            return all(self._holds(item) for item in arg)
        if key == "Fn::Or":
            return any(self._holds(item) for item in arg)
        if key == "Fn::Contains":
            return str(self.resolve(arg[1])) in [str(v) for v in self.resolve(arg[0])]
        if key in ("Fn::EachMemberEquals", "Fn::EachMemberIn"):
            members = self.resolve(arg[0])
            members = members if isinstance(members, list) else [members]
            allowed = [str(arg[1])] if key == "Fn::EachMemberEquals" else [str(v) for v in self.resolve(arg[1])]
            return all(str(member) in allowed for member in members)
        raise ValueError(f"the local runtime cannot evaluate rule function {key}")


def function_environment(logical_id: str, props: dict[str, Any]) -> dict[str, str]:
    """A function's (resolved) environment variables as Lambda stores them: strings, at most 4 KB in all."""
    env = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
    size = len(json.dumps(env, separators=(",", ":")).encode())
    if size > 4096:  # what Lambda answers (moto does not check); preflight rule E9105 checks the maximum
        msg = (f"{logical_id}: InvalidParameterValueException: Lambda was unable to configure your environment "
               f"variables because the environment variables you have provided exceeded the 4KB limit ({size} bytes)")
        raise ValueError(msg)
    return env


def references(value: Any) -> set[str]:
    """Logical ids a resource's properties refer to (Ref, GetAtt, ${X} and ${X.Attr} in Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".")[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(arg, str):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    return found


def creation_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Topological order of logical ids by their references and DependsOn."""
    deps: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        refs = references(resource.get("Properties", {}))
        depends = resource.get("DependsOn", [])
        refs |= set([depends] if isinstance(depends, str) else depends)
        deps[logical_id] = {r for r in refs if r in resources and r != logical_id}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(resources):
        ready = sorted(lid for lid in resources if lid not in done and deps[lid] <= done)
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(set(resources) - done)}")
        order.extend(ready)
        done.update(ready)
    return order
