"""Rotation of the workload secret: podinfo's JWT signing secret (`jwt-secret`), one per environment.

podinfo signs the tokens it issues on `POST /token` with this secret (HS256, issuer `podinfo`) and
checks `Authorization: Bearer` tokens on `GET /token/validate` with it. The secret's value is JSON,
`{"jwt-secret": "<random>"}`.

The four steps Secrets Manager calls, each idempotent and resumable (a step called twice, or a
rotation retried after a crash at any point, ends with AWSCURRENT valid and at most one AWSPENDING):

- `createSecret`: take the environment's lock (holder = the rotation token), then put a new random
  value as the token's version, staged AWSPENDING (kept if it already has one).
- `setSecret`: every version of the service that the environment's `live` alias routes to accepts
  a token signed with the pending value (the service reads the staged versions with a short cache,
  so this waits at most that long), and so do the fleet's instances through its load balancer
  (they re-read the secret on a timer: this waits up to `fleet_settle_seconds`). Some accepting and
  others not is `SetSecretFailed`.
- `testSecret`: through the `live` alias and through the fleet's load balancer, a token signed with
  the pending value validates and one signed with the current value still does; otherwise
  `SecretTestFailed` (AWSCURRENT untouched).
- `finishSecret`: move AWSCURRENT to the token's version (Secrets Manager puts AWSPREVIOUS on the
  old one), drop AWSPENDING, release the lock.

Releasing the lock hands it on as a release does (`LockQueue.release`): a release queued for the
environment while the rotation held it is resumed at once, not when its wait's backstop runs out.

Every step first checks the token (stage guard): it must be a version of this secret staged
AWSPENDING; a version already AWSCURRENT means the rotation is done (the lock is released again,
which is a no-op when it is not held). Every step renews the lock, so a release never deploys the
environment while a rotation is between steps, and a rotation never starts while a release holds it
(`RotationBusy`). A failing step releases the lock.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core import config, edge
from podrelease.core.errors import (
    LockBusy,
    RotationBusy,
    RotationError,
    SecretKmsAccessDenied,
    SecretNotFound,
    SecretTestFailed,
    SetSecretFailed,
)
from podrelease.core.obs import register_secret
from podrelease.release import podinfo
from podrelease.release.fleet import http_get as fleet_http_get
from podrelease.release.ledger import Ledger
from podrelease.release.lockqueue import LockQueue
from podrelease.rotation.stages import PENDING, STEPS, already_current, pending_string, promote_pending
from secretgate import ISSUER, SECRET_KEY, check_token, parse_secret_string, sign_token, verify_token

__all__ = ["ISSUER", "SECRET_KEY", "RotationStep", "Rotator", "Target", "check_token", "rotator_from_env", "secret_value",
           "sign_token", "staging_labels", "verify_token"]

KMS_ERRORS = {"DecryptionFailure", "EncryptionFailure", "KMSAccessDeniedException", "KMSDisabledException",
              "KMSInvalidStateException", "KMSNotFoundException"}


# --- podinfo-compatible tokens: one copy, in secretgate (it ships in the workload image) ---
def secret_value(secret_string: str) -> str:
    """The `jwt-secret` of a SecretString, registered for log redaction."""
    value = parse_secret_string(secret_string, "workload secret")
    register_secret(value)
    return value


# --- the rotation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where a secret is used: its environment, the podinfo function serving it and, when the stack
    has one, the environment's EC2 fleet (its load balancer's URL and instances per colour)."""

    environment: str
    function_name: str
    alias: str = "live"
    fleet_url: str = ""
    fleet_size: int = 0


Invoker = Callable[[str, str, dict[str, Any]], podinfo.Reply]  # (function, qualifier, request event) -> podinfo's reply


@dataclass(frozen=True)
class _Step:
    arn: str
    token: str
    target: Target
    meta: dict[str, Any]


HttpGet = Callable[[str, dict[str, str]], tuple[int, str]]  # (url, headers) -> (status, body)


def _probes(target: Target) -> int:
    """Requests through the fleet's load balancer per check: enough to reach each live instance."""
    return max(2, 2 * target.fleet_size)


class Rotator:
    def __init__(self, secretsmanager: Any, ledger: Ledger, targets: dict[str, Target], invoke: Invoker,
                 versions_of: Callable[[Target], list[str]], lease_seconds: int = 900, settle_seconds: float = 20.0,
                 poll_seconds: float = 0.5, http_get: HttpGet | None = None, fleet_settle_seconds: float = 0.0,
                 unlock: Callable[[str, str], bool] | None = None) -> None:
        self.http_get = http_get
        # Let go of an environment's lock held by a token: `LockQueue.release` (hands it to the next
        # queued release); the ledger's bare delete when no queue is given.
        self._unlock = unlock or ledger.release_lock
        self.fleet_settle_seconds = fleet_settle_seconds
        self.sm = secretsmanager
        self.ledger = ledger
        self.targets = targets  # secret ARN -> target
        self.invoke = invoke
        self.versions_of = versions_of
        self.lease_seconds = lease_seconds
        self.settle_seconds = settle_seconds
        self.poll_seconds = poll_seconds

    # -- Secrets Manager calls, with their errors named ------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.sm, operation)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code in KMS_ERRORS or (code == "AccessDeniedException" and "kms" in message.lower()):
                msg = (f"{operation}: Secrets Manager could not use the secret's KMS key ({code}: {message}); "
                       "check the key policy and the role's kms grant")
                raise SecretKmsAccessDenied(msg) from exc
            if code == "ResourceNotFoundException" and operation == "describe_secret":
                raise SecretNotFound(f"secret {kwargs.get('SecretId')!r} does not exist") from exc
            raise

    def _pending_value(self, arn: str, token: str) -> str | None:
        try:
            text = pending_string(self.sm, arn, token)
        except ClientError:
            self._call("get_secret_value", SecretId=arn, VersionId=token, VersionStage=PENDING)  # names the error
            raise
        return secret_value(text) if text else None

    def _current(self, arn: str) -> tuple[str, str]:
        reply = self._call("get_secret_value", SecretId=arn, VersionStage="AWSCURRENT")
        return str(reply["VersionId"]), secret_value(reply["SecretString"])

    # -- the entry point -------------------------------------------------------------------------------
    def rotate(self, step: str, secret_id: str, token: str) -> dict[str, Any]:
        if step not in STEPS:
            raise RotationError(f"unknown rotation step {step!r}; expected one of {', '.join(STEPS)}")
        meta = self._call("describe_secret", SecretId=secret_id)
        arn = str(meta["ARN"])
        target = self.targets.get(arn)
        if target is None:
            raise SecretNotFound(f"secret {meta.get('Name', secret_id)!r} is not a workload secret this function rotates")
        if already_current(meta, token):
            self._tidy_done(arn, token, meta, target)
            return {"step": step, "state": "done", "environment": target.environment}
        # Secrets Manager tests a new or changed schedule (RotateImmediately false) by running
        # testSecret alone on a throw-away AWSPENDING version: no createSecret took the lock for it,
        # and no finishSecret will release it, so the test takes it only while it runs.
        standalone = step == "testSecret" and self.ledger.lock_holder(target.environment) != token
        try:
            self._lock(target, token)
            if standalone:
                result = self._test_configuration(_Step(arn, token, target, meta))
            else:
                result = getattr(self, "_" + step)(_Step(arn, token, target, meta))
        except Exception:  # the lock is released only when this rotation holds it
            self._unlock(target.environment, token)
            raise
        if standalone:
            self._unlock(target.environment, token)
        return {"step": step, "state": result, "environment": target.environment}

    def _lock(self, target: Target, token: str) -> None:
        try:
            self.ledger.acquire_lock(target.environment, token, self.lease_seconds)
        except LockBusy as exc:
            raise RotationBusy(f"rotation {token} of the {target.environment} secret waits: {exc}") from exc

    def _tidy_done(self, arn: str, token: str, meta: dict[str, Any], target: Target) -> None:
        promote_pending(self.sm, arn, token, meta)  # already current: only a left-over AWSPENDING goes
        self._unlock(target.environment, token)

    # -- the four steps --------------------------------------------------------------------------------
    def _createSecret(self, step: _Step) -> str:  # noqa: N802
        arn, token = step.arn, step.token
        if self._pending_value(arn, token) is not None:
            return "pending value already created"
        self._current(arn)  # the secret must have a readable current value (and the KMS key must work)
        value = secrets.token_urlsafe(48)
        register_secret(value)
        self._call("put_secret_value", SecretId=arn, ClientRequestToken=token,
                   SecretString=json.dumps({SECRET_KEY: value}), VersionStages=["AWSPENDING"])
        return "pending value created"

    def _accepts(self, target: Target, qualifier: str, secret: str) -> bool:
        token, _ = sign_token(secret, name="rotation-check")
        return self.invoke(target.function_name, qualifier, podinfo.request("/token/validate", headers=podinfo.bearer(token))).ok

    def _fleet_refusals(self, target: Target, secret: str) -> int:
        """How many of 2 x fleet_size requests through the fleet's load balancer refuse a token
        signed with `secret` (the ALB spreads them over the live colour's instances)."""
        if not target.fleet_url or self.http_get is None:
            return 0
        token, _ = sign_token(secret, name="rotation-check")
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "podinfo-release-rotation"}
        statuses = [self.http_get(target.fleet_url + "/token/validate", headers)[0] for _ in range(_probes(target))]
        return sum(status != 200 for status in statuses)

    def _wait_for_fleet(self, target: Target, secret: str) -> None:
        """The fleet's instances re-read the secret on a timer: wait up to fleet_settle_seconds."""
        deadline = time.monotonic() + self.fleet_settle_seconds
        while (refused := self._fleet_refusals(target, secret)) and time.monotonic() <= deadline:
            time.sleep(self.poll_seconds)
        if refused:
            msg = (f"the {target.environment} fleet ({target.fleet_url}) still refuses the pending value after "
                   f"{self.fleet_settle_seconds:g}s ({refused} of {_probes(target)} requests); "
                   "AWSCURRENT unchanged")
            raise SetSecretFailed(msg)

    def _setSecret(self, step: _Step) -> str:  # noqa: N802
        arn, token, target = step.arn, step.token, step.target
        pending = self._pending_value(arn, token)
        if pending is None:
            raise SetSecretFailed(f"version {token} has no pending value yet: run createSecret first")
        versions = self.versions_of(target)
        waiting = set(versions)
        deadline = time.monotonic() + self.settle_seconds
        while waiting:
            waiting = {v for v in waiting if not self._accepts(target, v, pending)}
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(self.poll_seconds)
        if waiting:
            accepted = sorted(set(versions) - waiting)
            msg = (f"{target.function_name}: versions {sorted(waiting)} do not accept the pending value after "
                   f"{self.settle_seconds:g}s (accepting: {accepted or 'none'}); AWSCURRENT unchanged")
            raise SetSecretFailed(msg)
        self._wait_for_fleet(target, pending)
        fleet = " and the fleet" if target.fleet_url else ""
        return f"accepted by versions {sorted(versions)}{fleet}"

    def _testSecret(self, step: _Step) -> str:  # noqa: N802
        arn, token, target = step.arn, step.token, step.target
        pending = self._pending_value(arn, token)
        if pending is None:
            raise SecretTestFailed(f"version {token} has no pending value: nothing to test")
        _, current = self._current(arn)
        if not self._accepts(target, target.alias, pending):
            msg = f"{target.function_name}:{target.alias} refuses a token signed with the pending value; AWSCURRENT unchanged"
            raise SecretTestFailed(msg)
        if not self._accepts(target, target.alias, current):
            msg = f"{target.function_name}:{target.alias} refuses a token signed with the current value; AWSCURRENT unchanged"
            raise SecretTestFailed(msg)
        for label, value in (("pending", pending), ("current", current)):
            if refused := self._fleet_refusals(target, value):
                msg = (f"the {target.environment} fleet refuses a token signed with the {label} value "
                       f"({refused} of {_probes(target)} requests); AWSCURRENT unchanged")
                raise SecretTestFailed(msg)
        return "pending and current values both accepted"

    def _test_configuration(self, step: _Step) -> str:
        """testSecret outside a rotation: the function can read the secret and the service accepts
        the current value (on the alias and the fleet). The throw-away pending version is never
        set in the service, so it is not asked to accept it."""
        target = step.target
        _, current = self._current(step.arn)
        if not self._accepts(target, target.alias, current):
            msg = f"{target.function_name}:{target.alias} refuses a token signed with the current value"
            raise SecretTestFailed(msg)
        if refused := self._fleet_refusals(target, current):
            msg = f"the {target.environment} fleet refuses a token signed with the current value ({refused} requests)"
            raise SecretTestFailed(msg)
        return "configuration test passed: the service accepts the current value"

    def _finishSecret(self, step: _Step) -> str:  # noqa: N802
        arn, token, target = step.arn, step.token, step.target
        try:
            current = promote_pending(self.sm, arn, token, step.meta)
        except ClientError:
            self._call("describe_secret", SecretId=arn)  # names a KMS or missing-secret error
            raise
        self._unlock(target.environment, token)
        return f"AWSCURRENT moved from {current} to {token}"


def staging_labels(secretsmanager: Any, secret_id: str) -> dict[str, list[str]]:
    """Version id -> staging labels (for the demo and tests)."""
    meta = secretsmanager.describe_secret(SecretId=secret_id)
    return {k: sorted(v) for k, v in meta.get("VersionIdsToStages", {}).items()}


# --- the function's wiring ----------------------------------------------------------------------------
def alias_versions(lambda_client: Any) -> Callable[[Target], list[str]]:
    """The versions a target's alias routes traffic to (two during a canary)."""
    def versions_of(target: Target) -> list[str]:
        alias = lambda_client.get_alias(FunctionName=target.function_name, Name=target.alias)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {})
        return sorted({str(alias["FunctionVersion"]), *map(str, weights)})

    return versions_of


@dataclass(frozen=True)
class RotationStep:
    """One step of a rotation as Secrets Manager invokes it."""

    step: str
    secret_id: str
    token: str

    @classmethod
    def of(cls, event: Any) -> RotationStep:
        """From the rotation event (a raw dict or Powertools' SecretsManagerEvent)."""
        raw = edge.mapping(getattr(event, "raw_event", event), "rotate_workload_secret")
        return cls(*(edge.field(raw, key, str, "rotate_workload_secret") for key in ("Step", "SecretId", "ClientRequestToken")))


def rotator_from_env(env: Mapping[str, str], secretsmanager: Any, lambda_client: Any, ledger: Ledger, sfn: Any) -> Rotator:
    """The rotation function's Rotator, from its settings (a missing one is a ConfigurationError).

    The lock is let go through the release lock's queue (`sfn` resumes the release it is handed to,
    with the releases' lease, LOCK_LEASE_SECONDS).
    WORKLOAD_SECRET_<ENV> and PODINFO_FUNCTION_<ENV> name each environment's secret and function,
    FLEET_URL_<ENV> and FLEET_SIZE its fleet. How long setSecret waits: a podinfo version re-reads
    the staged values after SECRET_CACHE_SECONDS, so twice that covers a read just before the new
    value was put; a fleet instance re-reads the secret every FLEET_SECRET_REFRESH_SECONDS, and its
    gate after the cache time on top of that.
    """
    targets = {}
    for environment in ("dev", "prod"):
        upper = environment.upper()
        targets[config.require(f"WORKLOAD_SECRET_{upper}", env)] = Target(
            environment, config.require(f"PODINFO_FUNCTION_{upper}", env),
            fleet_url=config.optional(f"FLEET_URL_{upper}", "", env), fleet_size=config.integer("FLEET_SIZE", 0, env))
    cache_seconds = config.integer("SECRET_CACHE_SECONDS", 10, env)
    refresh_seconds = config.integer("FLEET_SECRET_REFRESH_SECONDS", 60, env)

    def invoke(function: str, qualifier: str, event: dict[str, Any]) -> podinfo.Reply:
        return podinfo.invoke(lambda_client, function, qualifier, event)

    return Rotator(secretsmanager, ledger, targets, invoke, alias_versions(lambda_client),
                   lease_seconds=config.integer("ROTATION_LEASE_SECONDS", 900, env),
                   settle_seconds=float(2 * cache_seconds), http_get=fleet_http_get,
                   fleet_settle_seconds=float(refresh_seconds + 2 * cache_seconds),
                   unlock=LockQueue(ledger.table, sfn, config.integer("LOCK_LEASE_SECONDS", 7200, env)).release)
