"""Lambda: every invocation moto receives runs the project's own handler.

Each function runs in a long-lived worker process (like a Lambda execution environment, see
`local/lambda_worker.py`) with the function's environment from the template and its own role's
credentials; podinfo's image functions are answered by the stand-in (`local.standin`). Alias routing
weights are honoured. Published versions keep the code they were published with (moto shares it
between versions), and GetFunction reports the ResolvedImageUri of a deploy by digest.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moto.awslambda.models import LambdaFunction, LambdaStorage
from moto.awslambda.utils import get_backend as lambda_backend
from moto.awslambda_simple.models import LambdaSimpleBackend

from local import standin
from local.emulation.base import Current, Patches, Timeline
from local.emulation.ecr import EcrExtension
from local.stack import LocalFunction, Stack
from local.template import ROOT

WORKER = Path(__file__).resolve().parent.parent / "lambda_worker.py"
READY = b'{"ready": true}\n'  # lambda_worker.READY
#: How long an invocation waits for a cold worker's init (imports) to end, outside its own timeout.
INIT_SECONDS = 180
#: The Lambda runtime's interpreter: Python 3.12 with only the runtime's boto3 (`make build-local`).
LAMBDA_VENV = Path(os.environ.get("LOCAL_LAMBDA_VENV", str(ROOT / ".venv-lambda")))


def lambda_python() -> Path:
    python = LAMBDA_VENV / "bin" / "python"
    if not python.exists():
        msg = f"{python} is missing: `make build-local` creates the Lambda runtime's interpreter (python3.12 + the runtime's boto3)"
        raise RuntimeError(msg)
    return python


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
        self.ready = False  # the worker's init phase is over (it wrote READY)

    def call(self, event: Any, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event}).encode() + b"\n")
        self.process.stdin.flush()
        # Lambda does not count the init phase in an invocation's timeout: until the worker says it is
        # ready, wait as long as a loaded machine may need to import a handler (INIT_SECONDS).
        deadline = time.time() + (timeout if self.ready else max(timeout, INIT_SECONDS))
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
                self.buffer, deadline, self.ready = self.buffer[len(READY):], time.time() + timeout, True
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Idempotent: a worker stopped on a timeout is stopped again when the runtime stops, and closing
        its pipe twice would close whatever file reused that descriptor number in between."""
        if self.alive():
            self.process.kill()
            self.process.wait()
        if self.read_fd >= 0:
            read_fd, self.read_fd = self.read_fd, -1
            os.close(read_fd)
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
        # Lambda retries a failed asynchronous invocation twice, about a minute and then two minutes later
        # ("Asynchronous invocation", Lambda Developer Guide); Emulation.attach scales them to its minute.
        self.async_retry_delays: tuple[float, ...] = (60.0, 120.0)
        self.stopping = threading.Event()
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
        self.stopping.set()
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
        """An asynchronous invocation (EventBridge, Secrets Manager), as Lambda runs one: a function error
        or timeout is retried after each of `async_retry_delays`; when the last attempt fails too, the
        event goes to the function's dead-letter queue (sent with its role, with Lambda's RequestID,
        ErrorCode and ErrorMessage attributes) and the failure is kept and told."""
        reply = self.run(function, qualifier, event)
        for attempt, delay in enumerate(self.async_retry_delays, start=2):
            if "error" not in reply or reply["error"].get("errorType") == "ResourceNotFoundException":
                break
            self.timeline.add("lambda", f"{function.name}: asynchronous invocation failed ({reply['error'].get('errorType')}); "
                                        f"attempt {attempt} in {delay:g} s")
            if self.stopping.wait(delay):
                break
            reply = self.run(function, qualifier, event)
        if "error" in reply:
            error = reply["error"]
            with self.lock:
                self.async_failures.append((function.name, error))
            self.timeline.add("lambda", f"{function.name}: asynchronous invocation failed: {error.get('errorType')}: "
                                        f"{str(error.get('errorMessage', ''))[:200]}")
            self._dead_letter(function, event, error)

    def _dead_letter(self, function: LocalFunction, event: Any, error: dict[str, Any]) -> None:
        if not function.dead_letter_arn or self.stopping.is_set():
            return
        import boto3
        from botocore.exceptions import ClientError

        queue = function.dead_letter_arn.split(":")[-1]
        credentials = self.credentials(function)
        sqs = boto3.client("sqs", region_name=self.stack.region, endpoint_url=self.endpoint,
                           aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                           aws_session_token=credentials["AWS_SESSION_TOKEN"])
        attributes = {"RequestID": str(uuid.uuid4()), "ErrorCode": "200",
                      "ErrorMessage": f"{error.get('errorType')}: {str(error.get('errorMessage', ''))[:200]}"}
        # Lambda sends to the queue's ARN; its URL is the emulator's lookup, not a call of the role.
        operator = boto3.client("sqs", region_name=self.stack.region, endpoint_url=self.endpoint,
                                aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
        try:
            url = operator.get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=function.dead_letter_arn.split(":")[4])["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event), MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()})
        except ClientError as exc:
            self.timeline.add("lambda", f"{function.name}: the event could not reach its dead-letter queue: "
                                        f"{exc.response['Error']['Code']}")
            return
        self.timeline.add("lambda", f"{function.name}: the event is in its dead-letter queue {queue}")

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


def _publish_version_keeping_code(original: Callable[..., Any]) -> Callable[..., Any]:
    def publish_version(self: LambdaStorage, name_or_arn: str, description: str = "") -> Any:
        fn = original(self, name_or_arn, description)
        if fn is not None and isinstance(getattr(fn, "code", None), dict):
            fn.code = dict(fn.code)  # moto's shallow copy would share it with $LATEST
        return fn

    return publish_version


_patches = Patches()


def install(current: Current) -> None:
    """Every invocation runs the project's handler (or the podinfo stand-in), between the steps of
    a rotation as `SecretsRotation` allows; versions keep their code; GetFunction names the digest."""

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

    _patches.patch(LambdaSimpleBackend, "invoke", invoke)
    _patches.patch(LambdaStorage, "publish_version", _publish_version_keeping_code(LambdaStorage.publish_version))
    original_get_code = LambdaFunction.get_code

    def get_code(self: Any) -> dict[str, Any]:
        # ResolvedImageUri is the image actually pulled: for a deploy by digest, repo@digest.
        response = original_get_code(self)
        uri = str(self.code.get("ImageUri", ""))
        if "@sha256:" in uri:
            response["Code"]["ResolvedImageUri"] = uri
        return response

    _patches.patch(LambdaFunction, "get_code", get_code)


def uninstall() -> None:
    _patches.restore()
