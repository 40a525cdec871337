"""Rotation of the workload secret (`podrelease.rotation.workload_secret.Rotator`) against moto in process.

The service is the podinfo stand-in (`local.standin`) reading the secret's staged versions from the
same moto Secrets Manager through its cache, so every assertion is about what Secrets Manager holds
(staging labels) and what the service accepts, never about which calls were made.

GIVEN a secret with a rotation started (a version staged AWSPENDING, as RotateSecret leaves it)
WHEN steps run (twice each, after a crash, against a failing service, with a busy lock, ...)
THEN the staging labels end with one valid AWSCURRENT and at most one AWSPENDING, or a named error.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.secretsmanager.models import secretsmanager_backends

from local.standin import SdkSource, handle
from podrelease.core.errors import (
    InvalidRequest,
    RotationBusy,
    RotationTokenUnknown,
    SecretKmsAccessDenied,
    SecretNotFound,
    SecretTestFailed,
    SetSecretFailed,
)
from podrelease.release import podinfo
from podrelease.release.ledger import Ledger
from podrelease.release.lockqueue import LockQueue
from podrelease.rotation.workload_secret import STEPS, Rotator, Target, secret_value, sign_token, staging_labels, verify_token
from tests.conftest import FAKE_CREDENTIALS, FakeLambdaContext, import_handler

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REGION = "us-east-1"
ACCOUNT = "123456789012"
NAME = "podrel/podinfo-jwt-dev"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/podinfo@sha256:" + "a" * 64


class Env:
    def __init__(self, ledger_table: Callable[..., Any]) -> None:
        self.sm = boto3.client("secretsmanager", region_name=REGION)
        self.table = ledger_table("ledger")
        self.ledger = Ledger(self.table)
        self.arn = self.sm.create_secret(Name=NAME, SecretString=json.dumps({"jwt-secret": "first-" + uuid.uuid4().hex}))["ARN"]
        # One execution environment per version of the service; "stale" ones never re-read the secret.
        self.caches: dict[str, SdkSource] = {}
        self.stale: set[str] = set()
        self.versions = ["live"]

    def invoke(self, function: str, qualifier: str, event: dict[str, Any]) -> podinfo.Reply:
        if qualifier not in self.caches:
            ttl = 3600.0 if qualifier in self.stale else 0.0
            self.caches[qualifier] = SdkSource(lambda: self.sm, self.arn, ttl)
        return podinfo.decode(handle(event, IMAGE, {}, self.caches[qualifier]))

    def rotator(self, **kwargs: Any) -> Rotator:
        return Rotator(self.sm, self.ledger, {self.arn: Target("dev", "podrel-podinfo-dev")}, self.invoke,
                       lambda target: list(self.versions), **{"settle_seconds": 0.3, "poll_seconds": 0.05, **kwargs})

    def start_rotation(self) -> str:
        """What RotateSecret does before it calls the function: a new version id staged AWSPENDING."""
        token = str(uuid.uuid4())
        secret = secretsmanager_backends[ACCOUNT][REGION].secrets[NAME]
        secret.remove_version_stages_from_old_versions(["AWSPENDING"])
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
        return token

    def labels(self) -> dict[str, list[str]]:
        return {v: s for v, s in staging_labels(self.sm, self.arn).items() if s}

    def current(self) -> tuple[str, str]:
        reply = self.sm.get_secret_value(SecretId=self.arn, VersionStage="AWSCURRENT")
        return reply["VersionId"], secret_value(reply["SecretString"])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Iterator[Env]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield Env(ledger_table)


def assert_rotated(env: Env, old_version: str, token: str) -> None:
    assert env.labels() == {old_version: ["AWSPREVIOUS"], token: ["AWSCURRENT"]}
    assert env.ledger.lock_holder("dev") is None


def test_each_step_twice_ends_rotated(env: Env) -> None:
    old_version, old_value = env.current()
    token = env.start_rotation()
    rotator = env.rotator()
    for step in STEPS:
        first = rotator.rotate(step, env.arn, token)
        second = rotator.rotate(step, NAME, token)  # moto's RotateSecret passes the name: both work
        assert first["environment"] == second["environment"] == "dev"
    assert_rotated(env, old_version, token)
    _, new_value = env.current()
    assert new_value != old_value
    # The service issues with the new value and still accepts tokens signed with the previous one.
    issued = env.invoke("f", "live", _request("/token", "POST")).json()["token"]
    assert verify_token(issued, [new_value]) is not None
    old_token, _ = sign_token(old_value)
    assert env.invoke("f", "live", _request("/token/validate", token=old_token)).status == 200


@pytest.mark.parametrize("crashed_after", range(len(STEPS)))
def test_crash_after_any_step_then_retry_from_the_start(env: Env, crashed_after: int) -> None:
    old_version, _ = env.current()
    token = env.start_rotation()
    for step in STEPS[: crashed_after + 1]:
        env.rotator().rotate(step, env.arn, token)
    labels = env.labels()
    assert sum("AWSCURRENT" in s for s in labels.values()) == 1
    assert sum("AWSPENDING" in s for s in labels.values()) <= 1
    retried = env.rotator()  # a new execution environment: nothing kept in memory
    for step in STEPS:
        retried.rotate(step, env.arn, token)
    assert_rotated(env, old_version, token)


def test_lock_is_held_between_steps_and_a_release_waits(env: Env) -> None:
    token = env.start_rotation()
    rotator = env.rotator()
    rotator.rotate("createSecret", env.arn, token)
    assert env.ledger.lock_holder("dev") == token
    with pytest.raises(Exception, match="locked by release") as busy:
        env.ledger.acquire_lock("dev", "podinfo-release-1", 600)
    assert type(busy.value).__name__ == "LockBusy"
    for step in STEPS[1:]:
        rotator.rotate(step, env.arn, token)
    env.ledger.acquire_lock("dev", "podinfo-release-1", 600)  # free again after finishSecret


def test_rotation_waits_while_a_release_holds_the_environment(env: Env) -> None:
    old_version, _ = env.current()
    env.ledger.acquire_lock("dev", "podinfo-release-1", 600)
    token = env.start_rotation()
    with pytest.raises(RotationBusy, match="podinfo-release-1"):
        env.rotator().rotate("createSecret", env.arn, token)
    assert env.ledger.lock_holder("dev") == "podinfo-release-1"
    assert env.labels() == {old_version: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert env.sm.get_secret_value(SecretId=env.arn)["VersionId"] == old_version


class TaskTokens:
    """Step Functions' side of the lock queue's task tokens: the answer each waiting task got."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str, dict[str, Any]]] = {}

    def send_task_success(self, taskToken: str, output: str) -> None:
        self.answers[taskToken] = ("success", json.loads(output))

    def send_task_failure(self, taskToken: str, error: str, cause: str) -> None:
        self.answers[taskToken] = ("failure", {"error": error, **json.loads(cause)})


@pytest.mark.parametrize("ending", ["finishSecret", "testSecret fails"])
def test_a_release_queued_behind_the_rotation_is_handed_the_lock_when_it_lets_go(env: Env, ending: str) -> None:
    # GIVEN a rotation holding the dev lock and a release that queued for it meanwhile
    tasks = TaskTokens()
    locks = LockQueue(env.table, tasks, lease_seconds=7200)
    if ending != "finishSecret":  # a service whose cache never sees the new value: testSecret fails
        env.invoke("f", "live", _request("/token", "POST"))
        env.caches["live"].ttl = 3600
    token = env.start_rotation()
    rotator = env.rotator(unlock=locks.release)
    rotator.rotate("createSecret", env.arn, token)
    release = {"id": "podinfo-release-2", "repository": "podinfo", "digest": "sha256:" + "b" * 64, "time": "2026-11-27T18:00:00Z"}
    queued = locks.acquire("dev", release, "task-token-2")
    assert (queued["handed_to"], queued["queued_at"], tasks.answers) == (None, 0, {})
    # WHEN the rotation lets go of the lock (finishing, or on a failing step)
    if ending == "finishSecret":
        for step in STEPS[1:]:
            rotator.rotate(step, env.arn, token)
    else:
        with pytest.raises(SecretTestFailed):
            rotator.rotate("testSecret", env.arn, token)
    # THEN the queued release holds the lock with the release lease and its wait is answered now,
    # not when its backstop runs out
    assert env.ledger.lock_holder("dev") == "podinfo-release-2"
    held = env.table.get_item(Key={"pk": "lock#dev"}, ConsistentRead=True)["Item"]
    assert int(held["expires_at"]) - int(held["acquired_at"]) == 7200
    kind, output = tasks.answers["task-token-2"]
    assert (kind, output["holder"], output["environment"], output["queued"]) == ("success", "podinfo-release-2", "dev", True)
    assert locks.queue("dev")[0] == []


def test_concurrent_rotation_is_a_named_error(env: Env) -> None:
    first = env.start_rotation()
    env.rotator().rotate("createSecret", env.arn, first)
    # A second rotation token while the first holds the lock (its version staged by hand, as a
    # concurrent RotateSecret would) is refused by name; the first one then finishes.
    secret = secretsmanager_backends[ACCOUNT][REGION].secrets[NAME]
    second = str(uuid.uuid4())
    secret.versions[second] = {"createdate": int(time.time()), "version_id": second, "version_stages": ["AWSPENDING"]}
    with pytest.raises(RotationBusy, match=first):
        env.rotator().rotate("createSecret", env.arn, second)
    assert env.ledger.lock_holder("dev") == first


def test_test_secret_failure_leaves_current_untouched(env: Env) -> None:
    old_version, old_value = env.current()
    env.invoke("f", "live", _request("/token", "POST"))  # primes a cache that will not see the new value
    env.caches["live"].ttl = 3600
    token = env.start_rotation()
    rotator = env.rotator()
    rotator.rotate("createSecret", env.arn, token)
    with pytest.raises(SecretTestFailed, match="pending value"):
        rotator.rotate("testSecret", env.arn, token)
    assert env.labels() == {old_version: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert env.current() == (old_version, old_value)
    assert env.ledger.lock_holder("dev") is None  # released on failure
    # Once the service reads the secret again, the same rotation resumes and finishes.
    env.caches["live"].ttl = 0
    for step in ("setSecret", "testSecret", "finishSecret"):
        rotator.rotate(step, env.arn, token)
    assert_rotated(env, old_version, token)


def test_set_secret_failing_half_way_is_named(env: Env) -> None:
    old_version, _ = env.current()
    env.versions = ["1", "2"]  # a canary in progress: two versions behind the alias
    env.stale = {"2"}
    env.invoke("f", "2", _request("/token", "POST"))  # version 2 read the secret before the rotation, and keeps it
    token = env.start_rotation()
    rotator = env.rotator()
    rotator.rotate("createSecret", env.arn, token)
    with pytest.raises(SetSecretFailed, match=r"versions \['2'\].*accepting: \['1'\]"):
        rotator.rotate("setSecret", env.arn, token)
    assert env.labels() == {old_version: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert env.ledger.lock_holder("dev") is None


def test_unknown_token_and_a_token_not_pending(env: Env) -> None:
    old_version, _ = env.current()
    with pytest.raises(RotationTokenUnknown, match="not a version"):
        env.rotator().rotate("createSecret", env.arn, str(uuid.uuid4()))
    token = env.start_rotation()
    for step in STEPS:
        env.rotator().rotate(step, env.arn, token)
    with pytest.raises(RotationTokenUnknown, match="not staged AWSPENDING"):
        env.rotator().rotate("createSecret", env.arn, old_version)  # now AWSPREVIOUS
    assert_rotated(env, old_version, token)


def test_missing_secret_and_foreign_secret(env: Env) -> None:
    with pytest.raises(SecretNotFound, match="does not exist"):
        env.rotator().rotate("createSecret", "podrel/nope", str(uuid.uuid4()))
    other = env.sm.create_secret(Name="other", SecretString="{}")["ARN"]
    with pytest.raises(SecretNotFound, match="not a workload secret"):
        env.rotator().rotate("createSecret", other, str(uuid.uuid4()))


def test_kms_access_denied_is_named_and_changes_nothing(env: Env) -> None:
    old_version, _ = env.current()
    token = env.start_rotation()

    class KmsDenied:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            if name in ("get_secret_value", "put_secret_value"):
                def denied(**_: Any) -> Any:
                    raise ClientError({"Error": {"Code": "AccessDeniedException",
                                                 "Message": "Access to KMS is not allowed"}}, name)
                return denied
            return getattr(self.real, name)

    rotator = Rotator(KmsDenied(env.sm), env.ledger, {env.arn: Target("dev", "f")}, env.invoke, lambda t: ["live"])
    with pytest.raises(SecretKmsAccessDenied, match="KMS key"):
        rotator.rotate("createSecret", env.arn, token)
    assert env.labels() == {old_version: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert env.ledger.lock_holder("dev") is None


def test_tokens_podinfo_shape() -> None:
    token, expires = sign_token("s" * 32, name="alice", ttl=60, now=1000)
    assert verify_token(token, ["other", "s" * 32], now=1001) == {"name": "alice", "iss": "podinfo", "exp": expires}
    assert verify_token(token, ["other"], now=1001) is None
    assert verify_token(token, ["s" * 32], now=expires + 1) is None
    assert verify_token("not.a.jwt", ["s" * 32]) is None


def _request(path: str, method: str = "GET", token: str | None = None) -> dict[str, Any]:
    return podinfo.request(path, method, headers=podinfo.bearer(token) if token else None, body="client" if method == "POST" else "")


class Fleet:
    """Two instances behind a load balancer, each with its own gate cache; `stale` ones never re-read."""

    def __init__(self, env: Env, stale: set[int]) -> None:
        self.caches = [SdkSource(lambda: env.sm, env.arn, 3600.0 if i in stale else 0.0) for i in range(2)]
        self.n = 0

    def get(self, url: str, headers: dict[str, str]) -> tuple[int, str]:
        cache = self.caches[self.n % len(self.caches)]  # the ALB spreads requests over the instances
        self.n += 1
        path = "/" + url.split("/", 3)[3]
        event = _request(path, token=headers["Authorization"].split(" ", 1)[1])
        reply = handle(event, IMAGE, {}, cache)
        return int(reply["statusCode"]), str(reply["body"])


def fleet_rotator(env: Env, fleet: Fleet) -> Rotator:
    target = Target("dev", "podrel-podinfo-dev", fleet_url="http://podrel-dev.elb.example", fleet_size=2)
    return Rotator(env.sm, env.ledger, {env.arn: target}, env.invoke, lambda t: list(env.versions), settle_seconds=0.3,
                   poll_seconds=0.05, http_get=fleet.get, fleet_settle_seconds=0.3)


def test_rotation_checks_the_fleet_too(env: Env) -> None:
    old_version, _ = env.current()
    fleet = Fleet(env, stale=set())
    token = env.start_rotation()
    rotator = fleet_rotator(env, fleet)
    for step in STEPS:
        result = rotator.rotate(step, env.arn, token)
        if step == "setSecret":
            assert result["state"] == "accepted by versions ['live'] and the fleet"
    assert_rotated(env, old_version, token)
    assert fleet.n >= 3 * 4  # setSecret (pending) and testSecret (pending, current), 4 requests each


def test_a_fleet_instance_that_never_rereads_the_secret_stops_the_rotation(env: Env) -> None:
    old_version, old_value = env.current()
    fleet = Fleet(env, stale={1})
    fleet.get("http://x/token/validate", {"Authorization": "Bearer " + sign_token(old_value)[0]})  # both instances read it once
    fleet.get("http://x/token/validate", {"Authorization": "Bearer " + sign_token(old_value)[0]})
    token = env.start_rotation()
    rotator = fleet_rotator(env, fleet)
    rotator.rotate("createSecret", env.arn, token)
    with pytest.raises(SetSecretFailed, match=r"the dev fleet \(http://podrel-dev.elb.example\) still refuses the pending value "
                                              r"after 0.3s \(2 of 4 requests\); AWSCURRENT unchanged"):
        rotator.rotate("setSecret", env.arn, token)
    assert env.labels() == {old_version: ["AWSCURRENT"], token: ["AWSPENDING"]}
    assert env.current() == (old_version, old_value)
    assert env.ledger.lock_holder("dev") is None


def test_a_schedule_test_runs_test_secret_alone_and_leaves_no_lock(env: Env) -> None:
    """RotateImmediately=false: Secrets Manager runs testSecret alone on a throw-away AWSPENDING
    version (no createSecret before it, no finishSecret after)."""
    old_version, old_value = env.current()
    token = env.start_rotation()  # the throw-away version, without a value
    result = env.rotator().rotate("testSecret", env.arn, token)
    assert result["state"] == "configuration test passed: the service accepts the current value"
    # THEN no lock is left for a release to wait on, and AWSCURRENT is as it was
    assert env.ledger.lock_holder("dev") is None
    assert env.current() == (old_version, old_value)
    # AND a real rotation afterwards still takes and keeps the lock between its steps
    real = env.start_rotation()
    rotator = env.rotator()
    rotator.rotate("createSecret", env.arn, real)
    assert env.ledger.lock_holder("dev") == real
    for step in ("setSecret", "testSecret"):
        rotator.rotate(step, env.arn, real)
        assert env.ledger.lock_holder("dev") == real  # held between the steps of a real rotation
    rotator.rotate("finishSecret", env.arn, real)
    assert env.ledger.lock_holder("dev") is None
    assert env.current()[0] == real


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"Step": "createSecret", "SecretId": NAME}, "rotate_workload_secret: the event has no 'ClientRequestToken'"),
        ({"SecretId": NAME, "ClientRequestToken": "t"}, "rotate_workload_secret: the event has no 'Step'"),
        ({"Step": "createSecret", "SecretId": 7, "ClientRequestToken": "t"},
         "rotate_workload_secret: 'SecretId' must be str, not int"),
    ],
    ids=["no token", "no step", "mistyped secret id"],
)
def test_the_rotation_function_refuses_an_incomplete_event_and_changes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], message: str
) -> None:
    # GIVEN the rotation function as the template configures it, and a rotation started
    for name, value in {"LEDGER_TABLE": "ledger", "WORKLOAD_SECRET_DEV": env.arn, "WORKLOAD_SECRET_PROD": env.arn + "-prod",
                        "PODINFO_FUNCTION_DEV": "podrel-podinfo-dev", "PODINFO_FUNCTION_PROD": "podrel-podinfo-prod"}.items():
        monkeypatch.setenv(name, value)
    app = import_handler("rotate_workload_secret")
    token = env.start_rotation()
    before = env.labels()
    # WHEN Secrets Manager's event lacks a field THEN the step is refused, named
    with pytest.raises(InvalidRequest) as info:
        app.handler(event | ({"ClientRequestToken": token} if "ClientRequestToken" in event else {}), FakeLambdaContext())
    assert str(info.value) == message
    # AND nothing changed: the same staging labels, no lock taken
    assert env.labels() == before
    assert env.ledger.lock_holder("dev") is None
