"""`podrelease finish` and `podrelease rollback --fast` against the local runtime, with canaries too
long to wait out: a canary minute is 120 s here, so dev's bake lasts 10 minutes and prod's 30.

GIVEN the local runtime (the shipped template and ASL), the command pointed at it as `make up` does
WHEN an operator finishes a release's canary in dev and in prod, then rolls prod back fast
THEN the release goes on at once with all traffic on the new version of both targets (CodeDeploy's
deployment stopped without rollback, the alias shifted by the watch after its post-traffic checks,
the fleet moved to its last step), the ledger says who finished it; the fast rollback deploys all at
once (CodeDeploy's LambdaAllAtOnce, the fleet in one step), still re-verified, recorded and notified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.demo import approval_link, decide
from local.demo_report import fleet_problems
from local.runtime import APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name
from tests.statemachine.conftest import live_image, module_runtime, wait_for, wait_for_state
from tests.statemachine.test_podrelease_cli import CALLER, actions, eventually, local_cli, push_signed, record_of

pytestmark = pytest.mark.statemachine
DEV_BAKE_SECONDS = 5 * 120  # CodeDeployDefault.LambdaCanary10Percent5Minutes at 120 s a minute


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    yield from module_runtime(tmp_path_factory.mktemp("finish"), minute_seconds=120.0, approval_timeout=600)


@pytest.fixture(scope="module")
def cli(env: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    return local_cli(env, tmp_path_factory)


def canary_split(env: LocalRuntime, environment: str) -> bool:
    """Both targets of `environment` mid-canary: the alias weighted to a new version, the fleet split."""
    function = env.stack.outputs[f"Podinfo{environment.capitalize()}FunctionName"]
    alias = env.client("lambda").get_alias(FunctionName=function, Name="live")
    fleet = fleet_problems(env, environment, "", should_run=False)
    return bool((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")) and any("mid-shift" in p for p in fleet)


def latest_deployment(env: LocalRuntime, environment: str) -> dict[str, Any]:
    codedeploy = env.client("codedeploy")
    group = env.stack.physical[f"Podinfo{environment.capitalize()}DeploymentGroup"]
    application = env.stack.physical["PodinfoApplication"]
    infos = [codedeploy.get_deployment(deploymentId=d)["deploymentInfo"]
             for d in codedeploy.list_deployments(applicationName=application, deploymentGroupName=group)["deployments"]]
    return dict(max(infos, key=lambda i: i["createTime"]))


def finish_when_baking(env: LocalRuntime, cli: Callable[..., Any], name: str, environment: str) -> dict[str, Any]:
    eventually(lambda: canary_split(env, environment), f"{environment} canary under way", timeout=400)
    return dict(cli("finish", name))


@pytest.fixture(scope="module")
def finished(env: LocalRuntime, cli: Callable[..., Any]) -> tuple[str, str]:
    """A release whose dev and prod canaries were finished by the operator: (digest, release id)."""
    digest = push_signed(env, "6.9.4")
    name = execution_name(WORKLOAD_REPOSITORY, digest)
    wait_for_state(env, name, "WatchDev", timeout=300)
    done = finish_when_baking(env, cli, name, "dev")
    assert (done["release_id"], done["environment"], done["finished_by"]) == (name, "dev", CALLER)
    # the release proceeds at once: the approval is asked for long before the 10-minute bake could end
    link = approval_link(env, APPROVERS[0], name, timeout=DEV_BAKE_SECONDS - 120)
    assert link is not None, "no approval email before the dev bake would have ended"
    assert decide(link, "approve")[0] == 200
    wait_for_state(env, name, "WatchProd", timeout=300)
    finish_when_baking(env, cli, name, "prod")
    assert wait_for(env, name, timeout=DEV_BAKE_SECONDS)["status"] == "SUCCEEDED"
    return digest, name


def test_finish_ends_the_bake_and_shifts_both_targets_recorded_with_who(env: LocalRuntime, cli: Any,
                                                                         finished: tuple[str, str]) -> None:
    digest, name = finished
    # THEN both environments run the release on both targets, whole
    assert live_image(env, "dev").endswith(f"@{digest}")
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{digest}")
    for environment in ("dev", "prod"):
        assert fleet_problems(env, environment, digest, should_run=True) == []
        # CodeDeploy's canary was stopped where it stood (no rollback): the watch shifted the alias itself
        info = latest_deployment(env, environment)
        assert (info["status"], info.get("rollbackInfo") or None) == ("Stopped", None), environment
    # AND the ledger says who finished each canary, as a record field and as actions
    assert record_of(env, name)["finished_early_by"] == {"dev": CALLER, "prod": CALLER}
    assert [(a["action"], a["who"], a["environment"]) for a in actions(env).history(release_id=name)] == [
        ("finish", CALLER, "dev"), ("finish", CALLER, "prod")]
    # and the release shows the post-traffic checks the watch ran on the alias
    deployments = cli("release", name)["deployments"]
    assert all(c["ok"] for c in deployments["dev"]["post_traffic_checks"])
    assert deployments["prod"]["finish"]["requested_by"] == CALLER
    # a finish of a release with nothing in flight is refused by name
    cli("finish", name, code=1)


def test_fast_rollback_switches_at_once_still_checked_recorded_and_notified(env: LocalRuntime, cli: Any,
                                                                             finished: tuple[str, str]) -> None:
    digest, name = finished
    bootstrap = env.stack.parameters["BootstrapImageUri"].rpartition("@")[2]
    sent = len(env.emulation.outbox.messages)
    # WHEN the operator rolls prod back fast (prod's canary would bake 30 minutes)
    done = cli("rollback", "prod", "--to", bootstrap, "--fast")
    assert (done["fast"], done["replaces"], done["requested_by"]) == (True, name, CALLER)
    assert wait_for(env, done["release_id"], timeout=DEV_BAKE_SECONDS)["status"] == "SUCCEEDED"
    # THEN prod runs it on both targets, deployed all at once with both traffic hooks run
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{bootstrap}")
    assert fleet_problems(env, "prod", bootstrap, should_run=True) == []
    info = latest_deployment(env, "prod")
    assert (info["status"], info["deploymentConfigName"]) == ("Succeeded", "CodeDeployDefault.LambdaAllAtOnce")
    hooks = [text for _, _, release, text in env.emulation.timeline.entries if release == done["release_id"] and "hook" in text]
    assert [h.split(": ", 1)[1] for h in hooks if h.startswith("prod")] == [
        "BeforeAllowTraffic hook Succeeded", "AfterAllowTraffic hook Succeeded"]
    fleet = cli("release", done["release_id"])["deployments"]["prod"]["fleet"]
    assert fleet["weights"][fleet["idle"]] == 100
    # re-verified, recorded with who asked and that it was fast, and notified
    record = record_of(env, done["release_id"])
    assert record["evidence_prod"]["verified"] is True
    assert record["rollback"] == {"environment": "prod", "requested_by": CALLER, "replaces": name, "fast": True}
    assert [(a["action"], a["who"], a.get("fast")) for a in actions(env).history(release_id=done["release_id"])] == [
        ("rollback", CALLER, True)]
    assert any(done["release_id"] in m["subject"] for m in env.emulation.outbox.messages[sent:])
    assert live_image(env, "dev").endswith(f"@{digest}")
