"""The checks `make deploy` makes before it changes anything (scripts/deploy.py runs them in order).

Offline: a policy's KMS signers are key ids, ARNs or aliases; the first image (BootstrapImageUri)
is in the stack's Region and one of its two repositories. Against the account: the caller's
credentials, the stack's state (busy or not updatable), the two ECR repositories (and that Lambda
may pull from them), the bootstrap image, the release policy's SSM parameter, the KMS signers named
in SigningKmsKeyArns, what a deleted stack of the same name retained, and the account's unreserved
Lambda concurrency. Each refusal is a named error saying what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from scripts.installation import Installation, InstallationError, defaults, reserved_concurrency

if TYPE_CHECKING:
    from scripts.deploy import Plan

#: Lambda keeps this many of the account's concurrent executions unreserved.
LAMBDA_UNRESERVED_MINIMUM = 100
_IMAGE_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/(.+)@(sha256:[0-9a-f]{64})$")
_LAMBDA_PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
#: The repository policy statement that lets Lambda pull (what `check_repositories` asks for).
LAMBDA_PULL_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "LambdaPull", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": list(_LAMBDA_PULL)}]}
_BUSY = ("_IN_PROGRESS",)
_UNUPDATABLE = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "CREATE_FAILED")


class DeployRefused(InstallationError):
    name = "DeployRefused"


class CredentialsMissing(InstallationError):
    name = "CredentialsMissing"


class RepositoryMissing(InstallationError):
    name = "RepositoryMissing"


class PolicyRefused(InstallationError):
    name = "PolicyRefused"


# --- offline ------------------------------------------------------------------------------------
def offline_kms_resolver(key_id: str) -> Any:
    """Offline stand-in for KMS (dry run): the entry must be a KMS key id, ARN or alias."""
    from podrelease.core.errors import PolicyError  # noqa: PLC0415
    from podrelease.verify.kms import KMS_KEY_RE  # noqa: PLC0415
    from podrelease.verify.trust_policy import TrustedKey  # noqa: PLC0415

    if not KMS_KEY_RE.match(key_id):
        msg = f"{key_id[:120]!r} is not a KMS key id, key ARN or alias"
        raise PolicyError(msg)
    return TrustedKey(key=cast("Any", None), key_id=f"kms:{key_id}")


def bootstrap_image_errors(inst: Installation, uri: str | None, values: dict[str, str]) -> list[str]:
    """The first image must be where the functions and the fleet can pull it: the stack's Region and
    its workload (or prod) repository (the fleet's instance roles may pull from those two only)."""
    match = _IMAGE_URI.match(uri or "")
    if match is None:  # not given, or the template's AllowedPattern refuses it already
        return []
    _, region, repository, _ = match.groups()
    errors: list[str] = []
    if region != inst.region:
        errors.append(f"BootstrapImageUri is in Region {region}; the stack deploys to {inst.region}, and Lambda runs "
                      f"images from its own Region only: push the first image to {inst.region}")
    if repository not in (values.get("WorkloadRepository"), values.get("ProdRepository")):
        errors.append(f"BootstrapImageUri is in repository {repository}; the functions and the fleet pull from "
                      f"WorkloadRepository ({values.get('WorkloadRepository')}) or ProdRepository "
                      f"({values.get('ProdRepository')}) only: push the first image to {values.get('WorkloadRepository')}")
    return errors


# --- AWS ----------------------------------------------------------------------------------------
def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def caller_account(session: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        identity = session.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        msg = (f"no usable AWS credentials ({type(exc).__name__}: {exc}). Sign in first (for example "
               "`aws sso login --profile NAME` and `export AWS_PROFILE=NAME`, or `aws configure`), then check with "
               "`aws sts get-caller-identity`")
        raise CredentialsMissing(msg) from exc
    return str(identity["Account"])


def stack_state(session: Any, inst: Installation) -> tuple[str, dict[str, str]] | None:
    """(status, previous parameter values) of the installation's stack, or None if there is none."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=inst.stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    stack = stacks[0]
    previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return str(stack["StackStatus"]), previous


def check_stack_status(inst: Installation, status: str) -> None:
    where = f"--stack-name {inst.stack_name} --region {inst.region}"
    if status.endswith(_BUSY):
        msg = (f"stack {inst.stack_name} is {status}: wait until it settles "
               f"(aws cloudformation wait stack-update-complete {where}, or watch describe-stacks), then deploy again")
        raise DeployRefused(msg)
    if status in _UNUPDATABLE:
        msg = (f"stack {inst.stack_name} is {status}: CloudFormation cannot update it (a first create that failed "
               f"rolls back to this state; its events say why: aws cloudformation describe-stack-events {where}). "
               f"Delete it with `make teardown ENV={inst.env}` (PURGE=1 also removes what it retained), then deploy again")
        raise DeployRefused(msg)


def _allows_lambda_pull(policy_text: str) -> bool:
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if "lambda.amazonaws.com" not in services:
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if all(any(a in (needed, "ecr:*", "*") for a in actions) for needed in _LAMBDA_PULL):
            return True
    return False


def check_repositories(session: Any, inst: Installation, names: Sequence[str]) -> None:
    """Both repositories exist in the stack's Region and let Lambda pull from them."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    ecr = session.client("ecr", region_name=inst.region)
    for name in names:
        try:
            ecr.describe_repositories(repositoryNames=[name])
        except ClientError as exc:
            if _code(exc) != "RepositoryNotFoundException":
                raise
            msg = (f"ECR repository {name} does not exist in {inst.region}; create it (README, Deploying to AWS): "
                   f"aws ecr create-repository --repository-name {name} --image-tag-mutability IMMUTABLE "
                   f"--image-scanning-configuration scanOnPush=true --region {inst.region}")
            raise RepositoryMissing(msg) from exc
        try:
            text = ecr.get_repository_policy(repositoryName=name)["policyText"]
        except ClientError as exc:
            if _code(exc) != "RepositoryPolicyNotFoundException":
                raise
            text = "{}"
        if not _allows_lambda_pull(text):
            msg = (f"ECR repository {name} does not let Lambda pull its images (the functions run them): "
                   f"aws ecr set-repository-policy --repository-name {name} --region {inst.region} --policy-text "
                   f"'{json.dumps(LAMBDA_PULL_POLICY, separators=(',', ':'))}'")
            raise RepositoryMissing(msg)


def check_bootstrap_image(session: Any, inst: Installation, account: str, uri: str) -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    match = _IMAGE_URI.match(uri)
    if match is None:  # the template's AllowedPattern has refused it already
        return
    registry, _, repository, digest = match.groups()
    if registry != account:
        msg = (f"BootstrapImageUri is in account {registry}; the stack deploys to account {account}: push the first "
               f"image to {account}.dkr.ecr.{inst.region}.amazonaws.com/{repository}")
        raise DeployRefused(msg)
    try:
        ecr = session.client("ecr", region_name=inst.region)
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    except ClientError as exc:
        if _code(exc) not in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise
        msg = (f"BootstrapImageUri names {repository}@{digest}, which is not in ECR ({_code(exc)}): push the first "
               "image and use the digest the push printed (README, Deploying to AWS, step 2)")
        raise DeployRefused(msg) from exc


def check_policy_parameter(session: Any, inst: Installation, name: str) -> None:
    """A ReleasePolicyParameter this deploy does not write must exist and hold a valid policy."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from podrelease.core.errors import PolicyError  # noqa: PLC0415
    from podrelease.verify.policy import installed_keyless_factory, parse_policy  # noqa: PLC0415

    ssm = session.client("ssm", region_name=inst.region)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if _code(exc) != "ParameterNotFound":
            raise
        msg = (f"ReleasePolicyParameter names {name}, which does not exist in {inst.region}: "
               f"make deploy ENV={inst.env} POLICY=policy.json (or KEYS=cosign.pub) writes one")
        raise PolicyRefused(msg) from exc
    try:
        parse_policy(value, keyless_factory=installed_keyless_factory, kms_resolver=offline_kms_resolver)
    except PolicyError as exc:
        msg = (f"the release policy in {name} would stop every release: {exc}; "
               f"fix it with make deploy ENV={inst.env} POLICY=policy.json")
        raise PolicyRefused(msg) from exc


def check_kms_signers(session: Any | None, plan: Plan, values: dict[str, str]) -> list[str]:
    """Every KMS key the policy names is listed in SigningKmsKeyArns (the verify function may read
    only those). Key ids and aliases are looked up in KMS; offline (session None) they are noted."""
    listed = [arn for arn in values.get("SigningKmsKeyArns", "").split(",") if arn]
    missing: list[str] = []
    notes: list[str] = []
    for key in plan.policy_kms_keys:
        arn = key if re.match(r"^arn:aws[a-z-]*:kms:[^:]+:\d{12}:key/", key) else None
        if arn is None and session is not None:
            arn = str(session.client("kms", region_name=plan.installation.region).describe_key(KeyId=key)["KeyMetadata"]["Arn"])
        if arn is None:
            notes.append(f"KMS signer {key}: not looked up (dry run); its key ARN must be in SigningKmsKeyArns")
        elif arn not in listed:
            missing.append(arn)
    if missing:
        msg = (f"the release policy names KMS keys that SigningKmsKeyArns does not list ({', '.join(missing)}): the verify "
               f"function could read none of them; pass SigningKmsKeyArns={','.join([*listed, *missing])}")
        raise PolicyRefused(msg)
    return notes


def retained_names(template: dict[str, Any], stack_name: str) -> list[tuple[str, str, str]]:
    """(type, name, property) of each resource the template retains on deletion and names after
    the stack: a deleted stack of the same name leaves these behind, and a new one cannot create them."""
    found: list[tuple[str, str, str]] = []
    for resource in template.get("Resources", {}).values():
        if resource.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
            continue
        for prop in ("TableName", "Name", "QueueName", "LogGroupName", "TopicName", "BucketName", "RepositoryName"):
            value = resource.get("Properties", {}).get(prop)
            sub = value.get("Fn::Sub") if isinstance(value, dict) else None
            if isinstance(sub, str) and "${" in sub.replace("${AWS::StackName}", ""):
                continue
            if isinstance(sub, str):
                found.append((str(resource["Type"]), sub.replace("${AWS::StackName}", stack_name), prop))
    return found


def _exists(session: Any, region: str, kind: str, name: str) -> bool:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        if kind == "AWS::DynamoDB::Table":
            session.client("dynamodb", region_name=region).describe_table(TableName=name)
        elif kind == "AWS::SecretsManager::Secret":
            session.client("secretsmanager", region_name=region).describe_secret(SecretId=name)
        elif kind == "AWS::SQS::Queue":
            session.client("sqs", region_name=region).get_queue_url(QueueName=name)
        elif kind == "AWS::Logs::LogGroup":
            groups = session.client("logs", region_name=region).describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            return any(g["logGroupName"] == name for g in groups)
        else:
            return False
    except ClientError as exc:
        if _code(exc) in ("ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return False
        raise
    return True


def check_leftovers(session: Any, inst: Installation, template: dict[str, Any]) -> None:
    """A new stack whose retained, stack-named resources already exist would fail to create them."""
    left = [f"{name} ({kind})" for kind, name, _ in retained_names(template, inst.stack_name)
            if _exists(session, inst.region, kind, name)]
    if left:
        msg = (f"stack {inst.stack_name} does not exist, but what an earlier stack of that name retained does: "
               f"{', '.join(left)}; CloudFormation would fail to create them again. Remove them with "
               f"`make teardown ENV={inst.env} PURGE=1` (secrets also need FORCE_DELETE_SECRETS=1), or pick another stack_name")
        raise DeployRefused(msg)


def concurrency_error(needed: int, already: int, unreserved: int, limit: int, region: str) -> str | None:
    """Why Lambda would refuse the reservations (it keeps 100 of the Region's quota unreserved)."""
    extra = needed - already
    if extra <= 0 or unreserved - extra >= LAMBDA_UNRESERVED_MINIMUM:
        return None
    return (f"this installation reserves {needed} concurrent Lambda executions ({extra} more than now); the account "
            f"has {unreserved} unreserved of {limit} in {region}, and Lambda keeps {LAMBDA_UNRESERVED_MINIMUM} unreserved. "
            "Ask for more (Service Quotas, AWS Lambda, Concurrent executions) or lower ReservedConcurrencyBudget "
            "(docs/ENVIRONMENT.md, Two installations in one account)")


def check_concurrency(session: Any, inst: Installation, template: dict[str, Any], values: dict[str, str],
                      previous: dict[str, str] | None) -> str:
    needed = reserved_concurrency(template, values, inst)
    already = reserved_concurrency(template, {**defaults(template), **previous}, inst) if previous is not None else 0
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        settings = session.client("lambda", region_name=inst.region).get_account_settings()["AccountLimit"]
    except ClientError as exc:
        if needed == 0:
            return f"reserves no concurrency (the account's settings are not readable: {_code(exc) or exc})"
        msg = (f"this installation reserves {needed} concurrent Lambda executions, and the account's concurrency cannot "
               f"be read to check it ({_code(exc) or exc}); allow lambda:GetAccountSettings, or reserve nothing "
               "(ReservedConcurrencyBudget=0)")
        raise DeployRefused(msg) from exc
    unreserved = int(settings["UnreservedConcurrentExecutions"])
    error = concurrency_error(needed, already, unreserved, int(settings["ConcurrentExecutions"]), inst.region)
    if error is not None:
        raise DeployRefused(error)
    return f"reserves {needed} concurrent executions; the account has {unreserved} unreserved in {inst.region}"
