"""The one place where the local runtime adds what moto does not do.

Each class fills one documented gap (the README's "Emulated locally" list mirrors this file):

- `LambdaRuntime`  every Lambda invocation moto receives runs the project's own handler, in a
  long-lived worker process per function (like a Lambda execution environment) with the
  function's environment from the template; podinfo's image functions are answered by the
  stand-in (`local.standin`). Alias routing weights are honoured. Published versions keep the code
  they were published with (moto shares it between versions).
- `EcrExtension`   layer blobs (upload, availability, download URL), the OCI `/v2/` read API with
  referrers, an `ImageDigestDoesNotMatch` check on PutImage, and the `ECR Image Action` push event
  that real ECR sends to EventBridge.
- `EventBridgeDelivery`  rules with Lambda targets receive matching events (moto only delivers to
  a few target types); delivery is asynchronous, as in AWS.
- `CodeDeployLifecycle`  a Lambda deployment actually runs: BeforeAllowTraffic hook, canary or
  linear traffic shifting on the alias, alarm checks during each bake (with the alarm evaluated
  from errors of synthetic requests sent through the alias), AfterAllowTraffic hook,
  rollback on failure/alarm/stop. `PutLifecycleEventHookExecutionStatus` and `StopDeployment`
  are added. Bake minutes are shortened to `minute_seconds` seconds locally.
- Step Functions  `local.sfn_aws` (installed from here) makes moto's ASL engine follow AWS where it
  was more lenient: States.ALL does not catch States.Runtime or States.DataLimitExceeded, SendTask*
  for a task no longer waiting is TaskTimedOut, StopExecution aborts at once, a Fail state's
  ErrorPath/CausePath must select a string, an input over 256 KiB after Parameters is
  States.DataLimitExceeded; and a new execution can start after a callback one, SendTaskFailure
  keeps its `cause`.
- `SecretsRotation`  RotateSecret runs the rotation steps as AWS does: it stops at the first step
  that fails (moto ran all four and then pointed GetSecretValue's default at the new version
  anyway), a RotateSecret without RotationLambdaARN uses the configured function (moto forgot it),
  and RotateImmediately=false only sets the schedule (moto left a pending copy of the value).
  moto passes the secret's name as SecretId, as noted in DESIGN.md; the rotation function takes both.
- `FleetEmulation` the EC2 fleet moto keeps only as records: an HTTP proxy plays the ALBs (header
  rules, weights, healthy targets; the functions use it as HTTP_PROXY), each instance is answered
  by the stand-in for its `podinfo-image` tag, target health is its `/readyz`, canary traffic
  during a split trips the fleet's 5xx alarm, and the image's `podinfo-secret-fetch` runs on a
  timer into each instance's secret file.
- `EmailOutbox`    SNS email subscriptions write each delivered message (after the subscription's
  filter policy) to files in an outbox folder.

Everything observable is also appended to `Timeline`, which `local.demo` prints.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from moto.autoscaling.models import AutoScalingBackend
from moto.awslambda.models import LambdaStorage
from moto.awslambda.utils import get_backend as lambda_backend
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.cloudwatch.models import cloudwatch_backends
from moto.codedeploy.models import CodeDeployBackend, codedeploy_backends
from moto.codedeploy.responses import CodeDeployResponse
from moto.ec2.models import ec2_backends
from moto.ecr.models import ECRBackend, ecr_backends
from moto.ecr.responses import ECRResponse
from moto.elbv2.models import ELBv2Backend, FakeTargetGroup, elbv2_backends
from moto.events.models import events_backends
from moto.sns.models import Subscription
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local import sfn_aws, standin
from local.stack import ROOT, LocalFunction, Stack
from podrelease.release import podinfo

WORKER = Path(__file__).resolve().with_name("lambda_worker.py")
READY = b'{"ready": true}\n'  # lambda_worker.READY
#: The Lambda runtime's interpreter: Python 3.12 with only the runtime's boto3 (`make build-local`).
LAMBDA_VENV = Path(os.environ.get("LOCAL_LAMBDA_VENV", str(ROOT / ".venv-lambda")))


def lambda_python() -> Path:
    python = LAMBDA_VENV / "bin" / "python"
    if not python.exists():
        msg = f"{python} is missing: `make build-local` creates the Lambda runtime's interpreter (python3.12 + the runtime's boto3)"
        raise RuntimeError(msg)
    return python
_MISSING = object()
IMAGE_MEDIA_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
INDEX_MEDIA_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


# -------------------------------------------------------------------------------------------------
@dataclass
class Timeline:
    """What happened, in order: (seconds since start, source, release id, text)."""

    started: float = field(default_factory=time.time)
    entries: list[tuple[float, str, str, str]] = field(default_factory=list)
    listeners: list[Callable[[tuple[float, str, str, str]], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: str, text: str, release: str = "") -> None:
        entry = (time.time() - self.started, source, release, text)
        with self.lock:
            self.entries.append(entry)
        for listener in list(self.listeners):
            listener(entry)


class LocalError(Exception):
    """An AWS-style error raised by an emulated API (code + message)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _error_response(exc: LocalError) -> tuple[int, dict[str, str], str]:
    return exc.status, {"x-amzn-ErrorType": exc.code}, json.dumps({"__type": exc.code, "message": exc.message})


# -------------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, function: LocalFunction, env: dict[str, str], log_path: Path) -> None:
        assert function.code_dir is not None
        self.read_fd, write_fd = os.pipe()
        self.log = log_path.open("ab")
        # As Lambda starts a Python function: the runtime's interpreter, isolated (-I: no PYTHONPATH,
        # no user site, not even the worker's folder on the path), no bytecode written to the build.
        self.process = subprocess.Popen(
            [str(lambda_python()), "-I", "-B", str(WORKER), str(function.code_dir), str(function.handler), str(write_fd),
             *(str(layer) for layer in function.layers)],
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, pass_fds=(write_fd,), env=env, cwd=function.code_dir,
        )
        os.close(write_fd)
        self.buffer = b""

    def call(self, event: Any, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event}).encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.time() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.time()
            try:
                ready, _, _ = select.select([self.read_fd], [], [], max(remaining, 0))
            except (OSError, ValueError):  # the runtime is shutting down
                return {"error": {"errorType": "Runtime.ExitError", "errorMessage": "the runtime stopped"}}
            if not ready:
                self.stop()
                return {"error": {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {timeout:.0f} seconds"}}
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:  # the runtime is shutting down
                chunk = b""
            if not chunk:
                return {"error": {"errorType": "Runtime.ExitError", "errorMessage": "the function's process exited"}}
            self.buffer += chunk
            if self.buffer.startswith(READY):  # the worker's init is over: the invocation's time starts now
                self.buffer, deadline = self.buffer[len(READY):], time.time() + timeout
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        os.close(self.read_fd)
        self.log.close()


class LambdaRuntime:
    """Runs the project's handlers for moto's Lambda, and the podinfo stand-in for image functions."""

    http_proxy = ""  # the emulated ALB (FleetEmulation), set by Emulation.attach

    def __init__(self, stack: Stack, endpoint: str, logs_dir: Path, timeline: Timeline, ecr: EcrExtension) -> None:
        self.stack = stack
        self.endpoint = endpoint
        self.logs_dir = logs_dir
        self.timeline = timeline
        self.ecr = ecr
        self.idle: dict[str, list[_Worker]] = {}
        self.all_workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.route_counter: dict[str, itertools.count[int]] = {}
        self.secret_caches: dict[str, standin.StagedSource] = {}
        self.role_credentials: dict[str, dict[str, str]] = {}
        self.async_failures: list[tuple[str, dict[str, Any]]] = []  # (function name, error) of failed asynchronous invocations
        self.secrets_extensions: list[standin.SecretsExtension] = []  # one per podinfo function, started on its first secret read
        logs_dir.mkdir(parents=True, exist_ok=True)

    def credentials(self, function: LocalFunction) -> dict[str, str]:
        """Credentials of the function's own role (as Lambda gives its execution environment): the
        local AWS authorizes every call the function makes against that role (`local.iam`)."""
        with self.lock:
            cached = self.role_credentials.get(function.name)
        if cached is None:
            import boto3

            role = lambda_backend(self.stack.account, self.stack.region).get_function(function.name).role
            sts = boto3.client("sts", region_name=self.stack.region, endpoint_url=self.endpoint,
                               aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
            found = sts.assume_role(RoleArn=role, RoleSessionName=function.name[:64], DurationSeconds=43200)["Credentials"]
            cached = {"AWS_ACCESS_KEY_ID": found["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": found["SecretAccessKey"],
                      "AWS_SESSION_TOKEN": found["SessionToken"]}
            with self.lock:
                self.role_credentials[function.name] = cached
        return cached

    def _env(self, function: LocalFunction) -> dict[str, str]:
        backend = lambda_backend(self.stack.account, self.stack.region)
        config = backend.get_function(function.name)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            **function.environment,
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "AWS_ENDPOINT_URL": self.endpoint,
            **self.credentials(function),
            "AWS_REGION": self.stack.region,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(config.timeout),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "LOCAL_FUNCTION_ARN": function.arn,
            "POWERTOOLS_DEV": "false",
            **({"HTTP_PROXY": self.http_proxy, "http_proxy": self.http_proxy, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"} if self.http_proxy else {}),
        }

    def _checkout(self, function: LocalFunction) -> _Worker:
        with self.lock:
            pool = self.idle.setdefault(function.name, [])
            while pool:
                worker = pool.pop()
                if worker.alive():
                    return worker
        worker = _Worker(function, self._env(function), self.logs_dir / f"{function.name}.log")
        with self.lock:
            self.all_workers.append(worker)
        return worker

    def warm(self) -> None:
        """Start one execution environment per function ahead of the first invocation."""
        for function in self.stack.functions.values():
            if function.code_dir is not None:
                worker = self._checkout(function)
                with self.lock:
                    self.idle[function.name].append(worker)

    def stop(self) -> None:
        with self.lock:
            workers, self.all_workers, self.idle = self.all_workers, [], {}
            extensions, self.secrets_extensions, self.secret_caches = self.secrets_extensions, [], {}
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.stop()
        for extension in extensions:
            extension.stop()

    # The single entry point moto calls for every invocation.
    def invoke(self, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: dict[str, str]) -> bytes:
        name, _, arn_qualifier = function_name.split(":function:")[-1].partition(":")
        qualifier = qualifier or arn_qualifier or None
        function = self.stack.function_by_name(name)
        event = json.loads(body) if body else {}
        asynchronous = (headers or {}).get("X-Amz-Invocation-Type") == "Event"
        if function is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": f"no local function {name}"}).encode()
        if asynchronous:
            threading.Thread(target=self.run_async, args=(function, qualifier, event), daemon=True).start()
            return b""
        reply = self.run(function, qualifier, event)
        if "error" in reply:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(reply["error"]).encode()
        return json.dumps(reply["result"]).encode()

    def run_async(self, function: LocalFunction, qualifier: str | None, event: Any) -> None:
        """An asynchronous invocation (EventBridge, Secrets Manager): nobody waits for its reply, so a
        failure is kept and told (on AWS it ends in the function's dead-letter queue after retries)."""
        reply = self.run(function, qualifier, event)
        if "error" in reply:
            error = reply["error"]
            with self.lock:
                self.async_failures.append((function.name, error))
            self.timeline.add("lambda", f"{function.name}: asynchronous invocation failed: {error.get('errorType')}: "
                                        f"{str(error.get('errorMessage', ''))[:200]}")

    def run(self, function: LocalFunction, qualifier: str | None, event: Any) -> dict[str, Any]:
        if function.code_dir is None:
            return self._podinfo(function, qualifier, event)
        try:
            config = lambda_backend(self.stack.account, self.stack.region).get_function(function.name)
        except Exception:  # an asynchronous invocation that outlived its runtime (stopped, reset)
            return {"error": {"errorType": "ResourceNotFoundException", "errorMessage": f"{function.name} no longer exists"}}
        worker = self._checkout(function)
        reply = worker.call(event, float(config.timeout))
        if worker.alive():
            with self.lock:
                self.idle.setdefault(function.name, []).append(worker)
        return reply

    def resolve_version(self, function: LocalFunction, qualifier: str | None) -> str:
        """The version an invocation lands on: aliases route by their weights (deterministically)."""
        backend = lambda_backend(self.stack.account, self.stack.region)
        if not qualifier or qualifier == "$LATEST" or qualifier.isdigit():
            return qualifier or "$LATEST"
        alias = backend.get_alias(qualifier, function.name)
        weights = (alias.routing_config or {}).get("AdditionalVersionWeights", {})
        counter = self.route_counter.setdefault(f"{function.name}:{qualifier}", itertools.count())
        n = next(counter)
        for version, weight in weights.items():
            # request n goes to the additional version when floor((n+1)w) > floor(nw): exactly w of them
            if int((n + 1) * float(weight)) > int(n * float(weight)):
                return str(version)
        return str(alias.function_version)

    def image_of(self, function: LocalFunction, version: str) -> str:
        backend = lambda_backend(self.stack.account, self.stack.region)
        fn = backend.get_function(function.name, None if version == "$LATEST" else version)
        return str(fn.code.get("ImageUri", ""))

    def _podinfo(self, function: LocalFunction, qualifier: str | None, event: Any) -> dict[str, Any]:
        version = self.resolve_version(function, qualifier)
        image_uri = self.image_of(function, version)
        try:
            reply = standin.handle(event, image_uri, self.ecr.labels_of(image_uri), self._secret_cache(function))
        except standin.FunctionError as exc:
            return {"error": {"errorType": "FunctionError", "errorMessage": str(exc)}, "version": version}
        return {"result": reply, "version": version}


    def _secret_cache(self, function: LocalFunction) -> standin.StagedSource | None:
        """One source per function, like one per execution environment of the workload, reading the
        staged values as the image's gate does on Lambda: through the Parameters and Secrets
        extension's HTTP API (emulated by `local.secrets_extension`, started on first use), which
        calls Secrets Manager with the function's own role, as the extension does on Lambda."""
        arn = function.environment.get("WORKLOAD_SECRET_ARN")
        if not arn:
            return None
        with self.lock:
            cached = self.secret_caches.get(function.name)
        if cached is not None:
            return cached
        import boto3

        credentials = self.credentials(function)
        extension = standin.SecretsExtension(
            lambda: boto3.client("secretsmanager", region_name=self.stack.region, endpoint_url=self.endpoint,
                                 aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                                 aws_session_token=credentials["AWS_SESSION_TOKEN"])).start()
        ttl = float(function.environment.get("SECRET_CACHE_SECONDS", "10"))
        with self.lock:
            if function.name in self.secret_caches:  # another request started one meanwhile
                duplicate: standin.SecretsExtension | None = extension
            else:
                duplicate = None
                self.secrets_extensions.append(extension)
                self.secret_caches[function.name] = extension.source(arn, ttl)
            source = self.secret_caches[function.name]
        if duplicate is not None:
            duplicate.stop()
        return source


class SecretsRotation:
    """Follows a RotateSecret's steps in the thread moto runs them in (see the module docstring)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.local = threading.local()

    @contextlib.contextmanager
    def running(self, secret_name: str) -> Any:
        self.local.rotation = {"secret": secret_name, "failed": None}
        try:
            yield self.local.rotation
        finally:
            self.local.rotation = None

    def before_step(self, body: Any) -> bytes | None:
        """An error reply instead of running the step, when an earlier step of this rotation failed."""
        rotation = getattr(self.local, "rotation", None)
        if rotation is None or rotation["failed"] is None:
            return None
        step = json.loads(body).get("Step", "?") if body else "?"
        return json.dumps({"errorType": "RotationStopped", "errorMessage": f"{step} not run: {rotation['failed']}"}).encode()

    def after_step(self, body: Any, reply: bytes, response_headers: dict[str, str]) -> None:
        rotation = getattr(self.local, "rotation", None)
        if rotation is None:
            return
        step = json.loads(body).get("Step", "?") if body else "?"
        if response_headers.get("x-amz-function-error"):
            error = json.loads(reply or b"{}")
            rotation["failed"] = f"{step} failed with {error.get('errorType')}"
            self.timeline.add("secrets", f"{rotation['secret']}: {step} failed: {error.get('errorType')}: "
                                         f"{str(error.get('errorMessage', ''))[:160]}")
            response_headers.pop("x-amz-function-error", None)  # RotateSecret itself succeeds (AWS runs steps async)
        else:
            self.timeline.add("secrets", f"{rotation['secret']}: {step} done")


def _publish_version_keeping_code(original: Callable[..., Any]) -> Callable[..., Any]:
    def publish_version(self: LambdaStorage, name_or_arn: str, description: str = "") -> Any:
        fn = original(self, name_or_arn, description)
        if fn is not None and isinstance(getattr(fn, "code", None), dict):
            fn.code = dict(fn.code)  # moto's shallow copy would share it with $LATEST
        return fn

    return publish_version


# -------------------------------------------------------------------------------------------------
class EcrExtension:
    """Layer blobs, the OCI read API (with referrers), digest checks and push events for moto's ECR."""

    PART_SIZE = 20 * 1024 * 1024  # what InitiateLayerUpload tells clients, and the most UploadLayerPart takes

    def __init__(self, account: str, region: str, timeline: Timeline) -> None:
        self.account, self.region = account, region
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.registry_url = ""
        self.on_push: Callable[[dict[str, Any]], None] | None = None
        self.timeline = timeline

    @property
    def backend(self) -> ECRBackend:
        return ecr_backends[self.account][self.region]

    # --- state helpers -------------------------------------------------------------------------------
    def find_image(self, repository: str, reference: str) -> Any | None:
        repo = self.backend.repositories.get(repository)
        if repo is None:
            return None
        for image in repo.images:
            if image.image_digest == reference or reference in (image.image_tags or []):
                return image
        return None

    def labels_of(self, image_uri: str) -> dict[str, str]:
        """The config labels of `registry/repo@digest` (empty when unknown)."""
        match = re.match(r"^[^/]+/(?P<repo>.+)@(?P<digest>sha256:[0-9a-f]{64})$", image_uri)
        if not match:
            return {}
        image = self.find_image(match["repo"], match["digest"])
        if image is None:
            return {}
        manifest = json.loads(image.image_manifest)
        config = self.blobs.get((match["repo"], manifest.get("config", {}).get("digest", "")))
        if not config:
            return {}
        return dict(json.loads(config).get("config", {}).get("Labels") or {})

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[(repository, digest)] = data
        return digest

    # --- API handlers (installed on moto's ECRResponse) ----------------------------------------------
    def batch_check_layer_availability(self, params: dict[str, Any]) -> dict[str, Any]:
        repo = params["repositoryName"]
        layers, failures = [], []
        for digest in params.get("layerDigests", []):
            if (repo, digest) in self.blobs:
                layers.append({"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": len(self.blobs[(repo, digest)])})
            else:
                failures.append({"layerDigest": digest, "failureCode": "MissingLayerDigest", "failureReason": "not in this repository"})
        return {"layers": layers, "failures": failures}

    def get_download_url_for_layer(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, digest = params["repositoryName"], params["layerDigest"]
        if (repo, digest) not in self.blobs:
            raise LocalError("LayersNotFoundException", f"layer {digest} is not in repository {repo}")
        return {"downloadUrl": f"{self.registry_url}/local-blobs/{repo}/{digest}", "layerDigest": digest}

    def initiate_layer_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = (params["repositoryName"], bytearray())
        return {"uploadId": upload_id, "partSize": self.PART_SIZE}

    def upload_layer_part(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, data = self.uploads[params["uploadId"]]
        part = base64.b64decode(params["layerPartBlob"])
        if len(part) > self.PART_SIZE:
            raise LocalError("LayerPartTooLargeException", f"a layer part is at most {self.PART_SIZE} bytes, got {len(part)}")
        if int(params["partFirstByte"]) != len(data):
            raise LocalError("InvalidLayerPartException", f"part starts at {params['partFirstByte']}, expected {len(data)}")
        data[int(params["partFirstByte"]):] = part
        return {"registryId": self.account, "repositoryName": repo, "uploadId": params["uploadId"], "lastByteReceived": len(data) - 1}

    def complete_layer_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, data = self.uploads.pop(params["uploadId"])
        digest = "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
        expected = params["layerDigests"][0]
        if digest != expected:
            raise LocalError("InvalidLayerException", f"uploaded bytes hash to {digest}, not {expected}")
        self.blobs[(repo, digest)] = bytes(data)
        return {"registryId": self.account, "repositoryName": repo, "uploadId": params["uploadId"], "layerDigest": digest}

    def get_authorization_token(self, params: dict[str, Any]) -> dict[str, Any]:
        token = base64.b64encode(b"AWS:local-registry-password").decode()
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": time.time() + 43200, "proxyEndpoint": self.registry_url}]}

    def check_put_image(self, repository: str, manifest: str, digest: str | None) -> None:
        actual = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        if digest and digest != actual:
            raise LocalError("ImageDigestDoesNotMatchException", f"the manifest's digest is {actual}, not {digest}")
        parsed = json.loads(manifest)
        missing = [d for d in ([parsed["config"]["digest"]] if "config" in parsed else []) + [x["digest"] for x in parsed.get("layers", [])]
                   if (repository, d) not in self.blobs]
        if missing:
            raise LocalError("LayersNotFoundException", f"layers not uploaded to {repository}: {', '.join(missing)}")

    def push_event(self, repository: str, image: Any, tag: str | None) -> dict[str, Any]:
        manifest = json.loads(image.image_manifest)
        detail: dict[str, Any] = {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": image.image_digest,
            "action-type": "PUSH",
            "manifest-media-type": image.image_manifest_media_type or manifest.get("mediaType"),
        }
        artifact = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        if artifact:
            detail["artifact-media-type"] = artifact
        if tag:
            detail["image-tag"] = tag
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": self.account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": self.region,
            "resources": [], "detail": detail,
        }

    # --- OCI distribution read API --------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._route(request)
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path
        blob = re.match(r"^/local-blobs/(?P<repo>.+)/(?P<digest>sha256:[0-9a-f]{64})$", path)
        if blob:
            data = self.blobs.get((blob["repo"], blob["digest"]))
            return Response(data, mimetype="application/octet-stream") if data is not None else Response("not found", 404)
        if not path.startswith("/v2/"):
            return Response("not found", 404)
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return Response(json.dumps({"errors": [{"code": "DENIED", "message": "Not Authorized"}]}), 401, mimetype="application/json")
        if path == "/v2/":
            return Response("{}", mimetype="application/json")
        match = re.match(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$", path)
        if not match:
            return Response("not found", 404)
        repo, kind, ref = match["repo"], match["kind"], match["ref"]
        if kind == "blobs":
            data = self.blobs.get((repo, ref))
            return Response(data, mimetype="application/octet-stream") if data is not None else Response("not found", 404)
        if kind == "manifests":
            image = self.find_image(repo, ref)
            if image is None:
                return Response(json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}), 404, mimetype="application/json")
            media = image.image_manifest_media_type or json.loads(image.image_manifest).get("mediaType")
            return Response(image.image_manifest, mimetype=media, headers={"Docker-Content-Digest": image.image_digest})
        return self._referrers(repo, ref, request.args.get("artifactType"))

    def _referrers(self, repo: str, digest: str, artifact_type: str | None) -> Response:
        repository = self.backend.repositories.get(repo)
        descriptors = []
        for image in repository.images if repository else []:
            manifest = json.loads(image.image_manifest)
            if manifest.get("subject", {}).get("digest") != digest:
                continue
            kind = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
            if artifact_type and kind != artifact_type:
                continue
            descriptors.append({
                "mediaType": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                "digest": image.image_digest, "size": len(image.image_manifest.encode()),
                "artifactType": kind, "annotations": manifest.get("annotations", {}),
            })
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors}
        return Response(json.dumps(index), mimetype="application/vnd.oci.image.index.v1+json")


# -------------------------------------------------------------------------------------------------
class EventBridgeDelivery:
    """Delivers events to the Lambda targets of matching rules on the default bus (asynchronously)."""

    def __init__(self, account: str, region: str, runtime_ref: Callable[[], LambdaRuntime | None], timeline: Timeline) -> None:
        self.account, self.region = account, region
        self.runtime_ref = runtime_ref
        self.timeline = timeline

    def deliver(self, event: dict[str, Any]) -> int:
        backend = events_backends[self.account][self.region]
        runtime = self.runtime_ref()
        delivered = 0
        for rule in backend.event_buses["default"].rules.values():
            if rule.state != "ENABLED" or not rule.event_pattern.matches_event(event):
                continue
            for target in rule.targets:
                if ":lambda:" in target["Arn"] and ":function:" in target["Arn"] and runtime is not None:
                    function = runtime.stack.function_by_name(target["Arn"])
                    if function is not None:
                        threading.Thread(target=runtime.run_async, args=(function, None, event), daemon=True).start()
                        delivered += 1
        return delivered


# -------------------------------------------------------------------------------------------------
_CONFIG_RE = re.compile(r"^CodeDeployDefault\.Lambda(?:(?P<kind>Canary|Linear)(?P<pct>\d+)Percent(?:Every)?(?P<min>\d+)Minutes?|AllAtOnce)$")


def traffic_steps(config_name: str) -> list[tuple[float, float]]:
    """(weight on the new version, bake minutes before the next step) for a Lambda deployment config."""
    match = _CONFIG_RE.match(config_name)
    if not match:
        raise LocalError("DeploymentConfigDoesNotExistException", f"unknown deployment config {config_name}")
    if not match["kind"]:
        return [(1.0, 0)]
    pct, minutes = int(match["pct"]) / 100, int(match["min"])
    if match["kind"] == "Canary":
        return [(pct, minutes), (1.0, 0)]
    steps, weight = [], pct
    while weight < 1.0 - 1e-9:
        steps.append((round(weight, 4), minutes))
        weight += pct
    return [*steps, (1.0, 0)]


@dataclass
class _Run:
    deployment_id: str
    hook_status: dict[str, str] = field(default_factory=dict)
    stop_requested: bool = False
    events: dict[str, str] = field(default_factory=dict)
    #: StopDeployment and the deployment's completion do not interleave.
    lock: threading.Lock = field(default_factory=threading.Lock)


class CodeDeployLifecycle:
    """Runs Lambda deployments the way CodeDeploy does, on moto's stored deployments."""

    def __init__(self, account: str, region: str, runtime_ref: Callable[[], LambdaRuntime | None], timeline: Timeline,
                 minute_seconds: float, hook_timeout: float = 60.0, canary_requests: int = 20) -> None:
        self.account, self.region = account, region
        self.runtime_ref = runtime_ref
        self.timeline = timeline
        self.minute_seconds = minute_seconds
        self.hook_timeout = hook_timeout
        self.canary_requests = canary_requests
        self.runs: dict[str, _Run] = {}
        self.threads: list[threading.Thread] = []

    @property
    def backend(self) -> CodeDeployBackend:
        return codedeploy_backends[self.account][self.region]

    def start(self, deployment_id: str) -> None:
        self.runs[deployment_id] = _Run(deployment_id)
        thread = threading.Thread(target=self._run_safely, args=(deployment_id,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def put_hook_status(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.runs.get(params["deploymentId"])
        if run is None or params["lifecycleEventHookExecutionId"] not in run.events:
            raise LocalError("LifecycleEventAlreadyCompletedException" if run else "DeploymentDoesNotExistException",
                             "no pending lifecycle event with that id")
        if params["status"] not in ("Succeeded", "Failed"):
            raise LocalError("InvalidLifecycleEventHookExecutionStatusException", "status must be Succeeded or Failed")
        run.hook_status[params["lifecycleEventHookExecutionId"]] = params["status"]
        return {"lifecycleEventHookExecutionId": params["lifecycleEventHookExecutionId"]}

    def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.runs.get(params["deploymentId"])
        if run is None:
            raise LocalError("DeploymentDoesNotExistException", "no such deployment")
        with run.lock:
            if str(self._info(run.deployment_id).status) in ("Succeeded", "Failed", "Stopped"):
                raise LocalError("DeploymentAlreadyCompletedException", f"deployment {run.deployment_id} has already completed")
            run.stop_requested = True
        return {"status": "Pending", "statusMessage": "stop requested; the deployment rolls back"}

    # --- the engine -----------------------------------------------------------------------------------
    def _run_safely(self, deployment_id: str) -> None:
        try:
            self._run(deployment_id)
        except Exception as exc:
            self._finish(deployment_id, "Failed", "INTERNAL_ERROR", f"local CodeDeploy engine error: {exc}", rolled_back=True)

    def _info(self, deployment_id: str) -> Any:
        return self.backend.deployments[deployment_id]

    def _alias(self) -> Any:
        return lambda_backend(self.account, self.region)

    def _release_of(self, info: Any) -> str:
        match = re.search(r"release=(\S+)", info.description or "")
        return match.group(1) if match else ""

    def _run(self, deployment_id: str) -> None:
        info = self._info(deployment_id)
        release = self._release_of(info)
        revision = info.revision if isinstance(info.revision, dict) else json.loads(info.revision)
        spec = json.loads(revision["appSpecContent"]["content"])
        props = next(iter(spec["Resources"][0].values()))["Properties"]
        function, alias, current, target = props["Name"], props["Alias"], str(props["CurrentVersion"]), str(props["TargetVersion"])
        hooks = {k: v for hook in spec.get("Hooks", []) for k, v in hook.items()}
        group = self.backend.deployment_groups[info.application_name][info.deployment_group_name]
        steps = traffic_steps(str(info.deployment_config_name))
        info.status, info.start_time = "InProgress", time.time()
        env = info.deployment_group_name
        self.timeline.add("codedeploy", f"{env}: deployment {deployment_id[:8]} started, version {current} -> {target} "
                          f"({info.deployment_config_name})", release)
        self._reset_alarms(group)

        if "BeforeAllowTraffic" in hooks and not self._hook(deployment_id, "BeforeAllowTraffic", hooks["BeforeAllowTraffic"], release, env):
            self._finish(deployment_id, "Failed", "HOOK_EXECUTION_FAILURE",
                         "the BeforeAllowTraffic hook reported Failed: the new version did not pass its health checks", rolled_back=True)
            return
        lam = self._alias()
        for weight, minutes in steps:
            if weight < 1.0:
                lam.update_alias(alias, function, current, "", {"AdditionalVersionWeights": {target: weight}})
                self.timeline.add("codedeploy", f"{env}: {int(weight * 100)}% of traffic on version {target}, baking "
                                  f"{minutes} min (locally {minutes * self.minute_seconds:.0f}s)", release)
                verdict = self._bake(deployment_id, group, function, alias, minutes * self.minute_seconds, release)
                if verdict:
                    self._rollback(function, alias, current)
                    code, message = verdict
                    self._finish(deployment_id, "Stopped", code, message, rolled_back=True)
                    return
            else:
                lam.update_alias(alias, function, target, "", {"AdditionalVersionWeights": {}})
                self.timeline.add("codedeploy", f"{env}: 100% of traffic on version {target}", release)
        if "AfterAllowTraffic" in hooks and not self._hook(deployment_id, "AfterAllowTraffic", hooks["AfterAllowTraffic"], release, env):
            self._rollback(function, alias, current)
            self._finish(deployment_id, "Failed", "HOOK_EXECUTION_FAILURE",
                         "the AfterAllowTraffic hook reported Failed: the live alias did not pass its checks", rolled_back=True)
            return
        with self.runs[deployment_id].lock:
            if self.runs[deployment_id].stop_requested:  # StopDeployment before it completed: it rolls back
                self._rollback(function, alias, current)
                self._finish(deployment_id, "Stopped", "DEPLOYMENT_STOPPED", "the deployment was stopped on request and rolled back",
                             rolled_back=True)
                return
            self._finish(deployment_id, "Succeeded", "", "", rolled_back=False)

    def _hook(self, deployment_id: str, phase: str, hook_function: str, release: str, env: str) -> bool:
        runtime = self.runtime_ref()
        run = self.runs[deployment_id]
        execution_id = str(uuid.uuid4())
        run.events[execution_id] = phase
        function = runtime.stack.function_by_name(hook_function) if runtime else None
        if function is None:
            return False
        event = {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}
        threading.Thread(target=runtime.run_async, args=(function, None, event), daemon=True).start()  # type: ignore[union-attr]
        deadline = time.time() + self.hook_timeout
        while time.time() < deadline and execution_id not in run.hook_status and not run.stop_requested:
            time.sleep(0.05)
        status = run.hook_status.get(execution_id, "Failed (no status reported in time)")
        self.timeline.add("codedeploy", f"{env}: {phase} hook {status}", release)
        return status == "Succeeded"

    def _reset_alarms(self, group: Any) -> None:
        """A new deployment starts with its alarms evaluated afresh (OK), as after a quiet period."""
        cw = cloudwatch_backends[self.account][self.region]
        for alarm in (group.alarm_configuration or {}).get("alarms", []) if isinstance(group.alarm_configuration, dict) else []:
            if alarm["name"] in cw.alarms:
                cw.set_alarm_state(alarm["name"], "new deployment: evaluated afresh", "{}", "OK")

    def _alarm_names(self, group: Any) -> list[str]:
        config = group.alarm_configuration
        if isinstance(config, dict):
            return [a["name"] for a in config.get("alarms", [])] if config.get("enabled", True) else []
        return [a["name"] if isinstance(a, dict) else str(a) for a in getattr(config, "alarms", [])]

    def _bake(self, deployment_id: str, group: Any, function: str, alias: str, seconds: float, release: str) -> tuple[str, str] | None:
        """Synthetic traffic through the alias during the bake; errors trip the group's alarms."""
        runtime = self.runtime_ref()
        cw = cloudwatch_backends[self.account][self.region]
        alarms = self._alarm_names(group)
        local_fn = runtime.stack.function_by_name(function) if runtime else None
        deadline = time.time() + seconds
        sent = errors = 0
        while True:
            if self.runs[deployment_id].stop_requested:
                return ("DEPLOYMENT_STOPPED", "the deployment was stopped on request and rolled back")
            if runtime and local_fn and sent < self.canary_requests:
                for _ in range(self.canary_requests // 4 or 1):
                    reply = runtime.run(local_fn, alias, {"rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}})
                    sent += 1
                    errors += "error" in reply
                if errors:
                    for name in alarms:
                        if name in cw.alarms and cw.alarms[name].state_value != "ALARM":
                            cw.set_alarm_state(name, f"Threshold Crossed: {errors} errors in {sent} canary requests (evaluated locally)",
                                               json.dumps({"errors": errors}), "ALARM")
                            self.timeline.add("cloudwatch", f"alarm {name} -> ALARM ({errors} errors in {sent} requests)", release)
            active = [name for name in alarms if name in cw.alarms and cw.alarms[name].state_value == "ALARM"]
            if active:
                return ("ALARM_ACTIVE", f"alarm(s) {', '.join(active)} went into ALARM during the canary; traffic was moved back")
            if time.time() >= deadline:
                return None
            time.sleep(min(0.1, max(deadline - time.time(), 0)))

    def _rollback(self, function: str, alias: str, current: str) -> None:
        self._alias().update_alias(alias, function, current, "", {"AdditionalVersionWeights": {}})

    def _finish(self, deployment_id: str, status: str, code: str, message: str, rolled_back: bool) -> None:
        info = self._info(deployment_id)
        info.status, info.complete_time = status, time.time()
        release = self._release_of(info)
        if code:
            info.error_information = {"code": code, "message": message}
        if rolled_back:
            info.rollback_message = f"rolled back: {message}"
        text = f"{info.deployment_group_name}: deployment {deployment_id[:8]} {status}"
        self.timeline.add("codedeploy", text + (f" ({code}: {message})" if code else ""), release)


# -------------------------------------------------------------------------------------------------
class FleetEmulation:
    """The EC2 fleet's load balancers and instances, which moto keeps only as records.

    - An HTTP proxy plays every ALB: a request for `http://<the ALB's DNS name>/...` (functions get
      it as their HTTP_PROXY) follows the listener's header rules, else its weighted forward,
      round-robins over the target group's healthy instances, and is answered by the podinfo
      stand-in for the image on that instance (its `podinfo-image` tag, as the boot script reads it).
    - Target health: moto says "healthy" for every registered instance; here it is the stand-in's
      `/readyz` for the instance's image, and instances that are no longer running drop out.
    - Alarms: while a listener splits traffic between two colours, synthetic requests go through it
      (like client traffic during a canary); 5xx answers put the load balancer's 5xx alarms in ALARM.
      A listener back on one colour has its alarms evaluated afresh (OK).
    """

    def __init__(self, account: str, region: str, ecr: EcrExtension, timeline: Timeline, canary_requests: int = 20) -> None:
        self.account, self.region, self.ecr, self.timeline = account, region, ecr, timeline
        self.canary_requests = canary_requests
        self.counters: dict[str, itertools.count[int]] = {}
        self.server: Any = None
        self.proxy_url = ""
        self.secret_files: dict[str, Any] = {}  # instance id -> secretgate.FileSource
        self.secret_client: Any = None
        self.secret_dir: Path | None = None
        self.refresh_seconds = 60.0
        self.cache_seconds = 10.0
        self.stopping = threading.Event()
        self.secret_lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # -- moto's records ------------------------------------------------------------------------------
    @property
    def elbv2(self) -> Any:
        return elbv2_backends[self.account][self.region]

    @property
    def ec2(self) -> Any:
        return ec2_backends[self.account][self.region]

    def tags_of(self, instance_id: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.ec2.describe_tags(filters={"resource-id": [instance_id]})}

    def running(self, instance_id: str) -> bool:
        try:
            return str(self.ec2.get_instance_by_id(instance_id).state) == "running"
        except Exception:  # terminated and gone
            return False

    def answer(self, instance_id: str, event: dict[str, Any]) -> dict[str, Any]:
        image = self.tags_of(instance_id).get("podinfo-image", "")
        try:
            return standin.handle(event, image, self.ecr.labels_of(image), self.secrets_for(instance_id))
        except standin.FunctionError as exc:
            return {"statusCode": 502, "headers": {"content-type": "text/plain"}, "body": f"502 Bad Gateway: {exc}"}

    # -- the instances' secret file: podinfo-secret-fetch on a timer, the gate's FileSource ---------------------
    def start_secret_timer(self, endpoint: str, work_dir: Path, refresh_seconds: float, cache_seconds: float) -> None:
        """Run the image's own `podinfo-secret-fetch` for every running instance every
        `refresh_seconds` (its systemd timer), writing `<work_dir>/<instance>/jwt.json` (0400)."""
        import boto3

        self.secret_client = boto3.client("secretsmanager", region_name=self.region, endpoint_url=endpoint,
                                          aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
        self.secret_dir, self.refresh_seconds, self.cache_seconds = work_dir, refresh_seconds, cache_seconds

        def timer() -> None:
            while not self.stopping.wait(self.refresh_seconds):
                for instance_id in list(self.secret_files):
                    with contextlib.suppress(Exception):  # a failed fetch leaves the last file, as on EC2
                        self._fetch(instance_id)

        threading.Thread(target=timer, daemon=True).start()

    def _fetch(self, instance_id: str) -> Path:
        assert self.secret_dir is not None
        secret_id = self.tags_of(instance_id).get("podinfo-secret", "")
        path = self.secret_dir / instance_id / "jwt.json"
        fetch = _secret_fetcher()
        values = fetch.staged_values(self.secret_client, secret_id)
        changed = fetch.write_atomically(path, values, os.getuid(), os.getgid())
        if changed:
            self.timeline.add("fleet", f"{instance_id}: podinfo-secret-fetch wrote stages {', '.join(sorted(values))}")
        return path

    def secrets_for(self, instance_id: str) -> Any:
        """The instance's gate reads the file the timer keeps fresh (fetched once at boot)."""
        if self.secret_client is None or not self.tags_of(instance_id).get("podinfo-secret"):
            return None
        with self.secret_lock:
            if instance_id not in self.secret_files:
                from secretgate import FileSource

                self.secret_files[instance_id] = FileSource(self._fetch(instance_id), self.cache_seconds)
            return self.secret_files[instance_id]

    def health(self, instance_id: str) -> str:
        if not self.running(instance_id):
            return "draining"
        reply = self.answer(instance_id, _http_event("GET", "/readyz", "", {}, ""))
        return "healthy" if int(reply.get("statusCode", 0)) == 200 else "unhealthy"

    # -- the load balancer ----------------------------------------------------------------------------
    def _listener(self, host: str, port: int) -> Any:
        for lb in self.elbv2.load_balancers.values():
            if lb.dns_name.lower() == host.lower():
                for listener in lb.listeners.values():
                    if int(listener.port) == port:
                        return lb, listener
        return None, None

    def _target_group(self, listener: Any, headers: dict[str, str]) -> str | None:
        rules = [r for r in self.elbv2.describe_rules(listener.arn, None) if not getattr(r, "is_default", False)]
        for rule in sorted(rules, key=lambda r: int(r.priority)):
            matched = all(
                c.get("Field") == "http-header"
                and headers.get(c["HttpHeaderConfig"]["HttpHeaderName"].lower()) in c["HttpHeaderConfig"]["Values"]
                for c in rule.conditions
            )
            if matched and rule.conditions:
                return str(rule.actions[0].data["TargetGroupArn"])
        action = listener.default_actions[0].data
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        total = sum(int(g.get("Weight", 1)) for g in groups)
        if total <= 0:
            return None
        n = next(self.counters.setdefault(listener.arn, itertools.count()))
        slot = (n * 37) % total  # spreads consecutive requests over the weights deterministically
        for group in groups:
            slot -= int(group.get("Weight", 1))
            if slot < 0:
                return str(group["TargetGroupArn"])
        return None

    def route(self, host: str, port: int, method: str, path: str, query: str, headers: dict[str, str], body: str) -> dict[str, Any]:
        _lb, listener = self._listener(host, port)
        if listener is None:
            return {"statusCode": 502, "body": f"no load balancer listens on {host}:{port}", "headers": {}}
        arn = self._target_group(listener, headers)
        group = self.elbv2.target_groups.get(arn) if arn else None
        healthy = [t for t in (group.targets if group else {}) if self.health(t) == "healthy"]
        if not healthy:
            return {"statusCode": 503, "body": "503 Service Temporarily Unavailable (no healthy target)", "headers": {}}
        n = next(self.counters.setdefault(arn or "", itertools.count()))
        instance = sorted(healthy)[n % len(healthy)]
        reply = self.answer(instance, _http_event(method, path, query, headers, body))
        reply.setdefault("headers", {})["x-local-target"] = f"{group.name}/{instance}"
        return reply

    def serve(self) -> str:
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                host, _, port = (url.netloc or self.headers.get("Host", "")).partition(":")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = fleet.route(host, int(port or 80), self.command, url.path or "/", url.query, headers, body)
                data = str(reply.get("body") or "").encode()
                self.send_response(int(reply.get("statusCode", 502)))
                for key, value in (reply.get("headers") or {}).items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.proxy_url = f"http://127.0.0.1:{self.server.server_port}"
        return self.proxy_url

    def shutdown(self) -> None:
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- canary traffic and alarms ------------------------------------------------------------------------
    def _alarms_of(self, lb: Any) -> list[str]:
        full_name = lb.arn.split(":loadbalancer/", 1)[1]
        cw = cloudwatch_backends[self.account][self.region]
        return [name for name, alarm in cw.alarms.items()
                if any(d.name == "LoadBalancer" and d.value == full_name for d in alarm.dimensions)]

    def on_listener_changed(self, listener_arn: str) -> None:
        lb = next((lb for lb in self.elbv2.load_balancers.values() if listener_arn in lb.listeners), None)
        if lb is None:
            return
        listener = lb.listeners[listener_arn]
        groups = (listener.default_actions[0].data.get("ForwardConfig") or {}).get("TargetGroups", [])
        names = {g["TargetGroupArn"]: self.elbv2.target_groups[g["TargetGroupArn"]].name for g in groups}
        split = ", ".join(f"{names[g['TargetGroupArn']].rsplit('-', 1)[-1]} {g['Weight']}%" for g in groups)
        self.timeline.add("fleet", f"{lb.name}: traffic {split}")
        cw = cloudwatch_backends[self.account][self.region]
        if sum(1 for g in groups if int(g.get("Weight", 0)) > 0) < 2:
            for name in self._alarms_of(lb):
                if cw.alarms[name].state_value != "OK":
                    cw.set_alarm_state(name, "traffic on one colour again: evaluated afresh", "{}", "OK")
            return
        thread = threading.Thread(target=self._canary_traffic, args=(lb,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _canary_traffic(self, lb: Any) -> None:
        errors = 0
        for _ in range(self.canary_requests):
            reply = self.route(lb.dns_name, 80, "GET", "/", "", {"user-agent": "local-client-traffic"}, "")
            errors += int(reply.get("statusCode", 0)) >= 500
        if not errors:
            return
        cw = cloudwatch_backends[self.account][self.region]
        for name in self._alarms_of(lb):
            if cw.alarms[name].state_value != "ALARM":
                reason = f"Threshold Crossed: {errors} 5xx in {self.canary_requests} requests (evaluated locally)"
                cw.set_alarm_state(name, reason, "{}", "ALARM")
                self.timeline.add("cloudwatch", f"alarm {name} -> ALARM ({errors} 5xx in {self.canary_requests} requests)")

    def on_group_scaled(self, name: str, desired: int) -> None:
        self.timeline.add("fleet", f"{name}: desired capacity {desired}")


def _secret_fetcher() -> Any:
    """workload/ec2/podinfo-secret-fetch (a script without a .py suffix), loaded as a module."""
    import importlib.machinery
    import importlib.util

    path = ROOT / "workload" / "ec2" / "podinfo-secret-fetch"
    loader = importlib.machinery.SourceFileLoader("podinfo_secret_fetch", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    if loader.name not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[loader.name] = module
    return sys.modules[loader.name]


def _http_event(method: str, path: str, query: str, headers: dict[str, str], body: str) -> dict[str, Any]:
    """A request as podinfo's front receives it (the stand-in takes the Function URL event shape)."""
    return podinfo.request(path, method, headers=headers, query=query, body=body)


class EmailOutbox:
    """Email subscriptions of SNS topics write each delivered message to a file (one per message)."""

    def __init__(self, folder: Path, timeline: Timeline) -> None:
        self.folder = folder
        self.timeline = timeline
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    def deliver(self, subscription: Any, message: str, subject: str | None, attributes: dict[str, Any] | None) -> None:
        matcher = getattr(subscription, "_filter_policy_matcher", None)
        if matcher is not None and not matcher.matches(attributes, message):
            return
        record = {"to": subscription.endpoint, "topic": subscription.topic.arn, "subject": subject or "", "body": message,
                  "attributes": {k: v.get("Value") for k, v in (attributes or {}).items()}, "time": time.time()}
        with self.lock:
            self.messages.append(record)
            path = self.folder / f"{len(self.messages):04d}-{re.sub(r'[^a-z0-9]+', '_', subscription.endpoint.lower())}.eml"
        path.write_text(f"To: {record['to']}\nSubject: {record['subject']}\n\n{message}\n")
        release = re.search(r"\[([A-Za-z0-9_-]+)\]", record["subject"])
        self.timeline.add("email", f"to {record['to']}: {record['subject']}", release.group(1) if release else "")


# -------------------------------------------------------------------------------------------------
class Emulation:
    """Installs every extension on moto (once per process) and holds their state."""

    current: Emulation | None = None
    _installed = False
    _saved: ClassVar[list[tuple[type, str, Any]]] = []

    def __init__(self, account: str, region: str, minute_seconds: float, work_dir: Path) -> None:
        self.account, self.region = account, region
        self.timeline = Timeline()
        self.ecr = EcrExtension(account, region, self.timeline)
        self.runtime: LambdaRuntime | None = None
        self.events = EventBridgeDelivery(account, region, lambda: self.runtime, self.timeline)
        self.codedeploy = CodeDeployLifecycle(account, region, lambda: self.runtime, self.timeline, minute_seconds)
        self.outbox = EmailOutbox(work_dir / "outbox", self.timeline)
        self.rotation = SecretsRotation(self.timeline)
        self.fleet = FleetEmulation(account, region, self.ecr, self.timeline)
        self.work_dir = work_dir
        self.duplicate_push_events = False
        self.registry_server: Any = None

    def attach(self, stack: Stack, endpoint: str) -> None:
        self.runtime = LambdaRuntime(stack, endpoint, self.work_dir / "logs", self.timeline, self.ecr)
        # Functions reach the fleet's load balancers through the emulated ALB (their HTTP_PROXY).
        self.runtime.http_proxy = self.fleet.serve()
        rotation = stack.functions.get("RotateWorkloadSecretFunction")
        refresh = float(rotation.environment.get("FLEET_SECRET_REFRESH_SECONDS", "60") if rotation else 60)
        self.fleet.start_secret_timer(endpoint, self.work_dir / "fleet", refresh,
                                      float(stack.parameters.get("SecretCacheSeconds", 10)))

    def start_registry(self) -> str:
        self.registry_server = make_server("127.0.0.1", 0, self.ecr.wsgi, threaded=True)
        threading.Thread(target=self.registry_server.serve_forever, daemon=True).start()
        self.ecr.registry_url = f"http://127.0.0.1:{self.registry_server.server_port}"
        return self.ecr.registry_url

    def shutdown(self) -> None:
        if self.runtime:
            self.runtime.stop()
        if self.registry_server:
            self.registry_server.shutdown()
        self.fleet.shutdown()

    def on_image_pushed(self, repository: str, image: Any, tag: str | None) -> None:
        event = self.ecr.push_event(repository, image, tag)
        label = f"{repository}@{image.image_digest[:19]}" + (f" tag {tag}" if tag else "")
        self.timeline.add("ecr", f"push {label}")
        copies = 2 if self.duplicate_push_events else 1
        for _ in range(copies):
            self.events.deliver(event)

    @classmethod
    def uninstall(cls) -> None:
        """Put moto back as it was (the runtime's stop does this, so later in-process moto use is plain)."""
        while cls._saved:
            target, name, original = cls._saved.pop()
            if original is _MISSING:
                if name in target.__dict__:
                    delattr(target, name)
            else:
                setattr(target, name, original)
        cls._installed = False
        cls.current = None
        sfn_aws.uninstall()

    @classmethod
    def install(cls, emulation: Emulation) -> None:
        """Point moto's extension points at `emulation` (patches are installed once per process)."""
        cls.current = emulation
        if cls._installed:
            return
        cls._installed = True

        def patch(target: type, name: str, value: Any) -> None:
            cls._saved.append((target, name, target.__dict__.get(name, _MISSING)))
            setattr(target, name, value)

        def current() -> Emulation:
            assert cls.current is not None, "no local emulation is active"
            return cls.current

        # Lambda: every invocation runs the project's handler (or the podinfo stand-in).
        def invoke(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any) -> bytes:
            emulation = current()
            runtime = emulation.runtime
            stopped = emulation.rotation.before_step(body)
            if stopped is not None:
                return stopped
            if runtime is None:
                response_headers["x-amz-function-error"] = "Unhandled"
                return b'{"errorType": "LocalRuntimeNotReady"}'
            reply = runtime.invoke(function_name, qualifier, body, headers, response_headers)
            emulation.rotation.after_step(body, reply, response_headers)
            return reply

        patch(LambdaSimpleBackend, "invoke", invoke)

        # The EC2 fleet: target health from the instances' stand-ins, canary traffic on weight changes.
        health_for = FakeTargetGroup.health_for

        def emulated_health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
            status = health_for(self, target, ec2_backend)
            if status.status == "healthy" and str(target["Id"]).startswith("i-"):
                status.status = current().fleet.health(str(target["Id"]))
                if status.status == "unhealthy":
                    status.reason, status.description = "Target.ResponseCodeMismatch", "Health checks failed with these codes: [503]"
            return status

        patch(FakeTargetGroup, "health_for", emulated_health_for)
        modify_listener = ELBv2Backend.modify_listener

        def emulated_modify_listener(self: ELBv2Backend, arn: str, *args: Any, **kwargs: Any) -> Any:
            listener = modify_listener(self, arn, *args, **kwargs)
            current().fleet.on_listener_changed(arn)
            return listener

        patch(ELBv2Backend, "modify_listener", emulated_modify_listener)
        update_group = AutoScalingBackend.update_auto_scaling_group

        def emulated_update_group(self: AutoScalingBackend, name: str, *args: Any, **kwargs: Any) -> Any:
            group = update_group(self, name, *args, **kwargs)
            current().fleet.on_group_scaled(name, int(group.desired_capacity))
            return group

        patch(AutoScalingBackend, "update_auto_scaling_group", emulated_update_group)
        patch(LambdaStorage, "publish_version", _publish_version_keeping_code(LambdaStorage.publish_version))

        from moto.awslambda.models import LambdaFunction

        original_get_code = LambdaFunction.get_code

        def get_code(self: Any) -> dict[str, Any]:
            # ResolvedImageUri is the image actually pulled: for a deploy by digest, repo@digest.
            response = original_get_code(self)
            uri = str(self.code.get("ImageUri", ""))
            if "@sha256:" in uri:
                response["Code"]["ResolvedImageUri"] = uri
            return response

        patch(LambdaFunction, "get_code", get_code)

        sfn_aws.install()  # Step Functions as AWS runs it (local/sfn_aws.py)

        # ECR: layer API, auth token, digest check and push events.
        def json_action(handler_name: str) -> Callable[[ECRResponse], Any]:
            def action(self: ECRResponse) -> Any:
                try:
                    return 200, {}, json.dumps(getattr(current().ecr, handler_name)(json.loads(self.body or "{}")), default=str)
                except LocalError as exc:
                    return _error_response(exc)
            return action

        for name in ("batch_check_layer_availability", "get_download_url_for_layer", "initiate_layer_upload",
                     "upload_layer_part", "complete_layer_upload", "get_authorization_token"):
            patch(ECRResponse, name, json_action(name))

        original_put_image = ECRResponse.put_image

        def put_image(self: ECRResponse) -> Any:
            params = json.loads(self.body or "{}")
            emulation = current()
            try:
                emulation.ecr.check_put_image(params["repositoryName"], params["imageManifest"], params.get("imageDigest"))
            except LocalError as exc:
                return _error_response(exc)
            result = original_put_image(self)
            image = emulation.ecr.find_image(params["repositoryName"], params.get("imageDigest") or "")
            if image is not None:
                emulation.on_image_pushed(params["repositoryName"], image, params.get("imageTag"))
            return result

        patch(ECRResponse, "put_image", put_image)

        # CodeDeploy: a created deployment runs; hook status and stop are accepted.
        original_create = CodeDeployBackend.create_deployment

        def create_deployment(self: CodeDeployBackend, *args: Any, **kwargs: Any) -> str:
            deployment_id = original_create(self, *args, **kwargs)
            current().codedeploy.start(deployment_id)
            return deployment_id

        patch(CodeDeployBackend, "create_deployment", create_deployment)

        def cd_action(method: str) -> Callable[[CodeDeployResponse], Any]:
            def action(self: CodeDeployResponse) -> Any:
                try:
                    return 200, {}, json.dumps(getattr(current().codedeploy, method)(json.loads(self.body or "{}")))
                except LocalError as exc:
                    return _error_response(exc)
            return action

        patch(CodeDeployResponse, "put_lifecycle_event_hook_execution_status", cd_action("put_hook_status"))
        patch(CodeDeployResponse, "stop_deployment", cd_action("stop"))

        from moto.codedeploy.models import DeploymentInfo

        original_to_dict = DeploymentInfo.to_dict

        def to_dict(self: Any) -> dict[str, Any]:
            data = original_to_dict(self)
            data["errorInformation"] = getattr(self, "error_information", {})
            if getattr(self, "rollback_message", ""):
                data["rollbackInfo"] = {"rollbackMessage": self.rollback_message}
            return data

        patch(DeploymentInfo, "to_dict", to_dict)

        # Secrets Manager: RotateSecret as AWS runs it.
        from moto.secretsmanager.models import SecretsManagerBackend

        original_rotate = SecretsManagerBackend.rotate_secret

        def rotate_secret(self: Any, secret_id: str, client_request_token: str | None = None, rotation_lambda_arn: str | None = None,
                          rotation_rules: dict[str, Any] | None = None, rotate_immediately: bool = True) -> str:
            secret = self.secrets[secret_id] if self._is_valid_identifier(secret_id) else None
            if secret is None:
                return str(original_rotate(self, secret_id, client_request_token, rotation_lambda_arn, rotation_rules, rotate_immediately))
            rotation_lambda_arn = rotation_lambda_arn or getattr(secret, "rotation_lambda_arn", "") or None
            if not rotate_immediately:
                secret.rotation_lambda_arn = rotation_lambda_arn or ""
                days = int((rotation_rules or {}).get("AutomaticallyAfterDays", 0))
                if days:
                    secret.auto_rotate_after_days = days
                    secret.next_rotation_date = int(time.time()) + days * 86400
                secret.rotation_enabled = bool(secret.rotation_lambda_arn)
                return str(secret.to_short_dict())
            emulation = current()
            with emulation.rotation.running(secret.name):
                emulation.timeline.add("secrets", f"{secret.name}: RotateSecret")
                result = original_rotate(self, secret_id, client_request_token, rotation_lambda_arn, rotation_rules, rotate_immediately)
            # GetSecretValue without a stage returns whatever carries AWSCURRENT, rotation or not.
            for version_id, version in secret.versions.items():
                if "AWSCURRENT" in version["version_stages"]:
                    secret.set_default_version_id(version_id)
            return str(result)

        patch(SecretsManagerBackend, "rotate_secret", rotate_secret)

        # SNS: email subscriptions deliver to the outbox.
        original_publish = Subscription.publish

        def publish(self: Subscription, message: str, message_id: str, subject: str | None = None,
                    message_attributes: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> None:
            if self.protocol in ("email", "email-json"):
                current().outbox.deliver(self, message, subject, message_attributes)
                return
            original_publish(self, message, message_id, subject, message_attributes, *args, **kwargs)

        patch(Subscription, "publish", publish)
