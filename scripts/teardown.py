#!/usr/bin/env python3
"""`make teardown ENV=dev|prod [PURGE=1 [FORCE_DELETE_SECRETS=1]] [CONFIRM=<stack>] [DRY_RUN=1]`

Deletes one installation's stack and says what is left:

1. reads the stack (its resources and the template CloudFormation processed) and refuses while a
   release is running (stopping one mid-deploy is a decision for a person, not for a teardown);
2. empties what CloudFormation cannot delete while it holds data and the stack does not retain:
   S3 buckets (every object version) and ECR repositories of the stack (the workload repositories
   are not the stack's, and are never touched);
3. warns when the stack owns the account's GitHub OIDC provider and another installation in the
   Region relies on it (deployed with CreateGitHubOidcProvider=false);
4. after the stack name is confirmed (typed, or CONFIRM=<stack>), deletes the stack and waits;
5. lists what is left, with the command that deletes each: every resource the template retains
   (DeletionPolicy Retain: ledger table, secrets, KMS keys, log groups, dead-letter queue), the
   functions' own log groups (Lambda creates them, not the stack) and the release policy's SSM
   parameter;
6. with PURGE=1 deletes those too: tables, queues, log groups, the policy parameter; KMS keys are
   scheduled for deletion (7 days, cancellable); secrets only with FORCE_DELETE_SECRETS=1 as well
   (`--force-delete-without-recovery`: immediate and irreversible), and the keys that encrypt a kept
   secret are kept with it.

A stack deleted earlier (in the last 90 days, which is how long CloudFormation describes deleted
stacks) can be purged the same way: `make teardown ENV=dev PURGE=1` finds what it retained.
`--dry-run` reads everything and prints what would be done; nothing is changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from scripts.deploy_checks import caller_account
from scripts.installation import Installation, InstallationError, load_installation

RETAINING = ("Retain", "RetainExceptOnCreate", "Snapshot")
#: Purge order: what holds data first, keys after the secrets they encrypt, anything else last.
PURGE_ORDER = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::SecretsManager::Secret",
               "AWS::KMS::Key", "AWS::SSM::Parameter")
KEY_DELETION_DAYS = 7
LAMBDA_LOG_GROUP = "created by Lambda, not by the stack"


class TeardownRefused(InstallationError):
    name = "TeardownRefused"


class DeleteFailed(InstallationError):
    name = "DeleteFailed"


@dataclass(frozen=True)
class Leftover:
    """Something the stack deletion leaves in the account."""

    kind: str
    physical_id: str
    logical_id: str
    why: str

    def command(self, region: str) -> str:
        r = f"--region {region}"
        commands = {
            "AWS::DynamoDB::Table": f"aws dynamodb delete-table --table-name {self.physical_id} {r}",
            "AWS::SQS::Queue": f"aws sqs delete-queue --queue-url {self.physical_id} {r}",
            "AWS::Logs::LogGroup": f"aws logs delete-log-group --log-group-name {self.physical_id} {r}",
            "AWS::SecretsManager::Secret": (f"aws secretsmanager delete-secret --secret-id {self.physical_id} "
                                            f"--force-delete-without-recovery {r}   (irreversible)"),
            "AWS::KMS::Key": (f"aws kms schedule-key-deletion --key-id {self.physical_id} "
                              f"--pending-window-in-days {KEY_DELETION_DAYS} {r}"),
            "AWS::SSM::Parameter": f"aws ssm delete-parameter --name {self.physical_id} {r}",
            "AWS::S3::Bucket": f"aws s3 rb s3://{self.physical_id} --force {r}",
            "AWS::ECR::Repository": f"aws ecr delete-repository --repository-name {self.physical_id} --force {r}",
            "AWS::IAM::ManagedPolicy": f"aws iam delete-policy --policy-arn {self.physical_id}",
        }
        return commands.get(self.kind, f"no command known for {self.kind}: delete {self.physical_id} in the console")

    def label(self) -> str:
        named = f"{self.logical_id}: " if self.logical_id else ""
        return f"{named}{self.kind} {self.physical_id} ({self.why})"


# --- reading ------------------------------------------------------------------------------------
def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def find_stack(cf: Any, name: str) -> tuple[str, str] | None:
    """(stack id, status) of the live stack of that name, else of the most recently deleted one."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" not in str(exc):
            raise
    else:
        return str(stack["StackId"]), str(stack["StackStatus"])
    deleted = [s for page in cf.get_paginator("list_stacks").paginate(StackStatusFilter=["DELETE_COMPLETE"])
               for s in page["StackSummaries"] if s["StackName"] == name]
    if not deleted:
        return None
    latest = max(deleted, key=lambda s: s.get("DeletionTime") or s["CreationTime"])
    return str(latest["StackId"]), "DELETE_COMPLETE"


def _template(cf: Any, stack_id: str) -> dict[str, Any]:
    body = cf.get_template(StackName=stack_id, TemplateStage="Processed")["TemplateBody"]
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            from samtranslator.yaml_helper import yaml_parse  # noqa: PLC0415

            body = yaml_parse(body)
    return dict(body)


def inventory(cf: Any, stack_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    summaries = [s for page in cf.get_paginator("list_stack_resources").paginate(StackName=stack_id)
                 for s in page["StackResourceSummaries"]]
    return summaries, _template(cf, stack_id)


def retained(summaries: list[dict[str, Any]], template: dict[str, Any]) -> list[Leftover]:
    """The stack's resources that its deletion keeps: DeletionPolicy Retain (or RetainExceptOnCreate,
    Snapshot) in the processed template, or DELETE_SKIPPED in CloudFormation's record."""
    resources = template.get("Resources", {})
    kept: list[Leftover] = []
    for summary in summaries:
        policy = resources.get(summary["LogicalResourceId"], {}).get("DeletionPolicy")
        if (policy in RETAINING or summary.get("ResourceStatus") == "DELETE_SKIPPED") and summary.get("PhysicalResourceId"):
            kept.append(Leftover(summary["ResourceType"], summary["PhysicalResourceId"], summary["LogicalResourceId"],
                                 f"DeletionPolicy {policy or 'Retain'}"))
    return kept


def lambda_log_groups(summaries: list[dict[str, Any]]) -> list[Leftover]:
    return [Leftover("AWS::Logs::LogGroup", f"/aws/lambda/{s['PhysicalResourceId']}", "", LAMBDA_LOG_GROUP)
            for s in summaries if s["ResourceType"] == "AWS::Lambda::Function" and s.get("PhysicalResourceId")]


def state(session: Any, region: str, item: Leftover) -> str | None:
    """'exists', 'scheduled for deletion', or None (gone, or a kind this script cannot look up)."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    client = session.client
    gone = ("ResourceNotFoundException", "NotFoundException", "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist", "ParameterNotFound", "NoSuchBucket")
    try:
        if item.kind == "AWS::DynamoDB::Table":
            client("dynamodb", region_name=region).describe_table(TableName=item.physical_id)
        elif item.kind == "AWS::SQS::Queue":
            client("sqs", region_name=region).get_queue_attributes(QueueUrl=item.physical_id, AttributeNames=["QueueArn"])
        elif item.kind == "AWS::Logs::LogGroup":
            groups = client("logs", region_name=region).describe_log_groups(logGroupNamePrefix=item.physical_id)["logGroups"]
            return "exists" if any(g["logGroupName"] == item.physical_id for g in groups) else None
        elif item.kind == "AWS::SecretsManager::Secret":
            secret = client("secretsmanager", region_name=region).describe_secret(SecretId=item.physical_id)
            return "scheduled for deletion" if secret.get("DeletedDate") else "exists"
        elif item.kind == "AWS::KMS::Key":
            key = client("kms", region_name=region).describe_key(KeyId=item.physical_id)["KeyMetadata"]
            return "scheduled for deletion" if key.get("KeyState") == "PendingDeletion" else "exists"
        elif item.kind == "AWS::SSM::Parameter":
            client("ssm", region_name=region).get_parameter(Name=item.physical_id)
        else:
            return "exists"
    except ClientError as exc:
        if _code(exc) in gone or "does not exist" in str(exc):
            return None
        raise
    return "exists"


def running_releases(session: Any, region: str, summaries: list[dict[str, Any]]) -> list[str]:
    sfn = session.client("stepfunctions", region_name=region)
    running: list[str] = []
    for summary in summaries:
        if summary["ResourceType"] == "AWS::StepFunctions::StateMachine" and summary.get("PhysicalResourceId"):
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=summary["PhysicalResourceId"],
                                                                      statusFilter="RUNNING"):
                running.extend(e["executionArn"] for e in page["executions"])
    return running


def oidc_dependents(cf: Any, stack_name: str, summaries: list[dict[str, Any]]) -> list[str]:
    """Other stacks in the Region that use the GitHub OIDC provider this stack owns."""
    if not any(s["ResourceType"] == "AWS::IAM::OIDCProvider" for s in summaries):
        return []
    found: list[str] = []
    for page in cf.get_paginator("describe_stacks").paginate():
        for stack in page["Stacks"]:
            values = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
            if stack["StackName"] != stack_name and values.get("CreateGitHubOidcProvider") == "false" and values.get("GitHubOrg"):
                found.append(str(stack["StackName"]))
    return found


# --- changing -----------------------------------------------------------------------------------
def empty_blockers(session: Any, region: str, summaries: list[dict[str, Any]], kept: set[str], dry_run: bool) -> list[str]:
    """Empty the stack's S3 buckets and ECR repositories that it does not retain (CloudFormation
    fails to delete them with content)."""
    done: list[str] = []
    verb = "would empty" if dry_run else "emptied"
    for summary in summaries:
        physical = summary.get("PhysicalResourceId")
        if not physical or summary["LogicalResourceId"] in kept:
            continue
        if summary["ResourceType"] == "AWS::S3::Bucket":
            s3 = session.client("s3", region_name=region)
            versions = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                        for page in s3.get_paginator("list_object_versions").paginate(Bucket=physical)
                        for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
            if versions and not dry_run:
                for start in range(0, len(versions), 1000):
                    s3.delete_objects(Bucket=physical, Delete={"Objects": versions[start:start + 1000], "Quiet": True})
            if versions:
                done.append(f"{verb} S3 bucket {physical} ({len(versions)} object versions)")
        elif summary["ResourceType"] == "AWS::ECR::Repository":
            ecr = session.client("ecr", region_name=region)
            images = [i for page in ecr.get_paginator("list_images").paginate(repositoryName=physical) for i in page["imageIds"]]
            if images and not dry_run:
                for start in range(0, len(images), 100):
                    ecr.batch_delete_image(repositoryName=physical, imageIds=images[start:start + 100])
            if images:
                done.append(f"{verb} ECR repository {physical} ({len(images)} images)")
    return done


def delete_stack(cf: Any, inst: Installation, stack_id: str) -> None:
    from botocore.exceptions import WaiterError  # noqa: PLC0415

    cf.delete_stack(StackName=stack_id)
    try:
        cf.get_waiter("stack_delete_complete").wait(StackName=stack_id, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    except WaiterError as exc:
        events = cf.describe_stack_events(StackName=stack_id)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events
                   if e.get("ResourceStatus") == "DELETE_FAILED"][:5]
        msg = (f"stack {inst.stack_name} was not deleted ({exc}); {'; '.join(reasons) or 'see its events'}. "
               f"Fix what blocks it and run make teardown ENV={inst.env} again "
               f"(aws cloudformation describe-stack-events --stack-name {stack_id} --region {inst.region})")
        raise DeleteFailed(msg) from exc


def purge(session: Any, region: str, items: list[Leftover], force_secrets: bool, out: TextIO) -> list[Leftover]:
    """Delete what is left; returns what is still left (kept secrets and their keys, unknown kinds)."""
    kept: list[Leftover] = []
    secrets = session.client("secretsmanager", region_name=region)
    kept_secret_keys: set[str] = set()
    ordered = sorted(items, key=lambda i: PURGE_ORDER.index(i.kind) if i.kind in PURGE_ORDER else len(PURGE_ORDER))
    for item in ordered:
        if item.kind == "AWS::DynamoDB::Table":
            session.client("dynamodb", region_name=region).delete_table(TableName=item.physical_id)
        elif item.kind == "AWS::SQS::Queue":
            session.client("sqs", region_name=region).delete_queue(QueueUrl=item.physical_id)
        elif item.kind == "AWS::Logs::LogGroup":
            session.client("logs", region_name=region).delete_log_group(logGroupName=item.physical_id)
        elif item.kind == "AWS::SSM::Parameter":
            session.client("ssm", region_name=region).delete_parameter(Name=item.physical_id)
        elif item.kind == "AWS::SecretsManager::Secret":
            if not force_secrets:
                key = secrets.describe_secret(SecretId=item.physical_id).get("KmsKeyId")
                if key:
                    kept_secret_keys.add(str(key).rsplit("/", 1)[-1])
                kept.append(item)
                continue
            secrets.delete_secret(SecretId=item.physical_id, ForceDeleteWithoutRecovery=True)
        elif item.kind == "AWS::KMS::Key":
            if item.physical_id.rsplit("/", 1)[-1] in kept_secret_keys:
                kept.append(item)
                continue
            session.client("kms", region_name=region).schedule_key_deletion(
                KeyId=item.physical_id, PendingWindowInDays=KEY_DELETION_DAYS)
        else:
            kept.append(item)
            continue
        done = f"scheduled for deletion in {KEY_DELETION_DAYS} days" if item.kind == "AWS::KMS::Key" else "deleted"
        out.write(f"  {done}: {item.label()}\n")
    return kept


def _would_purge(item: Leftover, force_secrets: bool) -> str:
    if item.kind == "AWS::SecretsManager::Secret" and not force_secrets:
        return "keep (deleting a secret needs FORCE_DELETE_SECRETS=1)"
    if item.kind == "AWS::KMS::Key":
        return f"schedule deletion in {KEY_DELETION_DAYS} days (unless a kept secret uses it)"
    if item.kind not in PURGE_ORDER:
        return "keep (no purge for this kind)"
    return "delete"


# --- main ---------------------------------------------------------------------------------------
def confirmed(inst: Installation, given: str | None, ask: Callable[[str], str] | None) -> None:
    if given is not None:
        if given != inst.stack_name:
            msg = f"CONFIRM={given} is not the stack's name; it is {inst.stack_name} (samconfig environment {inst.env})"
            raise TeardownRefused(msg)
        return
    if ask is None:
        msg = (f"make teardown deletes stack {inst.stack_name}: run it in a terminal and type the name when asked, "
               f"or pass CONFIRM={inst.stack_name}")
        raise TeardownRefused(msg)
    if ask(f"type {inst.stack_name} to delete it: ").strip() != inst.stack_name:
        msg = "the name typed is not the stack's name: nothing was deleted"
        raise TeardownRefused(msg)


def _session(region: str) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.session.Session(region_name=region)


def _ask() -> Callable[[str], str] | None:
    return input if sys.stdin.isatty() else None


def teardown(inst: Installation, session: Any, out: TextIO, *, purge_all: bool, force_secrets: bool, dry_run: bool,
             confirm: str | None, ask: Callable[[str], str] | None) -> int:
    account = caller_account(session)
    cf = session.client("cloudformation", region_name=inst.region)
    found = find_stack(cf, inst.stack_name)
    policy = Leftover("AWS::SSM::Parameter", inst.policy_parameter, "", "written by make deploy, not by the stack")
    would = "would " if dry_run else ""
    out.write(f"teardown: samconfig environment {inst.env}: stack {inst.stack_name} in {inst.region}, account {account}"
              f"{' (dry run: nothing is changed)' if dry_run else ''}\n")
    leftovers: list[Leftover] = []
    if found is None:
        out.write(f"no stack {inst.stack_name} (and none deleted in the last 90 days)\n")
    else:
        stack_id, status = found
        summaries, template = inventory(cf, stack_id)
        kept = retained(summaries, template)
        if status != "DELETE_COMPLETE":
            running = running_releases(session, inst.region, summaries)
            if running:
                msg = (f"{len(running)} release(s) are running: {', '.join(running)}. Wait for them, or stop each "
                       f"(aws stepfunctions stop-execution --execution-arn ARN --region {inst.region}; a release "
                       "stopped mid-deploy can leave a canary split, see docs/runbook.md), then run make teardown again")
                raise TeardownRefused(msg)
            keep = {k.logical_id for k in kept}
            out.writelines(f"{line}\n" for line in empty_blockers(session, inst.region, summaries, keep, dry_run=True))
            out.writelines(
                f"warning: this stack owns the account's GitHub OIDC provider, which stack {other} uses "
                f"(CreateGitHubOidcProvider=false); after the teardown, deploy {other} with "
                "CreateGitHubOidcProvider=true or its GitHub workflows cannot assume their roles\n"
                for other in oidc_dependents(cf, inst.stack_name, summaries))
            out.write(f"{would}delete stack {inst.stack_name} ({status}, {len(summaries)} resources, {len(kept)} retained)\n")
            if not dry_run:
                confirmed(inst, confirm, ask)
                out.writelines(f"{line}\n" for line in empty_blockers(session, inst.region, summaries, keep, dry_run=False))
                delete_stack(cf, inst, stack_id)
                out.write(f"deleted stack {inst.stack_name}\n")
        else:
            out.write(f"stack {inst.stack_name} was deleted already ({stack_id}); what it retained:\n")
        leftovers = [*kept, *lambda_log_groups(summaries)]
    leftovers.append(policy)
    present = [(item, st) for item in leftovers if (st := state(session, inst.region, item)) is not None]
    if not present:
        out.write("nothing is left\n")
        return 0
    if purge_all:
        if dry_run:
            out.write("would purge:\n")
            out.writelines(f"  {_would_purge(item, force_secrets)}: {item.label()} [{st}]\n" for item, st in present)
            return 0
        if found is None or found[1] == "DELETE_COMPLETE":
            confirmed(inst, confirm, ask)
        out.write("purging:\n")
        left = purge(session, inst.region, [item for item, st in present if st == "exists"], force_secrets, out)
        present = [(item, "exists") for item in left]
        if not present:
            out.write("nothing else is left\n")
            return 0
    out.write("left in the account (each costs until deleted; a new stack of the same name cannot be created while\n"
              "the named ones exist: make teardown ENV=... PURGE=1 FORCE_DELETE_SECRETS=1 removes them):\n")
    for item, st in present:
        out.write(f"  {item.label()} [{st}]\n      {item.command(inst.region)}\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
         session_factory: Callable[[str], Any] = _session, ask: Callable[[], Callable[[str], str] | None] = _ask) -> int:
    parser = argparse.ArgumentParser(prog="make teardown", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--env", default="", help="samconfig environment (ENV=dev|prod)")
    parser.add_argument("--purge", action="store_true", help="also delete what the stack retains (PURGE=1)")
    parser.add_argument("--force-delete-secrets", action="store_true",
                        help="with --purge: delete the secrets without recovery (FORCE_DELETE_SECRETS=1)")
    parser.add_argument("--confirm", help="the stack name, instead of typing it (CONFIRM=<stack>)")
    parser.add_argument("--dry-run", action="store_true", help="read everything, change nothing")
    parser.add_argument("unknown", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.unknown:
            msg = (f"{', '.join(args.unknown)}: not an option of make teardown "
                   "(ENV, PURGE, FORCE_DELETE_SECRETS, CONFIRM, DRY_RUN)")
            raise TeardownRefused(msg)
        if args.force_delete_secrets and not args.purge:
            msg = "FORCE_DELETE_SECRETS=1 only means something with PURGE=1 (it deletes the retained secrets too)"
            raise TeardownRefused(msg)
        inst = load_installation(args.env)
        return teardown(inst, session_factory(inst.region), out, purge_all=args.purge, force_secrets=args.force_delete_secrets,
                        dry_run=args.dry_run, confirm=args.confirm, ask=ask())
    except InstallationError as exc:
        out.flush()
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except (BotoCoreError, ClientError) as exc:
        out.flush()
        sys.stderr.write(f"error: AwsError: {type(exc).__name__}: {exc}; what was done so far is printed above, and "
                         "make teardown can be run again (it picks up where it stopped)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
