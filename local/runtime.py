"""Start the local AWS: moto in server mode, the emulation, the real stack, local Function URLs.

    with LocalRuntime.start(work_dir) as env:
        env.pusher.push_podinfo(...)

`LocalRuntime.start` takes a free port for moto's server, turns on moto's ASL execution, installs
`local.emulation`, creates the workload repositories (as a user does before `sam deploy`), pushes
and signs a bootstrap image, creates every resource of `template.yaml`, and starts one Lambda
execution environment per function.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import platform
import shutil
import threading
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local import iam, signing
from local.emulation import Emulation
from local.emulation.eventbridge import schedule_of, scheduled_event
from local.images import Pusher
from local.oidc import APPROVER_GROUP, CLIENT_ID, LocalOidcProvider, login_of
from local.provision import create_stack
from local.sigstore_local import LocalSigstore
from local.stack import Stack
from local.template import built_template
from local.xray import XRayDaemon
from podrelease.release import podinfo
from podrelease.verify.policy import build_identity, keys_document, parse_policy

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "podrel"
WORKLOAD_REPOSITORY = "podinfo"
PROD_REPOSITORY = "podinfo-prod"
APPROVERS = ("alice@example.com", "bob@example.com")
#: The third approver of the two-approvers scenario (prod needs 2 of 3).
CAROL = "carol@example.com"
NOTIFY = "releases@example.com"


POLICY_PARAMETER = f"/{STACK}/release-policy"
#: Prod's approvers in the local policies that name them: no self-approval (the build's GitHub actor
#: is mapped to the provider identities, `local.oidc.login_of`), and 2 of the group's members.
APPROVER_POLICIES: dict[str, dict[str, Any]] = {
    "keys+self-approval": {"emails": list(APPROVERS), "no_self_approval": True,
                           "identities": {email: login_of(email) for email in APPROVERS}},
    "keys+two-approvers": {"groups": [APPROVER_GROUP], "required": 2},
}
#: The GitHub repository the local stack is deployed for: its build workflow's keyless identity is
#: what the default policy trusts (the keyless scenario signs as that workflow, see `build_identity`).
GITHUB_REPOSITORY = ("acme", "podinfo")


def release_policy(kind: str, pem: str) -> str:
    """The release policy document the local stack runs with (see `LocalRuntime.start`); "" for the
    default policy (no policy parameter: the template's derivation from GitHubOrg/GitHubRepo)."""
    if kind == "keys":
        return keys_document(pem)  # dev and prod accept these keys, no SBOM, no scan
    if kind == "keys+sbom":
        return keys_document(pem, require_sbom=["dev", "prod"])
    if kind == "keys+provenance":  # and prod requires provenance from the build workflow on main
        document = json.loads(keys_document(pem))
        owner, repository = GITHUB_REPOSITORY
        document["environments"]["prod"]["require_provenance"] = {
            "builder": build_identity(owner, repository, "main"),
            "repository": f"https://github.com/{owner}/{repository}",
            "ref": "refs/heads/main",
        }
        text = json.dumps(document)
        parse_policy(text)  # what the stack reads must parse
        return text
    if kind in ("keys+window", "keys+window-far"):
        return _window_document(pem, far=kind.endswith("far"))
    if kind in APPROVER_POLICIES:  # prod's approvers (podrelease.core.approvers), beside keys
        document = json.loads(keys_document(pem))
        if kind == "keys+self-approval":  # both environments require provenance: its actor is in dev's evidence
            owner, repository = GITHUB_REPOSITORY
            for section in document["environments"].values():
                section["require_provenance"] = {"builder": build_identity(owner, repository, "main"),
                                                 "repository": f"https://github.com/{owner}/{repository}", "ref": "refs/heads/main"}
        document["environments"]["prod"]["approvers"] = APPROVER_POLICIES[kind]
        text = json.dumps(document)
        parse_policy(text)
        return text
    if kind == "default":
        return ""
    msg = f"unknown local policy {kind!r}"
    raise ValueError(msg)


def _window_document(pem: str, *, far: bool) -> str:
    """Keys, and a prod deploy window, every day, that is closed now (UTC): it opens an hour from now
    (the outside-window scenario's release waits for it: an hour lasts 60 x minute_seconds here), or
    three hours from now with a max wait of one hour (window-too-far: OutsideDeployWindow)."""
    opens = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0) + datetime.timedelta(hours=3 if far else 1)
    document = json.loads(keys_document(pem))
    document["environments"]["prod"]["deploy_window"] = {
        "timezone": "UTC",
        "open": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": f"{opens:%H:%M}",
                  "to": f"{opens + datetime.timedelta(hours=2):%H:%M}"}],
        "max_wait_minutes": 60 if far else 120,
    }
    text = json.dumps(document)
    parse_policy(text)
    return text


def local_architecture() -> str:
    """The Lambda architecture this machine can run the build of (`make build-local` builds for it)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


class FunctionUrls:
    """Local Function URLs: an HTTP request becomes a payload-2.0 event for the function's handler."""

    def __init__(self, lambda_client: Any) -> None:
        self.lambda_client = lambda_client
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        function, _, rest = request.path.lstrip("/").partition("/")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "cookie"}
        event = podinfo.request("/" + rest, request.method, headers=headers, query=request.query_string.decode(),
                                body=request.get_data(), source_ip=request.remote_addr or "127.0.0.1")
        # As Function URLs do: the Cookie header arrives as the event's `cookies` list, and the reply's
        # `cookies` go out as one Set-Cookie header each.
        cookie_header = request.headers.get("Cookie")
        if cookie_header:
            event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
        raw = self.lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = raw["Payload"].read()
        reply = podinfo.decode(payload) if not raw.get("FunctionError") else podinfo.Reply(None)
        if reply.status is None:
            response = Response("Internal Server Error", 502)
        else:
            response = Response(reply.body, reply.status or 200, headers=reply.headers)
            for cookie in json.loads(payload).get("cookies") or []:
                response.headers.add("Set-Cookie", str(cookie))
        return response(environ, start_response)


@dataclass
class LocalRuntime(AbstractContextManager["LocalRuntime"]):
    server: ThreadedMotoServer
    endpoint: str
    emulation: Emulation
    stack: Stack
    session: boto3.Session
    pusher: Pusher
    signing_key: Any
    urls: FunctionUrls
    work_dir: Path
    sigstore: LocalSigstore
    saved_config: dict[str, Any]
    public_pem: str = ""  # the demo signing key's public half (what the "keys" policies trust)
    xray: XRayDaemon | None = None  # the segments the functions traced
    oidc: LocalOidcProvider | None = None  # the approvers' sign-in (local.oidc)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=REGION, endpoint_url=self.endpoint)

    @property
    def registry_host(self) -> str:
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

    @classmethod
    def start(cls, work_dir: Path, minute_seconds: float = 1.0, approval_timeout: int = 300, extra_keys: str = "",  # noqa: PLR0915 - the start-up sequence, step by step
              policy: str = "keys", build_dir: Path | None = None, approvers: tuple[str, ...] = APPROVERS) -> LocalRuntime:
        """`policy`: "keys" (dev and prod accept the demo key), "keys+sbom" (and require a signed
        SBOM), both written to an SSM parameter as `make deploy POLICY=...` does; or "default" (no
        policy parameter: the stack's default policy, the build workflow's keyless identity and its
        SBOM in both environments)."""
        if work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        for key, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}.items():
            os.environ.setdefault(key, value)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines in the timeline
        # moto's ASL engine logs every failed state with its internals; the timeline says it better.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        # Port 0: the server binds a free port itself. (Picking one first and binding it later raced
        # with every other process on the machine for it.)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        port = server.get_host_and_port()[1]
        os.environ["MOTO_PORT"] = str(port)  # moto's ASL engine calls services at localhost:$MOTO_PORT
        endpoint = f"http://127.0.0.1:{port}"
        # moto's settings are process-wide: keep a copy to put back on stop (tests share the process).
        saved_config = copy.deepcopy(dict(default_user_config))
        # One process may start several runtimes (tests): every start begins from an empty AWS.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
        request = urllib.request.Request(
            f"{endpoint}/moto-api/config", method="POST",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}).encode(),
        )
        urllib.request.urlopen(request, timeout=10).read()
        # From here on every call is authorized (local.iam): ours as the operator, each function's
        # as its own role, the state machine's as its role.
        iam.install(ACCOUNT)
        emulation = Emulation(ACCOUNT, REGION, minute_seconds, work_dir)
        Emulation.install(emulation)
        emulation.start_registry()

        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)  # noqa: S106
        ecr = session.client("ecr", endpoint_url=endpoint)
        for repository in (WORKLOAD_REPOSITORY, PROD_REPOSITORY):
            ecr.create_repository(repositoryName=repository, imageTagMutability="MUTABLE")
        pusher = Pusher(ecr, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com")
        key, public_pem = signing.generate_key()
        sigstore = LocalSigstore.create()
        trusted_root = sigstore.write_trusted_root(work_dir / "sigstore-trusted-root.json")
        bootstrap = pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.0", tag="bootstrap")
        pusher.sign_legacy(key, bootstrap)

        urls = FunctionUrls(session.client("lambda", endpoint_url=endpoint))
        # The approvers sign in through the embedded OIDC provider (local.oidc), as through Cognito on AWS.
        oidc = LocalOidcProvider.start(approvers)
        document = release_policy(policy, public_pem + extra_keys)
        policy_version = 0
        if document:  # as `make deploy POLICY=file` does before `sam deploy`
            policy_version = session.client("ssm", endpoint_url=endpoint).put_parameter(
                Name=POLICY_PARAMETER, Value=document, Type="String", Tier="Intelligent-Tiering", Overwrite=True)["Version"]
        parameters = {
            "WorkloadRepository": WORKLOAD_REPOSITORY,
            "ProdRepository": PROD_REPOSITORY,
            "BootstrapImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{WORKLOAD_REPOSITORY}@{bootstrap.digest}",
            "ReleasePolicyParameter": POLICY_PARAMETER if document else "",
            "ReleasePolicyVersion": str(policy_version),
            "GitHubOrg": GITHUB_REPOSITORY[0],
            "GitHubRepo": GITHUB_REPOSITORY[1],
            "ApproverEmails": ",".join(approvers),
            "NotifyEmail": NOTIFY,
            "DeployPollSeconds": "1",
            "SecretCacheSeconds": "2",
            "SignatureWaitSeconds": "3",
            "ApprovalTimeoutSeconds": str(approval_timeout),
            "Architecture": local_architecture(),
            "__FunctionUrlBase": urls.base,
            "SignInIssuerUrl": oidc.issuer,
            "SignInClientId": CLIENT_ID,
        }
        # The fleet goes into moto's default VPC (two of its subnets for the load balancers and the instances
        # alike, its route table for the S3 endpoint), as an operator would pass theirs.
        ec2 = session.client("ec2", endpoint_url=endpoint)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])
        tables = [r["RouteTableId"] for r in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]]
        parameters |= {"FleetVpcId": vpc, "FleetLoadBalancerSubnetIds": ",".join(subnets[:2]), "FleetSize": "2",
                       "FleetInstanceSubnetIds": ",".join(subnets[:2]), "FleetInstanceRouteTableIds": ",".join(tables),
                       "CanaryMinuteSeconds": f"{minute_seconds:g}"}
        stack = create_stack(_EndpointSession(session, endpoint), STACK, REGION, ACCOUNT, parameters,
                             built_template(build_dir) if build_dir else None)
        # Approvers beyond the first are subscribed as the README tells operators to do.
        sns = session.client("sns", endpoint_url=endpoint)
        for approver in approvers[1:]:
            sns.subscribe(TopicArn=stack.outputs["ApprovalTopicArn"], Protocol="email", Endpoint=approver,
                          Attributes={"FilterPolicy": json.dumps({"approver": [approver]}), "FilterPolicyScope": "MessageAttributes"})
        # The demo cannot get real Fulcio certificates: keyless signatures come from a local
        # sigstore instance, and the verify function trusts its root instead of the pinned one.
        stack.functions["VerifyFunction"].environment["SIGSTORE_TRUSTED_ROOT"] = str(trusted_root)
        # The fleet's instances re-read the secret every 60 s on AWS (their systemd timer); the
        # emulated timer runs every second, and the rotation function waits accordingly.
        stack.functions["RotateWorkloadSecretFunction"].environment["FLEET_SECRET_REFRESH_SECONDS"] = "1"  # noqa: S105 - seconds, not a secret
        # Tracing: Active, as on Lambda: each function's X-Ray SDK sends its segments to a daemon (local.xray).
        xray = XRayDaemon()
        for function in stack.functions.values():
            if function.code_dir is not None:
                function.environment.update(xray.env())
        iam.run_state_machines_as_their_roles()
        emulation.attach(stack, endpoint)
        assert emulation.runtime is not None
        emulation.runtime.warm()
        emulation.timeline.add("local", f"stack {STACK} created from template.yaml ({len(stack.resources)} resources)")
        return cls(server, endpoint, emulation, stack, session, pusher, key, urls, work_dir, sigstore, saved_config,
                   public_pem + extra_keys, xray, oidc)

    @property
    def build_identity(self) -> str:
        """The keyless identity the stack's default policy trusts, as the template derives it from
        GitHubOrg/GitHubRepo/GitHubBuildBranch (the verify function's BUILD_IDENTITY)."""
        return self.stack.functions["VerifyFunction"].environment["BUILD_IDENTITY"]

    def known_secrets(self) -> list[tuple[str, str]]:
        """(value, kind) of every secret this local AWS holds or handed out: each Secrets Manager
        version (and keys inside JSON values), Step Functions task tokens, mailed approval tokens.
        The log scans use it to prove none of them reached a log line."""
        found: list[tuple[str, str]] = []
        sm = self.client("secretsmanager")
        for secret in sm.list_secrets()["SecretList"]:
            for version in sm.list_secret_version_ids(SecretId=secret["ARN"])["Versions"]:
                value = sm.get_secret_value(SecretId=secret["ARN"], VersionId=version["VersionId"]).get("SecretString", "")
                found.append((value, f"secret value of {secret['Name']}"))
                try:
                    parsed = json.loads(value)
                except ValueError:
                    continue
                entries = [parsed, parsed.get("previous")] if isinstance(parsed, dict) else []
                found.extend(
                    (entry[field], f"{field} in {secret['Name']}")
                    for entry in entries
                    for field in ("key", "jwt-secret")
                    if isinstance(entry, dict) and isinstance(entry.get(field), str)
                )
        items = self.client("dynamodb").scan(TableName=self.stack.outputs["LedgerTableName"])["Items"]
        found += [(item["task_token"]["S"], "Step Functions task token") for item in items if "task_token" in item]
        for message in self.emulation.outbox.messages:
            if "?t=" in message["body"]:
                found.append((message["body"].split("?t=", 1)[1].split()[0], "approval token"))
        return found

    def run_schedule(self, logical_id: str) -> Any:
        """Invoke the function `logical_id` as its schedule rule would (a `Scheduled Event`), and wait for
        its reply: the local runtime fires no schedule on its own, so a demo or test runs it here."""
        function = self.stack.functions[logical_id]
        rule = schedule_of(ACCOUNT, REGION, function.arn)
        if rule is None:
            msg = f"{logical_id} has no schedule rule in template.yaml"
            raise LookupError(msg)
        # One invocation, waited for as long as the function may run (a retried read would run it twice).
        once = Config(read_timeout=900, retries={"total_max_attempts": 1})
        client = self.session.client("lambda", region_name=REGION, endpoint_url=self.endpoint, config=once)
        reply = client.invoke(FunctionName=function.name, Payload=json.dumps(scheduled_event(ACCOUNT, REGION, rule)).encode())
        body = json.loads(reply["Payload"].read() or b"null")
        if reply.get("FunctionError"):
            msg = f"{logical_id} failed on its scheduled run: {body}"
            raise RuntimeError(msg)
        return body

    def stop(self) -> None:
        # Releases stopped below are not cleaned up by the status-change rule: the runtime is going away.
        self.emulation.status_events = False
        # Releases still running end here, as StopExecution ends them on AWS: no execution of this
        # runtime may go on calling the next one's functions (moto's engine finds the server by port).
        sfn = self.client("stepfunctions")
        with contextlib.suppress(Exception):
            for execution in sfn.list_executions(stateMachineArn=self.stack.outputs["ReleaseStateMachineArn"],
                                                 statusFilter="RUNNING")["executions"]:
                with contextlib.suppress(Exception):
                    sfn.stop_execution(executionArn=execution["executionArn"], error="LocalRuntimeStopped")
        self.emulation.shutdown()
        iam.restore_state_machines()
        iam.uninstall()
        Emulation.uninstall()
        default_user_config.clear()
        default_user_config.update(self.saved_config)  # type: ignore[typeddict-item]
        self.urls.server.shutdown()
        if self.xray is not None:
            self.xray.stop()
        if self.oidc is not None:
            self.oidc.stop()
        self.server.stop()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _EndpointSession:
    """A boto3 session whose clients all talk to the local moto server."""

    def __init__(self, session: boto3.Session, endpoint: str) -> None:
        self.session, self.endpoint = session, endpoint

    def client(self, service: str, region_name: str | None = None) -> Any:
        return self.session.client(service, region_name=region_name or REGION, endpoint_url=self.endpoint)
