"""Secrets Manager: RotateSecret runs the rotation steps as AWS does.

- It stops at the first step that fails (moto ran all four and then pointed GetSecretValue's
  default at the new version anyway): `SecretsRotation` follows the steps in the thread moto runs
  them in, and the Lambda emulation asks it before and after each step.
- A RotateSecret without RotationLambdaARN uses the configured function (moto forgot it).
- RotateImmediately=false only sets the schedule (moto left a pending copy of the value).

moto passes the secret's name as SecretId, as noted in DESIGN.md; the rotation function takes both.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from moto.secretsmanager.models import SecretsManagerBackend

from local.emulation.base import Current, Patches, Timeline


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



_patches = Patches()


def install(current: Current) -> None:
    """RotateSecret as AWS runs it."""
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

    _patches.patch(SecretsManagerBackend, "rotate_secret", rotate_secret)


def uninstall() -> None:
    _patches.restore()
