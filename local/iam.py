"""The local AWS enforces IAM: every request is authorized against its caller's identity policies.

On AWS each function calls the APIs with its own role's credentials, and a grant the template
forgot is an `AccessDenied` on the first real release. moto can check signatures and identity
policies (its "IAM authentication"), and the local runtime turns that on for the whole local AWS:

- the operator's principal (`local`/`local`, the keys the demo, the tests and the provisioner use)
  is an IAM user with an administrator policy, as the person running `sam deploy` would be;
- each function's worker calls with credentials of its own role (`sts:AssumeRole`, see
  `local.emulation.lambda_runtime.LambdaRuntime`), and moto's Step Functions engine with the state machine's role;
- every call is checked here, against the caller's policies and its role's permissions boundary: the action (`service:Operation`, with the IAM names where they differ
  from the API's: `lambda:InvokeFunction`, `cloudwatch:*`), and the resource when this module can
  name it from the request (`RESOURCE_NAMERS`: DynamoDB tables, Lambda functions with their
  qualifier, Step Functions state machines and executions, SNS topics, Secrets Manager secrets, ECR
  repositories, SSM parameters, CodeDeploy groups, applications and configs, KMS keys, SQS queues,
  CloudWatch alarms, Auto Scaling groups, ELB listeners, Scheduler schedules). A call whose resource this module cannot
  name is checked on its action alone.

What this cannot see (the README's "emulated locally" list says so too): conditions in identity
policies (an Allow with a Condition counts as an Allow, a Deny with one as not applying), resource
policies (Lambda permissions, queue and key policies) and SCPs. A task-token callback
(SendTaskSuccess/Failure/Heartbeat) is checked against the state machine whose execution issued
the token.
So it can only be more lenient than AWS, never stricter: a call refused here is refused on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import _RESTError
from moto.iam import access_control
from moto.iam.models import iam_backends

OPERATOR_KEY = "local"
OPERATOR_USER = "local-operator"

# IAM's name for an action where it differs from the API operation's name (signing name -> prefix,
# operation -> action).
_PREFIX = {"monitoring": "cloudwatch"}
_ACTION = {"lambda:Invoke": "lambda:InvokeFunction", "lambda:InvokeAsync": "lambda:InvokeFunction",
           "lambda:InvokeWithResponseStream": "lambda:InvokeFunction"}


# Services whose API speaks the query protocol (XML errors, code AccessDenied); the rest speak JSON
# (code AccessDeniedException in `__type`), by their signing names.
_QUERY_SERVICES = frozenset({"monitoring", "sns", "autoscaling", "elasticloadbalancing", "ec2", "iam", "sts"})


class AccessDenied(_RESTError):
    """The refusal AWS answers, in the caller's protocol, so SDKs name it as they would on AWS."""

    code = 403

    def __init__(self, service: str, principal: str, action: str, resources: list[str]) -> None:
        on = f" on resource: {resources[0]}" if resources else ""
        message = (f"User: {principal} is not authorized to perform: {action}{on} because no identity-based policy "
                   f"allows the {action} action (local IAM, see local/iam.py)")
        query = service in _QUERY_SERVICES
        super().__init__("AccessDenied" if query else "AccessDeniedException", message)
        if not query:
            self.description = json.dumps({"__type": "AccessDeniedException", "message": message})
            self.content_type = "application/x-amz-json-1.1"


# --- naming the resource of a request -------------------------------------------------------------
class _Request:
    """What the namers read: the service, region, account, parameters (JSON body or query) and path."""

    def __init__(self, service: str, region: str, account: str, path: str, data: Any, body: bytes) -> None:
        self.service, self.region, self.account = service, region, account
        parsed = urlparse(path)
        self.path, self.query = unquote(parsed.path), {k: v[0] for k, v in parse_qs(parsed.query).items()}
        params: dict[str, Any] = {}
        if body:
            try:
                loaded = json.loads(body)
                params = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if isinstance(data, dict):
            for key, value in data.items():
                params.setdefault(key, value[0] if isinstance(value, list) and value else value)
        self.params = params

    def arn(self, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
        return f"arn:aws:{service}:{self.region if region is None else region}:{self.account if account is None else account}:{resource}"

    def param(self, *names: str) -> str | None:
        for name in names:
            value = self.params.get(name)
            if isinstance(value, str) and value:
                return value
        return None


def _as_arn(request: _Request, service: str, value: str | None, resource: Callable[[str], str]) -> list[str]:
    if not value:
        return []
    return [value] if value.startswith("arn:") else [request.arn(service, resource(value))]


def _dynamodb(request: _Request) -> list[str]:
    return _as_arn(request, "dynamodb", request.param("TableName"), lambda name: f"table/{name}")


def _lambda(request: _Request) -> list[str]:
    match = re.match(r"^/[0-9-]+/functions/([^/]+)(/.*)?$", request.path)
    if not match:
        return []
    name, rest = match.group(1), match.group(2) or ""
    qualifier = request.query.get("Qualifier")
    if name.startswith("arn:"):
        parts = name.split(":")
        name, qualifier = parts[6], (parts[7] if len(parts) > 7 else qualifier)
    alias = re.match(r"^/aliases/([^/]+)", rest)
    if alias:
        qualifier = alias.group(1)
    base = request.arn("lambda", f"function:{name}")
    return [f"{base}:{qualifier}"] if qualifier else [base]


def _states(request: _Request) -> list[str]:
    named = [v for v in (request.param("stateMachineArn", "executionArn"),) if v]
    token = request.param("taskToken")
    return named or ([_token_state_machine(request, token)] if token else [])


def _token_state_machine(request: _Request, token: str) -> str:
    """SendTask*: the state machine of the execution that issued the task token (AWS authorizes the
    callback against it). A token no execution issued names a state machine no policy allows."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[request.account][request.region]
    for execution in backend._get_executions():
        env = execution.exec_worker.env if execution.exec_worker is not None else None
        if env is not None and env.callback_pool_manager.get(token) is not None:
            return str(execution.state_machine_arn)
    return request.arn("states", "stateMachine:unknown-task-token")


def _scheduler(request: _Request) -> list[str]:
    match = re.match(r"^/schedules/([^/?]+)", request.path)
    if not match:
        return []
    group = request.param("GroupName") or request.query.get("groupName") or "default"
    return [request.arn("scheduler", f"schedule/{group}/{unquote(match.group(1))}")]


def _sns(request: _Request) -> list[str]:
    return [v for v in (request.param("TopicArn"),) if v]


def _secretsmanager(request: _Request) -> list[str]:
    secret = request.param("SecretId")
    if not secret:
        return []
    if secret.startswith("arn:"):
        return [secret]
    from moto.secretsmanager.models import secretsmanager_backends

    try:
        return [secretsmanager_backends[request.account][request.region].describe_secret(secret).arn]
    except Exception:
        return [request.arn("secretsmanager", f"secret:{secret}-??????")]


def _ecr(request: _Request) -> list[str]:
    repository = request.param("repositoryName")
    return [request.arn("ecr", f"repository/{repository}")] if repository else []


def _ssm(request: _Request) -> list[str]:
    names = request.params.get("Names") or ([request.param("Name")] if request.param("Name") else [])
    # A version or label selector (`name:3`) is not part of the parameter's ARN (names have no ':').
    return [name if name.startswith("arn:") else request.arn("ssm", "parameter/" + name.split(":", 1)[0].lstrip("/"))
            for name in names if name]


def _codedeploy(request: _Request) -> list[str]:
    application, group = request.param("applicationName"), request.param("deploymentGroupName")
    deployment = request.param("deploymentId")
    if deployment:
        from moto.codedeploy.models import codedeploy_backends

        try:
            found = codedeploy_backends[request.account][request.region].deployments[deployment]
            application, group = found.application_name, found.deployment_group_name
        except Exception:
            return []
    if application and group:
        return [request.arn("codedeploy", f"deploymentgroup:{application}/{group}")]
    config = request.param("deploymentConfigName")
    if config:
        return [request.arn("codedeploy", f"deploymentconfig:{config}")]
    if application:
        return [request.arn("codedeploy", f"application:{application}")]
    return []


def _kms(request: _Request) -> list[str]:
    key = request.param("KeyId")
    if not key:
        return []
    if key.startswith("arn:"):
        return [key]
    if key.startswith("alias/"):
        return [request.arn("kms", key)]
    return [request.arn("kms", f"key/{key}")]


def _sqs(request: _Request) -> list[str]:
    url = request.param("QueueUrl")
    if not url:
        return []
    return [request.arn("sqs", url.rstrip("/").rsplit("/", 1)[-1])]


def _cloudwatch(request: _Request) -> list[str]:
    # AlarmNames (DescribeAlarms, SetAlarmState...) or one AlarmName (DescribeAlarmHistory, PutMetricAlarm).
    names = [v for k, v in request.params.items() if k.startswith("AlarmNames") or k == "AlarmName"]
    flat = [n for v in names for n in (v if isinstance(v, list) else [v]) if isinstance(n, str)]
    return [request.arn("cloudwatch", f"alarm:{name}") for name in flat]


def _autoscaling(request: _Request) -> list[str]:
    group = request.param("AutoScalingGroupName")
    return [request.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{group}")] if group else []


def _elb(request: _Request) -> list[str]:
    return [v for v in (request.param("ListenerArn"),) if v]


RESOURCE_NAMERS: dict[str, Callable[[_Request], list[str]]] = {
    "dynamodb": _dynamodb, "lambda": _lambda, "states": _states, "scheduler": _scheduler, "sns": _sns, "secretsmanager": _secretsmanager,
    "ecr": _ecr, "ssm": _ssm, "codedeploy": _codedeploy, "kms": _kms, "sqs": _sqs, "monitoring": _cloudwatch,
    "autoscaling": _autoscaling, "elasticloadbalancing": _elb,
}


# --- the check ------------------------------------------------------------------------------------
def _matches(pattern: str, value: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value, flags=re.IGNORECASE if ":" not in value else 0) is not None


def _element(statement: dict[str, Any], name: str) -> list[str]:
    value = statement.get(name, [])
    return [value] if isinstance(value, str) else list(value)


def _applies(statement: dict[str, Any], action: str, resources: list[str]) -> bool:
    if "NotAction" in statement:
        if any(_matches(p, action) for p in _element(statement, "NotAction")):
            return False
    elif not any(_matches(p.lower(), action.lower()) for p in _element(statement, "Action")):
        return False
    if not resources:  # the resource could not be named: the action decides
        return True
    if "NotResource" in statement:
        return not all(any(_matches(p, r) for p in _element(statement, "NotResource")) for r in resources)
    return all(any(_matches(p, r) for p in _element(statement, "Resource")) for r in resources)


def _documents(policies: list[Any]) -> Iterator[dict[str, Any]]:
    for policy in policies:
        document = access_control.IAMPolicy(policy)._policy_json
        statements = document.get("Statement", [])
        yield from ([statements] if isinstance(statements, dict) else statements)


def authorize(service: str, principal: str, policies: list[Any], action: str, resources: list[str]) -> None:
    """Raise AccessDenied unless an Allow statement covers the action on every named resource and
    no Deny statement (without a condition) does."""
    allowed = False
    for statement in _documents(policies):
        if not _applies(statement, action, resources):
            continue
        if statement.get("Effect") == "Deny":
            if "Condition" not in statement:
                raise AccessDenied(service, principal, action, resources)
        else:
            allowed = True
    if not allowed:
        raise AccessDenied(service, principal, action, resources)


def _check_action_permitted(self: access_control.IAMRequestBase, resource: str) -> None:
    service, _, operation = self._action.partition(":")
    action = _ACTION.get(f"{service}:{operation}", f"{_PREFIX.get(service, service)}:{operation}")
    if action == "sts:GetCallerIdentity":
        return
    namer = RESOURCE_NAMERS.get(service)
    request = _Request(service, self._region, self.account_id, self._path, self._data, self._body or b"")
    resources = [resource] if resource != "*" else (namer(request) if namer else [])
    authorize(service, self._access_key.arn, self._access_key.collect_policies(), action, resources)
    # A role with a permissions boundary may do only what the boundary allows as well.
    boundary = _boundary_of(self)
    if boundary is not None:
        authorize(service, self._access_key.arn + " (permissions boundary)", [boundary], action, resources)


def _boundary_of(request: access_control.IAMRequestBase) -> Any | None:
    role_name = getattr(request._access_key, "_owner_role_name", None)
    if role_name is None:
        return None
    backend = iam_backends[request.account_id]["aws"]
    try:
        arn = backend.get_role(role_name).permissions_boundary_arn
        return backend.get_policy(arn) if arn else None
    except Exception:
        return None


def _known_by_key(_request: access_control.IAMRequestBase) -> None:
    """The caller was found by its access key (and session token) when the request was read."""


# --- turning it on --------------------------------------------------------------------------------
_saved: dict[str, Any] = {}


def install(account: str) -> None:
    """Create the operator principal and turn authorization on for every request from now on."""
    backend = iam_backends[account]["aws"]
    if OPERATOR_USER not in backend.users:
        backend.create_user("us-east-1", OPERATOR_USER)
        backend.put_user_policy(OPERATOR_USER, "administrator", json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = backend.create_access_key(OPERATOR_USER, prefix="AKIA")
        backend.access_keys.pop(key.physical_resource_id, None)
        key.access_key_id, key.secret_access_key = OPERATOR_KEY, OPERATOR_KEY
        backend.access_keys[OPERATOR_KEY] = key
    if not _saved:
        _saved.update(count=settings.INITIAL_NO_AUTH_ACTION_COUNT, check=access_control.IAMRequestBase.check_action_permitted,
                      signature=access_control.IAMRequestBase.check_signature)
    access_control.IAMRequestBase.check_action_permitted = _check_action_permitted  # type: ignore[method-assign]
    # The caller is known by its access key (and session token); moto's own signature check
    # disagrees with botocore on URL-encoded paths (a Lambda ARN in the path), so it is not repeated.
    access_control.IAMRequestBase.check_signature = _known_by_key  # type: ignore[method-assign]
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


def uninstall() -> None:
    if _saved:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = _saved["count"]
        access_control.IAMRequestBase.check_action_permitted = _saved["check"]  # type: ignore[method-assign]
        access_control.IAMRequestBase.check_signature = _saved["signature"]  # type: ignore[method-assign]
        _saved.clear()


@contextmanager
def unchecked() -> Iterator[None]:
    """Calls the local runtime makes as AWS itself (moto-api, resets) without credentials."""
    count = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = count


# --- moto's Step Functions engine calls as the state machine's role ----------------------------------
_engine: dict[str, Any] = {}


def run_state_machines_as_their_roles() -> None:
    """moto's ASL engine calls Lambda, SNS and the rest with fixed keys of its own; make each task
    call with credentials of its execution's role (the state machine's, or the task's Credentials),
    as Step Functions does on AWS. Roles are assumed once each, as the operator."""
    import sys
    import threading

    import boto3
    from botocore.config import Config
    from moto.stepfunctions.parser.asl.utils import boto_client as engine_module

    original = _engine.setdefault("original", engine_module.boto_client_for)
    assumed: dict[str, dict[str, str]] = {}
    lock = threading.Lock()

    def credentials_of(role: str, endpoint: str, region: str) -> dict[str, str]:
        with lock:
            if role not in assumed:
                sts = boto3.client("sts", region_name=region, endpoint_url=endpoint,
                                   aws_access_key_id=OPERATOR_KEY, aws_secret_access_key=OPERATOR_KEY)
                assumed[role] = sts.assume_role(RoleArn=role, RoleSessionName="states", DurationSeconds=43200)["Credentials"]
            return assumed[role]

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region, service, state_credentials)
        role = getattr(state_credentials, "role_arn", None)
        if not role:
            return client
        credentials = credentials_of(role, client.meta.endpoint_url, region)
        return boto3.client(
            service, region_name=region, endpoint_url=client.meta.endpoint_url,
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=Config(parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1},
                          connect_timeout=client.meta.config.connect_timeout, read_timeout=client.meta.config.read_timeout),
        )

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, "boto_client_for", None) in (original, _engine.get("patched")):
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]
    _engine["patched"] = boto_client_for


def restore_state_machines() -> None:
    import sys

    if "patched" not in _engine:
        return
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is _engine["patched"]:
            module.boto_client_for = _engine["original"]  # type: ignore[attr-defined]
    _engine.pop("patched")
