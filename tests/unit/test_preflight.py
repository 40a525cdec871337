"""The preflight cfn-lint rules (scripts/preflight), run as `make lint` runs them.

GIVEN a small template (and, where the rule reads it, a samconfig.toml beside it) WHEN cfn-lint runs
with `--append-rules scripts/preflight` THEN the rule reports the trap AWS would spring at deploy
time, naming the resource, and says nothing about the fixed variant. Each rule has a failing and a
passing snippet (table-driven where a rule has several traps). The shipped template.yaml (with the
shipped samconfig.toml) passes every rule.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.config import ConfigMixIn
from cfnlint.rules import Rules
from cfnlint.rules.errors import ParseError, TransformError
from cfnlint.runner.template.runner import run_template_by_file_path

ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT = ROOT / "scripts" / "preflight"
STACK_ROLE = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*"}
ACCOUNT_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


# The rules as `--append-rules scripts/preflight` loads them, plus the parse and transform errors: a
# template that does not parse or transform must not pass a test by producing no finding at all.
# (Built once: cfnlint.api.lint_file would load and run every rule of cfn-lint for each snippet.)
RULES = Rules.create_from_directory(str(PREFLIGHT))
RULES.register(ParseError())
RULES.register(TransformError())


def run(path: Path) -> list[tuple[str, str]]:
    config = ConfigMixIn(["--template", str(path)], regions=["us-east-1"])
    matches = list(run_template_by_file_path(str(path), config, RULES, ignore_bad_template=False))
    broken = [m.message for m in matches if m.rule.id.startswith("E0")]
    assert broken == [], f"{path.name} does not parse or transform: {broken}"
    return [(m.rule.id, m.message) for m in matches if m.rule.id.startswith("E91")]


def lint(tmp_path: Path, template: dict[str, Any], samconfig: str | None = None) -> list[tuple[str, str]]:
    """(rule id, message) of every preflight finding on the template."""
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    if samconfig is not None:
        (tmp_path / "samconfig.toml").write_text(samconfig)
    return run(path)


def template(resources: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"AWSTemplateFormatVersion": "2010-09-09", **sections, "Resources": resources}


def findings(found: list[tuple[str, str]], rule: str) -> list[str]:
    return [message for rule_id, message in found if rule_id == rule]


def samconfig(**envs: str) -> str:
    """One `[<env>.deploy.parameters]` per keyword: capabilities and overrides as given."""
    text = "version = 0.1\n"
    for env, body in envs.items():
        text += f'[{env}.global.parameters]\nstack_name = "s-{env}"\nregion = "us-east-1"\n[{env}.deploy.parameters]\n{body}\n'
    return text


# --- E9101 capabilities ---------------------------------------------------------------------------
NAMED_ROLE = {"Type": "AWS::IAM::Role", "Properties": {
    "RoleName": {"Fn::Sub": "${AWS::StackName}-worker"}, "AssumeRolePolicyDocument": LAMBDA_TRUST}}
UNNAMED_ROLE = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": LAMBDA_TRUST}}


@pytest.mark.parametrize(("resources", "capabilities", "expected"), [
    ({"Worker": NAMED_ROLE}, "CAPABILITY_IAM", "CAPABILITY_NAMED_IAM (first needed by Worker (RoleName))"),
    ({"Worker": UNNAMED_ROLE}, "CAPABILITY_AUTO_EXPAND", "needs CAPABILITY_IAM (first needed by Worker)"),
    ({"Worker": NAMED_ROLE}, "CAPABILITY_NAMED_IAM", None),
    ({"Worker": UNNAMED_ROLE}, "CAPABILITY_IAM", None),
])
def test_capabilities_of_every_config_env_cover_the_template(
    tmp_path: Path, resources: dict[str, Any], capabilities: str, expected: str | None,
) -> None:
    config = samconfig(default=f'capabilities = "{capabilities}"', prod=f'capabilities = "{capabilities}"')
    found = findings(lint(tmp_path, template(resources), config), "E9101")
    if expected is None:
        assert found == []
    else:
        assert len(found) == 2  # one per config env
        assert all(expected in message and "InsufficientCapabilities" in message for message in found)
        assert any("[default]" in message for message in found)
        assert any("[prod]" in message for message in found)


def test_a_nested_application_needs_auto_expand(tmp_path: Path) -> None:
    nested = template({"Nested": {"Type": "AWS::Serverless::Application", "Properties": {
        "Location": "https://s3.amazonaws.com/bucket/nested.yaml"}}}, Transform="AWS::Serverless-2016-10-31")
    found = findings(lint(tmp_path, nested, samconfig(default='capabilities = "CAPABILITY_IAM"')), "E9101")
    assert any("CAPABILITY_AUTO_EXPAND (first needed by Nested (nested stack))" in message for message in found)


# --- E9102 KMS keys used on the deployer's behalf -----------------------------------------------------
def secret_under_key(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return template({
        "SecretKey": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Version": "2012-10-17", "Statement": statements}}},
        "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {
            "KmsKeyId": {"Fn::GetAtt": ["SecretKey", "Arn"]}, "GenerateSecretString": {"PasswordLength": 32}}},
    })


ADMINISTER = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Resource": "*",
              "Action": ["kms:Describe*", "kms:Put*", "kms:ScheduleKeyDeletion"]}
USE_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"]
VIA_SECRETS_MANAGER = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}


@pytest.mark.parametrize(("statements", "fires"), [
    # Only named roles may use it (the audit's WorkloadSecretKey): CloudFormation cannot create the secret.
    ([ADMINISTER, {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Resource": "*", "Action": USE_ACTIONS,
                   "Condition": {**VIA_SECRETS_MANAGER, "ArnEquals": {"aws:PrincipalArn": [
                       {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-podinfo-dev"}]}}}], True),
    # The account may use it, but only through another service than the one that encrypts with it.
    ([ADMINISTER, {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Resource": "*", "Action": USE_ACTIONS,
                   "Condition": {"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}}}], True),
    # Administration only, no use.
    ([ADMINISTER], True),
    ([ADMINISTER, {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Resource": "*", "Action": USE_ACTIONS,
                   "Condition": VIA_SECRETS_MANAGER}], False),
    ([{"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Resource": "*", "Action": "kms:*"}], False),
])
def test_keys_that_stack_resources_use_let_the_account_iam_grant_them(
    tmp_path: Path, statements: list[dict[str, Any]], fires: bool,
) -> None:
    found = findings(lint(tmp_path, secret_under_key(statements)), "E9102")
    if fires:
        assert len(found) == 1
        assert found[0].startswith("SecretKey encrypts Secret but its key policy does not let the account root use it")
    else:
        assert found == []


# --- E9103 topics AWS services publish to ------------------------------------------------------------
def alarm_to_topic(key_id: Any, key_statements: list[dict[str, Any]] | None = None, publisher: str = "alarm") -> dict[str, Any]:
    resources: dict[str, Any] = {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"KmsMasterKeyId": key_id}}}
    if key_statements is not None:
        resources["TopicKey"] = {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Action": "kms:*", "Resource": "*"}, *key_statements]}}}
    if publisher == "alarm":
        resources["Alarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Statistic": "Maximum", "Period": 300,
            "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "OKActions": [{"Ref": "Topic"}]}}
    else:
        resources["Rule"] = {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.ecr"]}, "Targets": [{"Id": "topic", "Arn": {"Ref": "Topic"}}]}}
    return template(resources)


CUSTOMER_KEY = {"Fn::GetAtt": ["TopicKey", "Arn"]}


def service_statement(service: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"Service": service}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}


@pytest.mark.parametrize(("snippet", "expected"), [
    (alarm_to_topic("alias/aws/sns"), "Topic is encrypted with alias/aws/sns, which Alarm cannot use"),
    (alarm_to_topic(CUSTOMER_KEY, []), "Topic is encrypted with TopicKey, whose key policy does not allow cloudwatch.amazonaws.com"),
    (alarm_to_topic(CUSTOMER_KEY, [service_statement("events.amazonaws.com")]),
     "Topic is encrypted with TopicKey, whose key policy does not allow cloudwatch.amazonaws.com"),
    (alarm_to_topic(CUSTOMER_KEY, [service_statement("cloudwatch.amazonaws.com")], publisher="rule"),
     "Topic is encrypted with TopicKey, whose key policy does not allow events.amazonaws.com"),
    (alarm_to_topic(CUSTOMER_KEY, [service_statement("cloudwatch.amazonaws.com")]), None),
    (alarm_to_topic(CUSTOMER_KEY, [service_statement("events.amazonaws.com")], publisher="rule"), None),
])
def test_topics_that_services_publish_to_use_a_key_those_services_may_use(
    tmp_path: Path, snippet: dict[str, Any], expected: str | None,
) -> None:
    found = findings(lint(tmp_path, snippet), "E9103")
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(expected)


# --- E9104 reserved concurrency ------------------------------------------------------------------------
BUDGET = {"Type": "Number", "Default": 0, "MinValue": 0, "MaxValue": 1000}
RESERVES = {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrencyBudget"}, "0"]}]}


def sam_functions(reservation: Any, parameters: dict[str, Any] | None = None, *, in_globals: bool = False) -> dict[str, Any]:
    function = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": "functions/x", "Handler": "app.handler", "Runtime": "python3.12"}}
    globals_ = {"Function": {"ReservedConcurrentExecutions": reservation}} if in_globals else {}
    first = copy.deepcopy(function)
    if not in_globals:
        first["Properties"]["ReservedConcurrentExecutions"] = reservation
    sections: dict[str, Any] = {"Transform": "AWS::Serverless-2016-10-31", "Parameters": parameters or {}}
    if parameters and "ReservedConcurrencyBudget" in parameters:
        sections["Conditions"] = {"ReservesConcurrency": RESERVES}
    if globals_:
        sections["Globals"] = globals_
    return template({"First": first, "Second": function}, **sections)


@pytest.mark.parametrize(("snippet", "expected"), [
    # The audit's template: Globals reserve 10 for every function and nothing says the account can afford it.
    (sam_functions(10, in_globals=True), "First, Second reserve concurrency but the template has no ReservedConcurrencyBudget"),
    # A budget exists, but the reservation ignores it (the default deploy would still reserve).
    (sam_functions(5, {"ReservedConcurrencyBudget": BUDGET}),
     "with ReservedConcurrencyBudget=0 the functions reserve 5 concurrent executions (First 5)"),
    # Both functions take the whole budget through Globals: twice the budget.
    (sam_functions({"Fn::If": ["ReservesConcurrency", {"Ref": "ReservedConcurrencyBudget"}, {"Ref": "AWS::NoValue"}]},
                   {"ReservedConcurrencyBudget": BUDGET}, in_globals=True),
     "with ReservedConcurrencyBudget=1 the functions reserve 2 concurrent executions (First 1, Second 1)"),
    (sam_functions({"Fn::If": ["ReservesConcurrency", {"Ref": "ReservedConcurrencyBudget"}, {"Ref": "AWS::NoValue"}]},
                   {"ReservedConcurrencyBudget": BUDGET}), None),
])
def test_reserved_concurrency_stays_within_the_budget_parameter(
    tmp_path: Path, snippet: dict[str, Any], expected: str | None,
) -> None:
    (tmp_path / "functions" / "x").mkdir(parents=True)
    found = findings(lint(tmp_path, snippet), "E9104")
    if expected is None:
        assert found == []
    else:
        assert any(message.startswith(expected) for message in found), found


def test_installations_in_one_region_leave_the_account_its_unreserved_concurrency(tmp_path: Path) -> None:
    snippet = template({"Queue": {"Type": "AWS::SQS::Queue"}}, Parameters={"ReservedConcurrencyBudget": BUDGET})
    config = samconfig(dev='parameter_overrides = "ReservedConcurrencyBudget=500"',
                       prod='parameter_overrides = "ReservedConcurrencyBudget=450"')
    found = findings(lint(tmp_path, snippet, config), "E9104")
    assert len(found) == 1
    assert "the installations in us-east-1 reserve 950 concurrent executions together" in found[0]
    assert "dev=500, prod=450" in found[0]
    ok = samconfig(dev='parameter_overrides = "ReservedConcurrencyBudget=500"', prod='parameter_overrides = ""')
    assert findings(lint(tmp_path, snippet, ok), "E9104") == []


# --- E9105 environment size -----------------------------------------------------------------------------
def function_with_environment(parameter: dict[str, Any]) -> dict[str, Any]:
    return template({"Worker": {"Type": "AWS::Lambda::Function", "Properties": {
        "Runtime": "python3.12", "Handler": "app.handler", "Role": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/x"},
        "Code": {"ZipFile": "def handler(event, context): pass"},
        "Environment": {"Variables": {"DOCUMENT": {"Ref": "Document"}, "TABLE": {"Fn::Sub": "${AWS::StackName}-table"}}},
    }}}, Parameters={"Document": parameter})


@pytest.mark.parametrize(("parameter", "expected"), [
    ({"Type": "String"}, "Worker: DOCUMENT: parameter Document has no MaxLength (its size is unbounded)"),
    ({"Type": "CommaDelimitedList"}, "Worker: DOCUMENT: parameter Document is a CommaDelimitedList"),
    # Free text counts twice (JSON escapes quotes, backslashes, newlines). {"DOCUMENT":"<2 x 2048>","TABLE":"<stack>-table"}:
    # 2 braces + (10 + 3 + 4096) + 1 comma + (7 + 3 + 128 + 6) = 4256 with the stack name at its 128 characters.
    ({"Type": "String", "MaxLength": 2048}, "Worker: its environment variables can reach 4256 bytes, over Lambda's 4096-byte limit"),
    ({"Type": "String", "MaxLength": 4096, "AllowedPattern": "^[a-z]*$"}, "Worker: its environment variables can reach"),
    ({"Type": "String", "MaxLength": 1024}, None),
    ({"Type": "String", "MaxLength": 3800, "AllowedPattern": "^[a-z]*$"}, None),
])
def test_function_environments_fit_four_kilobytes_at_the_parameters_maximum(
    tmp_path: Path, parameter: dict[str, Any], expected: str | None,
) -> None:
    found = findings(lint(tmp_path, function_with_environment(parameter)), "E9105")
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(expected)


def test_the_environment_rule_fires_on_verify_functions_keys_and_policy(tmp_path: Path) -> None:
    """VerifyFunction as the audit found it: the cosign keys (no MaxLength) and the release policy
    (MaxLength 4096, free text) in its environment. The branch that moves both into an SSM parameter
    fixes the shipped template; this snippet keeps proving the rule catches the shape."""
    snippet = template({"VerifyFunction": {"Type": "AWS::Lambda::Function", "Properties": {
        "Runtime": "python3.12", "Handler": "app.handler", "Role": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/x"},
        "Code": {"ZipFile": "def handler(event, context): pass"},
        "Environment": {"Variables": {
            "COSIGN_PUBLIC_KEYS": {"Ref": "CosignPublicKeys"}, "RELEASE_POLICY": {"Ref": "ReleasePolicy"},
            "SIGNATURE_WAIT_SECONDS": {"Ref": "SignatureWaitSeconds"}}},
    }}}, Parameters={
        "CosignPublicKeys": {"Type": "String", "NoEcho": False},
        "ReleasePolicy": {"Type": "String", "Default": "", "MaxLength": 4096},
        "SignatureWaitSeconds": {"Type": "Number", "Default": 60, "MinValue": 0, "MaxValue": 90},
    })
    found = findings(lint(tmp_path, snippet), "E9105")
    assert len(found) == 2
    assert found[0].startswith("VerifyFunction: COSIGN_PUBLIC_KEYS: parameter CosignPublicKeys has no MaxLength")
    assert found[1].startswith("VerifyFunction: its environment variables can reach")
    assert "RELEASE_POLICY 8211" in found[1]


# --- E9106 data-bearing resources retained ----------------------------------------------------------------
@pytest.mark.parametrize(("kind", "properties"), [
    ("AWS::DynamoDB::Table", {"BillingMode": "PAY_PER_REQUEST", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                              "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}),
    ("AWS::SecretsManager::Secret", {"GenerateSecretString": {"PasswordLength": 32}}),
    ("AWS::KMS::Key", {"KeyPolicy": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT_ROOT}, "Action": "kms:*", "Resource": "*"}]}}),
    ("AWS::Logs::LogGroup", {"RetentionInDays": 90}),
    ("AWS::SQS::Queue", {}),
    ("AWS::ECR::Repository", {}),
])
def test_data_bearing_resources_are_retained(tmp_path: Path, kind: str, properties: dict[str, Any]) -> None:
    resource: dict[str, Any] = {"Type": kind, "Properties": properties}
    found = findings(lint(tmp_path, template({"Data": resource})), "E9106")
    assert [m.split(": ", 1)[0] for m in found] == [f"Data ({kind}) has DeletionPolicy unset (Delete)",
                                                   f"Data ({kind}) has UpdateReplacePolicy unset (Delete)"]
    half = {**resource, "DeletionPolicy": "Retain"}
    assert [m.split(": ", 1)[0] for m in findings(lint(tmp_path, template({"Data": half})), "E9106")] == [
        f"Data ({kind}) has UpdateReplacePolicy unset (Delete)"]
    retained = {**half, "UpdateReplacePolicy": "Retain"}
    assert findings(lint(tmp_path, template({"Data": retained})), "E9106") == []


# --- E9107 the deploy path --------------------------------------------------------------------------------
def allow(actions: list[str] | str, resource: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return {**statement, "Condition": condition} if condition else statement


QUEUE_ACTIONS = ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:GetQueueUrl", "sqs:TagQueue",
                 "sqs:UntagQueue", "sqs:ListQueueTags", "sqs:DeleteQueue"]
STACK_QUEUES = {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-*"}
BOUNDARY_CONDITION = {"StringEquals": {"iam:PermissionsBoundary": {"Ref": "RoleBoundary"}}}
ROLE_ACTIONS = ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:UpdateRole",
                "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:DeleteRole"]
BOUNDED_ACTIONS = ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
                   "iam:PutRolePermissionsBoundary"]
PASS = allow("iam:PassRole", STACK_ROLE, {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})
NOT_THE_DEPLOY_PATH = {"Effect": "Deny", "Action": [*BOUNDED_ACTIONS, *ROLE_ACTIONS, "iam:PassRole"],
                       "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-deploy-*"}}
GOOD_EXECUTION = [
    allow(QUEUE_ACTIONS, STACK_QUEUES),
    allow(BOUNDED_ACTIONS, STACK_ROLE, BOUNDARY_CONDITION),
    allow(ROLE_ACTIONS, STACK_ROLE),
    PASS,
    NOT_THE_DEPLOY_PATH,
]


def deploy_path(execution: list[dict[str, Any]], worker_boundary: bool = True) -> dict[str, Any]:
    """A queue, a worker role, the boundary, and the two deploy-path roles with the given execution grants."""
    worker: dict[str, Any] = {"AssumeRolePolicyDocument": LAMBDA_TRUST}
    if worker_boundary:
        worker["PermissionsBoundary"] = {"Ref": "RoleBoundary"}
    return template({
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Fn::Sub": "${AWS::StackName}-dead-letters"}}},
        "Worker": {"Type": "AWS::IAM::Role", "Properties": worker},
        "RoleBoundary": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "ManagedPolicyName": {"Fn::Sub": "${AWS::StackName}-role-boundary"},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [allow("sqs:SendMessage", STACK_QUEUES)]}}},
        "ExecutionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": {"Fn::Sub": "${AWS::StackName}-deploy-cloudformation"},
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "change-this-stack", "PolicyDocument": {"Version": "2012-10-17", "Statement": execution}}],
        }},
        "DeployRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": {"Fn::Sub": "${AWS::StackName}-deploy-github"},
            "AssumeRolePolicyDocument": LAMBDA_TRUST,
            "Policies": [{"PolicyName": "deploy", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                allow(["cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet"],
                      {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*"}),
                allow("iam:PassRole", {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                      {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}),
            ]}}],
        }},
    })


def without(statements: list[dict[str, Any]], removed: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in statements if s is not removed]


@pytest.mark.parametrize(("execution", "worker_boundary", "expected"), [
    # The audit's gaps: no SQS at all, so the dead-letter queue cannot be created.
    (without(GOOD_EXECUTION, GOOD_EXECUTION[0]), True,
     "the deploy path (ExecutionRole, DeployRole) cannot deploy AWS::SQS::Queue (e.g. Queue): no Allow for sqs:CreateQueue"),
    # SQS granted, but on other queues than the stack's.
    ([allow(QUEUE_ACTIONS, {"Fn::Sub": "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:other-*"}), *GOOD_EXECUTION[1:]], True,
     "the deploy path (ExecutionRole, DeployRole) cannot deploy Queue: its Allow statements for sqs:CreateQueue"),
    ([*GOOD_EXECUTION, allow("*", "*")], True, "ExecutionRole: Allow of * (every action)"),
    ([*GOOD_EXECUTION, allow("sqs:*", "*")], True, 'ExecutionRole: Allow of sqs:* on Resource "*"'),
    ([*GOOD_EXECUTION, allow("iam:*", STACK_ROLE)], True, "ExecutionRole: Allow of iam:* (an IAM wildcard"),
    # Role creation without the boundary condition: the deploy path could mint an admin role.
    ([GOOD_EXECUTION[0], allow(BOUNDED_ACTIONS, STACK_ROLE), *GOOD_EXECUTION[2:]], True,
     "ExecutionRole: iam:CreateRole, iam:PutRolePolicy, iam:DeleteRolePolicy, iam:AttachRolePolicy, iam:DetachRolePolicy, "
     "iam:PutRolePermissionsBoundary without an iam:PermissionsBoundary condition"),
    ([*without(GOOD_EXECUTION, PASS), allow("iam:PassRole", "*")], True, "ExecutionRole: iam:PassRole on *: only the stack's roles"),
    ([*GOOD_EXECUTION, allow(["kms:PutKeyPolicy", "kms:Decrypt"], {"Fn::Sub": "arn:aws:kms:${AWS::Region}:${AWS::AccountId}:key/*"})],
     True, "ExecutionRole: kms:PutKeyPolicy, kms:Decrypt on arn:aws:kms:${AWS::Region}:${AWS::AccountId}:key/* reaches every KMS key"),
    ([*GOOD_EXECUTION, allow("iam:CreatePolicyVersion", {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:policy/${AWS::StackName}-*"})],
     True, "ExecutionRole: iam:CreatePolicyVersion on the permissions boundary RoleBoundary"),
    # Without the Deny the execution role could rewrite its own trust and policies.
    (without(GOOD_EXECUTION, NOT_THE_DEPLOY_PATH), True, "ExecutionRole may iam:CreateRole"),
    (GOOD_EXECUTION, False, "Worker has no PermissionsBoundary of RoleBoundary"),
    (GOOD_EXECUTION, True, None),
])
def test_the_deploy_path_covers_the_stack_and_grants_nothing_account_wide(
    tmp_path: Path, execution: list[dict[str, Any]], worker_boundary: bool, expected: str | None,
) -> None:
    found = findings(lint(tmp_path, deploy_path(execution, worker_boundary)), "E9107")
    if expected is None:
        assert found == []
    else:
        assert any(message.startswith(expected) for message in found), found


def test_a_grant_outside_the_boundary_is_named(tmp_path: Path) -> None:
    """The boundary allows the worker sqs:SendMessage only: a grant beyond it would be denied at run time."""
    snippet = deploy_path(GOOD_EXECUTION)
    snippet["Resources"]["Worker"]["Properties"]["Policies"] = [{"PolicyName": "work", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [allow(["sqs:SendMessage", "sqs:ReceiveMessage"], STACK_QUEUES)]}}]
    assert findings(lint(tmp_path, snippet), "E9107") == [
        "Worker grants sqs:ReceiveMessage, which its permissions boundary RoleBoundary does not allow: the role would be "
        "denied them at run time; add them to the boundary"]


def test_the_caller_resolves_ssm_parameter_types(tmp_path: Path) -> None:
    snippet = deploy_path(GOOD_EXECUTION)
    snippet["Parameters"] = {"ImageId": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                                         "Default": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"}}
    found = findings(lint(tmp_path, snippet), "E9107")
    assert found == ["DeployRole (the caller of CreateChangeSet) has no Allow for ssm:GetParameters, needed for the SSM "
                     "parameter type of ImageId, resolved with the caller's credentials"]


# --- the shipped template -------------------------------------------------------------------------------------
def test_the_shipped_template_passes_every_preflight_rule() -> None:
    """template.yaml with the samconfig.toml beside it, linted as `make lint` does: no finding at all
    (the release policy lives in an SSM parameter, not in VerifyFunction's environment)."""
    matches = lint_file(ROOT / "template.yaml", config=ManualArgs(append_rules=[str(PREFLIGHT)], regions=["us-east-1"]))
    assert [(m.rule.id, m.message) for m in matches if m.rule.id.startswith("E91")] == []


def test_every_rule_module_loads() -> None:
    assert sorted(Rules.create_from_directory(str(PREFLIGHT))) == ["E9101", "E9102", "E9103", "E9104", "E9105", "E9106", "E9107"]
