"""One Lambda execution environment: a process that imports a handler once and serves invocations.

Started by `local.emulation.lambda_runtime.LambdaRuntime` as Lambda starts a Python function: an interpreter of the
runtime's Python with the runtime's own boto3 (`.venv-lambda`, see requirements-lambda-runtime.txt),
run isolated (`python -I`: no PYTHONPATH, no user site, not even this file's folder on the path),
and a path laid out as Lambda lays it out:

    <task root>                                  the function's folder from `sam build` (/var/task)
    <layer>/python/lib/python3.12/site-packages  the layer's folders, where Lambda mounts them
    <layer>/python                               (/opt/python/...)
    the runtime's site-packages                  boto3 and botocore at the runtime's version

Nothing of the source tree is importable, so a package the build put in the wrong place fails here
as it fails on AWS: the invocation answers `Runtime.ImportModuleError`. This file is standard
library only for that reason. Requests and replies are JSON lines on a private pipe (fd given as
argv[3]); the handler's own stdout and stderr (its log lines) go to the function's log file, like
CloudWatch Logs.

X-Ray, as Lambda does it for `Tracing: Active`: each invocation gets its own trace header in
`_X_AMZN_TRACE_ID` (a new root, the function segment's id as Parent, sampled), which the X-Ray SDK
in the function reads to attach its subsegments; when the environment names a daemon
(`AWS_XRAY_DAEMON_ADDRESS`, the local runtime's `local.xray` listener), the function segment itself
(`AWS::Lambda::Function`, named after the function) is sent there after the invocation, as the
Lambda service sends it on AWS.

    python -I lambda_worker.py TASK_ROOT HANDLER REPLY_FD LAYER_DIR [LAYER_DIR ...]
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import socket
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

#: The line the worker writes once its init phase (the handler's import) is over.
READY = '{"ready": true}\n'


class Context:
    """The parts of the Lambda context object that handlers and Powertools use."""

    def __init__(self, function_name: str, memory: str, timeout_ms: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(memory)
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = os.environ.get("LOCAL_FUNCTION_ARN", function_name)
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.time() * 1000 + timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(int(self._deadline - time.time() * 1000), 0)


class Trace:
    """One invocation's trace: the header the function reads, and the function segment sent after it."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.start = time.time()
        self.root = f"1-{int(self.start):08x}-{secrets.token_hex(12)}"
        self.segment_id = secrets.token_hex(8)

    @property
    def header(self) -> str:
        return f"Root={self.root};Parent={self.segment_id};Sampled=1"

    def send(self, daemon: str, *, failed: bool) -> None:
        """The function segment, in the X-Ray daemon's UDP format (a JSON header line, then the document)."""
        host, _, port = daemon.rpartition(":")
        document = {"name": self.function_name, "id": self.segment_id, "trace_id": self.root, "start_time": self.start,
                    "end_time": time.time(), "origin": "AWS::Lambda::Function", "fault": failed}
        datagram = b'{"format": "json", "version": 1}\n' + json.dumps(document).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(datagram, (host, int(port)))


def lambda_path(task_root: str, layers: list[str]) -> list[str]:
    """The folders Lambda puts in front of the runtime's own, in Lambda's order."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = [task_root]
    for layer in layers:
        path += [str(Path(layer) / "python" / "lib" / version / "site-packages"), str(Path(layer) / "python")]
    return path


def _init_error(module_name: str, exc: BaseException) -> dict[str, Any]:
    """The error Lambda's Python runtime reports when the handler's module cannot be loaded."""
    if isinstance(exc, SyntaxError):
        return {"errorType": "Runtime.UserCodeSyntaxError", "errorMessage": f"Syntax error in module '{module_name}': {exc}"}
    if isinstance(exc, ImportError):
        return {"errorType": "Runtime.ImportModuleError", "errorMessage": f"Unable to import module '{module_name}': {exc}"}
    return {"errorType": type(exc).__name__, "errorMessage": str(exc)}


def main() -> None:
    task_root, handler_spec, reply_fd, layers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    sys.path[:0] = lambda_path(task_root, layers)
    os.chdir(task_root)  # Lambda starts the function in its task root
    replies = os.fdopen(reply_fd, "w", buffering=1)
    module_name, function_name = handler_spec.rsplit(".", 1)
    init_error: dict[str, Any] | None = None
    handler = None
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        traceback.print_exc()
        init_error = _init_error(module_name, exc)
    else:
        handler = getattr(module, function_name, None)
        if handler is None:
            init_error = {"errorType": "Runtime.HandlerNotFound", "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'"}
    replies.write(READY)  # the init phase is over: Lambda does not count it in an invocation's timeout
    for line in sys.stdin:
        request = json.loads(line)
        if init_error is not None or handler is None:
            replies.write(json.dumps({"error": init_error or {"errorType": "Runtime.ImportModuleError"}}) + "\n")
            continue
        context = Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"), os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                          int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "30")) * 1000)
        trace = Trace(context.function_name)
        os.environ["_X_AMZN_TRACE_ID"] = trace.header  # as Lambda's runtime sets it for each invocation
        try:
            result = handler(request["event"], context)
            reply = {"result": result}
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "stackTrace": traceback.format_exc().splitlines()[-6:]}}
        sys.stdout.flush()
        sys.stderr.flush()
        if daemon := os.environ.get("AWS_XRAY_DAEMON_ADDRESS"):
            trace.send(daemon, failed="error" in reply)
        replies.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":
    main()
