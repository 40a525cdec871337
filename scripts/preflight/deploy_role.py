"""E9107 - the GitHub deploy path can deploy every resource of the template, and nothing account-wide.

What AWS does: `sam deploy --role-arn` has CloudFormation make every change with the service
role's credentials ("CloudFormation uses the role's credentials to make calls on your behalf",
CloudFormation User Guide, "CloudFormation service role"), while the caller (the deploy role the
workflow assumes) creates the change set: it needs the cloudformation actions, the SAM transform
(`arn:aws:cloudformation:<region>:aws:transform/Serverless-2016-10-31`) and - because CloudFormation
resolves `AWS::SSM::Parameter::Value<...>` parameters with the caller's credentials while it creates
the change set - ssm:GetParameters on those parameters. A missing action fails the deploy half way
and rolls it back. Each resource type lists the actions its create/update/delete handlers call in
its CloudFormation resource schema (`handlers.<create|update|delete>.permissions`, shown by
`aws cloudformation describe-type --type RESOURCE --type-name <type>`); REQUIRED_ACTIONS below is
taken from those lists, reduced to what this template's resources use (no replicas, imports,
provisioned concurrency, VPC functions, ...).

The service role is also the widest standing grant of the project, so it must not hand out more
than the stack: IAM documents permissions boundaries for exactly this delegation ("Permissions
boundaries for IAM entities": a principal allowed to create roles only with
`iam:PermissionsBoundary` = a given policy cannot create a role with more than that policy). The
condition key iam:PermissionsBoundary exists for CreateRole, PutRolePolicy, DeleteRolePolicy,
AttachRolePolicy, DetachRolePolicy and PutRolePermissionsBoundary (Service Authorization
Reference, IAM); iam:PassRole offers iam:PassedToService instead.

What the rule checks, on the roles of the deploy path (a role trusted by cloudformation.amazonaws.com
is the service role; a role allowed cloudformation:ExecuteChangeSet is the deploy role):
1. Coverage: every action REQUIRED_ACTIONS lists for each resource type of the template (plus the
   extras a resource's properties need) is allowed by some Allow statement of the two roles; the
   deploy role itself has cloudformation:CreateChangeSet and, with SSM parameter types,
   ssm:GetParameters. Exempt: the deploy path's own roles and the permissions boundary policy,
   which the deploy path must not be able to change (check 6) and a person deploys.
2. Nothing account-wide: no `*` action, no NotAction/NotResource in an Allow, no IAM wildcard
   action, and on `Resource: "*"` only the actions of ACCOUNT_WIDE (no resource-level permissions;
   those marked need a tag condition).
3. IAM: role creation and role-policy changes only on `role/${AWS::StackName}-*` with an
   iam:PermissionsBoundary condition; never iam:DeleteRolePermissionsBoundary; iam:PassRole only on
   the stack's roles with an iam:PassedToService condition; iam:CreateServiceLinkedRole only with
   iam:AWSServiceName; no write to a managed policy used as the boundary.
4. KMS: key actions only on keys named in the template or under a tag/alias condition
   (aws:ResourceTag, kms:ResourceAliases; aws:RequestTag for CreateKey and tag-on-create).
5. Every other role of the template carries the boundary the condition requires (else the deploy
   path could not create it), and grants no action the boundary leaves out (IAM would deny it at
   run time: effective permissions are the role's policies AND its boundary).
6. The service role cannot change the deploy path's own roles: an explicit Deny covers the role
   writes the service role is otherwise allowed on them.

One file over the project's ~500-line module limit on purpose: this docstring cites the AWS facts that
REQUIRED_ACTIONS, ACCOUNT_WIDE and the checks below encode, and `cfn-lint --append-rules scripts/preflight`
loads each file of the folder as a rule module of its own, so the rule, its tables and its sources stay one file.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

# Resource type -> IAM actions CloudFormation calls to create, update and delete it (from the
# resource schema's handlers; features this template does not use left out, as noted).
REQUIRED_ACTIONS: dict[str, tuple[str, ...]] = {
    # Schema also lists managed-fleets:*, vpc-lattice:*, lifecycle hooks, notifications and warm pools.
    "AWS::AutoScaling::AutoScalingGroup": (
        "autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags", "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeScalingActivities", "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:DetachLoadBalancerTargetGroups", "ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeSubnets", "elasticloadbalancing:DescribeTargetGroups", "iam:PassRole", "iam:CreateServiceLinkedRole",
    ),
    "AWS::CloudWatch::Alarm": (
        "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource",
        "cloudwatch:UntagResource",
    ),
    "AWS::CloudWatch::Dashboard": (
        "cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards", "cloudwatch:TagResource",
        "cloudwatch:UntagResource", "cloudwatch:ListTagsForResource",
    ),
    "AWS::CodeDeploy::Application": (
        "codedeploy:CreateApplication", "codedeploy:GetApplication", "codedeploy:DeleteApplication", "codedeploy:TagResource",
        "codedeploy:UntagResource",
    ),
    # Schema also lists CreateDeployment/RegisterApplicationRevision (deployments on create), unused here.
    "AWS::CodeDeploy::DeploymentGroup": (
        "codedeploy:CreateDeploymentGroup", "codedeploy:GetDeploymentGroup", "codedeploy:UpdateDeploymentGroup",
        "codedeploy:DeleteDeploymentGroup", "codedeploy:GetDeploymentConfig", "codedeploy:TagResource",
        "codedeploy:UntagResource", "iam:PassRole",
    ),
    # Schema also lists replicas, Kinesis streaming, imports from S3, contributor insights, resource policies.
    "AWS::DynamoDB::Table": (
        "dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:DeleteTable",
        "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive", "dynamodb:DescribeContinuousBackups",
        "dynamodb:UpdateContinuousBackups", "dynamodb:TagResource", "dynamodb:UntagResource", "dynamodb:ListTagsOfResource",
    ),
    "AWS::EC2::LaunchTemplate": (
        "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplate", "ec2:DescribeLaunchTemplates",
        "ec2:CreateTags", "ec2:DeleteTags",
    ),
    "AWS::EC2::VPCEndpoint": (
        "ec2:CreateVpcEndpoint", "ec2:DescribeVpcEndpoints", "ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints",
        "ec2:CreateTags", "ec2:DeleteTags",
    ),
    "AWS::EC2::SecurityGroup": (
        "ec2:CreateSecurityGroup", "ec2:DescribeSecurityGroups", "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
        "ec2:UpdateSecurityGroupRuleDescriptionsIngress", "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
        "ec2:DeleteSecurityGroup", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeInstances",
    ),
    # The first load balancer of an account creates Elastic Load Balancing's service-linked role.
    "AWS::ElasticLoadBalancingV2::LoadBalancer": (
        "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets", "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:DeleteLoadBalancer", "iam:CreateServiceLinkedRole",
    ),
    "AWS::ElasticLoadBalancingV2::Listener": (
        "elasticloadbalancing:CreateListener", "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteListener", "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
    ),
    "AWS::ElasticLoadBalancingV2::ListenerRule": (
        "elasticloadbalancing:CreateRule", "elasticloadbalancing:DescribeRules", "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:SetRulePriorities", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
    ),
    "AWS::ElasticLoadBalancingV2::TargetGroup": (
        "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
    ),
    "AWS::Events::Rule": (
        "events:PutRule", "events:DescribeRule", "events:PutTargets", "events:RemoveTargets", "events:ListTargetsByRule",
        "events:DeleteRule", "events:TagResource", "events:UntagResource",
    ),
    "AWS::IAM::InstanceProfile": (
        "iam:CreateInstanceProfile", "iam:GetInstanceProfile", "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile", "iam:PassRole",
    ),
    "AWS::IAM::ManagedPolicy": (
        "iam:CreatePolicy", "iam:GetPolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:ListPolicyVersions",
        "iam:ListEntitiesForPolicy", "iam:DeletePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
    ),
    "AWS::IAM::OIDCProvider": (
        "iam:CreateOpenIDConnectProvider", "iam:GetOpenIDConnectProvider", "iam:TagOpenIDConnectProvider",
        "iam:UntagOpenIDConnectProvider", "iam:ListOpenIDConnectProviderTags", "iam:AddClientIDToOpenIDConnectProvider",
        "iam:RemoveClientIDFromOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:DeleteOpenIDConnectProvider",
    ),
    # Schema also lists iam:DeleteRolePermissionsBoundary (removing a boundary), which check 3 forbids.
    "AWS::IAM::Role": (
        "iam:CreateRole", "iam:GetRole", "iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
        "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies",
        "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:PutRolePermissionsBoundary",
        "iam:TagRole", "iam:UntagRole", "iam:DeleteRole",
    ),
    "AWS::IAM::Policy": ("iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"),
    "AWS::KMS::Key": (
        "kms:CreateKey", "kms:DescribeKey", "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:GetKeyRotationStatus",
        "kms:EnableKey", "kms:DisableKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:UpdateKeyDescription",
        "kms:TagResource", "kms:UntagResource", "kms:ListResourceTags", "kms:ScheduleKeyDeletion",
    ),
    "AWS::KMS::Alias": ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"),
    # Schema also lists provisioned concurrency (unused).
    "AWS::Lambda::Alias": ("lambda:CreateAlias", "lambda:GetAlias", "lambda:UpdateAlias", "lambda:DeleteAlias"),
    # Schema also lists VPC, EFS, code signing and KMS-encrypted environments (unused); extras() adds the code's source.
    "AWS::Lambda::Function": (
        "lambda:CreateFunction", "lambda:GetFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
        "lambda:DeleteFunction", "lambda:TagResource", "lambda:UntagResource", "lambda:PutFunctionConcurrency",
        "lambda:DeleteFunctionConcurrency", "lambda:GetRuntimeManagementConfig", "lambda:PutRuntimeManagementConfig",
        "iam:PassRole",
    ),
    "AWS::Lambda::LayerVersion": (
        "lambda:PublishLayerVersion", "lambda:GetLayerVersion", "lambda:DeleteLayerVersion", "s3:GetObject",
    ),
    "AWS::Lambda::Permission": ("lambda:AddPermission", "lambda:RemovePermission"),
    "AWS::Lambda::Url": (
        "lambda:CreateFunctionUrlConfig", "lambda:GetFunctionUrlConfig", "lambda:UpdateFunctionUrlConfig",
        "lambda:DeleteFunctionUrlConfig",
    ),
    "AWS::Lambda::Version": (
        "lambda:PublishVersion", "lambda:GetFunctionConfiguration", "lambda:ListVersionsByFunction", "lambda:DeleteFunction",
    ),
    # Schema also lists data protection, index and delivery policies (unused).
    "AWS::Logs::LogGroup": (
        "logs:CreateLogGroup", "logs:DescribeLogGroups", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy",
        "logs:TagResource", "logs:UntagResource", "logs:ListTagsForResource", "logs:DeleteLogGroup",
    ),
    "AWS::SNS::Subscription": (
        "sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes",
    ),
    "AWS::SNS::Topic": (
        "sns:CreateTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:TagResource", "sns:UntagResource",
        "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic", "sns:DeleteTopic",
    ),
    "AWS::SQS::Queue": (
        "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:GetQueueUrl", "sqs:TagQueue",
        "sqs:UntagQueue", "sqs:ListQueueTags", "sqs:DeleteQueue",
    ),
    "AWS::SQS::QueuePolicy": ("sqs:SetQueueAttributes",),
    "AWS::SecretsManager::RotationSchedule": (
        "secretsmanager:RotateSecret", "secretsmanager:DescribeSecret", "secretsmanager:CancelRotateSecret",
        "lambda:InvokeFunction",
    ),
    # Schema also lists replication to other Regions (unused); extras() adds the KMS key's use.
    "AWS::SecretsManager::Secret": (
        "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetRandomPassword",
        "secretsmanager:UpdateSecret", "secretsmanager:TagResource", "secretsmanager:UntagResource",
        "secretsmanager:DeleteSecret",
    ),
    # Approver sign-in (docs/approvals.md). Schemas also list custom domains (ACM, CloudFront), SMS and
    # Lambda triggers, risk configuration and managed login branding, none of which the stack uses.
    "AWS::Cognito::UserPool": (
        "cognito-idp:CreateUserPool", "cognito-idp:DescribeUserPool", "cognito-idp:UpdateUserPool",
        "cognito-idp:DeleteUserPool", "cognito-idp:SetUserPoolMfaConfig", "cognito-idp:GetUserPoolMfaConfig",
        "cognito-idp:TagResource", "cognito-idp:UntagResource", "cognito-idp:ListTagsForResource",
    ),
    "AWS::Cognito::UserPoolDomain": (
        "cognito-idp:CreateUserPoolDomain", "cognito-idp:DescribeUserPoolDomain", "cognito-idp:UpdateUserPoolDomain",
        "cognito-idp:DeleteUserPoolDomain", "cognito-idp:DescribeUserPool",
    ),
    "AWS::Cognito::UserPoolIdentityProvider": (
        "cognito-idp:CreateIdentityProvider", "cognito-idp:DescribeIdentityProvider", "cognito-idp:UpdateIdentityProvider",
        "cognito-idp:DeleteIdentityProvider",
    ),
    "AWS::Cognito::UserPoolClient": (
        "cognito-idp:CreateUserPoolClient", "cognito-idp:DescribeUserPoolClient", "cognito-idp:UpdateUserPoolClient",
        "cognito-idp:DeleteUserPoolClient",
    ),
    "AWS::SSM::Parameter": (
        "ssm:PutParameter", "ssm:GetParameters", "ssm:DeleteParameter", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource",
    ),
    "AWS::StepFunctions::StateMachine": (
        "states:CreateStateMachine", "states:DescribeStateMachine", "states:UpdateStateMachine", "states:DeleteStateMachine",
        "states:TagResource", "states:UntagResource", "states:ListTagsForResource", "iam:PassRole",
    ),
}
# Actions with no resource-level permissions (Service Authorization Reference: no resource type),
# so `Resource: "*"` is the only way to grant them. Value: the condition key prefix the statement
# must use, or None.
ACCOUNT_WIDE: dict[str, str | None] = {
    "secretsmanager:GetRandomPassword": None,
    # Vended log delivery (state machine logging): CloudWatch Logs documents Resource "*".
    "logs:CreateLogDelivery": None, "logs:GetLogDelivery": None, "logs:UpdateLogDelivery": None,
    "logs:DeleteLogDelivery": None, "logs:ListLogDeliveries": None, "logs:PutResourcePolicy": None,
    "logs:DescribeResourcePolicies": None, "logs:DescribeLogGroups": None,
    # Describe calls of EC2, Elastic Load Balancing and Auto Scaling support no resource-level permissions.
    "ec2:Describe*": None, "elasticloadbalancing:Describe*": None, "autoscaling:Describe*": None,
    # KMS: CreateKey has no resource; tagging a key while creating it needs a grant not restricted to
    # particular keys (KMS Developer Guide, "Controlling access to tags"). Both only with the stack tag.
    "kms:CreateKey": "aws:requesttag/",
    "kms:TagResource": "aws:requesttag/",
    # Cognito: CreateUserPool has no resource (the pool id is generated); only with the stack tag.
    "cognito-idp:CreateUserPool": "aws:requesttag/",
}
ROLE_WRITES = (
    "iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
)
ROLE_CHANGES = (*ROLE_WRITES, "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:DeleteRole",
                "iam:TagRole", "iam:UntagRole", "iam:PassRole")
POLICY_WRITES = ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy",
                 "iam:CreatePolicy")
# Actions of a resource's own service that are authorized on another resource (the role passed).
NOT_ON_RESOURCE = {"iam:PassRole", "iam:CreateServiceLinkedRole"}
KMS_NO_KEY = {"kms:createkey", "kms:listkeys", "kms:listaliases"}
# type -> (service prefix, name property, ARN with {name}): the coverage check also wants the
# statement that allows a resource's own-service actions to reach the resource's ARN.
REGIONAL = "arn:aws:{service}:${{AWS::Region}}:${{AWS::AccountId}}:"
ARN_FORMATS: dict[str, tuple[str, str, str]] = {
    "AWS::CloudWatch::Alarm": ("cloudwatch", "AlarmName", REGIONAL + "alarm:{name}"),
    "AWS::CloudWatch::Dashboard": ("cloudwatch", "DashboardName", "arn:aws:cloudwatch::${{AWS::AccountId}}:dashboard/{name}"),
    "AWS::CodeDeploy::Application": ("codedeploy", "ApplicationName", REGIONAL + "application:{name}"),
    "AWS::DynamoDB::Table": ("dynamodb", "TableName", REGIONAL + "table/{name}"),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("elasticloadbalancing", "Name", REGIONAL + "loadbalancer/app/{name}/ID"),
    "AWS::ElasticLoadBalancingV2::TargetGroup": ("elasticloadbalancing", "Name", REGIONAL + "targetgroup/{name}/ID"),
    "AWS::AutoScaling::AutoScalingGroup": (
        "autoscaling", "AutoScalingGroupName", REGIONAL + "autoScalingGroup:ID:autoScalingGroupName/{name}"),
    "AWS::Events::Rule": ("events", "Name", REGIONAL + "rule/{name}"),
    "AWS::IAM::InstanceProfile": ("iam", "InstanceProfileName", "arn:aws:iam::${{AWS::AccountId}}:instance-profile/{name}"),
    "AWS::IAM::Role": ("iam", "RoleName", "arn:aws:iam::${{AWS::AccountId}}:role/{name}"),
    "AWS::Lambda::Function": ("lambda", "FunctionName", REGIONAL + "function:{name}"),
    "AWS::Logs::LogGroup": ("logs", "LogGroupName", REGIONAL + "log-group:{name}"),
    "AWS::SNS::Topic": ("sns", "TopicName", REGIONAL + "{name}"),
    "AWS::SQS::Queue": ("sqs", "QueueName", REGIONAL + "{name}"),
    "AWS::SecretsManager::Secret": ("secretsmanager", "Name", REGIONAL + "secret:{name}-RANDOM"),
    "AWS::StepFunctions::StateMachine": ("states", "StateMachineName", REGIONAL + "stateMachine:{name}"),
}
KMS_SCOPING_KEYS = ("aws:resourcetag/", "kms:resourcealiases", "aws:requesttag/")
STACK = "${AWS::StackName}"


def names(template: dict[str, Any], logical_id: str, name_property: str) -> list[str]:
    """The texts of a resource's name: its name property, or the name CloudFormation generates."""
    props = template["Resources"][logical_id].get("Properties") or {}
    if props.get(name_property) is not None:
        return pf.alternatives(props[name_property])
    return [f"{STACK}-{logical_id}-RANDOM"]


def role_arn(template: dict[str, Any], logical_id: str) -> list[str]:
    path = (template["Resources"][logical_id].get("Properties") or {}).get("Path", "/")
    return [f"arn:aws:iam::${{AWS::AccountId}}:role{path}{name}" for name in names(template, logical_id, "RoleName")]


def policy_arn(template: dict[str, Any], logical_id: str) -> list[str]:
    path = (template["Resources"][logical_id].get("Properties") or {}).get("Path", "/")
    return [f"arn:aws:iam::${{AWS::AccountId}}:policy{path}{name}" for name in names(template, logical_id, "ManagedPolicyName")]


def resolve(template: dict[str, Any], text: str) -> list[str]:
    """Replace `${Role.Arn}` and `${ManagedPolicy}` of the template by their ARN texts."""
    resources = template.get("Resources", {})
    results = [text]
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        token = {"AWS::IAM::Role": "${" + logical_id + ".Arn}", "AWS::IAM::ManagedPolicy": "${" + logical_id + "}"}.get(str(kind))
        if token and token in text:
            arns = role_arn(template, logical_id) if kind == "AWS::IAM::Role" else policy_arn(template, logical_id)
            results = [r.replace(token, a) for r in results for a in arns]
    return results


def texts(template: dict[str, Any], value: Any) -> list[str]:
    return [r for alt in pf.alternatives(value) for r in resolve(template, alt)]


def matches_any(target: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(target, p) for p in patterns)


def resource_arns(template: dict[str, Any], logical_id: str) -> tuple[str, list[str]] | None:
    """(service prefix, ARN texts) of a resource whose ARN the rule knows how to write."""
    resource = template["Resources"][logical_id]
    entry = ARN_FORMATS.get(str(resource.get("Type")))
    if entry is None:
        return None
    service, name_property, arn_format = entry
    return service, [arn_format.format(service=service, name=name) for name in names(template, logical_id, name_property)]


class DeployPath:
    """The deploy path's roles and their statements, found by what they are trusted with."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        resources = template.get("Resources", {})
        roles = [k for k, r in resources.items() if r.get("Type") == "AWS::IAM::Role"]
        self.service_roles = [r for r in roles if self._trusts(r, "cloudformation.amazonaws.com")]
        self.grants: dict[str, list[tuple[list[Any], dict[str, Any]]]] = {}
        for role in roles:
            found = []
            for path, document in pf.policy_documents(template, role):
                found.extend((path, statement) for statement in pf.statements(document))
            self.grants[role] = found
        self.deploy_roles = [r for r in roles if r not in self.service_roles and any(
            s.get("Effect") == "Allow" and pf.covers(pf.actions(s), "cloudformation:ExecuteChangeSet")
            for _, s in self.grants[r])]
        self.roles = self.service_roles + self.deploy_roles

    def _trusts(self, role: str, service: str) -> bool:
        document = (self.template["Resources"][role].get("Properties") or {}).get("AssumeRolePolicyDocument")
        return any(pf.allows_service(s, service) for s in pf.statements(document))

    def statements(self, roles: list[str] | None = None) -> list[tuple[str, list[Any], dict[str, Any]]]:
        return [(role, path, s) for role in (roles if roles is not None else self.roles) for path, s in self.grants[role]]

    def allowed(self, roles: list[str] | None = None) -> list[str]:
        return [a for _, _, s in self.statements(roles) if s.get("Effect") == "Allow" for a in pf.actions(s)]

    def allowed_on(self, action: str, arn: str) -> bool:
        """Some Allow statement grants `action` on a Resource pattern that matches `arn` (conditions aside)."""
        for _, _, statement in self.statements():
            if statement.get("Effect") == "Allow" and pf.covers(pf.actions(statement), action):
                patterns = [t for r in pf.as_list(statement.get("Resource")) for t in texts(self.template, r)]
                if matches_any(arn, patterns):
                    return True
        return False

    def denied(self, role: str, action: str, target: str) -> bool:
        for _, _, statement in self.statements([role]):
            if statement.get("Effect") != "Deny" or not pf.covers(pf.actions(statement), action):
                continue
            patterns = [t for r in pf.as_list(statement.get("Resource")) for t in texts(self.template, r)]
            if matches_any(target, patterns):
                return True
        return False


def extras(template: dict[str, Any], logical_id: str) -> list[str]:
    """Actions a resource needs because of its properties (code source, KMS key)."""
    resource = template["Resources"][logical_id]
    props = resource.get("Properties") or {}
    kind = resource.get("Type")
    needed: list[str] = []
    if kind == "AWS::Lambda::Function":
        code = props.get("Code") or {}
        if props.get("PackageType") == "Image" or "ImageUri" in code:
            needed += ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]  # Lambda checks the caller can pull the image
        if "S3Bucket" in code:
            needed.append("s3:GetObject")
        if props.get("Layers"):
            needed.append("lambda:GetLayerVersion")
    if kind == "AWS::StepFunctions::StateMachine":
        if props.get("DefinitionS3Location"):
            needed.append("s3:GetObject")
        if props.get("LoggingConfiguration"):
            needed += [f"logs:{action}" for action in (
                "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery", "ListLogDeliveries",
                "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups")]
    if kind == "AWS::SecretsManager::Secret" and props.get("KmsKeyId"):
        needed += ["kms:GenerateDataKey", "kms:Decrypt"]  # Secrets Manager uses the caller's credentials with the key
    return needed


class DeployPathCoversStack(CloudFormationLintRule):
    id = "E9107"
    shortdesc = "The deploy roles cover every resource type and grant nothing account-wide"
    description = (
        "GitHubDeployRole and CloudFormationExecutionRole (found by trust and grants) allow every action the "
        "template's resource types need, scope role creation with a permissions boundary, PassRole to the stack's "
        "roles, KMS to the stack's keys, and cannot change themselves or the boundary."
    )
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-iam-servicerole.html"
    tags: ClassVar[list[str]] = ["preflight", "iam"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        template = cfn.template
        path = DeployPath(template)
        if not path.roles:
            return []
        boundaries = self._boundaries(template, path)
        matches = self._coverage(cfn, template, path, boundaries)
        for role, where, statement in path.statements():
            if statement.get("Effect") == "Allow":
                matches += self._account_wide(role, where, statement)
                matches += self._iam(template, role, where, statement, boundaries)
                matches += self._kms(template, role, where, statement)
        matches += self._boundary_on_roles(template, path, boundaries)
        matches += self._self_protection(template, path)
        return matches

    # -- which managed policies are the boundary -----------------------------------------------------
    def _boundaries(self, template: dict[str, Any], path: DeployPath) -> dict[str, str]:
        """ARN text -> logical id of each template managed policy the deploy path requires as boundary."""
        wanted = {v for _, _, s in path.statements() for item in pf.condition_values(s, "iam:PermissionsBoundary")
                  for v in resolve(template, item)}
        found = {}
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("Type") == "AWS::IAM::ManagedPolicy":
                for arn in policy_arn(template, logical_id):
                    if arn in wanted:
                        found[arn] = logical_id
        return found

    # -- 1. coverage --------------------------------------------------------------------------------
    def _coverage(self, cfn: Any, template: dict[str, Any], path: DeployPath, boundaries: dict[str, str]) -> list[RuleMatch]:
        allowed = path.allowed()
        exempt = set(path.roles) | set(boundaries.values())
        missing: dict[str, tuple[str, set[str]]] = {}
        unreached: dict[str, tuple[str, set[str]]] = {}
        matches = []
        for logical_id, resource in sorted(template.get("Resources", {}).items()):
            kind = str(resource.get("Type"))
            if logical_id in exempt:
                continue
            if kind not in REQUIRED_ACTIONS:
                matches.append(RuleMatch(["Resources", logical_id], (
                    f"{logical_id}: {kind} has no entry in the deploy-path table (REQUIRED_ACTIONS of "
                    "scripts/preflight/deploy_role.py); add the actions its resource schema's handlers list"
                )))
                continue
            gaps = {a for a in (*REQUIRED_ACTIONS[kind], *extras(template, logical_id)) if not pf.covers(allowed, a)}
            if gaps:
                first, already = missing.get(kind, (logical_id, set()))
                missing[kind] = (first, already | gaps)
            own = resource_arns(template, logical_id)
            if own is not None:
                service, arns = own
                far = {a for a in REQUIRED_ACTIONS[kind] if a.startswith(f"{service}:") and a not in gaps
                       and a not in NOT_ON_RESOURCE and not all(path.allowed_on(a, arn) for arn in arns)}
                if far:
                    unreached.setdefault(logical_id, (arns[0], far))
        for kind, (first, gaps) in sorted(missing.items()):
            matches.append(RuleMatch(["Resources", first], (
                f"the deploy path ({', '.join(path.roles)}) cannot deploy {kind} (e.g. {first}): no Allow for "
                f"{', '.join(sorted(gaps))}"
            )))
        for logical_id, (arn, far) in sorted(unreached.items()):
            matches.append(RuleMatch(["Resources", logical_id], (
                f"the deploy path ({', '.join(path.roles)}) cannot deploy {logical_id}: its Allow statements for "
                f"{', '.join(sorted(far))} do not reach {arn}"
            )))
        caller = path.deploy_roles
        if caller:
            caller_allowed = path.allowed(caller)
            needs = []
            if "AWS::Serverless-2016-10-31" in pf.as_list(cfn.transform_pre.get("Transform")):
                needs.append(("cloudformation:CreateChangeSet", "the SAM transform"))
            ssm = sorted(n for n, p in template.get("Parameters", {}).items()
                         if str(p.get("Type", "")).startswith("AWS::SSM::Parameter::"))
            if ssm:
                needs.append(("ssm:GetParameters",
                              f"the SSM parameter type of {', '.join(ssm)}, resolved with the caller's credentials"))
            matches.extend(RuleMatch(["Resources", caller[0]], (
                f"{', '.join(caller)} (the caller of CreateChangeSet) has no Allow for {action}, needed for {why}"
            )) for action, why in needs if not pf.covers(caller_allowed, action))
        return matches

    # -- 2. account-wide grants ------------------------------------------------------------------------
    def _account_wide(self, role: str, where: list[Any], statement: dict[str, Any]) -> list[RuleMatch]:
        found = []
        if "NotAction" in statement or "NotResource" in statement:
            found.append(f"{role}: an Allow with NotAction/NotResource grants everything it does not name")
        acts = pf.actions(statement)
        found += [f"{role}: Allow of {a} (every action)" for a in acts if a in ("*", "*:*")]
        found += [f"{role}: Allow of {a} (an IAM wildcard: name the IAM actions)" for a in acts
                  if a.lower().startswith("iam:") and "*" in a]
        if "*" in pf.resources(statement):
            keys = pf.condition_keys(statement)
            for action in acts:
                allowed = [p for p in ACCOUNT_WIDE if fnmatch.fnmatchcase(action.lower(), p.lower())]
                if not allowed:
                    found.append(f'{role}: Allow of {action} on Resource "*" (it supports resource-level permissions: '
                                 "scope it to the stack's resources)")
                    continue
                prefix = ACCOUNT_WIDE[allowed[0]]
                if prefix and not any(k.startswith(prefix) for k in keys):
                    found.append(f'{role}: Allow of {action} on Resource "*" without a {prefix}... condition')
        return [RuleMatch(where, f"{text}; the deploy path must grant nothing account-wide") for text in found]

    # -- 3. IAM ---------------------------------------------------------------------------------------
    def _iam(self, template: dict[str, Any], role: str, where: list[Any], statement: dict[str, Any],
             boundaries: dict[str, str]) -> list[RuleMatch]:
        acts = pf.actions(statement)
        targets = [t for r in pf.as_list(statement.get("Resource")) for t in texts(template, r)]
        keys = pf.condition_keys(statement)
        found = []
        writes = [a for a in ROLE_WRITES if pf.covers(acts, a)]
        if writes:
            if any(f":role/{STACK}" not in t for t in targets):
                found.append(f"{role}: {', '.join(writes)} on {', '.join(targets)}: only on role/{STACK}-* roles")
            if "iam:permissionsboundary" not in keys:
                found.append(f"{role}: {', '.join(writes)} without an iam:PermissionsBoundary condition: the deploy path "
                             "could create or widen a role beyond the stack's boundary")
        if pf.covers(acts, "iam:DeleteRolePermissionsBoundary"):
            found.append(f"{role}: iam:DeleteRolePermissionsBoundary would take the boundary off a role")
        if pf.covers(acts, "iam:PassRole"):
            if any(f":role/{STACK}" not in t for t in targets):
                found.append(f"{role}: iam:PassRole on {', '.join(targets)}: only the stack's roles")
            if "iam:passedtoservice" not in keys:
                found.append(f"{role}: iam:PassRole without an iam:PassedToService condition")
        if pf.covers(acts, "iam:CreateServiceLinkedRole") and "iam:awsservicename" not in keys:
            found.append(f"{role}: iam:CreateServiceLinkedRole without an iam:AWSServiceName condition")
        for arn, boundary in boundaries.items():
            writes = [a for a in POLICY_WRITES if pf.covers(acts, a)]
            if writes and matches_any(arn, targets):
                found.append(f"{role}: {', '.join(writes)} on the permissions boundary {boundary}: the deploy path "
                             "could raise its own ceiling")
        return [RuleMatch(where, text) for text in found]

    # -- 4. KMS ---------------------------------------------------------------------------------------
    def _kms(self, template: dict[str, Any], role: str, where: list[Any], statement: dict[str, Any]) -> list[RuleMatch]:
        acts = [a for a in pf.actions(statement) if a.lower().startswith("kms:") and a.lower() not in KMS_NO_KEY]
        if not acts:
            return []
        keys = {k for k, r in template.get("Resources", {}).items() if r.get("Type") == "AWS::KMS::Key"}
        named = all(pf.references(r) and pf.references(r) <= keys for r in pf.as_list(statement.get("Resource")))
        scoped = any(k.startswith(KMS_SCOPING_KEYS) for k in pf.condition_keys(statement))
        if named or scoped:
            return []
        return [RuleMatch(where, (
            f"{role}: {', '.join(acts)} on {', '.join(pf.resources(statement))} reaches every KMS key of the account: "
            "name the stack's keys or condition on aws:ResourceTag/kms:ResourceAliases"
        ))]

    # -- 5. boundary on the other roles ----------------------------------------------------------------
    def _boundary_on_roles(self, template: dict[str, Any], path: DeployPath, boundaries: dict[str, str]) -> list[RuleMatch]:
        matches = []
        for logical_id, resource in sorted(template.get("Resources", {}).items()):
            if resource.get("Type") != "AWS::IAM::Role" or logical_id in path.roles:
                continue
            given = texts(template, (resource.get("Properties") or {}).get("PermissionsBoundary"))
            if given and all(g in boundaries for g in given):
                matches += self._within_boundary(template, path, logical_id, {boundaries[g] for g in given})
                continue
            expected = ", ".join(sorted(set(boundaries.values()))) or "a managed policy of the template"
            matches.append(RuleMatch(["Resources", logical_id], (
                f"{logical_id} has no PermissionsBoundary of {expected}: the deploy path may only create roles under "
                "the stack's boundary, so this role could not be created or changed by it"
            )))
        return matches

    def _within_boundary(self, template: dict[str, Any], path: DeployPath, role: str, boundaries: set[str]) -> list[RuleMatch]:
        """A grant the boundary does not allow is denied at run time: name it, so the boundary grows with the grant."""
        documents = [(template["Resources"][b].get("Properties") or {}).get("PolicyDocument") for b in boundaries]
        ceiling = [a for d in documents for s in pf.statements(d) if s.get("Effect") == "Allow" for a in pf.actions(s)]
        outside = sorted({a for _, s in path.grants[role] if s.get("Effect") == "Allow" for a in pf.actions(s)
                          if not any(fnmatch.fnmatchcase(a.lower(), c.lower()) for c in ceiling)})
        if not outside:
            return []
        return [RuleMatch(["Resources", role], (
            f"{role} grants {', '.join(outside)}, which its permissions boundary {', '.join(sorted(boundaries))} does not allow: "
            "the role would be denied them at run time; add them to the boundary"
        ))]

    # -- 6. the deploy path cannot change itself --------------------------------------------------------
    def _self_protection(self, template: dict[str, Any], path: DeployPath) -> list[RuleMatch]:
        matches = []
        own = {role: role_arn(template, role) for role in path.roles}
        for service_role in path.service_roles:
            for target_role, arns in own.items():
                open_actions = [action for action in ROLE_CHANGES
                                if any(path.allowed_on(action, arn) for arn in arns)
                                and not all(path.denied(service_role, action, arn) for arn in arns)]
                if open_actions:
                    matches.append(RuleMatch(["Resources", service_role], (
                        f"{service_role} may {', '.join(open_actions)} on the deploy path's own role {target_role} and no "
                        "Deny stops it: the deploy path could widen itself"
                    )))
        return matches
