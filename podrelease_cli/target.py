"""Which stack the command talks to: a deployed one (`--stack NAME`, the caller's AWS credentials) or
the local runtime `make up` started (`--local`, the state file it wrote).

Either way the command knows the stack by its outputs and its resources' physical ids, read from
CloudFormation (`DescribeStacks`, `ListStackResources`) or from the state file, and calls AWS with the
caller's identity, which every recorded action names (`sts:GetCallerIdentity`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

#: Where `make up` writes the local runtime's endpoints (see `local.serve`).
LOCAL_STATE = Path(os.environ.get("PODRELEASE_LOCAL_STATE", ".demo/up/state.json"))

#: The stack outputs and resources the command reads.
REQUIRED_OUTPUTS = ("LedgerTableName", "ReleaseStateMachineArn", "NotifyTopicArn", "PodinfoDevFunctionName",
                    "PodinfoProdFunctionName")
FUNCTIONS = ("DeployFunction", "RecordFunction", "NormalizeFunction")


class TargetError(Exception):
    """The stack (or the local runtime) cannot be found or is missing what the command needs."""


@dataclass
class Target:
    stack: str
    region: str
    outputs: dict[str, str]
    physical: dict[str, str]
    session: Any
    endpoint_url: str | None = None
    local: dict[str, Any] = field(default_factory=dict)  # the local runtime's state file, when --local
    _known: dict[str, Any] = field(default_factory=dict, repr=False)  # what was read once this run

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def table(self) -> Any:
        resource = self.session.resource("dynamodb", region_name=self.region, endpoint_url=self.endpoint_url)
        return resource.Table(self.outputs["LedgerTableName"])

    @property
    def state_machine(self) -> str:
        return self.outputs["ReleaseStateMachineArn"]

    def execution_arn(self, name: str) -> str:
        return self.state_machine.replace(":stateMachine:", ":execution:") + ":" + name

    def function(self, logical_id: str) -> str:
        try:
            return self.physical[logical_id]
        except KeyError:
            msg = f"stack {self.stack} has no {logical_id}"
            raise TargetError(msg) from None

    def podinfo_function(self, environment: str) -> str:
        return self.outputs[f"Podinfo{environment.capitalize()}FunctionName"]

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment variables (the deploy function's say where the fleets are)."""
        key = f"env:{logical_id}"
        if key not in self._known:
            config = self.client("lambda").get_function_configuration(FunctionName=self.function(logical_id))
            self._known[key] = dict((config.get("Environment") or {}).get("Variables") or {})
        return dict(self._known[key])

    def caller(self) -> str:
        """Who is running the command: the ARN every recorded action names."""
        if "caller" not in self._known:
            self._known["caller"] = str(self.client("sts").get_caller_identity()["Arn"])
        return str(self._known["caller"])


def _check(stack: str, outputs: dict[str, str], physical: dict[str, str]) -> None:
    missing = [o for o in REQUIRED_OUTPUTS if o not in outputs] + [f for f in FUNCTIONS if f not in physical]
    if missing:
        msg = f"stack {stack} is not a podinfo release stack (no {', '.join(missing)})"
        raise TargetError(msg)


def from_stack(name: str, region: str | None = None, profile: str | None = None) -> Target:
    """A deployed stack, read from CloudFormation with the caller's credentials."""
    session = boto3.Session(profile_name=profile, region_name=region)
    region = session.region_name or "us-east-1"
    cfn = session.client("cloudformation", region_name=region)
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        msg = f"stack {name} in {region}: {exc.response.get('Error', {}).get('Message', exc)}"
        raise TargetError(msg) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    physical: dict[str, str] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name):
        physical |= {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in page["StackResourceSummaries"]}
    _check(name, outputs, physical)
    return Target(name, region, outputs, physical, session)


def from_local(state_file: Path = LOCAL_STATE) -> Target:
    """The local runtime `make up` started, from the state file it wrote."""
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        msg = f"no local runtime: {state_file} does not exist (start one with `make up`)"
        raise TargetError(msg) from None
    pid = int(state.get("pid", 0))
    if pid and not process_alive(pid):
        msg = f"the local runtime of {state_file} (pid {pid}) is not running any more (start one with `make up`)"
        raise TargetError(msg)
    return from_state(state)


def from_state(state: dict[str, Any]) -> Target:
    """A local runtime's stack from what `local.serve.state_of` says of it (endpoint, keys, outputs, resources)."""
    session = boto3.Session(aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"],
                            region_name=state["region"])
    _check(state["stack"], state["outputs"], state["physical"])
    return Target(state["stack"], state["region"], state["outputs"], state["physical"], session, state["endpoint"], state)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (`make up`'s runtime: its state file names it; 0 is none)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
