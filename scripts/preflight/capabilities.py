"""E9101 - samconfig.toml acknowledges every capability the template needs.

What AWS does: CreateChangeSet (what `sam deploy` calls) refuses a template whose IAM resources
are not acknowledged. From the CloudFormation API reference (CreateChangeSet, `Capabilities`):
"If you have IAM resources, you can specify either capability. If you have IAM resources with
custom names, you must specify CAPABILITY_NAMED_IAM. If you don't specify either of these
capabilities, CloudFormation returns an InsufficientCapabilities error." The IAM resources it lists
are AWS::IAM::AccessKey, Group, InstanceProfile, ManagedPolicy, Policy, Role, User and
UserToGroupAddition. CAPABILITY_AUTO_EXPAND is needed for templates that contain macros and nested
stacks; the SAM CLI documents it for nested applications (AWS::Serverless::Application, which the
transform turns into AWS::CloudFormation::Stack) and a custom macro needs it as well.

What the rule checks: the capabilities this template needs (computed from the transformed template
and its `Transform` list) against the `capabilities` of every config env of the samconfig.toml
that sits next to the template. An env that would deploy without them is a finding; `sam deploy`
would fail before any resource is touched. No samconfig.toml next to the template: nothing to check.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

IAM_TYPES = {
    "AWS::IAM::AccessKey", "AWS::IAM::Group", "AWS::IAM::InstanceProfile", "AWS::IAM::ManagedPolicy",
    "AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::UserToGroupAddition",
}
# The property that gives an IAM resource a custom (physical) name.
NAME_PROPERTIES = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
}
# Transforms CloudFormation hosts and expands while it creates the change set.
HOSTED_TRANSFORMS = {"AWS::Serverless-2016-10-31", "AWS::Include", "AWS::LanguageExtensions"}


def required(template: dict[str, Any], transforms: list[str]) -> dict[str, str]:
    """capability -> the first resource (or transform) that needs it."""
    needed: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        if kind in IAM_TYPES:
            needed.setdefault("CAPABILITY_IAM", logical_id)
            name_property = NAME_PROPERTIES.get(kind)
            if name_property and props.get(name_property) not in (None, pf.NO_VALUE):
                needed.setdefault("CAPABILITY_NAMED_IAM", f"{logical_id} ({name_property})")
        if kind == "AWS::CloudFormation::Stack":
            needed.setdefault("CAPABILITY_AUTO_EXPAND", f"{logical_id} (nested stack)")
    for transform in transforms:
        if isinstance(transform, str) and transform not in HOSTED_TRANSFORMS:
            needed.setdefault("CAPABILITY_AUTO_EXPAND", f"Transform {transform} (macro)")
    return needed


def acknowledged(capabilities: list[str]) -> set[str]:
    granted = set(capabilities)
    if "CAPABILITY_NAMED_IAM" in granted:
        granted.add("CAPABILITY_IAM")  # named IAM implies IAM
    return granted


class SamconfigCapabilities(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "samconfig.toml capabilities cover the template"
    description = (
        "Every config env of the samconfig.toml next to the template acknowledges the capabilities the "
        "template needs (CAPABILITY_IAM, CAPABILITY_NAMED_IAM for named IAM resources, CAPABILITY_AUTO_EXPAND "
        "for nested stacks and macros); otherwise CreateChangeSet fails with InsufficientCapabilities."
    )
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html"
    tags: ClassVar[list[str]] = ["preflight", "samconfig", "iam"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        path = pf.samconfig_path(cfn.filename)
        if path is None:
            return []
        needed = required(cfn.template, [str(t) for t in pf.as_list(cfn.transform_pre.get("Transform"))])
        if not needed:
            return []
        matches = []
        for env in pf.config_envs(path):
            if not env.has_deploy:
                continue
            granted = acknowledged(env.capabilities or [])
            for capability, reason in needed.items():
                if capability in granted:
                    continue
                what = " ".join(env.capabilities) if env.capabilities else "none"
                matches.append(RuleMatch(
                    ["Resources"],
                    f"{path.name} [{env.name}] deploys with capabilities {what} but the template needs {capability} "
                    f"(first needed by {reason}); CloudFormation refuses the change set (InsufficientCapabilities)",
                ))
        return matches
