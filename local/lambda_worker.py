"""One Lambda execution environment: a process that imports a handler once and serves invocations.

Started by `local.emulation.LambdaPool` with the function's environment (from the template) and
PYTHONPATH = the shared layer + the function's code folder, as Lambda lays them out. Requests and
replies are JSON lines on a private pipe (fd given as argv[3]); the handler's own stdout and stderr
(its log lines) go to the function's log file, like CloudWatch Logs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any


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


def main() -> None:
    code_dir, handler_spec, reply_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    replies = os.fdopen(reply_fd, "w", buffering=1)
    module_name, function_name = handler_spec.rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(f"handler_{module_name}", Path(code_dir) / f"{module_name}.py")
    assert spec is not None
    assert spec.loader is not None
    init_error: dict[str, Any] | None = None
    handler = None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = getattr(module, function_name)
    except Exception as exc:
        traceback.print_exc()
        init_error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    for line in sys.stdin:
        request = json.loads(line)
        if init_error is not None or handler is None:
            replies.write(json.dumps({"error": init_error or {"errorType": "Runtime.ImportModuleError"}}) + "\n")
            continue
        context = Context(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"), os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                          int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "30")) * 1000)
        try:
            result = handler(request["event"], context)
            reply = {"result": result}
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "stackTrace": traceback.format_exc().splitlines()[-6:]}}
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":
    main()
