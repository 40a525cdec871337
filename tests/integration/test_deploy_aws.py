"""make deploy's checks and make teardown, against moto in process.

GIVEN an account (moto) in the state a person may find it in WHEN scripts/deploy.py checks its
prerequisites, writes the policy, or scripts/teardown.py deletes an installation THEN the outcome
is in the account: the policy parameter holds exactly the document; a missing repository, pull
permission, image, policy parameter or credentials, and data an earlier stack of the same name left,
are refused by name with what to do; a teardown deletes the stack only when its name is confirmed
and no release runs, keeps what the template retains (and lists it, with the command that deletes
each), and PURGE deletes those too, secrets only when FORCE_DELETE_SECRETS says so.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from podrelease.verify.policy import keys_document
from scripts import deploy, deploy_checks, teardown
from scripts.installation import load_installation
from scripts.teardown import Leftover

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "podinfo-release-dev"
PEM = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+JNXRkhLQsXo49HNImZFh5q6iMA5\n"
       "yezG0rAzm7dXalsLwFLvDk2FI6hfKErd7FxJmySrgPZ7Ufb+szuLw1TtOA==\n-----END PUBLIC KEY-----\n")


@pytest.fixture
def session(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def _refusal(error: pytest.ExceptionInfo[Exception]) -> str:
    return str(error.value)


# --- deploy: prerequisites ------------------------------------------------------------------------
def test_no_credentials_is_refused_with_how_to_sign_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(deploy_checks.CredentialsMissing) as refused:
        deploy_checks.caller_account(boto3.session.Session(region_name=REGION))
    assert _refusal(refused) == (
        "CredentialsMissing: no usable AWS credentials (NoCredentialsError: Unable to locate credentials). Sign in first "
        "(for example `aws sso login --profile NAME` and `export AWS_PROFILE=NAME`, or `aws configure`), then check with "
        "`aws sts get-caller-identity`")


def test_a_missing_repository_is_refused_with_the_command_that_creates_it(session: Any) -> None:
    inst = load_installation("dev")
    with pytest.raises(deploy_checks.RepositoryMissing) as refused:
        deploy_checks.check_repositories(session, inst, ["podinfo-staging", "podinfo-staging-prod"])
    assert _refusal(refused) == (
        "RepositoryMissing: ECR repository podinfo-staging does not exist in us-east-1; create it (README, Deploying to "
        "AWS): aws ecr create-repository --repository-name podinfo-staging --image-tag-mutability IMMUTABLE "
        "--image-scanning-configuration scanOnPush=true --region us-east-1")


def test_a_repository_lambda_cannot_pull_from_is_refused_until_its_policy_allows_it(session: Any) -> None:
    inst = load_installation("dev")
    ecr = session.client("ecr")
    for name in ("podinfo-staging", "podinfo-staging-prod"):
        ecr.create_repository(repositoryName=name)
    with pytest.raises(deploy_checks.RepositoryMissing) as refused:
        deploy_checks.check_repositories(session, inst, ["podinfo-staging", "podinfo-staging-prod"])
    assert _refusal(refused) == (
        "RepositoryMissing: ECR repository podinfo-staging does not let Lambda pull its images (the functions run them): "
        "aws ecr set-repository-policy --repository-name podinfo-staging --region us-east-1 --policy-text "
        "'" + json.dumps(deploy_checks.LAMBDA_PULL_POLICY, separators=(",", ":")) + "'")
    for name in ("podinfo-staging", "podinfo-staging-prod"):
        ecr.set_repository_policy(repositoryName=name, policyText=json.dumps(deploy_checks.LAMBDA_PULL_POLICY))
    deploy_checks.check_repositories(session, inst, ["podinfo-staging", "podinfo-staging-prod"])


def test_the_bootstrap_image_must_be_in_the_repository_and_the_account(session: Any) -> None:
    inst = load_installation("dev")
    ecr = session.client("ecr")
    ecr.create_repository(repositoryName="podinfo-staging")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 1},
                "layers": []}
    digest = ecr.put_image(repositoryName="podinfo-staging", imageManifest=json.dumps(manifest),
                           imageTag="bootstrap")["image"]["imageId"]["imageDigest"]
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/podinfo-staging@"
    deploy_checks.check_bootstrap_image(session, inst, ACCOUNT, uri + digest)
    other = "sha256:" + "1" * 64
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy_checks.check_bootstrap_image(session, inst, ACCOUNT, uri + other)
    assert _refusal(refused) == (
        f"DeployRefused: BootstrapImageUri names podinfo-staging@{other}, which is not in ECR (ImageNotFoundException): "
        "push the first image and use the digest the push printed (README, Deploying to AWS, step 2)")
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy_checks.check_bootstrap_image(session, inst, "210987654321", uri + digest)
    assert _refusal(refused) == (
        "DeployRefused: BootstrapImageUri is in account 123456789012; the stack deploys to account 210987654321: push the "
        "first image to 210987654321.dkr.ecr.us-east-1.amazonaws.com/podinfo-staging")


def test_the_policy_is_written_to_ssm_exactly_and_overwritten(session: Any, tmp_path: Any) -> None:
    keys = tmp_path / "cosign.pub"
    keys.write_text(PEM)
    plan = deploy.make_plan("dev", [], keys=str(keys))
    assert deploy.write_policy(session, plan) == 1
    assert deploy.write_policy(session, plan) == 2
    parameter = session.client("ssm").get_parameter(Name="/podinfo-release-dev/release-policy")["Parameter"]
    assert (parameter["Value"], parameter["Type"]) == (keys_document(PEM), "String")
    (described,) = session.client("ssm").describe_parameters()["Parameters"]
    assert described["Tier"] == "Intelligent-Tiering"


def test_a_policy_parameter_that_is_missing_or_invalid_is_refused(session: Any) -> None:
    inst = load_installation("dev")
    with pytest.raises(deploy_checks.PolicyRefused) as refused:
        deploy_checks.check_policy_parameter(session, inst, "/podinfo-release-dev/release-policy")
    assert _refusal(refused) == (
        "PolicyRefused: ReleasePolicyParameter names /podinfo-release-dev/release-policy, which does not exist in "
        "us-east-1: make deploy ENV=dev POLICY=policy.json (or KEYS=cosign.pub) writes one")
    ssm = session.client("ssm")
    ssm.put_parameter(Name="/podinfo-release-dev/release-policy", Value='{"version": 1, "environments": {}}', Type="String")
    with pytest.raises(deploy_checks.PolicyRefused) as refused:
        deploy_checks.check_policy_parameter(session, inst, "/podinfo-release-dev/release-policy")
    assert _refusal(refused) == (
        "PolicyRefused: the release policy in /podinfo-release-dev/release-policy would stop every release: "
        "release policy environments: missing required field(s) 'dev', 'prod'; fix it with make deploy ENV=dev "
        "POLICY=policy.json")
    ssm.put_parameter(Name="/podinfo-release-dev/release-policy", Value=keys_document(PEM), Type="String", Overwrite=True)
    deploy_checks.check_policy_parameter(session, inst, "/podinfo-release-dev/release-policy")


def test_data_an_earlier_stack_of_the_same_name_retained_is_refused(session: Any, ledger_table: Callable[..., Any]) -> None:
    inst = load_installation("dev")
    template = deploy.load_template()
    deploy_checks.check_leftovers(session, inst, template)
    ledger_table("podinfo-release-dev-ledger", session=session)
    session.client("secretsmanager").create_secret(Name="podinfo-release-dev/podinfo-jwt-dev", SecretString="{}")
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy_checks.check_leftovers(session, inst, template)
    assert _refusal(refused) == (
        "DeployRefused: stack podinfo-release-dev does not exist, but what an earlier stack of that name retained does: "
        "podinfo-release-dev-ledger (AWS::DynamoDB::Table), podinfo-release-dev/podinfo-jwt-dev "
        "(AWS::SecretsManager::Secret); CloudFormation would fail to create them again. Remove them with "
        "`make teardown ENV=dev PURGE=1` (secrets also need FORCE_DELETE_SECRETS=1), or pick another stack_name")


# --- teardown -----------------------------------------------------------------------------------
def _key_policy() -> str:
    # moto's CloudFormation stores a JSON-object KeyPolicy unparsed; a string it can read back.
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]})


def _installation_like_stack(session: Any) -> None:
    """A stack with the installation's retained kinds, named as the template names them, plus a
    function (Lambda creates its log group, not the stack) and the policy parameter."""
    retain = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    template = {"Resources": {
        "Ledger": {"Type": "AWS::DynamoDB::Table", **retain, "Properties": {
            "TableName": f"{STACK}-ledger", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}},
        "StarterDeadLetters": {"Type": "AWS::SQS::Queue", **retain, "Properties": {"QueueName": f"{STACK}-starter-dead-letters"}},
        "ReleaseLogGroup": {"Type": "AWS::Logs::LogGroup", **retain,
                            "Properties": {"LogGroupName": f"/aws/vendedlogs/states/{STACK}-release"}},
        "WorkloadSecretKey": {"Type": "AWS::KMS::Key", **retain, "Properties": {"KeyPolicy": _key_policy()}},
        "VerifyRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}}},
        "ReleaseStateMachine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineName": f"{STACK}-release", "RoleArn": {"Fn::GetAtt": ["VerifyRole", "Arn"]},
            "DefinitionString": json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})}},
        "VerifyFunction": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": f"{STACK}-verify", "Runtime": "python3.12", "Handler": "app.handler",
            "Role": {"Fn::GetAtt": ["VerifyRole", "Arn"]}, "Code": {"ZipFile": "def handler(e, c): return e"}}},
    }}
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"])
    session.client("logs").create_log_group(logGroupName=f"/aws/lambda/{STACK}-verify")
    session.client("ssm").put_parameter(Name=f"/{STACK}/release-policy", Value=keys_document(PEM), Type="String")


def _teardown(session: Any, *arguments: str, ask: Any = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = teardown.main(["--env", "dev", *arguments], out=out, session_factory=lambda _region: session, ask=lambda: ask)
    return code, out.getvalue().splitlines()


def _stack_exists(session: Any) -> bool:
    try:
        session.client("cloudformation").describe_stacks(StackName=STACK)
    except ClientError:
        return False
    return True


def _key_id(session: Any) -> str:
    (key,) = [s["PhysicalResourceId"] for s in session.client("cloudformation").list_stack_resources(StackName=STACK)[
        "StackResourceSummaries"] if s["ResourceType"] == "AWS::KMS::Key"]
    return str(key)


def test_a_teardown_needs_the_stack_name_and_keeps_what_the_template_retains(session: Any,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    _installation_like_stack(session)
    key = _key_id(session)
    queue = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{STACK}-starter-dead-letters"

    code, _ = _teardown(session)
    assert code == 1
    assert capsys.readouterr().err == (f"error: TeardownRefused: make teardown deletes stack {STACK}: run it in a terminal "
                                       f"and type the name when asked, or pass CONFIRM={STACK}\n")
    code, _ = _teardown(session, "--confirm", "podinfo-release-prod")
    assert code == 1
    assert capsys.readouterr().err == ("error: TeardownRefused: CONFIRM=podinfo-release-prod is not the stack's name; "
                                       f"it is {STACK} (samconfig environment dev)\n")
    code, lines = _teardown(session, "--dry-run")
    assert code == 0
    assert f"would delete stack {STACK} (CREATE_COMPLETE, 7 resources, 4 retained)" in lines
    assert _stack_exists(session)

    sfn = session.client("stepfunctions")
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-release"
    execution = sfn.start_execution(stateMachineArn=machine, name="podinfo-07db4f857040-32aa4089b813e588")["executionArn"]
    code, _ = _teardown(session, "--confirm", STACK)
    assert code == 1
    assert capsys.readouterr().err == (
        f"error: TeardownRefused: 1 release(s) are running: {execution}. Wait for them, or stop each (aws stepfunctions "
        "stop-execution --execution-arn ARN --region us-east-1; a release stopped mid-deploy can leave a canary split, see "
        "docs/runbook.md), then run make teardown again\n")
    assert _stack_exists(session)
    sfn.stop_execution(executionArn=execution)

    code, lines = _teardown(session, ask=lambda _prompt: "podinfo-release")  # a terminal, and a wrong name typed
    assert code == 1
    assert capsys.readouterr().err == "error: TeardownRefused: the name typed is not the stack's name: nothing was deleted\n"
    assert _stack_exists(session)

    code, lines = _teardown(session, "--confirm", STACK)
    assert code == 0
    assert not _stack_exists(session)
    assert lines[lines.index(f"deleted stack {STACK}") + 3:] == [
        f"  Ledger: AWS::DynamoDB::Table {STACK}-ledger (DeletionPolicy Retain) [exists]",
        f"      aws dynamodb delete-table --table-name {STACK}-ledger --region us-east-1",
        f"  StarterDeadLetters: AWS::SQS::Queue {queue} (DeletionPolicy Retain) [exists]",
        f"      aws sqs delete-queue --queue-url {queue} --region us-east-1",
        f"  ReleaseLogGroup: AWS::Logs::LogGroup /aws/vendedlogs/states/{STACK}-release (DeletionPolicy Retain) [exists]",
        f"      aws logs delete-log-group --log-group-name /aws/vendedlogs/states/{STACK}-release --region us-east-1",
        f"  WorkloadSecretKey: AWS::KMS::Key {key} (DeletionPolicy Retain) [exists]",
        f"      aws kms schedule-key-deletion --key-id {key} --pending-window-in-days 7 --region us-east-1",
        f"  AWS::Logs::LogGroup /aws/lambda/{STACK}-verify (created by Lambda, not by the stack) [exists]",
        f"      aws logs delete-log-group --log-group-name /aws/lambda/{STACK}-verify --region us-east-1",
        f"  AWS::SSM::Parameter /{STACK}/release-policy (written by make deploy, not by the stack) [exists]",
        f"      aws ssm delete-parameter --name /{STACK}/release-policy --region us-east-1",
    ]
    assert session.client("dynamodb").describe_table(TableName=f"{STACK}-ledger")["Table"]["TableStatus"] == "ACTIVE"

    # PURGE=1 later: the deleted stack's record says what it retained.
    code, lines = _teardown(session, "--purge", "--confirm", STACK)
    assert code == 0
    assert lines[-1] == "nothing else is left"
    assert session.client("dynamodb").list_tables()["TableNames"] == []
    assert session.client("sqs").list_queues().get("QueueUrls", []) == []
    assert session.client("logs").describe_log_groups()["logGroups"] == []
    assert session.client("kms").describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert session.client("ssm").describe_parameters()["Parameters"] == []


def test_secrets_are_purged_only_with_force_and_their_keys_stay_with_them(session: Any) -> None:
    kms, secrets = session.client("kms"), session.client("secretsmanager")
    key = kms.create_key()["KeyMetadata"]
    secret = secrets.create_secret(Name=f"{STACK}/podinfo-jwt-dev", SecretString="{}", KmsKeyId=key["Arn"])["ARN"]
    items = [Leftover("AWS::KMS::Key", key["KeyId"], "WorkloadSecretKey", "DeletionPolicy Retain"),
             Leftover("AWS::SecretsManager::Secret", secret, "WorkloadSecretDev", "DeletionPolicy Retain")]
    out = io.StringIO()
    assert teardown.purge(session, REGION, items, force_secrets=False, out=out) == [items[1], items[0]]
    assert out.getvalue() == ""
    assert secrets.describe_secret(SecretId=secret)["Name"] == f"{STACK}/podinfo-jwt-dev"
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert teardown.purge(session, REGION, items, force_secrets=True, out=out) == []
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        secrets.describe_secret(SecretId=secret)
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_a_running_release_stops_the_teardown(session: Any) -> None:
    sfn = session.client("stepfunctions")
    machine = sfn.create_state_machine(name=f"{STACK}-release", roleArn=f"arn:aws:iam::{ACCOUNT}:role/r", definition=json.dumps(
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="podinfo-07db4f857040-32aa4089b813e588")["executionArn"]
    summaries = [{"LogicalResourceId": "ReleaseStateMachine", "ResourceType": "AWS::StepFunctions::StateMachine",
                  "PhysicalResourceId": machine}]
    assert teardown.running_releases(session, REGION, summaries) == [execution]
    sfn.stop_execution(executionArn=execution)
    assert teardown.running_releases(session, REGION, summaries) == []


def test_buckets_the_stack_does_not_retain_are_emptied_before_the_delete(session: Any) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=f"{STACK}-artifacts")
    s3.put_bucket_versioning(Bucket=f"{STACK}-artifacts", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=f"{STACK}-artifacts", Key="a", Body=body)
    summaries = [{"LogicalResourceId": "Artifacts", "ResourceType": "AWS::S3::Bucket", "PhysicalResourceId": f"{STACK}-artifacts"}]
    assert teardown.empty_blockers(session, REGION, summaries, {"Artifacts"}, dry_run=False) == []  # retained: kept whole
    assert teardown.empty_blockers(session, REGION, summaries, set(), dry_run=True) == [
        f"would empty S3 bucket {STACK}-artifacts (3 object versions)"]
    assert teardown.empty_blockers(session, REGION, summaries, set(), dry_run=False) == [
        f"emptied S3 bucket {STACK}-artifacts (3 object versions)"]
    assert "Versions" not in s3.list_object_versions(Bucket=f"{STACK}-artifacts")


def test_the_installation_that_relies_on_this_stacks_oidc_provider_is_named(session: Any) -> None:
    cf = session.client("cloudformation")
    body = {"Parameters": {"GitHubOrg": {"Type": "String"}, "CreateGitHubOidcProvider": {"Type": "String"}},
            "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    for name, creates in (("podinfo-release-prod", "false"), ("other-app", "true")):
        cf.create_stack(StackName=name, TemplateBody=json.dumps(body), Parameters=[
            {"ParameterKey": "GitHubOrg", "ParameterValue": "acme"},
            {"ParameterKey": "CreateGitHubOidcProvider", "ParameterValue": creates}])
    owner = [{"LogicalResourceId": "GitHubOidcProvider", "ResourceType": "AWS::IAM::OIDCProvider", "PhysicalResourceId": "arn"}]
    assert teardown.oidc_dependents(cf, STACK, owner) == ["podinfo-release-prod"]
    assert teardown.oidc_dependents(cf, STACK, []) == []


def test_unknown_teardown_variables_are_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    assert teardown.main(["--env", "dev", "--purge", "FORCE_DELETE_SECRET=1"]) == 1
    assert capsys.readouterr().err == ("error: TeardownRefused: FORCE_DELETE_SECRET=1: not an option of make teardown "
                                       "(ENV, PURGE, FORCE_DELETE_SECRETS, CONFIRM, DRY_RUN)\n")
    assert teardown.main(["--env", "dev", "--force-delete-secrets"]) == 1
    assert capsys.readouterr().err == ("error: TeardownRefused: FORCE_DELETE_SECRETS=1 only means something with PURGE=1 "
                                       "(it deletes the retained secrets too)\n")


# --- deploy: the whole first deploy ---------------------------------------------------------------
FIRST = ["ApproverEmails=alice@example.com", "NotifyEmail=releases@example.com"]


def _ready_account(session: Any) -> str:
    """What README steps 1-2 leave: both repositories, Lambda may pull, a first image; its URI."""
    ecr = session.client("ecr")
    for name in ("podinfo-staging", "podinfo-staging-prod"):
        ecr.create_repository(repositoryName=name)
        ecr.set_repository_policy(repositoryName=name, policyText=json.dumps(deploy_checks.LAMBDA_PULL_POLICY))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 1},
                "layers": []}
    digest = ecr.put_image(repositoryName="podinfo-staging", imageManifest=json.dumps(manifest),
                           imageTag="bootstrap")["image"]["imageId"]["imageDigest"]
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/podinfo-staging@{digest}"


def test_a_first_deploy_checks_builds_writes_the_policy_deploys_and_says_what_is_next(session: Any, tmp_path: Any) -> None:
    image = _ready_account(session)
    keys = tmp_path / "cosign.pub"
    keys.write_text(PEM)
    observed: list[tuple[list[str], list[str]]] = []

    def act(argv: list[str], **_: Any) -> Any:
        """`make build` succeeds; `sam deploy` creates the stack CloudFormation would (its outputs,
        the repository parameter). Each records which SSM parameters existed when it ran."""
        observed.append((argv[:2], [p["Name"] for p in session.client("ssm").describe_parameters()["Parameters"]]))
        if argv[:2] == [".venv-sam/bin/sam", "deploy"]:
            given = dict(a.split("=", 1) for a in argv[argv.index("--parameter-overrides") + 1:])
            body = {"Parameters": {"WorkloadRepository": {"Type": "String"}},
                    "Resources": {"ApprovalTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{STACK}-approvals"}}},
                    "Outputs": {"ApprovalTopicArn": {"Value": {"Ref": "ApprovalTopic"}}}}
            session.client("cloudformation").create_stack(StackName=argv[argv.index("--stack-name") + 1], TemplateBody=json.dumps(
                body), Parameters=[{"ParameterKey": "WorkloadRepository", "ParameterValue": given["WorkloadRepository"]}])
        return subprocess.CompletedProcess(argv, 0)

    out = io.StringIO()
    code = deploy.main(["--env", "dev", "--keys", str(keys), f"BootstrapImageUri={image}", *FIRST], out=out,
                       session_factory=lambda _region: session, run=act)
    assert code == 0, out.getvalue()
    assert observed == [(["make", "build"], []), ([".venv-sam/bin/sam", "deploy"], [f"/{STACK}/release-policy"])]
    policy = session.client("ssm").get_parameter(Name=f"/{STACK}/release-policy")["Parameter"]["Value"]
    assert policy == keys_document(PEM)
    lines = out.getvalue().splitlines()
    assert f"stack {STACK} does not exist yet: this deploy creates it in account {ACCOUNT}" in lines
    assert lines[-6:] == [
        f"stack {STACK}: CREATE_COMPLETE",
        f"  {'ApprovalTopicArn':32} arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-approvals",
        "",
        "next:",
        "  1. SNS subscriptions: all confirmed",
        "  2. push a signed image to podinfo-staging (the build workflow, or by hand: README, Deploying to AWS); the push "
        "starts the first release, and its outcome arrives at NotifyEmail",
    ]


def test_a_failed_build_writes_nothing_and_deploys_nothing(session: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    image = _ready_account(session)
    keys = tmp_path / "cosign.pub"
    keys.write_text(PEM)
    code = deploy.main(["--env", "dev", "--keys", str(keys), f"BootstrapImageUri={image}", *FIRST], out=io.StringIO(),
                       session_factory=lambda _region: session, run=lambda argv, **_: subprocess.CompletedProcess(argv, 2))
    assert code == 2
    assert capsys.readouterr().err == "error: BuildFailed: make build exited 2; nothing was written or deployed\n"
    assert session.client("ssm").describe_parameters()["Parameters"] == []
    assert session.client("cloudformation").describe_stacks()["Stacks"] == []


def test_a_policy_change_on_an_existing_stack_deploys_the_version_it_wrote(session: Any, tmp_path: Any) -> None:
    image = _ready_account(session)
    body = {"Parameters": {"WorkloadRepository": {"Type": "String"}, "BootstrapImageUri": {"Type": "String"}},
            "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(body), Parameters=[
        {"ParameterKey": "WorkloadRepository", "ParameterValue": "podinfo-staging"},
        {"ParameterKey": "BootstrapImageUri", "ParameterValue": image}])
    # GIVEN the policy parameter already holds an earlier version
    session.client("ssm").put_parameter(Name=f"/{STACK}/release-policy", Value="{}", Type="String")
    keys = tmp_path / "cosign.pub"
    keys.write_text(PEM)
    out = io.StringIO()
    ran: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, 0)

    code = deploy.main(["--env", "dev", "--keys", str(keys), *FIRST], out=out, session_factory=lambda _region: session, run=run)
    assert code == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert f"stack {STACK} exists (CREATE_COMPLETE) in account {ACCOUNT}: this deploy updates it" in lines
    parameter = session.client("ssm").get_parameter(Name=f"/{STACK}/release-policy")["Parameter"]
    assert parameter["Value"] == keys_document(PEM)
    assert parameter["Version"] == 2
    # THEN sam deploy gets exactly the version this deploy wrote: the verify function reads that one
    sam = next(argv for argv in ran if "deploy" in argv and "--parameter-overrides" in argv)
    assert "ReleasePolicyVersion=2" in sam
    assert f"ReleasePolicyParameter=/{STACK}/release-policy" in sam
