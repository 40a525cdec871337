"""The release's first and last handlers (starter, normalize, lock, record) against moto in process.

Each test sets the environment `template.yaml` gives the function, imports `functions/<name>/app.py`
afresh inside `mock_aws` (handlers read their settings and build clients at import), sends the
event shape `statemachines/release.asl.json` gives that state, and reads back what the handler left
in AWS: Step Functions executions (a real moto state machine), ledger items (a moto table shaped
like the template's). Environment errors are asserted at import, where a cold start would fail.

verify, promote, deploy and traffic_hook need the ECR layer API and CodeDeploy hook status that
moto lacks; they are in `test_handlers_emulated.py`, on `local.emulation`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from podrelease.core.errors import ConfigurationError, EventTooLarge, ForeignEvent, InvalidRequest, LockBusy, MalformedEvent
from podrelease.release.events import execution_name, fallback_execution_name
from podrelease.release.ledger import RELEASE_RETENTION_SECONDS
from tests.conftest import FAKE_CREDENTIALS, FakeLambdaContext, import_handler

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "podrel"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-release"
TABLE = f"{STACK}-ledger"
REPOSITORY = "podinfo"
DIGEST = "sha256:" + "7e" * 32
RELEASE_ID = execution_name(REPOSITORY, DIGEST)
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{RELEASE_ID}"
OTHER_RELEASE_ID = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
PASS_DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
FAR_FUTURE = 4102444800  # 2100-01-01T00:00:00Z


Context = FakeLambdaContext


def push_event(
    repository: str = REPOSITORY, digest: str | None = DIGEST, tag: str | None = "6.9.1", **detail: Any
) -> dict[str, Any]:
    """An `ECR Image Action` push event as EventBridge delivers it (shape of the AWS docs sample)."""
    body: dict[str, Any] = {"result": "SUCCESS", "repository-name": repository, "action-type": "PUSH"}
    if digest is not None:
        body["image-digest"] = digest
    if tag is not None:
        body["image-tag"] = tag
    return {
        "version": "0",
        "id": "13cde686-328b-6117-af20-0e5566167482",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2025-06-15T15:06:40Z",
        "region": REGION,
        "resources": [],
        "detail": body | detail,
    }


RELEASE = {
    "account": ACCOUNT,
    "region": REGION,
    "repository": REPOSITORY,
    "digest": DIGEST,
    "tag": "6.9.1",
    "event_id": "13cde686-328b-6117-af20-0e5566167482",
    "time": "2025-06-15T15:06:40Z",
    "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{DIGEST}",
    "id": RELEASE_ID,
    "execution": EXECUTION_ARN,
    "attempt": 1,
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    with mock_aws(config={"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": False}}):
        yield


@pytest.fixture
def ledger(aws: None, monkeypatch: pytest.MonkeyPatch, ledger_table: Callable[..., Any]) -> Any:
    monkeypatch.setenv("LEDGER_TABLE", TABLE)
    return ledger_table(TABLE)


def item(table: Any, key: str) -> dict[str, Any] | None:
    found = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
    return dict(found) if found else None


# --- starter -------------------------------------------------------------------------------------


@dataclass
class Starter:
    app: Any
    sfn: Any

    def start(self, event: Any) -> dict[str, Any]:
        return dict(self.app.handler(event, Context()))

    def executions(self) -> list[str]:
        return sorted(e["name"] for e in self.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"])

    def input_of(self, name: str) -> Any:
        arn = STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":" + name
        return json.loads(self.sfn.describe_execution(executionArn=arn)["input"])


@pytest.fixture
def starter(aws: None, monkeypatch: pytest.MonkeyPatch) -> Starter:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    created = sfn.create_state_machine(
        name=f"{STACK}-release", definition=json.dumps(PASS_DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/release"
    )
    assert created["stateMachineArn"] == STATE_MACHINE_ARN  # the ARN the template gives STATE_MACHINE_ARN
    monkeypatch.setenv("STATE_MACHINE_ARN", STATE_MACHINE_ARN)
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    return Starter(import_handler("starter"), sfn)


def test_starter_starts_one_execution_named_by_repository_and_digest(starter: Starter) -> None:
    # GIVEN no release of the digest WHEN its push event arrives
    reply = starter.start(push_event())
    # THEN exactly one execution runs, named from repository and digest, with the event as its input
    assert reply == {"started": True, "execution_arn": EXECUTION_ARN, "name": RELEASE_ID}
    assert starter.executions() == [RELEASE_ID]
    assert starter.input_of(RELEASE_ID) == push_event()


def test_starter_given_the_same_push_twice_starts_nothing_more(starter: Starter) -> None:
    starter.start(push_event())
    # WHEN EventBridge delivers the same push again (at-least-once delivery, retries)
    reply = starter.start(push_event())
    # THEN it reports the existing release and the state machine still has one execution
    assert reply == {"started": False, "duplicate": True, "execution_arn": EXECUTION_ARN, "status": "RUNNING"}
    assert starter.executions() == [RELEASE_ID]


ARTIFACT = {"started": False, "reason": "the push is a signature, attestation or OCI artifact, not an image"}


@pytest.mark.parametrize(
    "event",
    [
        push_event(digest="sha256:" + "5a" * 32, tag=f"sha256-{DIGEST[7:]}.sig"),
        push_event(digest="sha256:" + "5a" * 32, tag=f"sha256-{DIGEST[7:]}.att"),
        push_event(
            digest="sha256:" + "5a" * 32, tag=None, **{"artifact-media-type": "application/vnd.dev.sigstore.bundle.v0.3+json"}
        ),
    ],
    ids=["cosign .sig tag", "cosign .att tag", "sigstore bundle referrer"],
)
def test_starter_ignores_signature_and_artifact_pushes(starter: Starter, event: dict[str, Any]) -> None:
    # WHEN cosign pushes a signature or attestation into the watched repository
    reply = starter.start(event)
    # THEN no release starts
    assert reply == ARTIFACT
    assert starter.executions() == []


@pytest.mark.parametrize(
    ("event", "expected_input"),
    [
        (push_event(repository="other-service"), push_event(repository="other-service")),
        (push_event(digest=None), push_event(digest=None)),
        (
            push_event(padding="x" * 17000),
            {"refused": "EventTooLarge", "size": len(json.dumps(push_event(padding="x" * 17000), separators=(",", ":")))},
        ),
    ],
    ids=["unwatched repository", "no digest", "oversized event"],
)
def test_starter_starts_a_refusal_execution_named_from_the_event_bytes(
    starter: Starter, event: dict[str, Any], expected_input: Any
) -> None:
    # WHEN an event arrives that is not a release
    reply = starter.start(event)
    # THEN one execution starts (its first state refuses the event, visibly), named from the event itself
    name = fallback_execution_name(event)
    assert name.startswith("rejected-")
    assert reply == {
        "started": True,
        "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}-release:{name}",
        "name": name,
    }
    assert starter.executions() == [name]
    # AND an oversized event is not passed on: only its size is
    assert starter.input_of(name) == expected_input
    # AND the same event again is a duplicate of that execution
    assert starter.start(event)["duplicate"] is True
    assert starter.executions() == [name]


def test_starter_rerelease_starts_attempt_two_which_normalize_accepts(starter: Starter, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the digest's first release exists
    starter.start(push_event())
    # WHEN an operator asks for a re-release of the same digest
    reply = starter.start({"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": 2})
    # THEN a second execution, suffixed -a2, starts beside the first
    name = f"{RELEASE_ID}-a2"
    assert reply == {"started": True, "execution_arn": f"{EXECUTION_ARN}-a2", "name": name}
    assert starter.executions() == [RELEASE_ID, name]
    given = starter.input_of(name)
    assert given["detail"] == {"result": "SUCCESS", "action-type": "PUSH", "repository-name": REPOSITORY, "image-digest": DIGEST}
    assert (given["account"], given["region"], given["rerelease"]) == (ACCOUNT, REGION, 2)
    # AND the normalize state turns that input into attempt 2 of the release
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    normalize = import_handler("normalize")
    out = normalize.handler({"event": given, "execution": reply["execution_arn"], "execution_name": name}, Context())
    assert (out["release"]["id"], out["release"]["digest"], out["release"]["attempt"], out["release"]["tag"]) == (
        name,
        DIGEST,
        2,
        None,
    )


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_starter_without_a_state_machine_arn_fails_at_import(
    aws: None, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    else:
        monkeypatch.setenv("STATE_MACHINE_ARN", value)
    with pytest.raises(ConfigurationError) as info:
        import_handler("starter")
    assert str(info.value) == (
        "environment variable STATE_MACHINE_ARN is not set; the template sets it for every function that needs it"
    )


# --- normalize -----------------------------------------------------------------------------------


@pytest.fixture
def normalize(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WATCHED_REPOSITORIES", f"{REPOSITORY}, podinfo-canary")
    monkeypatch.setenv("DEPLOY_POLL_SECONDS", "7")
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "900")
    return import_handler("normalize")


def test_normalize_turns_the_push_into_release_facts_and_settings_from_the_environment(normalize: Any) -> None:
    # WHEN the first state gets the execution input as the ASL passes it
    out = normalize.handler({"event": push_event(), "execution": EXECUTION_ARN, "execution_name": RELEASE_ID}, Context())
    # THEN the release names the exact digest and the execution, and the settings are the template's parameters
    assert out == {"release": RELEASE, "settings": {"poll_seconds": 7, "approval_timeout_seconds": 900}}


def test_normalize_settings_default_when_the_environment_leaves_them_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    monkeypatch.delenv("DEPLOY_POLL_SECONDS", raising=False)
    monkeypatch.delenv("APPROVAL_TIMEOUT_SECONDS", raising=False)
    out = import_handler("normalize").handler(
        {"event": push_event(), "execution": EXECUTION_ARN, "execution_name": RELEASE_ID}, Context()
    )
    assert out["settings"] == {"poll_seconds": 30, "approval_timeout_seconds": 86400}


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (
            push_event(repository="other-service"),
            ForeignEvent,
            "repository 'other-service' is not watched (watched: podinfo, podinfo-canary)",
        ),
        (
            push_event(digest=None),
            MalformedEvent,
            "image-digest None is not sha256:<64 hex>; a release needs the exact digest, never a tag alone",
        ),
        (
            push_event(digest="latest"),
            MalformedEvent,
            "image-digest 'latest' is not sha256:<64 hex>; a release needs the exact digest, never a tag alone",
        ),
        (
            {"refused": "EventTooLarge", "size": 20480},
            EventTooLarge,
            "event of 20480 bytes refused; an ECR push event is never over 16384",
        ),
        (
            push_event(tag=f"sha256-{DIGEST[7:]}.sig"),
            ForeignEvent,
            "the push is a signature, attestation or other OCI artifact, not an image",
        ),
        (
            push_event(result="FAILURE"),
            ForeignEvent,
            "not a successful push (action-type='PUSH', result='FAILURE')",
        ),
        (None, MalformedEvent, "expected an EventBridge event object, got NoneType"),
    ],
    ids=[
        "foreign repository",
        "no digest",
        "tag instead of digest",
        "oversize marker",
        "signature push",
        "failed push",
        "no event",
    ],
)
def test_normalize_refuses_what_is_not_a_release_with_a_named_error(
    normalize: Any, event: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        normalize.handler({"event": event, "execution": EXECUTION_ARN, "execution_name": "rejected-0123"}, Context())
    assert type(info.value) is error
    assert str(info.value) == message


@pytest.mark.parametrize("variable", ["DEPLOY_POLL_SECONDS", "APPROVAL_TIMEOUT_SECONDS"])
def test_normalize_with_a_non_integer_setting_fails_at_import(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    monkeypatch.setenv("DEPLOY_POLL_SECONDS", "30")
    monkeypatch.setenv("APPROVAL_TIMEOUT_SECONDS", "86400")
    monkeypatch.setenv(variable, "thirty")
    with pytest.raises(ConfigurationError) as info:
        import_handler("normalize")
    assert str(info.value) == f"environment variable {variable} must be an integer, got 'thirty'"


# --- lock ----------------------------------------------------------------------------------------


@pytest.fixture
def lock(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LOCK_LEASE_SECONDS", "600")
    return import_handler("lock")


def lock_event(action: str, environment: str = "dev", release_id: str = RELEASE_ID) -> dict[str, Any]:
    return {"action": action, "environment": environment, "release": RELEASE | {"id": release_id}}


def test_lock_acquire_writes_the_lock_item_with_the_configured_lease(lock: Any, ledger: Any) -> None:
    before = int(time.time())
    reply = lock.handler(lock_event("acquire"), Context())
    stored = item(ledger, "lock#dev")
    assert stored is not None
    assert stored == {
        "pk": "lock#dev",
        "holder": RELEASE_ID,
        "environment": "dev",
        "acquired_at": stored["acquired_at"],
        "expires_at": stored["acquired_at"] + 600,
    }
    assert before <= stored["acquired_at"] <= int(time.time())
    assert reply == {"environment": "dev", "holder": RELEASE_ID, "expires_at": stored["expires_at"]}
    # AND prod is untouched
    assert item(ledger, "lock#prod") is None


def test_lock_release_deletes_the_item_and_a_second_release_changes_nothing(lock: Any, ledger: Any) -> None:
    lock.handler(lock_event("acquire"), Context())
    # WHEN the holder releases the lock, and the task is retried
    first = lock.handler(lock_event("release"), Context())
    again = lock.handler(lock_event("release"), Context())
    # THEN the item is gone, and the retry reports it held nothing
    assert item(ledger, "lock#dev") is None
    assert first == {"environment": "dev", "released": True}
    assert again == {"environment": "dev", "released": False}


def test_lock_held_by_another_release_makes_acquire_wait_and_release_a_no_op(lock: Any, ledger: Any) -> None:
    held = {
        "pk": "lock#dev",
        "holder": OTHER_RELEASE_ID,
        "environment": "dev",
        "acquired_at": 1750000000,
        "expires_at": FAR_FUTURE,
    }
    ledger.put_item(Item=held)
    # WHEN this release asks for the lock THEN LockBusy names the holder and its lease
    with pytest.raises(LockBusy) as info:
        lock.handler(lock_event("acquire"), Context())
    assert str(info.value) == f"dev is locked by release {OTHER_RELEASE_ID} until 2100-01-01T00:00:00Z; this release waits for it"
    # AND releasing it (e.g. from a confused retry) does not free another release's lock
    assert lock.handler(lock_event("release"), Context()) == {"environment": "dev", "released": False}
    assert item(ledger, "lock#dev") == held


def test_lock_whose_lease_ran_out_is_taken_over(lock: Any, ledger: Any) -> None:
    ledger.put_item(
        Item={"pk": "lock#prod", "holder": OTHER_RELEASE_ID, "environment": "prod", "acquired_at": 1, "expires_at": 2}
    )
    reply = lock.handler(lock_event("acquire", "prod"), Context())
    assert reply["holder"] == RELEASE_ID
    stored = item(ledger, "lock#prod")
    assert stored is not None
    assert (stored["holder"], stored["expires_at"] - stored["acquired_at"]) == (RELEASE_ID, 600)


def test_lock_without_a_ledger_table_fails_at_import(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable LEDGER_TABLE is not set;"):
        import_handler("lock")


# --- record --------------------------------------------------------------------------------------


@pytest.fixture
def record(ledger: Any) -> Any:
    return import_handler("record")


VERIFIED = {"verified": True, "repository": REPOSITORY, "digest": DIGEST, "signatures": [], "refusals": [], "ignored": []}
DEV_FAILED = {
    "Error": "DeploymentFailed",
    "Cause": json.dumps(
        {
            "errorMessage": "dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503",
            "errorType": "DeploymentFailed",
            "stackTrace": [],
        }
    ),
}
SUCCEEDED_DEPLOYMENT = {"id": "d-1", "status": "Succeeded", "environment": "dev"}

RECORD_CASES = [
    pytest.param(
        "FAILED",
        {
            "release": RELEASE,
            "locks": {"dev": {"holder": RELEASE_ID}},
            "evidence": VERIFIED,
            "dev": {"deployment": {"id": "d-ABC", "status": "InProgress"}},
            "error": DEV_FAILED,
        },
        RELEASE_ID,
        {
            "outcome": "FAILED",
            "release_id": RELEASE_ID,
            "repository": REPOSITORY,
            "digest": DIGEST,
            "stages_done": ["verify"],
            "stopped_at": "deploy dev",
            "error": "DeploymentFailed",
            "cause": "dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503",
            "evidence": VERIFIED,
        },
        f"podinfo sha256:7e7e7e7e7e7e failed [{RELEASE_ID}]",
        f"Release {RELEASE_ID} failed.\n"
        f"Image: podinfo@{DIGEST}\n"
        "Stages completed: verify\n"
        "Stopped at: deploy dev\n"
        "Reason: DeploymentFailed: dev deployment d-ABC failed and was rolled back: HOOK_EXECUTION_FAILURE: /readyz answered 503\n"
        "Nothing from this release is left serving traffic: in-flight deployments were rolled back.\n"
        f"Correlation id: {RELEASE_ID}",
        id="failed in dev",
    ),
    pytest.param(
        "REJECTED",
        push_event(repository="other-service")
        | {"error": {"Error": "ForeignEvent", "Cause": "repository 'other-service' is not watched"}},
        "rejected-0123456789abcdef",
        {
            "outcome": "REJECTED",
            "release_id": "rejected-0123456789abcdef",
            "repository": None,
            "digest": None,
            "stages_done": [],
            "stopped_at": "normalize",
            "error": "ForeignEvent",
            "cause": "repository 'other-service' is not watched",
        },
        "podinfo unknown digest refused [rejected-0123456789abcdef]",
        "Release rejected-0123456789abcdef refused.\n"
        "Image: ?@unknown digest\n"
        "Stages completed: none\n"
        "Stopped at: normalize\n"
        "Reason: ForeignEvent: repository 'other-service' is not watched\n"
        "Nothing was deployed: the event was refused before any stage ran.\n"
        "Correlation id: rejected-0123456789abcdef",
        id="refused event",
    ),
    pytest.param(
        "SUCCEEDED",
        {
            "release": RELEASE,
            "evidence": VERIFIED,
            "dev": {"deployment": SUCCEEDED_DEPLOYMENT},
            "approval": {"decision": "approve"},
            "promotion": {"digest": DIGEST},
            "prod": {"deployment": SUCCEEDED_DEPLOYMENT | {"environment": "prod"}},
        },
        RELEASE_ID,
        {
            "outcome": "SUCCEEDED",
            "release_id": RELEASE_ID,
            "repository": REPOSITORY,
            "digest": DIGEST,
            "stages_done": ["verify", "deploy dev", "approval", "promote", "deploy prod"],
            "stopped_at": None,
            "error": None,
            "cause": None,
            "evidence": VERIFIED,
        },
        f"podinfo sha256:7e7e7e7e7e7e released to prod [{RELEASE_ID}]",
        f"Release {RELEASE_ID} released to prod.\n"
        f"Image: podinfo@{DIGEST}\n"
        "Stages completed: verify, deploy dev, approval, promote, deploy prod\n"
        f"Correlation id: {RELEASE_ID}",
        id="released",
    ),
]


@pytest.mark.parametrize(("outcome", "state", "name", "expected", "subject", "message"), RECORD_CASES)
def test_record_writes_the_release_item_and_composes_the_notification(
    record: Any, ledger: Any, outcome: str, state: dict[str, Any], name: str, expected: dict[str, Any], subject: str, message: str
) -> None:
    # WHEN the Record state runs with the whole execution state
    reply = record.handler({"outcome": outcome, "state": state, "execution_name": name}, Context())
    # THEN the reply carries the record and the exact notification the Notify state publishes
    assert reply == {"record": expected, "subject": subject, "message": message}
    # AND the ledger holds the release's item, kept for the retention period
    stored = item(ledger, f"release#{expected['release_id']}")
    assert stored is not None
    assert stored == expected | {
        "pk": f"release#{expected['release_id']}",
        "recorded_at": stored["recorded_at"],
        "expires_at": stored["recorded_at"] + RELEASE_RETENTION_SECONDS,
    }
    assert abs(int(stored["recorded_at"]) - time.time()) < 60


def test_record_twice_leaves_one_item(record: Any, ledger: Any) -> None:
    event = {"outcome": "FAILED", "state": {"release": RELEASE, "error": DEV_FAILED}, "execution_name": RELEASE_ID}
    first = record.handler(event, Context())
    again = record.handler(event, Context())
    assert first == again
    items = ledger.scan()["Items"]
    assert [i["pk"] for i in items] == [f"release#{RELEASE_ID}"]


# --- events a handler does not accept -------------------------------------------------------------
# The state machine and the operator's runbook are each handler's only callers: an event they never
# send (an unknown action, a missing or mistyped field) is a defect, refused at the edge with
# InvalidRequest naming the field, before anything is read or written.

REFUSED = [
    pytest.param("lock", {"action": "steal", "environment": "dev", "release": RELEASE},
                 "lock: unknown action 'steal' (expected one of acquire, release)", id="lock unknown action"),
    pytest.param("lock", {"action": "release", "release": RELEASE}, "lock: the event has no 'environment'",
                 id="lock without environment"),
    pytest.param("lock", {"action": "acquire", "environment": "dev", "release": {"digest": DIGEST}},
                 "lock: release: the event has no 'id'", id="lock without release id"),
    pytest.param("lock", {"environment": "dev", "release": RELEASE}, "lock: the event has no 'action'", id="lock without action"),
    pytest.param("record", {"outcome": "MAYBE", "state": {"release": RELEASE}, "execution_name": RELEASE_ID},
                 "record: unknown outcome 'MAYBE' (expected one of SUCCEEDED, FAILED, REJECTED)", id="record unknown outcome"),
    pytest.param("record", {"outcome": "FAILED", "state": {"release": RELEASE}}, "record: the event has no 'execution_name'",
                 id="record without execution name"),
    pytest.param("record", {"outcome": "FAILED", "state": "gone", "execution_name": RELEASE_ID},
                 "record: 'state' must be dict, not str", id="record with a mistyped state"),
    pytest.param("normalize", {"event": push_event(), "execution_name": RELEASE_ID}, "normalize: the event has no 'execution'",
                 id="normalize without execution"),
    pytest.param("starter", {"action": "redeploy", "repository": REPOSITORY, "digest": DIGEST},
                 "starter: unknown action 'redeploy' (expected one of rerelease)", id="starter unknown action"),
    pytest.param("starter", {"action": "rerelease", "repository": REPOSITORY}, "starter: the event has no 'digest'",
                 id="starter rerelease without digest"),
    pytest.param("starter", {"action": "rerelease", "repository": REPOSITORY, "digest": DIGEST, "attempt": "2"},
                 "starter: 'attempt' must be int, not str", id="starter rerelease with a mistyped attempt"),
    pytest.param("lock", ["acquire", "dev"], "lock: the event must be a JSON object, not list", id="lock given a list"),
]


@pytest.fixture
def refusing(ledger: Any, starter: Starter, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every handler of this file imported against the same moto account, with a lock already held."""
    monkeypatch.setenv("WATCHED_REPOSITORIES", REPOSITORY)
    ledger.put_item(Item={"pk": "lock#dev", "holder": OTHER_RELEASE_ID, "environment": "dev", "acquired_at": 1,
                          "expires_at": FAR_FUTURE})
    return {name: import_handler(name) for name in ("lock", "record", "normalize")} | {"starter": starter.app}


@pytest.mark.parametrize(("name", "event", "message"), REFUSED)
def test_an_event_the_handler_does_not_accept_is_refused_and_changes_nothing(
    refusing: dict[str, Any], ledger: Any, starter: Starter, name: str, event: Any, message: str
) -> None:
    before = sorted(ledger.scan()["Items"], key=lambda i: i["pk"])
    # WHEN the handler gets an event no state of the release sends
    with pytest.raises(InvalidRequest) as info:
        refusing[name].handler(event, Context())
    # THEN it is refused, named
    assert str(info.value) == message
    # AND the ledger is exactly as it was (the held lock is still held), and no release started
    assert sorted(ledger.scan()["Items"], key=lambda i: i["pk"]) == before
    assert starter.executions() == []
