"""A watch step that runs beside an abort (moto with `local.emulation`, see handler_world.py).

The cleanup's abort ends the watch and undoes the state it read; a tick already in its step may then
change something the abort never saw (here: the deployment it starts once Lambda has applied the
image). The step's store conflicts with the ended watch, and the step undoes what it did."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from podrelease.release import lambda_target as deploy
from podrelease.release.ledger import Ledger
from podrelease.release.rollout import Rollout
from podrelease.release.watch import ABORTED, Timer, Watcher
from tests.integration.handler_world import ACCOUNT, DEV_FUNCTION, REGION, REPOSITORY, STACK, Site, release_of
from tests.lambda_updates import LambdaUpdates


def test_a_step_that_ran_beside_an_abort_undoes_what_it_started(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    updates = LambdaUpdates(monkeypatch)
    updates.hold = True
    monkeypatch.setattr(deploy, "UPDATE_WAIT_SECONDS", 0.0)
    held = site.emulation.codedeploy
    monkeypatch.setattr(held, "start", held.register)  # a new deployment stays in progress
    rollout = Rollout.from_env(os.environ, site.lam, site.codedeploy, Ledger(site.table), lambda: (None, None, None))
    timer = Timer.for_function(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-watch", 30)
    watcher = Watcher(site.table, rollout, boto3.client("stepfunctions", region_name=REGION),
                      boto3.client("scheduler", region_name=REGION), timer)
    # GIVEN a release holding dev whose image Lambda is still applying, watched
    release = release_of(site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1").digest)
    site.lock("dev", release["id"])
    started = rollout.start(release, "dev")
    assert (started["status"], started["id"]) == (deploy.UPDATING, None)
    watcher.watch("dev", release["id"], started, "task-token")
    assert site.deployments("dev") == []
    # AND the cleanup's abort lands while the next tick's step runs (after it started the deployment)
    step = rollout.status

    def step_beside_an_abort(environment: str, deployment: dict[str, Any]) -> dict[str, Any]:
        result = step(environment, deployment)
        assert rollout.abort(release["id"], {"release": release}) == {"stopped": [], "locks_released": ["dev"]}
        return result

    monkeypatch.setattr(rollout, "status", step_beside_an_abort)
    updates.finish(DEV_FUNCTION)
    # WHEN that tick ends
    reply = watcher.tick("dev", release["id"])
    # THEN the deployment it started (which the abort could not know) is stopped, and nothing more is watched
    [deployment_id] = site.deployments("dev")
    assert reply["status"] == ABORTED
    assert held.runs[deployment_id].stop_requested is True
    assert site.lock_holder("dev") is None
    assert watcher.tick("dev", release["id"]) == {"environment": "dev", "watching": False}
