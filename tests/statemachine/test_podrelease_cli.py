"""`podrelease --local` against the local runtime: what it shows equals what the ledger and the targets
hold, and what it does (block, unblock, abort, rollback) leaves the state the failure path or a release
would, recorded with who asked.

GIVEN the local runtime (the shipped template and ASL) and the command pointed at it as `make up` does
WHEN releases run and an operator acts through the command
THEN the command's JSON equals the ledger's records field by field, and AWS is left as each action says.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from local.demo import approval_link, decide
from local.demo_report import fleet_problems
from local.runtime import APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from local.serve import state_of
from podrelease.release.actions import Actions
from podrelease.release.events import execution_name
from podrelease_cli.main import main
from podrelease_cli.views import iso, plain
from tests.statemachine.conftest import ledger_item, live_image, module_runtime, wait_for, wait_for_state

pytestmark = pytest.mark.statemachine
CALLER = "arn:aws:sts::123456789012:user/moto"  # what the local STS says of the operator's keys
RECORD_FIELDS = ("outcome", "repository", "digest", "stages_done", "stopped_at", "error", "cause", "approved_by",
                 "approved_at", "pushed_at")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    # Canary minutes of 2 s: the dev canary bakes 10 s, long enough to abort a release in the middle of it.
    yield from module_runtime(tmp_path_factory.mktemp("cli"), minute_seconds=2.0, approval_timeout=120)


@pytest.fixture(scope="module")
def cli(env: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    return local_cli(env, tmp_path_factory)


def local_cli(env: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """`podrelease --local --json ...` on the state file `make up` would write for this runtime."""
    state = tmp_path_factory.mktemp("up") / "state.json"
    state.write_text(json.dumps(state_of(env)))

    def run(*args: str, code: int = 0) -> Any:
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["--local", "--state-file", str(state), "--json", *args]) == code
        return json.loads(out.getvalue()) if code == 0 else None

    return run


def record_of(env: LocalRuntime, release_id: str) -> dict[str, Any]:
    table = env.session.resource("dynamodb", region_name=env.stack.region, endpoint_url=env.endpoint)
    item = table.Table(env.stack.outputs["LedgerTableName"]).get_item(Key={"pk": f"release#{release_id}"}).get("Item")
    assert item, f"no ledger record for {release_id}"
    return dict(plain(item))


def actions(env: LocalRuntime) -> Actions:
    table = env.session.resource("dynamodb", region_name=env.stack.region, endpoint_url=env.endpoint)
    return Actions(table.Table(env.stack.outputs["LedgerTableName"]))


def eventually(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll until `check()` holds (CodeDeploy rolls an alias back on its deployment's thread)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except AssertionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"never: {what}")


def push_signed(env: LocalRuntime, version: str) -> str:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version, tag=version)
    env.pusher.sign_legacy(env.signing_key, image)
    return image.digest


def release_to_prod(env: LocalRuntime, version: str) -> tuple[str, str]:
    digest = push_signed(env, version)
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    link = approval_link(env, APPROVERS[0], name, timeout=300)
    assert link is not None, "no approval email arrived"
    assert decide(link, "approve")[0] == 200
    assert wait_for(env, name, timeout=300)["status"] == "SUCCEEDED"
    return digest, name


@pytest.fixture(scope="module")
def first(env: LocalRuntime) -> tuple[str, str]:
    """A release that reached prod: (digest, release id)."""
    return release_to_prod(env, "6.9.2")


def test_release_status_and_releases_show_what_the_ledger_and_the_targets_hold(env: LocalRuntime, cli: Any,
                                                                                 first: tuple[str, str]) -> None:
    digest, name = first
    record = record_of(env, name)
    # WHEN the operator asks for the release
    detail = cli("release", name)
    # THEN every recorded fact is the ledger's, field by field
    for key in RECORD_FIELDS:
        assert detail[key] == record.get(key), key
    assert detail["evidence"] == {k: record[k] for k in ("evidence", "evidence_prod")}
    assert detail["recorded_at"] == iso(record["recorded_at"])
    assert (detail["status"], detail["digest"], detail["approved_by"]) == ("SUCCEEDED", digest, APPROVERS[0])
    # the timeline: every stage in order, each with its duration
    assert [s["stage"] for s in detail["timeline"]] == [
        "normalize", "dev lock", "verify", "deploy dev", "approval", "prod lock", "verify for prod", "promote", "deploy prod", "record"]
    assert all(s["seconds"] is not None and s["seconds"] >= 0 for s in detail["timeline"])
    assert {env_: d["status"] for env_, d in detail["deployments"].items()} == {"dev": "Succeeded", "prod": "Succeeded"}
    assert (detail["approval"]["status"], detail["approval"]["decided_by"]) == ("approved", APPROVERS[0])
    assert "task_token" not in json.dumps(detail)
    # WHEN it lists releases THEN the row is the record's
    row = next(r for r in cli("releases", "--env", "prod") if r["release_id"] == name)
    assert row == {"release_id": name, "outcome": "SUCCEEDED", "digest": digest, "stopped_at": None, "error": None,
                   "approved_by": APPROVERS[0], "rollback": None, "at": iso(record["recorded_at"])}
    # WHEN it asks what runs where THEN each target of each environment runs this digest from this release
    status = {(r["environment"], r["target"]): r for r in cli("status")}
    assert set(status) == {("dev", "lambda"), ("dev", "fleet"), ("prod", "lambda"), ("prod", "fleet")}
    for row in status.values():
        assert (row["digest"], row["release_id"], row["approved_by"], row["in_flight"], row["release_in_flight"]) == \
            (digest, name, APPROVERS[0], None, None)
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{digest}")


def test_a_blocked_digest_is_refused_by_name_until_unblocked(env: LocalRuntime, cli: Any, first: tuple[str, str]) -> None:
    digest, _ = first
    # GIVEN the operator blocks the digest
    blocked = cli("block", digest, "--reason", "CVE-2026-0001")
    assert (blocked["digest"], blocked["blocked_by"], blocked["reason"]) == (digest, CALLER, "CVE-2026-0001")
    assert [b["digest"] for b in cli("blocked")] == [digest]
    # WHEN it is released again THEN the release stops at its first state with DigestBlocked, nothing deployed
    again = cli("rerelease", digest)
    assert wait_for(env, again["release_id"])["status"] == "FAILED"
    record = record_of(env, again["release_id"])
    assert (record["outcome"], record["error"], record["stopped_at"]) == ("REJECTED", "DigestBlocked", "normalize")
    assert digest in record["cause"]
    assert "CVE-2026-0001" in record["cause"]
    # WHEN it is unblocked THEN the block is gone, and both actions name who did them
    assert cli("unblock", digest)["was_blocked"] is True
    assert cli("blocked") == []
    assert [(a["action"], a["who"]) for a in actions(env).history(digest=digest)] == [
        ("block", CALLER), ("rerelease", CALLER), ("unblock", CALLER)]


def test_abort_mid_canary_undoes_the_release_as_the_failure_path_does(env: LocalRuntime, cli: Any, first: tuple[str, str]) -> None:
    previous, _ = first
    # GIVEN a release in the middle of its dev canary
    digest = push_signed(env, "6.9.3")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "WatchDev", timeout=300)
    assert ledger_item(env, "lock#dev")["holder"]["S"] == name
    # WHEN the operator aborts it
    aborted = cli("abort", name)
    # THEN the execution is stopped and its record says who aborted it, where it stopped
    assert wait_for(env, name)["status"] == "ABORTED"
    assert (aborted["aborted_by"], aborted["locks_released"], aborted["stopped_at"]) == (CALLER, ["dev"], "deploy dev")
    record = record_of(env, name)
    assert (record["outcome"], record["error"], record["stopped_at"]) == ("FAILED", "AbortedByOperator", "deploy dev")
    assert record["cause"] == f"aborted by {CALLER} (podrelease abort)"
    # and dev is back on the previous release, on one fleet colour, its lock free for the next release
    eventually(lambda: live_image(env, "dev").endswith(f"@{previous}"), "dev's alias back on the previous release")
    eventually(lambda: fleet_problems(env, "dev", previous, should_run=True) == [], "dev's fleet whole on the previous colour")
    assert not ledger_item(env, "lock#dev")
    # the failure email went out, and the action is recorded
    assert any(name in m["subject"] and "failed" in m["subject"] for m in env.emulation.outbox.messages)
    assert [(a["action"], a["who"]) for a in actions(env).history(release_id=name)] == [("abort", CALLER)]
    # a second abort changes nothing and says why
    cli("abort", name, code=1)


def test_rollback_of_prod_is_a_reverified_release_recorded_with_who_asked(env: LocalRuntime, cli: Any,
                                                                            first: tuple[str, str]) -> None:
    digest, name = first
    bootstrap = env.stack.parameters["BootstrapImageUri"].rpartition("@")[2]
    # GIVEN prod runs the first release; nothing was released to prod before it, so the default is refused
    cli("rollback", "prod", code=1)
    # WHEN the operator rolls prod back to the image the stack was created with
    done = cli("rollback", "prod", "--to", bootstrap)
    assert (done["environment"], done["digest"], done["from_digest"], done["replaces"], done["requested_by"]) == \
        ("prod", bootstrap, digest, name, CALLER)
    assert wait_for(env, done["release_id"], timeout=300)["status"] == "SUCCEEDED"
    # THEN prod runs it, re-verified under today's prod policy, without a dev canary or an approval; dev is untouched
    record = record_of(env, done["release_id"])
    assert record["stages_done"] == ["verify for prod", "promote", "deploy prod"]
    assert record["evidence_prod"]["verified"] is True
    assert record["rollback"] == {"environment": "prod", "requested_by": CALLER, "replaces": name}
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{bootstrap}")
    assert fleet_problems(env, "prod", bootstrap, should_run=True) == []
    assert live_image(env, "dev").endswith(f"@{digest}")
    assert not ledger_item(env, f"approval#{done['release_id']}")
    assert [(a["action"], a["who"], a["environment"]) for a in actions(env).history(release_id=done["release_id"])] == [
        ("rollback", CALLER, "prod")]
    # and the command shows it as the release prod runs now
    prod = {r["target"]: r for r in cli("status") if r["environment"] == "prod"}
    assert {t: (r["digest"], r["release_id"]) for t, r in prod.items()} == {
        "lambda": (bootstrap, done["release_id"]), "fleet": (bootstrap, done["release_id"])}
    # DORA over these releases: one deployment, rolled back (a failed change), restored in the time between
    first_record = record_of(env, name)
    dora = cli("dora", "--since", "1d")
    assert (dora["deployments"], dora["rollbacks"], dora["change_failure_rate"]) == (1, 1, 1.0)
    assert dora["time_to_restore_seconds"] == record["recorded_at"] - first_record["recorded_at"]
    assert [r["release_id"] for r in cli("releases", "--env", "prod")] == [done["release_id"], name]


def test_the_command_refuses_a_stopped_local_runtime_by_name(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert main(["--local", "--state-file", str(state), "status"]) == 1
    state.write_text(json.dumps({"pid": 2**22 + 1}))
    assert main(["--local", "--state-file", str(state), "status"]) == 1
