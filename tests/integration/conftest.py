"""Fixtures of the integration tests' shared worlds; the plain helpers and names they use are in
handler_world.py (the release's handlers, on moto alone or with local.emulation) and
approval_world.py (the approval request and page).

A test module may define a fixture of the same name for a world of its own (test_fleet.py's `aws`,
test_deploy.py's `world`): pytest gives that module its own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from local.emulation import Emulation
from local.images import Pusher
from local.oidc import LocalOidcProvider
from local.stack import LocalFunction, Stack
from podrelease.release import lambda_target as deploy
from tests.conftest import FAKE_CREDENTIALS, import_handler
from tests.integration import approval_world as approvals
from tests.integration.handler_world import (
    ACCOUNT,
    APPLICATION,
    DEPLOY_ENV,
    DEV_FUNCTION,
    PASS_DEFINITION,
    PROD_FUNCTION,
    PROD_REPOSITORY,
    REGION,
    REGISTRY,
    REPOSITORY,
    STACK,
    STATE_MACHINE_ARN,
    TABLE,
    Registry,
    Site,
    Starter,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import ModuleType

# --- the release's handlers on moto alone: starter, normalize, lock, record -------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": False}}):
        yield


@pytest.fixture
def ledger(aws: None, monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Any:
    monkeypatch.setenv("LEDGER_TABLE", TABLE)
    return ledger_table(TABLE)


@pytest.fixture
def starter(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Starter:  # the ledger: blocked digests
    sfn = boto3.client("stepfunctions", region_name=REGION)
    created = sfn.create_state_machine(
        name=f"{STACK}-release", definition=json.dumps(PASS_DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/release"
    )
    assert created["stateMachineArn"] == STATE_MACHINE_ARN  # the ARN the template gives STATE_MACHINE_ARN
    monkeypatch.setenv("STATE_MACHINE_ARN", STATE_MACHINE_ARN)
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    return Starter(import_handler("starter"), sfn)


# --- the release's handlers on moto with local.emulation: verify, promote, deploy, traffic_hook ----


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Registry]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    was_installed, was_current = Emulation._installed, Emulation.current
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": False}}):
        emulation = Emulation(ACCOUNT, REGION, minute_seconds=0.01, work_dir=tmp_path)
        Emulation.install(emulation)
        try:
            ecr = boto3.client("ecr", region_name=REGION)
            for repository in (REPOSITORY, PROD_REPOSITORY):
                ecr.create_repository(repositoryName=repository)
            yield Registry(emulation, ecr, Pusher(ecr, REGISTRY))
        finally:
            for thread in emulation.codedeploy.threads:
                thread.join(timeout=10)
            emulation.shutdown()
            # Every patch the emulation's modules installed is taken back, so later test modules in
            # this process see plain moto (the fleet's ELB and Auto Scaling patches included).
            if was_installed:
                Emulation.current = was_current
            else:
                Emulation.uninstall()


@pytest.fixture
def site(registry: Registry, monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Site:
    for var, value in DEPLOY_ENV.items():
        monkeypatch.setenv(var, value)
    bootstrap = registry.pusher.push_podinfo(REPOSITORY, "6.9.0", tag="bootstrap")
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="podinfo",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    codedeploy = boto3.client("codedeploy", region_name=REGION)
    codedeploy.create_application(applicationName=APPLICATION, computePlatform="Lambda")
    functions = {}
    for environment, function in (("dev", DEV_FUNCTION), ("prod", PROD_FUNCTION)):
        created = lam.create_function(
            FunctionName=function,
            Role=role,
            PackageType="Image",
            Code={"ImageUri": f"{REGISTRY}/{REPOSITORY}@{bootstrap.digest}"},
        )
        assert lam.publish_version(FunctionName=function)["Version"] == "1"
        lam.create_alias(FunctionName=function, Name=deploy.ALIAS, FunctionVersion="1")
        codedeploy.create_deployment_group(
            applicationName=APPLICATION,
            deploymentGroupName=DEPLOY_ENV[f"{environment.upper()}_DEPLOYMENT_GROUP"],
            deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes",
            serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/codedeploy",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        )
        functions[f"Podinfo{environment.title()}Function"] = LocalFunction(
            f"Podinfo{environment.title()}Function", function, created["FunctionArn"], None, None, {}
        )
    table = ledger_table(TABLE)
    # Only the podinfo functions run (in process, by the stand-in); see handler_world.py's docstring.
    registry.emulation.attach(Stack(STACK, REGION, ACCOUNT, {}, {}, functions=functions), endpoint="http://127.0.0.1:9")
    return Site(registry, lam, codedeploy, table, bootstrap)


# --- the approval request and page ----------------------------------------------------------------


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[LocalOidcProvider]:
    """The approvers' OIDC provider (local.oidc), one per test session."""
    provider = LocalOidcProvider.start(approvals.APPROVERS)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, load_handler: Callable[[str], ModuleType],
          ledger_table: Callable[..., Any], oidc_provider: LocalOidcProvider) -> Iterator[approvals.World]:
    for name, value in {
        "AWS_DEFAULT_REGION": approvals.REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "podinfo-release",
        "LEDGER_TABLE": approvals.TABLE,
        "APPROVAL_BASE_URL": approvals.BASE_URL,
        "APPROVERS": " Alice@Example.com, bob@example.com ",
        "APPROVAL_TTL_SECONDS": "3600",
        "SIGN_IN_PARAMETER": approvals.SIGN_IN_PARAMETER,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        ddb = boto3.client("dynamodb", region_name=approvals.REGION)
        ledger_table(approvals.TABLE)
        topic_arn = boto3.client("sns", region_name=approvals.REGION).create_topic(Name="approvals")["TopicArn"]
        secret_arn = boto3.client("secretsmanager", region_name=approvals.REGION).create_secret(
            Name="approval-key", SecretString=json.dumps({"kid": "k1", "key": approvals.SIGNING_KEY_B64})
        )["ARN"]
        sqs = boto3.client("sqs", region_name=approvals.REGION)
        queue_url = sqs.create_queue(QueueName="task-tokens")["QueueUrl"]
        role = boto3.client("iam", region_name=approvals.REGION).create_role(RoleName="release", AssumeRolePolicyDocument="{}")["Role"][
            "Arn"
        ]
        sfn = boto3.client("stepfunctions", region_name=approvals.REGION)
        definition = json.dumps(approvals.WAITING_STATE).replace("${queue}", queue_url)
        state_machine_arn = sfn.create_state_machine(name="release", definition=definition, roleArn=role)["stateMachineArn"]
        monkeypatch.setenv("APPROVAL_TOPIC_ARN", topic_arn)
        monkeypatch.setenv("APPROVAL_KEY_SECRET_ARN", secret_arn)
        boto3.client("ssm", region_name=approvals.REGION).put_parameter(
            Name=approvals.SIGN_IN_PARAMETER, Type="String", Value=json.dumps(approvals.sign_in_settings(oidc_provider.issuer)))
        yield approvals.World(
            ddb=ddb,
            sfn=sfn,
            sqs=sqs,
            topic_arn=topic_arn,
            secret_arn=secret_arn,
            queue_url=queue_url,
            state_machine_arn=state_machine_arn,
            request_app=load_handler("approval_request"),
            page_app=load_handler("approval_page"),
            issuer=oidc_provider.issuer,
        )


@pytest.fixture
def pending(world: approvals.World) -> tuple[approvals.World, str, str]:
    """GIVEN a release waiting for approval and its two emails sent: (world, execution, task token)."""
    execution, task_token = world.start_release()
    world.request(world.event(execution, task_token))
    return world, execution, task_token
