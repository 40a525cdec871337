#!/usr/bin/env python3
"""`make deploy ENV=dev|prod [Parameter=value ...] [POLICY=policy.json | KEYS=cosign.pub] [DRY_RUN=1]`

Deploys one installation of the control plane (a samconfig environment) the way a first deploy
must go:

1. checks, before anything changes: the environment exists in samconfig.toml; every parameter
   given is a parameter of template.yaml with a value SAM CLI passes on intact and CloudFormation
   accepts (the template's constraints and Rules); then in AWS: credentials, the stack's state, the
   two ECR repositories (and that Lambda may pull from them), the bootstrap image, the release
   policy's SSM parameter, data a deleted stack of the same name left behind, and the account's
   unreserved Lambda concurrency (the checks themselves are in scripts/deploy_checks.py);
2. with POLICY=file, validates the document with the gate's own parser (`parse_policy`); with
   KEYS=cosign.pub, writes one with `keys_document` (both environments trust those keys);
3. `make build` (sam build for Lambda's architecture);
4. writes the policy to the SSM parameter `/<stack>/release-policy` (String, Intelligent-Tiering,
   overwrite; the value goes through the API, never a command line) and passes
   `ReleasePolicyParameter` to the stack;
5. `sam deploy --config-env <env>` with samconfig's capabilities and every parameter as a separate
   `Key=Value` argument (samconfig's own overrides included: SAM CLI drops them when the command
   line has any);
6. prints the stack's outputs, the subscriptions still waiting for confirmation, and what to do next.

`--dry-run` does steps 1 (offline part) and 2 and prints the SSM write and the exact `sam deploy`
argv instead of running anything. Exit status: 0 done, 1 refused (the message says why and what
to do), or sam deploy's own status.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from scripts.deploy_checks import (
    DeployRefused,
    PolicyRefused,
    bootstrap_image_errors,
    caller_account,
    check_bootstrap_image,
    check_concurrency,
    check_kms_signers,
    check_leftovers,
    check_policy_parameter,
    check_repositories,
    check_stack_status,
    offline_kms_resolver,
    stack_state,
)
from scripts.installation import (
    ROOT,
    SAM,
    BadParameter,
    Installation,
    InstallationError,
    capability_errors,
    check_names,
    constraint_errors,
    defaults,
    load_installation,
    load_template,
    name_length_errors,
    required,
    reserved_concurrency,
    rule_errors,
    sam_argument,
)

BUILT_TEMPLATE = ".aws-sam/build/template.yaml"
#: An SSM parameter value holds at most 8 KB (advanced tier; Intelligent-Tiering picks it above 4 KB).
SSM_MAX_VALUE_BYTES = 8 * 1024


@dataclass
class Plan:
    """What a deploy does, computed before it does any of it."""

    installation: Installation
    #: Every parameter passed to sam deploy, in order, with where it came from.
    parameters: dict[str, str]
    sources: dict[str, str]
    policy_document: str | None = None
    policy_source: str | None = None
    #: KMS keys the policy names (signers.kms entries), checked against SigningKmsKeyArns.
    policy_kms_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The stack exists already (an update): warm verify environments hold the previous policy.
    updates_stack: bool = False

    @property
    def policy_parameter(self) -> str | None:
        return self.installation.policy_parameter if self.policy_document is not None else None

    def build_argv(self) -> list[str]:
        return ["make", "build"]

    def sam_argv(self) -> list[str]:
        inst = self.installation
        argv = [str(SAM.relative_to(ROOT)), "deploy", "--config-env", inst.env, "--template-file", BUILT_TEMPLATE,
                "--stack-name", inst.stack_name, "--region", inst.region]
        if inst.capabilities:
            argv += ["--capabilities", *inst.capabilities]
        if self.parameters:
            argv += ["--parameter-overrides", *(sam_argument(k, v) for k, v in self.parameters.items())]
        return argv


# --- the policy ---------------------------------------------------------------------------------
def policy_document(policy: str | None, keys: str | None,
                    kms_resolver: Callable[[str], Any] | None = None) -> tuple[str, str] | None:
    """(document, where it came from) for POLICY=file or KEYS=file, validated by the gate's own
    parser; None without either. `kms_resolver` reads KMS public keys (default: offline check)."""
    if policy and keys:
        msg = ("POLICY and KEYS are both given: KEYS=cosign.pub writes a policy in which both environments trust "
               "those keys; for anything else write the whole document and pass POLICY alone")
        raise PolicyRefused(msg)
    given = policy or keys
    if not given:
        return None
    option = "POLICY" if policy else "KEYS"
    from podrelease.core.errors import PolicyError  # noqa: PLC0415
    from podrelease.verify.policy import installed_keyless_factory, keys_document, parse_policy  # noqa: PLC0415

    try:
        text = Path(given).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        what = "a release policy JSON document" if policy else "PEM public keys (cosign.pub)"
        msg = f"{option}={given} cannot be read ({type(exc).__name__}: {exc}); give the path of {what}"
        raise PolicyRefused(msg) from exc
    try:
        if keys:
            document = keys_document(text)
        else:
            document = text
            parse_policy(document, keyless_factory=installed_keyless_factory, kms_resolver=kms_resolver or offline_kms_resolver)
    except PolicyError as exc:
        msg = f"{option}={given} is not a release policy the gate would accept: {exc}"
        raise PolicyRefused(msg) from exc
    size = len(document.encode())
    if size > SSM_MAX_VALUE_BYTES:
        msg = (f"{option}={given}: the policy document is {size} bytes; an SSM parameter holds at most "
               f"{SSM_MAX_VALUE_BYTES} (advanced tier). Name KMS signing keys (signers.kms) instead of pasting PEM keys, "
               "or trust fewer keys")
        raise PolicyRefused(msg)
    return document, f"{option}={given}"


def policy_kms_keys(document: str) -> list[str]:
    found: list[str] = []
    for section in json.loads(document)["environments"].values():
        for key in section["signers"].get("kms", []):
            if key not in found:
                found.append(key)
    return found


# --- planning -----------------------------------------------------------------------------------
def parse_assignments(assignments: Sequence[str], template: dict[str, Any]) -> dict[str, str]:
    given: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            msg = f"{assignment!r} is not Parameter=value (for example NotifyEmail=releases@example.com)"
            raise BadParameter(msg)
        check_names([key], template, "command line")
        if key in given:
            msg = f"{key} is given twice on the command line"
            raise BadParameter(msg)
        sam_argument(key, value)
        given[key] = value
    return given


def make_plan(env: str, assignments: Sequence[str], policy: str | None = None, keys: str | None = None,
              template: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
              kms_resolver: Callable[[str], Any] | None = None) -> Plan:
    """Everything that can be decided without AWS: the installation, the parameters, the policy."""
    template = load_template() if template is None else template
    inst = load_installation(env, config)
    check_names(inst.overrides, template, f"samconfig.toml [{inst.env}.deploy.parameters] parameter_overrides")
    given = parse_assignments(assignments, template)
    document = policy_document(policy, keys, kms_resolver)
    parameters: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, value in inst.overrides.items():
        parameters[key], sources[key] = value, "samconfig"
    for key, value in given.items():
        parameters[key], sources[key] = value, "command line"
    plan = Plan(inst, parameters, sources)
    if document is not None:
        plan.policy_document, plan.policy_source = document
        plan.policy_kms_keys = policy_kms_keys(plan.policy_document)
        named = given.get("ReleasePolicyParameter")
        if named is not None and named != inst.policy_parameter:
            msg = (f"ReleasePolicyParameter={named} and {plan.policy_source} disagree: {plan.policy_source} writes "
                   f"the policy to {inst.policy_parameter} and points the stack there; drop ReleasePolicyParameter")
            raise PolicyRefused(msg)
        parameters["ReleasePolicyParameter"] = inst.policy_parameter
        sources["ReleasePolicyParameter"] = plan.policy_source
    for key, value in parameters.items():
        sam_argument(key, value)
    errors = constraint_errors(template, parameters)
    if errors:
        raise BadParameter("; ".join(errors))
    errors = capability_errors(template, inst)
    if errors:
        raise DeployRefused("; ".join(errors))
    return plan


def effective_values(template: dict[str, Any], plan: Plan, previous: dict[str, str] | None) -> dict[str, str]:
    """The values the stack will have: the template's defaults, then the previous values (an update
    keeps every parameter not given; one new to the stack takes its default), then the ones passed."""
    return {**defaults(template), **(previous or {}), **plan.parameters}


def offline_checks(template: dict[str, Any], plan: Plan, previous: dict[str, str] | None) -> dict[str, str]:
    values = effective_values(template, plan, previous)
    if previous is None:
        missing = [name for name in required(template) if not values.get(name)]
        if missing:
            example = {"BootstrapImageUri": 'BootstrapImageUri="$IMAGE"', "ApproverEmails": "ApproverEmails=alice@example.com",
                       "NotifyEmail": "NotifyEmail=releases@example.com"}
            shown = " ".join(example.get(name, f"{name}=...") for name in missing)
            msg = (f"a new stack needs {', '.join(missing)} (no default in template.yaml): "
                   f"make deploy ENV={plan.installation.env} {shown} (README, Deploying to AWS)")
            raise DeployRefused(msg)
    errors = rule_errors(template, values, plan.installation) + name_length_errors(template, values, plan.installation)
    errors += bootstrap_image_errors(plan.installation, plan.parameters.get("BootstrapImageUri"), values)
    if errors:
        raise DeployRefused("; ".join(errors))
    return values


# --- the write ----------------------------------------------------------------------------------
def write_policy(session: Any, plan: Plan) -> int:
    """Write the policy document to its SSM parameter; returns the parameter's new version."""
    name = plan.policy_parameter
    if name is None or plan.policy_document is None:
        return 0
    reply = session.client("ssm", region_name=plan.installation.region).put_parameter(
        Name=name, Value=plan.policy_document, Type="String", Tier="Intelligent-Tiering", Overwrite=True,
        Description=f"Release policy of stack {plan.installation.stack_name} (make deploy {plan.policy_source})",
    )
    return int(reply["Version"])


# --- output -------------------------------------------------------------------------------------
def describe(plan: Plan, out: TextIO) -> None:
    inst = plan.installation
    out.write(f"deploy: samconfig environment {inst.env}: stack {inst.stack_name} in {inst.region}"
              f" (capabilities {' '.join(inst.capabilities) or 'none'})\n")
    out.write("parameters passed to sam deploy (the others keep their previous value, "
              "or the template's default on a new stack):\n")
    out.writelines(f"  {key}={value}   [{plan.sources[key]}]\n" for key, value in plan.parameters.items())
    out.writelines(f"note: {note}\n" for note in plan.notes)


def describe_policy_write(plan: Plan, out: TextIO, prefix: str) -> None:
    if plan.policy_document is None:
        return
    size = len(plan.policy_document.encode())
    out.write(f"{prefix}write SSM parameter {plan.policy_parameter} (String, Intelligent-Tiering, overwrite), "
              f"{size} bytes from {plan.policy_source}:\n")
    out.writelines(f"    {line}\n" for line in plan.policy_document.splitlines())


def print_outcome(session: Any, inst: Installation, out: TextIO) -> None:
    stack = session.client("cloudformation", region_name=inst.region).describe_stacks(StackName=inst.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    out.write(f"\nstack {inst.stack_name}: {stack['StackStatus']}\n")
    out.writelines(f"  {key:32} {value}\n" for key, value in sorted(outputs.items()))
    sns = session.client("sns", region_name=inst.region)
    pending: list[str] = []
    for key in ("ApprovalTopicArn", "NotifyTopicArn"):
        if key in outputs:
            subscriptions = sns.list_subscriptions_by_topic(TopicArn=outputs[key]).get("Subscriptions", [])
            pending.extend(f"{sub['Endpoint']} ({key.removesuffix('Arn')})" for sub in subscriptions
                           if sub.get("SubscriptionArn") == "PendingConfirmation")
    out.write("\nnext:\n")
    if pending:
        out.write(f"  1. confirm the SNS subscriptions: open the email 'AWS Notification - Subscription Confirmation' sent to "
                  f"{', '.join(pending)} and follow its link (nothing is delivered before that)\n")
    else:
        out.write("  1. SNS subscriptions: all confirmed\n")
    repository = next((p["ParameterValue"] for p in stack.get("Parameters", []) if p["ParameterKey"] == "WorkloadRepository"), "")
    out.write(f"  2. push a signed image to {repository} (the build workflow, or by hand: README, Deploying to AWS); "
              "the push starts the first release, and its outcome arrives at NotifyEmail\n")
    if "GitHubBuildRoleArn" in outputs:
        out.write("  3. GitHub variables: AWS_BUILD_ROLE_ARN, AWS_DEPLOY_ROLE_ARN, AWS_CFN_EXECUTION_ROLE_ARN from the outputs "
                  "above (docs/ENVIRONMENT.md, Roles)\n")


# --- main ---------------------------------------------------------------------------------------
def _session(region: str) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.session.Session(region_name=region)


def run_checks(session: Any, template: dict[str, Any], plan: Plan, account: str, out: TextIO) -> dict[str, str]:
    inst = plan.installation
    state = stack_state(session, inst)
    previous = None
    if state is not None:
        check_stack_status(inst, state[0])
        previous = state[1]
        plan.updates_stack = True
        out.write(f"stack {inst.stack_name} exists ({state[0]}) in account {account}: this deploy updates it\n")
    else:
        out.write(f"stack {inst.stack_name} does not exist yet: this deploy creates it in account {account}\n")
    values = offline_checks(template, plan, previous)
    check_repositories(session, inst, [values["WorkloadRepository"], values["ProdRepository"]])
    if "BootstrapImageUri" in plan.parameters:
        check_bootstrap_image(session, inst, account, plan.parameters["BootstrapImageUri"])
    if values.get("ReleasePolicyParameter") and plan.policy_document is None:
        check_policy_parameter(session, inst, values["ReleasePolicyParameter"])
    check_kms_signers(session, plan, values)
    if state is None:
        check_leftovers(session, inst, template)
    out.write(check_concurrency(session, inst, template, values, previous) + "\n")
    return values


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,  # noqa: PLR0915 - the deploy's steps in the order they run: checks, build, policy, sam deploy
         session_factory: Callable[[str], Any] = _session,
         run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run) -> int:
    parser = argparse.ArgumentParser(prog="make deploy", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--env", default="", help="samconfig environment (ENV=dev|prod)")
    parser.add_argument("--policy", help="release policy JSON file to write to /<stack>/release-policy")
    parser.add_argument("--keys", help="PEM public keys; writes a policy in which both environments trust them")
    parser.add_argument("--dry-run", action="store_true", help="check offline and print what would be done")
    parser.add_argument("assignments", nargs="*", metavar="Parameter=value")
    args = parser.parse_args(argv)
    try:
        template = load_template()
        inst = load_installation(args.env)
        session = None if args.dry_run else session_factory(inst.region)
        resolver: Callable[[str], Any] | None = None
        if session is not None:
            account = caller_account(session)
            if args.policy:
                from podrelease.verify.kms import kms_trusted_key  # noqa: PLC0415

                resolver = functools.partial(kms_trusted_key, session.client("kms", region_name=inst.region))

        plan = make_plan(args.env, args.assignments, args.policy, args.keys, template, kms_resolver=resolver)
        if session is None:
            values = offline_checks(template, plan, None)
            plan.notes += check_kms_signers(None, plan, values)
            plan.notes.append(f"as a new stack, it reserves {reserved_concurrency(template, values, inst)} concurrent executions")
            out.write("dry run: checked offline, as for a new stack; AWS (credentials, stack, repositories, image, "
                      "concurrency) is not asked, nothing is written, built or deployed\n")
            describe(plan, out)
            describe_policy_write(plan, out, "would ")
            if plan.policy_document is not None:
                out.write("would pass ReleasePolicyVersion=<the version that write creates> to sam deploy as well\n")
            out.write(f"would run: {shlex.join(plan.build_argv())}\n")
            out.write(f"would run: {shlex.join(plan.sam_argv())}\n")
            return 0
        describe(plan, out)
        run_checks(session, template, plan, account, out)
    except InstallationError as exc:
        out.flush()
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except (BotoCoreError, ClientError) as exc:
        out.flush()
        sys.stderr.write(f"error: AwsError: a check could not ask AWS ({type(exc).__name__}: {exc}); nothing was written, "
                         "built or deployed. The credentials may lack a read permission the check needs (the person "
                         "deploying is meant to be an administrator of the account: docs/ENVIRONMENT.md, Roles)\n")
        return 1
    out.write(f"$ {shlex.join(plan.build_argv())}\n")
    out.flush()
    built = run(plan.build_argv(), cwd=ROOT, check=False)
    if built.returncode != 0:
        sys.stderr.write(f"error: BuildFailed: make build exited {built.returncode}; nothing was written or deployed\n")
        return built.returncode
    if plan.policy_document is not None:
        describe_policy_write(plan, out, "")
        version = write_policy(session, plan)
        out.write(f"  -> {plan.policy_parameter} version {version}\n")
        # The stack runs exactly this version: a later write that no deploy made changes nothing, and
        # the new version is a new configuration of the verify function (fresh execution environments).
        plan.parameters["ReleasePolicyVersion"] = str(version)
        plan.sources["ReleasePolicyVersion"] = plan.policy_source or "policy"
    out.write(f"$ {shlex.join(plan.sam_argv())}\n")
    out.flush()
    deployed = run(plan.sam_argv(), cwd=ROOT, check=False)
    if deployed.returncode != 0:
        sys.stderr.write(f"error: DeployFailed: sam deploy exited {deployed.returncode}; the stack's events say why: "
                         f"aws cloudformation describe-stack-events --stack-name {inst.stack_name} --region {inst.region} "
                         "--max-items 25\n")
        return deployed.returncode
    print_outcome(session, inst, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
