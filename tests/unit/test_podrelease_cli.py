"""The `podrelease` command's own rules, without AWS: which release a rollback goes back to, how the
execution history becomes a timeline, how times are read, what a table looks like."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from podrelease_cli import main as cli
from podrelease_cli.operate import OperationRefused, rollback_choice
from podrelease_cli.render import short, table
from podrelease_cli.views import timeline

A, B, C = ("sha256:" + c * 64 for c in "abc")
ALL = ["verify", "deploy dev", "approval", "verify for prod", "promote", "deploy prod"]
# The ledger's records, newest first (as views.records returns them).
HISTORY = [
    {"release_id": "r4", "digest": C, "repository": "podinfo", "stages_done": ["verify", "deploy dev"], "outcome": "FAILED"},
    {"release_id": "r3", "digest": B, "repository": "podinfo", "stages_done": ALL, "outcome": "SUCCEEDED"},
    {"release_id": "r2", "digest": B, "repository": "podinfo", "stages_done": ALL, "outcome": "SUCCEEDED"},
    {"release_id": "r1", "digest": A, "repository": "podinfo", "stages_done": ALL, "outcome": "SUCCEEDED"},
]


@pytest.mark.parametrize(("environment", "live", "to_digest", "to_release", "current", "chosen"), [
    ("prod", B, None, None, "r3", "r1"),   # default: the newest release into prod with another digest
    ("dev", C, None, None, "r4", "r3"),    # r4 passed dev (then failed at approval): dev goes back to r3
    ("prod", B, A, None, "r3", "r1"),      # a digest that was released: its release
    ("prod", B, None, "r1", "r3", "r1"),   # a release by id
])
def test_rollback_goes_back_to_the_release_asked_for(environment: str, live: str, to_digest: str | None, to_release: str | None,
                                                     current: str | None, chosen: str) -> None:
    now, back = rollback_choice(HISTORY, environment, live, to_digest, to_release)
    assert (now or {}).get("release_id") == current
    assert back["release_id"] == chosen


def test_rollback_to_a_digest_never_released_is_that_digest() -> None:
    other = "sha256:" + "d" * 64
    _, back = rollback_choice(HISTORY, "prod", B, other)
    assert back == {"digest": other}


@pytest.mark.parametrize(("environment", "live", "to_digest", "to_release", "message"), [
    ("prod", A, None, None, f"no earlier successful release into prod than the live one ({A}): name one with --to"),
    ("prod", B, B, None, f"prod already runs {B}"),
    ("prod", B, "sha256:abc", None, "'sha256:abc' is not a digest (sha256:<64 hex>)"),
    ("prod", B, None, "nope", "no release nope in the ledger"),
])
def test_a_rollback_that_cannot_be_done_is_refused_by_name(environment: str, live: str, to_digest: str | None,
                                                           to_release: str | None, message: str) -> None:
    history = HISTORY[3:] if live == A else HISTORY
    with pytest.raises(OperationRefused) as info:
        rollback_choice(history, environment, live, to_digest, to_release)
    assert str(info.value) == message


def _event(seconds: float, kind: str, name: str) -> dict[str, Any]:
    key = "stateEnteredEventDetails" if kind == "entered" else "stateExitedEventDetails"
    return {"timestamp": datetime.fromtimestamp(1_800_000_000 + seconds, UTC), key: {"name": name}}


def test_the_timeline_groups_states_into_stages_with_their_durations() -> None:
    events = [
        {"timestamp": datetime.fromtimestamp(1_800_000_000, UTC), "type": "ExecutionStarted"},
        _event(0, "entered", "Normalize"), _event(0.5, "exited", "Normalize"),
        _event(0.5, "entered", "Rollback?"), _event(0.5, "exited", "Rollback?"),
        _event(1, "entered", "DeployDev"), _event(2, "exited", "DeployDev"),
        _event(2, "entered", "DevDeployed?"), _event(2, "exited", "DevDeployed?"),
        _event(2, "entered", "WaitDev"), _event(12, "exited", "WaitDev"),
        _event(12, "entered", "CheckDev"), _event(13, "exited", "CheckDev"),
        _event(13, "entered", "RequestApproval"),
    ]
    assert timeline(events) == [
        {"stage": "normalize", "started": "2027-01-15T08:00:00Z", "ended": "2027-01-15T08:00:00Z", "seconds": 0.5, "state": "Rollback?"},
        {"stage": "deploy dev", "started": "2027-01-15T08:00:01Z", "ended": "2027-01-15T08:00:13Z", "seconds": 12.0, "state": "CheckDev"},
        {"stage": "approval", "started": "2027-01-15T08:00:13Z", "ended": None, "seconds": None, "state": "RequestApproval"},
    ]


def test_times_are_iso_or_ages() -> None:
    assert cli.when("2027-01-15T08:00:00Z") == 1_800_000_000
    with pytest.raises(cli.argparse.ArgumentTypeError):
        cli.when("last tuesday")


def test_a_table_is_aligned_with_short_digests_and_dashes_for_nothing() -> None:
    assert table([{"id": "r1", "digest": A, "by": None}, {"id": "r22", "digest": None, "by": ["x", "y"]}], ["id", "digest", "by"]) == (
        "ID   DIGEST               BY\n"
        "r1   sha256:aaaaaaaaaaaa  -\n"
        "r22  -                    x,y"
    )
    assert short({"environment": "prod", "replaces": None}) == "environment=prod replaces=-"


def test_the_command_needs_a_target() -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["status"])
    args = cli.parser().parse_args(["--stack", "podinfo-release-prod", "--json", "rollback", "prod", "--to-release", "r1"])
    assert (args.stack, args.json, args.command, args.environment, args.to_release) == ("podinfo-release-prod", True, "rollback", "prod", "r1")


def test_a_deployed_stack_is_found_by_its_outputs_and_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import boto3
    from moto import mock_aws

    from podrelease_cli.target import TargetError, from_stack

    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(var, value)
    names = ("DeployFunction", "RecordFunction", "NormalizeFunction")
    outputs = ("LedgerTableName", "ReleaseStateMachineArn", "NotifyTopicArn", "PodinfoDevFunctionName", "PodinfoProdFunctionName")
    # Stand-in resources (topics) under the logical ids the command resolves: what matters is the lookup.
    template = {"Resources": {n: {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"s-{n}"}} for n in names},
                "Outputs": {o: {"Value": f"value-of-{o}"} for o in outputs}}
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="eu-west-1")
        cfn.create_stack(StackName="podinfo-release-prod", TemplateBody=json.dumps(template))
        target = from_stack("podinfo-release-prod")
        assert target.region == "eu-west-1"
        assert target.outputs == {o: f"value-of-{o}" for o in outputs}
        assert target.function("DeployFunction").endswith("s-DeployFunction")
        assert target.execution_arn("r1") == "value-of-ReleaseStateMachineArn:r1"
        del template["Outputs"]["LedgerTableName"]
        cfn.create_stack(StackName="other", TemplateBody=json.dumps(template))
        with pytest.raises(TargetError) as info:
            from_stack("other")
        assert str(info.value) == "stack other is not a podinfo release stack (no LedgerTableName)"
        with pytest.raises(TargetError):
            from_stack("missing")
