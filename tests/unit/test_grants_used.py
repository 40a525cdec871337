"""Every action granted to a control-plane function is one its code calls (or one AWS checks on its
behalf, each named below with the reason): a needless grant (the audit found `ecr:DescribeImages`,
granted and never called) is found here, not in a review. The local runtime's IAM (local/iam.py)
catches the opposite, a call without its grant.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from local.template import ROOT, load_template

PACKAGE = ROOT / "layers" / "common" / "podrelease"

# Actions a function needs without calling them itself: AWS authorizes them against its role when
# the function calls something else.
INDIRECT = {
    # Lambda pulls the new image with the caller's ECR permissions when its code is updated.
    ("DeployFunction", "ecr:BatchGetImage"): "UpdateFunctionCode pulls the image as the caller",
    ("DeployFunction", "ecr:GetDownloadUrlForLayer"): "UpdateFunctionCode pulls the image as the caller",
    # CreateDeployment checks that the caller may read the deployment's config and its application
    # revision (the CodeDeploy user guide's policy for creating deployments grants both).
    ("DeployFunction", "codedeploy:GetDeploymentConfig"): "checked by CreateDeployment",
    ("DeployFunction", "codedeploy:GetApplicationRevision"): "checked by CreateDeployment",
    # The watch function carries on a start whose image Lambda was still applying: the same CreateDeployment.
    ("WatchFunction", "codedeploy:GetDeploymentConfig"): "checked by CreateDeployment",
    ("WatchFunction", "codedeploy:GetApplicationRevision"): "checked by CreateDeployment",
    # EventBridge Scheduler is handed the role its schedules invoke the watch function with.
    ("WatchFunction", "iam:PassRole"): "CreateSchedule/UpdateSchedule pass WatchSchedulerRole",
    # SNS encrypts what the function publishes with the topics' key, as the publisher.
    ("ApprovalRequestFunction", "kms:GenerateDataKey"): "sns:Publish to a topic under TopicsKey",
    ("ApprovalRequestFunction", "kms:Decrypt"): "sns:Publish to a topic under TopicsKey",
    ("CleanupFunction", "kms:GenerateDataKey"): "sns:Publish to a topic under TopicsKey",
    ("CleanupFunction", "kms:Decrypt"): "sns:Publish to a topic under TopicsKey",
}


def _actions(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        if "Effect" in value and "Action" in value:
            actions = value["Action"]
            found += [a for a in (actions if isinstance(actions, list) else [actions]) if isinstance(a, str)]
        for item in value.values():
            found += _actions(item)
    elif isinstance(value, list):
        for item in value:
            found += _actions(item)
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _granted() -> list[tuple[str, str]]:
    resources = load_template()["Resources"]
    return sorted({(name, action) for name, resource in resources.items()
                   if resource["Type"] == "AWS::Serverless::Function"
                   for action in _actions(resource["Properties"].get("Policies", []))})


def _code(function: str) -> str:
    folder = ROOT / load_template()["Resources"][function]["Properties"]["CodeUri"]
    files = [*folder.glob("*.py"), *PACKAGE.rglob("*.py")]
    return "\n".join(path.read_text() for path in files)


@pytest.mark.parametrize(("function", "action"), _granted(), ids=lambda value: str(value))
def test_every_granted_action_is_used(function: str, action: str) -> None:
    if (function, action) in INDIRECT:
        return
    operation = action.split(":", 1)[1]
    method = {"InvokeFunction": "invoke"}.get(operation, _snake(operation))
    code = _code(function)
    assert re.search(rf"\.{method}\(|{method}\b", code), (
        f"{function} is granted {action} but neither its code nor podrelease calls {method}(): drop the grant, or "
        "name in INDIRECT why AWS checks it for the function")


def test_a_needless_grant_is_found() -> None:
    # the audit's finding was DescribeImages granted to the verify function; the package calls it now
    # (the reconciler), so an action no code calls stands in: a grant of it would be found
    assert not re.search(r"\.delete_repository\(|delete_repository\b", _code("VerifyFunction"))
    assert ("VerifyFunction", "ecr:DeleteRepository") not in _granted()
    assert ("VerifyFunction", "ecr:DescribeImages") not in _granted()
