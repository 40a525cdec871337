"""The deploy handler (the Deploy, Check and Abort states of the Lambda target) against moto with
`local.emulation` (see handler_world.py): the function's image and versions, the CodeDeploy
deployment it starts, and the locks an abort frees."""

from __future__ import annotations

from typing import Any

import pytest

from podrelease.core.errors import ConfigurationError, DeploymentFailed, InvalidRequest, LockLost
from podrelease.release import lambda_target as deploy
from podrelease.release.events import execution_name
from tests.conftest import import_handler
from tests.integration.handler_world import (
    ACCOUNT,
    DEV_FUNCTION,
    PROD_FUNCTION,
    PROD_REPOSITORY,
    REGION,
    REGISTRY,
    REPOSITORY,
    Context,
    Site,
    release_of,
)
from tests.lambda_updates import LambdaUpdates


@pytest.fixture
def deploy_app(site: Site) -> Any:
    return import_handler("deploy")


def start(site: Site, deploy_app: Any, release: dict[str, Any], environment: str = "dev") -> dict[str, Any]:
    """The DeployDev/DeployProd state of a release that holds the environment (AcquireDevLock ran)."""
    site.lock(environment, release["id"])
    return dict(deploy_app.handler({"action": "start", "environment": environment, "release": release}, Context()))


@pytest.mark.parametrize(
    ("environment", "function", "repository"),
    [("dev", DEV_FUNCTION, REPOSITORY), ("prod", PROD_FUNCTION, PROD_REPOSITORY)],
)
def test_deploy_start_points_the_environment_at_its_repository_by_digest(
    site: Site, deploy_app: Any, environment: str, function: str, repository: str
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    # WHEN the DeployDev / DeployProd state runs
    reply = start(site, deploy_app, release, environment)
    # THEN the function runs repo@digest (prod from the prod repository), as a new version 2
    expected_uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}@{image.digest}"
    assert site.image(function) == expected_uri
    assert site.image(function, "2") == expected_uri
    assert reply == {
        "id": reply["id"],
        "status": "InProgress",
        "environment": environment,
        "function": function,
        "previous_version": "1",
        "version": "2",
    }
    # AND exactly one deployment in that environment's group carries the release and shifts 1 -> 2
    assert site.deployments(environment) == [reply["id"]]
    info = site.codedeploy.get_deployment(deploymentId=reply["id"])["deploymentInfo"]
    assert deploy.parse_description(info["description"]) == {"release": release["id"], "digest": image.digest, "env": environment}
    assert deploy.appspec_versions(info["revision"]["appSpecContent"]["content"]) == {
        "function": function,
        "current": "1",
        "target": "2",
    }
    # AND the other environment is untouched
    other = PROD_FUNCTION if environment == "dev" else DEV_FUNCTION
    assert site.image(other) == f"{REGISTRY}/{REPOSITORY}@{site.bootstrap.digest}"
    assert site.deployments("prod" if environment == "dev" else "dev") == []


@pytest.mark.parametrize("moto_status", ["InProgress", "Succeeded"])
def test_deploy_status_reports_codedeploy_progress(site: Site, deploy_app: Any, moto_status: str) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = start(site, deploy_app, release)
    site.settle()
    site.set_status(started["id"], moto_status)
    # WHEN the CheckDev state polls with the deployment the DeployDev state returned
    reply = deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    # THEN it returns that deployment with CodeDeploy's status (the Choice state reads `status`)
    assert reply == started | {"status": moto_status, "overview": {}}


def test_deploy_status_carries_on_a_start_lambda_was_still_applying(site: Site, deploy_app: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    updates = LambdaUpdates(monkeypatch)
    updates.hold = True
    monkeypatch.setattr(deploy, "UPDATE_WAIT_SECONDS", 0.0)  # no in-function wait: the state machine polls
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    # WHEN DeployDev starts while Lambda takes its time applying the image
    started = start(site, deploy_app, release)
    # THEN it answers Updating (the Choice state goes on to WatchDev), with nothing published yet
    assert (started["status"], started["id"]) == (deploy.UPDATING, None)
    assert site.image(DEV_FUNCTION) == release["image_uri"]
    assert site.deployments("dev") == []
    # AND a CheckDev poll after Lambda is done publishes version 2 and starts the deployment
    updates.finish(DEV_FUNCTION)
    polled = deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    assert (polled["status"], polled["previous_version"], polled["version"]) == ("InProgress", "1", "2")
    assert site.deployments("dev") == [polled["id"]]


def test_deploy_status_of_a_rolled_back_deployment_is_deployment_failed_with_the_reason(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = start(site, deploy_app, release)
    # GIVEN CodeDeploy failed the deployment at its BeforeAllowTraffic hook and rolled it back
    site.settle()
    assert site.codedeploy.get_deployment(deploymentId=started["id"])["deploymentInfo"]["status"] == "Failed"
    with pytest.raises(DeploymentFailed) as info:
        deploy_app.handler({"action": "status", "environment": "dev", "release": release, "deployment": started}, Context())
    assert str(info.value) == (
        f"dev deployment {started['id']} failed and was rolled back: HOOK_EXECUTION_FAILURE: "
        "the BeforeAllowTraffic hook reported Failed: the new version did not pass its health checks"
    )


def test_deploy_abort_stops_the_release_in_flight_and_frees_only_its_own_locks(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    other_release = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
    started = start(site, deploy_app, release)
    site.settle()
    site.set_status(started["id"], "InProgress")
    # GIVEN this release holds dev, another release holds prod
    site.lock("dev", release["id"])
    site.lock("prod", other_release)
    state = {
        "release": release,
        "locks": {"dev": {"holder": release["id"]}},
        "dev": {"deployment": started},
        "error": {"Error": "HookCheckFailed", "Cause": "..."},
    }
    # WHEN the Abort state runs with the whole execution state
    reply = deploy_app.handler({"action": "abort", "state": state}, Context())
    # THEN the dev deployment was asked to stop (and roll back), and only this release's lock is gone
    assert reply == {"stopped": [started["id"]], "locks_released": ["dev"]}
    assert site.emulation.codedeploy.runs[started["id"]].stop_requested is True
    assert site.lock_holder("dev") is None
    assert site.lock_holder("prod") == other_release


def test_an_abort_finds_the_deployment_a_stopped_execution_had_not_recorded_yet(site: Site, deploy_app: Any) -> None:
    # GIVEN DeployDev started the dev deployment, but the execution was stopped before the Task
    # returned: its history (the cleanup's `state`) has the release and no deployment
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = start(site, deploy_app, release)
    site.settle()
    site.set_status(started["id"], "InProgress")
    # WHEN the cleanup's abort runs from that history
    reply = deploy_app.handler({"action": "abort", "state": {"release": release}}, Context())
    # THEN the deployment kept beside the lock is stopped (CodeDeploy rolls it back) and dev is free
    assert reply == {"stopped": [started["id"]], "locks_released": ["dev"]}
    assert site.emulation.codedeploy.runs[started["id"]].stop_requested is True
    assert site.lock_holder("dev") is None


def test_a_start_that_ends_after_its_abort_undoes_itself_with_lock_lost(site: Site, deploy_app: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN CodeDeploy keeps a new deployment in progress (here the engine has no hook to fail it on)
    held = site.emulation.codedeploy
    monkeypatch.setattr(held, "start", held.register)
    # AND the release held dev and was aborted (the lock fenced and freed) while DeployDev still ran
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    site.lock("dev", release["id"])
    assert deploy_app.handler({"action": "abort", "state": {"release": release}}, Context()) == {
        "stopped": [], "locks_released": ["dev"]}
    # WHEN the start goes on and creates its deployment
    with pytest.raises(LockLost) as info:
        deploy_app.handler({"action": "start", "environment": "dev", "release": release}, Context())
    # THEN it stops what it had just started (CodeDeploy rolls it back), says so, and takes no lock
    [deployment_id] = site.deployments("dev")
    assert site.emulation.codedeploy.runs[deployment_id].stop_requested is True
    assert str(info.value) == (f"release {release['id']} no longer holds the dev lock (stopped, aborted or its lease "
                               "ran out): the dev deployment it had just started was undone")
    assert site.lock_holder("dev") is None
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "1"


def test_deploy_abort_leaves_finished_deployments_and_other_releases_alone(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    other_release = execution_name(REPOSITORY, "sha256:" + "c4" * 32)
    started = start(site, deploy_app, release)
    site.settle()  # the engine failed it: already terminal
    site.lock("dev", other_release)
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    assert reply == {"stopped": [], "locks_released": []}
    assert site.emulation.codedeploy.runs[started["id"]].stop_requested is False
    assert site.lock_holder("dev") == other_release
    # AND a state with no release at all (refused before normalize) touches nothing
    assert deploy_app.handler({"action": "abort", "state": {"error": {"Error": "ForeignEvent"}}}, Context()) == {
        "stopped": [],
        "locks_released": [],
    }
    assert site.lock_holder("dev") == other_release


def succeeded_dev_canary(site: Site, deploy_app: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A release whose dev Lambda canary succeeded: live -> version 2. Returns (release, deployment)."""
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    started = start(site, deploy_app, release)
    site.settle()
    site.set_status(started["id"], "Succeeded")
    site.lam.update_alias(FunctionName=DEV_FUNCTION, Name="live", FunctionVersion="2", RoutingConfig={})
    site.table.delete_item(Key={"pk": "lock#dev"})  # the release let go of dev once its canary passed
    return release, started


def test_deploy_abort_points_a_succeeded_alias_back_when_the_release_failed_elsewhere(site: Site, deploy_app: Any) -> None:
    # GIVEN the Lambda canary succeeded but the release failed on its other target, still deploying dev
    release, started = succeeded_dev_canary(site, deploy_app)
    site.lock("dev", release["id"])
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    # THEN live serves the previous version again, and the reply says so
    assert reply["stopped"] == [f"{DEV_FUNCTION}:live back to version 1"]
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "1"
    # AND a second abort (a retried Abort state) changes nothing more
    again = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    assert again["stopped"] == []
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "1"


def test_deploy_abort_keeps_an_environment_the_release_had_finished(site: Site, deploy_app: Any) -> None:
    # GIVEN dev was done (its lock released) and the release failed later (rejected, or in prod)
    release, started = succeeded_dev_canary(site, deploy_app)
    reply = deploy_app.handler({"action": "abort", "state": {"release": release, "dev": {"deployment": started}}}, Context())
    # THEN dev keeps serving the release
    assert reply["stopped"] == []
    assert site.lam.get_alias(FunctionName=DEV_FUNCTION, Name="live")["FunctionVersion"] == "2"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            "PROD_REPOSITORY",
            "environment variable PROD_REPOSITORY is not set; the template sets it for every function that needs it",
        ),
        ("DEV_DEPLOYMENT_GROUP", "environment variable DEV_DEPLOYMENT_GROUP is not set for the dev target"),
        ("PROD_FUNCTION_NAME", "environment variable PROD_FUNCTION_NAME is not set for the prod target"),
        ("LEDGER_TABLE", "environment variable LEDGER_TABLE is not set; the template sets it for every function that needs it"),
    ],
)
def test_deploy_with_an_incomplete_environment_fails_at_import(
    site: Site, monkeypatch: pytest.MonkeyPatch, missing: str, message: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError) as info:
        import_handler("deploy")
    assert str(info.value) == message


def _deploy_refusals(release: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [
        ({"action": "restart", "environment": "dev", "release": release},
         "deploy: unknown action 'restart' (expected one of start, status, abort)"),
        ({"environment": "dev", "release": release}, "deploy: the event has no 'action'"),
        ({"action": "start", "release": release}, "deploy: the event has no 'environment'"),
        ({"action": "start", "environment": "staging", "release": release},
         "deploy: unknown environment 'staging' (expected one of dev, prod)"),
        ({"action": "start", "environment": "dev", "release": {k: v for k, v in release.items() if k != "digest"}},
         "deploy: release: the event has no 'digest'"),
        ({"action": "status", "environment": "dev", "release": release}, "deploy: the event has no 'deployment'"),
        ({"action": "abort", "state": ["dev"]}, "deploy: 'state' must be dict, not list"),
    ]


def test_deploy_refuses_an_event_the_state_machine_never_sends_and_changes_nothing(site: Site, deploy_app: Any) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    release = release_of(image.digest)
    site.lock("dev", release["id"])
    for event, message in _deploy_refusals(release):
        # WHEN the deploy function gets an event no state sends (an unknown action used to mean `status`)
        with pytest.raises(InvalidRequest) as info:
            deploy_app.handler(event, Context())
        # THEN it is refused, named
        assert str(info.value) == message
    # AND nothing moved: no deployment, both functions on the bootstrap image, the lock still held
    assert site.deployments("dev") == site.deployments("prod") == []
    assert site.image(DEV_FUNCTION) == site.image(PROD_FUNCTION) == f"{REGISTRY}/{REPOSITORY}@{site.bootstrap.digest}"
    assert site.lock_holder("dev") == release["id"]
