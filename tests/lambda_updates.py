"""Lambda's code updates as they happen on AWS, in moto (in process).

On AWS, UpdateFunctionCode starts an update that takes seconds to minutes: meanwhile the function
reports `LastUpdateStatus: InProgress` (its code already names the new image), a second update is
refused with ResourceConflictException, and each update that is applied stamps `LastModified`.
moto applies an update at once, always reports `Successful` and never stamps `LastModified`. This
patches moto's Lambda backend to behave like AWS for the tests that need it:

- `hold = True`: an update stays InProgress until `finish()` (or `fail(...)`);
- `conflict_next = True`: the next UpdateFunctionCode is refused as if another writer's update had
  just started (the race between reading the function and updating it);
- every update that is applied stamps `LastModified`, so a test can tell whether one was started.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.core.utils import iso_8601_datetime_with_nanoseconds


class ResourceConflict(LambdaClientError):
    code = 409

    def __init__(self, function_name: str) -> None:
        super().__init__("ResourceConflictException",
                         f"The operation cannot be performed at this time. An update is in progress for resource: {function_name}")


class LambdaUpdates:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hold = False
        self.conflict_next = False
        self.status: dict[str, tuple[str, str, str]] = {}  # function name -> (status, reason code, reason)
        original_update = LambdaBackend.update_function_code
        original_configuration = LambdaFunction.get_configuration
        updates = self

        def update_function_code(backend: LambdaBackend, function_name: str, qualifier: str, body: dict[str, Any]) -> Any:
            name = function_name.split(":function:")[-1].split(":")[0]
            if updates.conflict_next or updates.status.get(name, ("",))[0] == "InProgress":
                updates.conflict_next = False
                raise ResourceConflict(name)
            function = backend.get_function(function_name, qualifier)
            function.last_modified = iso_8601_datetime_with_nanoseconds()
            updates.status[name] = ("InProgress" if updates.hold else "Successful", "", "")
            return original_update(backend, function_name, qualifier, body)

        def get_configuration(function: LambdaFunction, on_create: bool = False) -> dict[str, Any]:
            configuration = original_configuration(function, on_create)
            status, code, reason = updates.status.get(function.function_name, ("", "", ""))
            if status and str(function.version) == "$LATEST" and not on_create:
                configuration["LastUpdateStatus"] = status
                if code:
                    configuration["LastUpdateStatusReasonCode"] = code
                    configuration["LastUpdateStatusReason"] = reason
            return configuration

        monkeypatch.setattr(LambdaBackend, "update_function_code", update_function_code)
        monkeypatch.setattr(LambdaFunction, "get_configuration", get_configuration)

    def finish(self, function_name: str) -> None:
        """The update in progress is applied."""
        self.status[function_name] = ("Successful", "", "")

    def fail(self, function_name: str, code: str, reason: str) -> None:
        """The update in progress failed (Lambda keeps the failed image as the function's code)."""
        self.status[function_name] = ("Failed", code, reason)
