"""The traffic_hook handler (CodeDeploy's BeforeAllowTraffic and AfterAllowTraffic hooks) against
moto with `local.emulation` (see handler_world.py): the verdict it reports to the emulated CodeDeploy
for the lifecycle event the engine registered, and the checks behind it."""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.images import Pushed
from podrelease.core import obs
from podrelease.core.errors import ConfigurationError, InvalidRequest
from podrelease.release import lambda_target as deploy
from podrelease.release.events import execution_name
from tests.conftest import import_handler
from tests.integration.handler_world import APPLICATION, DEV_FUNCTION, REGISTRY, REPOSITORY, Context, Site, release_of


@dataclass
class Hooked:
    """A deployment the engine has settled, and the BeforeAllowTraffic lifecycle event it registered."""

    deployment_id: str
    execution_id: str

    def event(self) -> dict[str, str]:
        return {"DeploymentId": self.deployment_id, "LifecycleEventHookExecutionId": self.execution_id}


def settled(site: Site, deployment_id: str) -> Hooked:
    site.settle()
    run = site.emulation.codedeploy.runs[deployment_id]
    assert list(run.events.values()) == ["BeforeAllowTraffic"]
    assert run.hook_status == {}  # nobody has reported yet
    return Hooked(deployment_id, next(iter(run.events)))


def started_by_deploy(site: Site, image: Pushed) -> Hooked:
    target = deploy.LambdaTarget.from_env("dev", dict(os.environ))
    release = release_of(image.digest) | {"image_uri": f"{REGISTRY}/{REPOSITORY}@{image.digest}"}
    out = deploy.start(site.lam, site.codedeploy, target, release)
    return settled(site, out["id"])


def created_by_hand(site: Site, digest: str, target_version: str) -> Hooked:
    """A deployment whose description names `digest` and whose AppSpec targets `target_version`."""
    target = deploy.LambdaTarget.from_env("dev", dict(os.environ))
    content = deploy.appspec(target, "1", target_version)
    deployment_id = site.codedeploy.create_deployment(
        applicationName=APPLICATION,
        deploymentGroupName=target.deployment_group,
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": content}},
        description=deploy.describe(execution_name(REPOSITORY, digest), digest, "dev"),
    )["deploymentId"]
    return settled(site, deployment_id)


def hook_app(monkeypatch: pytest.MonkeyPatch, phase: str) -> Any:
    monkeypatch.setenv("HOOK_PHASE", phase)
    return import_handler("traffic_hook")


def reported(site: Site, hooked: Hooked) -> dict[str, str]:
    return dict(site.emulation.codedeploy.runs[hooked.deployment_id].hook_status)


def test_hook_before_traffic_passes_a_healthy_version_running_the_release_digest(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    # WHEN CodeDeploy invokes the BeforeAllowTraffic hook
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    # THEN it reported Succeeded for exactly that lifecycle event
    assert reported(site, hooked) == {hooked.execution_id: "Succeeded"}
    # AND it checked version 2 directly: its image is the release digest, podinfo answered
    assert reply == {
        "release_id": execution_name(REPOSITORY, image.digest),
        "phase": "BeforeAllowTraffic",
        "qualifier": "2",
        "passed": True,
        "checks": [
            {"path": "image", "ok": True, "status": None, "detail": f"{REGISTRY}/{REPOSITORY}@{image.digest}"},
            {"path": "/healthz", "ok": True, "status": 200, "detail": '{"status": "OK"}'},
            {"path": "/readyz", "ok": True, "status": 200, "detail": '{"status": "OK"}'},
            {
                "path": "/version",
                "ok": True,
                "status": 200,
                "detail": json.dumps({"version": "6.9.1", "commit": image.digest[7:19]}),
            },
        ],
    }


def test_hook_after_traffic_checks_the_live_alias(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    # GIVEN all traffic has moved: `live` points at version 2
    site.lam.update_alias(FunctionName=DEV_FUNCTION, Name=deploy.ALIAS, FunctionVersion="2")
    reply = hook_app(monkeypatch, "AfterAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Succeeded"}
    assert (reply["phase"], reply["qualifier"], reply["passed"]) == ("AfterAllowTraffic", "live", True)
    assert reply["checks"][-1]["detail"] == json.dumps({"version": "6.9.1", "commit": image.digest[7:19]})


def test_hook_reports_failed_when_the_version_does_not_run_the_release_digest(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    started_by_deploy(site, image)  # version 2 runs image.digest
    # GIVEN a deployment of version 2 that claims to release another digest
    other = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.2")
    hooked = created_by_hand(site, other.digest, "2")
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}
    assert reply["passed"] is False
    assert reply["checks"][0] == {
        "path": "image",
        "ok": False,
        "status": None,
        "detail": f"{REGISTRY}/{REPOSITORY}@{image.digest}",
    }


def test_hook_reports_failed_when_podinfo_is_not_ready(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1", fault="unready")
    hooked = started_by_deploy(site, image)
    reply = hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}
    assert [(c["path"], c["ok"], c["status"]) for c in reply["checks"]] == [
        ("image", True, None),
        ("/healthz", True, 200),
        ("/readyz", False, 503),
        ("/version", True, 200),
    ]


def test_hook_reports_failed_even_when_its_checks_crash(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    # GIVEN a deployment whose target version does not exist (get_function raises inside the checks)
    hooked = created_by_hand(site, image.digest, "99")
    with pytest.raises(ClientError) as info:
        hook_app(monkeypatch, "BeforeAllowTraffic").handler(hooked.event(), Context())
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # THEN the verdict still reached CodeDeploy, so the deployment does not hang on the hook
    assert reported(site, hooked) == {hooked.execution_id: "Failed"}


def test_hook_crash_line_carries_the_release_id(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The correlation id is bound as soon as the deployment names the release, before any check runs."""
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = created_by_hand(site, image.digest, "99")
    app = hook_app(monkeypatch, "BeforeAllowTraffic")
    printed = io.StringIO()
    handlers = [h for h in logging.getLogger(obs.SERVICE).handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(printed) for h in handlers]
    try:
        with pytest.raises(ClientError):
            app.handler(hooked.event(), Context())
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
    lines = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith("{")]
    crash = [line for line in lines if line["message"].startswith("hook checks crashed")]
    assert crash, lines
    assert crash[0]["correlation_id"] == execution_name(REPOSITORY, image.digest)
    assert crash[0]["release_id"] == execution_name(REPOSITORY, image.digest)


def test_hook_without_a_phase_fails_at_import(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_PHASE", raising=False)
    with pytest.raises(ConfigurationError, match=r"^environment variable HOOK_PHASE is not set;"):
        import_handler("traffic_hook")


def test_hook_refuses_an_event_without_its_hook_execution_id_and_reports_nothing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1")
    hooked = started_by_deploy(site, image)
    with pytest.raises(InvalidRequest) as info:
        hook_app(monkeypatch, "BeforeAllowTraffic").handler({"DeploymentId": hooked.deployment_id}, Context())
    assert str(info.value) == "traffic_hook: the event has no 'LifecycleEventHookExecutionId'"
    assert reported(site, hooked) == {}
