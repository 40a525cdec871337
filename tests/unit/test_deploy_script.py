"""scripts/deploy.py decides offline what a deploy passes, and refuses what would fail in AWS.

GIVEN samconfig.toml, template.yaml and what a person types after `make deploy` WHEN the plan is
made (no AWS call) THEN the parameters and the `sam deploy` argv are exact, every value reaches SAM
CLI's own parser intact (or is refused with a message that says why), and what CloudFormation or
Lambda would refuse half way (constraints, Rules, capabilities, over-long derived names, a first
image out of reach, a policy the gate would not parse or SSM cannot hold) is refused first, named.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from podrelease.verify.policy import build_identity, default_document, keys_document
from scripts import deploy, deploy_checks
from scripts.installation import (
    BadParameter,
    Installation,
    UnknownEnvironment,
    capability_errors,
    load_installation,
    load_samconfig,
    load_template,
    name_length_errors,
    parse_overrides,
    reserved_concurrency,
    sam_argument,
)

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo-staging@{DIGEST}"
FIRST = [f"BootstrapImageUri={IMAGE}", "ApproverEmails=alice@example.com,bob@example.com", "NotifyEmail=releases@example.com"]
SAM_PARSE = """
import json, sys
from samcli.cli.types import CfnParameterOverridesType
try:
    print(json.dumps(CfnParameterOverridesType().convert(tuple(json.load(sys.stdin)), None, None)))
except Exception as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def sam_parse(arguments: list[str]) -> dict[str, str]:
    result = subprocess.run([str(SAM_PYTHON), "-c", SAM_PARSE], input=json.dumps(arguments),  # noqa: S603 - fixed code
                            capture_output=True, text=True, check=True)
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def pem_keys(count: int, curve: ec.EllipticCurve | None = None) -> str:
    return "".join(ec.generate_private_key(curve or ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode() for _ in range(count))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --- values SAM CLI passes on ---------------------------------------------------------------------
ACCEPTED = ["alice@example.com,bob@example.com", IMAGE, "/podinfo-release-dev/release-policy", "", "14400",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "subnet-0a,subnet-0b",
            "CodeDeployDefault.LambdaCanary10Percent5Minutes", "0.0.0.0/0", "a=b"]
#: Values SAM CLI's parser would cut or alter: refused.
ALTERED = ["releases team@example.com", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", 'say"hi"',
           "'quoted'", 'back\\"slash']
#: Values it would pass intact, refused all the same: no parameter takes a line break or a tab (a
#: multi-line value is a policy or a key, which goes through SSM), and a lone backslash is as likely
#: the start of an escape.
STRICTER = ["line\nbreak", "a\tb", "back\\slash"]


def test_every_accepted_value_reaches_sams_parser_intact() -> None:
    arguments = [sam_argument(f"P{i}", value) for i, value in enumerate(ACCEPTED)]
    assert arguments[3] == 'P3=""'
    assert sam_parse(arguments) == {f"P{i}": value for i, value in enumerate(ACCEPTED)}


@pytest.mark.parametrize("value", ALTERED)
def test_every_value_sams_parser_would_alter_is_refused(value: str) -> None:
    with pytest.raises(BadParameter):
        sam_argument("NotifyEmail", value)
    assert sam_parse([f"NotifyEmail={value}"]) != {"NotifyEmail": value}


@pytest.mark.parametrize("value", STRICTER)
def test_whitespace_and_backslashes_are_refused_even_where_sam_would_pass_them(value: str) -> None:
    with pytest.raises(BadParameter):
        sam_argument("NotifyEmail", value)
    assert sam_parse([f"NotifyEmail={value}"]) == {"NotifyEmail": value}


def test_a_multi_line_value_is_refused_as_one() -> None:
    with pytest.raises(BadParameter) as refused:
        sam_argument("CosignPublicKeys", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    assert str(refused.value) == (
        "BadParameter: CosignPublicKeys: the value contains a line break; no template parameter takes a multi-line value. "
        "A list is comma-separated without spaces, and the release policy or PEM keys go through SSM (make deploy "
        "POLICY=policy.json or KEYS=cosign.pub)")


def test_a_value_with_a_space_is_refused_with_what_sam_would_make_of_it() -> None:
    with pytest.raises(BadParameter) as refused:
        sam_argument("NotifyEmail", "releases team@example.com")
    assert str(refused.value) == (
        "BadParameter: NotifyEmail: the value contains a space; sam deploy's --parameter-overrides parser cuts a value at "
        "the first space, so NotifyEmail would arrive as 'releases'. A list is comma-separated without spaces, and the "
        "release policy or PEM keys go through SSM (make deploy POLICY=policy.json or KEYS=cosign.pub)")


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_samconfig_overrides_are_read_as_sam_reads_them(env: str) -> None:
    raw = load_samconfig()[env]["deploy"]["parameters"]["parameter_overrides"]
    assert load_installation(env).overrides == parse_overrides(raw, env) == sam_parse([raw])


# --- the plan -----------------------------------------------------------------------------------
def test_a_first_deploy_with_keys_passes_samconfigs_overrides_the_given_values_and_the_policy_parameter(
        template: dict[str, Any], tmp_path: Path) -> None:
    keys = tmp_path / "cosign.pub"
    keys.write_text(pem_keys(1))
    plan = deploy.make_plan("dev", FIRST, keys=str(keys), template=template)
    deploy.offline_checks(template, plan, None)
    assert plan.policy_document == keys_document(keys.read_text())
    assert plan.policy_parameter == "/podinfo-release-dev/release-policy"
    assert plan.sam_argv() == [
        ".venv-sam/bin/sam", "deploy", "--config-env", "dev", "--template-file", ".aws-sam/build/template.yaml",
        "--stack-name", "podinfo-release-dev", "--region", "us-east-1", "--capabilities", "CAPABILITY_NAMED_IAM",
        "--parameter-overrides", "WorkloadRepository=podinfo-staging", "ProdRepository=podinfo-staging-prod",
        "DevDeploymentConfig=CodeDeployDefault.LambdaCanary10Percent5Minutes",
        "ProdDeploymentConfig=CodeDeployDefault.LambdaCanary10Percent10Minutes", "ApprovalTimeoutSeconds=14400",
        "LogLevel=DEBUG", f"BootstrapImageUri={IMAGE}", "ApproverEmails=alice@example.com,bob@example.com",
        "NotifyEmail=releases@example.com", "ReleasePolicyParameter=/podinfo-release-dev/release-policy"]
    assert plan.sources["ReleasePolicyParameter"] == f"KEYS={keys}"
    assert plan.build_argv() == ["make", "build"]


def test_a_policy_file_is_checked_by_the_gates_parser_keyless_and_kms_signers_included(
        template: dict[str, Any], tmp_path: Path) -> None:
    document = json.loads(default_document(build_identity("acme", "podinfo-release", "main")))
    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    document["environments"]["dev"]["signers"]["kms"] = [kms]
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(document, indent=2))
    plan = deploy.make_plan("prod", [*FIRST[1:], f"SigningKmsKeyArns={kms}",
                                     f"BootstrapImageUri={IMAGE.replace('staging', 'production')}"], policy=str(policy),
                            template=template)
    assert plan.policy_document == policy.read_text()
    assert plan.policy_kms_keys == [kms]
    values = deploy.offline_checks(template, plan, None)
    assert deploy_checks.check_kms_signers(None, plan, values) == []
    unlisted = replace(plan, parameters={k: v for k, v in plan.parameters.items() if k != "SigningKmsKeyArns"})
    with pytest.raises(deploy_checks.PolicyRefused) as refused:
        deploy_checks.check_kms_signers(None, unlisted, deploy.effective_values(template, unlisted, None))
    assert str(refused.value) == (
        f"PolicyRefused: the release policy names KMS keys that SigningKmsKeyArns does not list ({kms}): the verify "
        f"function could read none of them; pass SigningKmsKeyArns={kms}")


@pytest.mark.parametrize(("arguments", "options", "expected"), [
    (FIRST, {"keys": "cosign.pub", "policy": "policy.json"},
     "PolicyRefused: POLICY and KEYS are both given: KEYS=cosign.pub writes a policy in which both environments trust "
     "those keys; for anything else write the whole document and pass POLICY alone"),
    ([*FIRST, "CosignPublicKeys=x"], {},
     "BadParameter: command line: CosignPublicKeys is not a parameter of template.yaml (the keys now live in the release "
     "policy: make deploy KEYS=cosign.pub (or POLICY=policy.json))"),
    ([*FIRST, "NotifyEmail=other@example.com"], {}, "BadParameter: NotifyEmail is given twice on the command line"),
    ([*FIRST, "team@example.com"], {},
     "BadParameter: 'team@example.com' is not Parameter=value (for example NotifyEmail=releases@example.com)"),
    ([*FIRST[:1], "ApproverEmails=Alice@example.com"], {},
     "BadParameter: ApproverEmails='Alice@example.com' does not match its AllowedPattern "
     "^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}(,[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,})*$ (approvers must be email "
     "addresses written in lower case, separated by commas (no spaces))"),
    ([*FIRST, "ApprovalTimeoutSeconds=60"], {},
     "BadParameter: ApprovalTimeoutSeconds=60 is below its MinValue 300 (How long a release waits for an approval "
     "before it fails with ApprovalTimedOut.)"),
    ([*FIRST, "ReleasePolicyParameter=/elsewhere"], {"keys": "cosign.pub"},
     "PolicyRefused: ReleasePolicyParameter=/elsewhere and KEYS=cosign.pub disagree: KEYS=cosign.pub writes the policy to "
     "/podinfo-release-dev/release-policy and points the stack there; drop ReleasePolicyParameter"),
])
def test_what_cannot_work_is_refused_by_name(template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             arguments: list[str], options: dict[str, str], expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cosign.pub").write_text(pem_keys(1))
    (tmp_path / "policy.json").write_text(keys_document(pem_keys(1)))
    with pytest.raises(deploy.InstallationError) as refused:
        deploy.make_plan("dev", arguments, template=template, **options)
    assert str(refused.value) == expected


def test_an_unknown_environment_names_the_known_ones(template: dict[str, Any]) -> None:
    with pytest.raises(UnknownEnvironment) as refused:
        deploy.make_plan("", FIRST, template=template)
    assert str(refused.value) == ("UnknownEnvironment: ENV=(none) is not an environment of samconfig.toml: use "
                                  "ENV=default or ENV=dev or ENV=prod")


def test_a_policy_the_gate_would_refuse_is_refused_before_anything_is_written(template: dict[str, Any], tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    document = json.loads(keys_document(pem_keys(1)))
    document["environments"]["prod"]["require_sbom"] = "yes"
    policy.write_text(json.dumps(document))
    with pytest.raises(deploy_checks.PolicyRefused) as refused:
        deploy.make_plan("dev", FIRST, policy=str(policy), template=template)
    assert str(refused.value) == (f"PolicyRefused: POLICY={policy} is not a release policy the gate would accept: release "
                                  "policy environments.prod.require_sbom: must be true or false, not a string")


def test_a_policy_larger_than_an_ssm_parameter_is_refused(template: dict[str, Any], tmp_path: Path) -> None:
    keys = tmp_path / "cosign.pub"
    keys.write_text(pem_keys(16, ec.SECP521R1()))
    size = len(keys_document(keys.read_text()).encode())
    assert size > deploy.SSM_MAX_VALUE_BYTES
    with pytest.raises(deploy_checks.PolicyRefused) as refused:
        deploy.make_plan("dev", FIRST, keys=str(keys), template=template)
    assert str(refused.value) == (
        f"PolicyRefused: KEYS={keys}: the policy document is {size} bytes; an SSM parameter holds at most 8192 (advanced "
        "tier). Name KMS signing keys (signers.kms) instead of pasting PEM keys, or trust fewer keys")


# --- what a new stack needs -----------------------------------------------------------------------
def test_a_new_stack_without_its_required_parameters_is_refused(template: dict[str, Any]) -> None:
    plan = deploy.make_plan("dev", ["GitHubOrg=acme", "GitHubRepo=podinfo-release"], template=template)
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy.offline_checks(template, plan, None)
    assert str(refused.value) == (
        "DeployRefused: a new stack needs BootstrapImageUri, ApproverEmails, NotifyEmail (no default in template.yaml): "
        'make deploy ENV=dev BootstrapImageUri="$IMAGE" ApproverEmails=alice@example.com NotifyEmail=releases@example.com '
        "(README, Deploying to AWS)")
    # An update keeps the previous values: the same plan passes.
    previous = {"BootstrapImageUri": IMAGE, "ApproverEmails": "alice@example.com", "NotifyEmail": "releases@example.com"}
    assert deploy.offline_checks(template, plan, {**deploy.defaults(template), **previous})["NotifyEmail"] == "releases@example.com"


def test_a_stack_without_a_release_policy_is_refused_with_the_templates_rule(template: dict[str, Any]) -> None:
    plan = deploy.make_plan("dev", FIRST, template=template)
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy.offline_checks(template, plan, None)
    assert str(refused.value) == (
        "DeployRefused: Template rule ReleasePolicySource failed: Set ReleasePolicyParameter (an SSM parameter holding the "
        "release policy) or GitHubOrg and GitHubRepo (the default policy trusts their build workflow's keyless signature).")


@pytest.mark.parametrize(("uri", "expected"), [
    (IMAGE.replace("us-east-1", "eu-west-1"),
     "BootstrapImageUri is in Region eu-west-1; the stack deploys to us-east-1, and Lambda runs images from its own "
     "Region only: push the first image to us-east-1"),
    (IMAGE.replace("podinfo-staging", "podinfo"),
     "BootstrapImageUri is in repository podinfo; the functions and the fleet pull from WorkloadRepository "
     "(podinfo-staging) or ProdRepository (podinfo-staging-prod) only: push the first image to podinfo-staging"),
])
def test_a_first_image_the_functions_and_the_fleet_cannot_pull_is_refused(template: dict[str, Any], uri: str,
                                                                        expected: str) -> None:
    plan = deploy.make_plan("dev", [f"BootstrapImageUri={uri}", *FIRST[1:], "GitHubOrg=acme", "GitHubRepo=r"],
                            template=template)
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy.offline_checks(template, plan, None)
    assert str(refused.value) == f"DeployRefused: {expected}"


FLEET = {"FleetVpcId": "vpc-0a1b", "FleetLoadBalancerSubnetIds": "subnet-a,subnet-b", "FleetInstanceSubnetIds": "subnet-c,subnet-d",
         "FleetInstanceRouteTableIds": "rtb-1"}


def test_a_stack_name_too_long_for_the_fleets_target_groups_is_refused(template: dict[str, Any]) -> None:
    long_name = replace(load_installation("prod"), stack_name="podinfo-release-production")
    values = {**deploy.defaults(template), **FLEET}
    assert name_length_errors(template, values, long_name) == [
        "FleetDevBlue's Name podinfo-release-production-dev-blue has 35 characters, over the 32 "
        "AWS::ElasticLoadBalancingV2::TargetGroup allows",
        "FleetDevGreen's Name podinfo-release-production-dev-green has 36 characters, over the 32 "
        "AWS::ElasticLoadBalancingV2::TargetGroup allows",
        "FleetProdBlue's Name podinfo-release-production-prod-blue has 36 characters, over the 32 "
        "AWS::ElasticLoadBalancingV2::TargetGroup allows",
        "FleetProdGreen's Name podinfo-release-production-prod-green has 37 characters, over the 32 "
        "AWS::ElasticLoadBalancingV2::TargetGroup allows",
        "stack_name podinfo-release-production (26 characters) is too long for these names: shorten it in samconfig.toml "
        "[prod.global.parameters]"]
    assert name_length_errors(template, deploy.defaults(template), long_name) == []  # no fleet, no target groups
    for env in ("default", "dev", "prod"):
        assert name_length_errors(template, values, load_installation(env)) == [], env


def test_capabilities_must_acknowledge_the_named_iam_resources(template: dict[str, Any]) -> None:
    for env in ("default", "dev", "prod"):
        assert capability_errors(template, load_installation(env)) == [], env
    old = replace(load_installation("dev"), capabilities=("CAPABILITY_IAM",))
    assert capability_errors(template, old) == [
        "template.yaml names IAM resources (CloudFormationExecutionRole (RoleName), FleetDevRole (RoleName), FleetProdRole "
        "(RoleName), ...), which CloudFormation creates only with CAPABILITY_NAMED_IAM (else InsufficientCapabilities); "
        'samconfig.toml [dev.deploy.parameters] capabilities = "CAPABILITY_IAM": set it to "CAPABILITY_NAMED_IAM"']


def test_what_the_stack_reserves_and_when_lambda_refuses_it(template: dict[str, Any]) -> None:
    inst = load_installation("dev")
    assert reserved_concurrency(template, deploy.defaults(template), inst) == 0
    assert reserved_concurrency(template, {**deploy.defaults(template), "ReservedConcurrencyBudget": "50"}, inst) == 50
    assert deploy_checks.concurrency_error(50, 0, 150, 1000, "us-east-1") is None
    assert deploy_checks.concurrency_error(50, 40, 110, 1000, "us-east-1") is None  # 10 more, 100 stay unreserved
    assert deploy_checks.concurrency_error(50, 0, 120, 1000, "us-east-1") == (
        "this installation reserves 50 concurrent Lambda executions (50 more than now); the account has 120 unreserved of "
        "1000 in us-east-1, and Lambda keeps 100 unreserved. Ask for more (Service Quotas, AWS Lambda, Concurrent "
        "executions) or lower ReservedConcurrencyBudget (docs/ENVIRONMENT.md, Two installations in one account)")
    assert deploy_checks.concurrency_error(0, 0, 10, 10, "us-east-1") is None  # a new account's quota: nothing reserved


def test_what_a_deleted_stack_of_the_same_name_leaves_behind(template: dict[str, Any]) -> None:
    assert deploy_checks.retained_names(template, "podinfo-release-dev") == [
        ("AWS::DynamoDB::Table", "podinfo-release-dev-ledger", "TableName"),
        ("AWS::SecretsManager::Secret", "podinfo-release-dev/approval-signing-key", "Name"),
        ("AWS::SecretsManager::Secret", "podinfo-release-dev/podinfo-jwt-dev", "Name"),
        ("AWS::SecretsManager::Secret", "podinfo-release-dev/podinfo-jwt-prod", "Name"),
        ("AWS::Logs::LogGroup", "/aws/vendedlogs/states/podinfo-release-dev-release", "LogGroupName"),
        ("AWS::SQS::Queue", "podinfo-release-dev-starter-dead-letters", "QueueName"),
        ("AWS::SQS::Queue", "podinfo-release-dev-cleanup-dead-letters", "QueueName"),
    ]


@pytest.mark.parametrize(("status", "expected"), [
    ("UPDATE_IN_PROGRESS", "DeployRefused: stack podinfo-release-dev is UPDATE_IN_PROGRESS: wait until it settles "
     "(aws cloudformation wait stack-update-complete --stack-name podinfo-release-dev --region us-east-1, or watch "
     "describe-stacks), then deploy again"),
    ("ROLLBACK_COMPLETE", "DeployRefused: stack podinfo-release-dev is ROLLBACK_COMPLETE: CloudFormation cannot update it "
     "(a first create that failed rolls back to this state; its events say why: aws cloudformation describe-stack-events "
     "--stack-name podinfo-release-dev --region us-east-1). Delete it with `make teardown ENV=dev` (PURGE=1 also removes "
     "what it retained), then deploy again"),
    ("UPDATE_ROLLBACK_COMPLETE", None),
    ("CREATE_COMPLETE", None),
])
def test_a_stack_that_cannot_be_updated_now_is_refused(status: str, expected: str | None) -> None:
    inst: Installation = load_installation("dev")
    if expected is None:
        deploy_checks.check_stack_status(inst, status)
        return
    with pytest.raises(deploy_checks.DeployRefused) as refused:
        deploy_checks.check_stack_status(inst, status)
    assert str(refused.value) == expected


def test_the_dry_run_prints_the_ssm_write_and_the_exact_argv(tmp_path: Path) -> None:
    keys = tmp_path / "cosign.pub"
    keys.write_text(pem_keys(1))
    plan = deploy.make_plan("dev", FIRST, keys=str(keys))
    buffer = io.StringIO()
    assert deploy.main(["--env", "dev", "--dry-run", "--keys", str(keys), *FIRST], out=buffer) == 0
    out = buffer.getvalue().splitlines()
    assert out[0] == ("dry run: checked offline, as for a new stack; AWS (credentials, stack, repositories, image, "
                      "concurrency) is not asked, nothing is written, built or deployed")
    write = out.index(f"would write SSM parameter /podinfo-release-dev/release-policy (String, Intelligent-Tiering, overwrite), "
                      f"{len(str(plan.policy_document).encode())} bytes from KEYS={keys}:")
    assert out[write + 1] == f"    {plan.policy_document}"
    assert out[-2:] == ["would run: make build", "would run: " + " ".join(plan.sam_argv())]
