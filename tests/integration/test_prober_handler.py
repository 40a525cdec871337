"""The prober handler (the every-minute schedule's target) against moto and the podinfo stand-in (see
handler_world.py's `site`): what it finds on each environment's live alias, and the ProbeFailures
metric its alarms read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import import_handler
from tests.integration.handler_world import DEV_FUNCTION, PROD_FUNCTION, REGISTRY, REPOSITORY, Context, Site


@pytest.fixture
def prober(site: Site, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PODINFO_DEV_FUNCTION", DEV_FUNCTION)
    monkeypatch.setenv("PODINFO_PROD_FUNCTION", PROD_FUNCTION)
    return import_handler("prober")


def probe_failures(out: str) -> dict[str, float]:
    """ProbeFailures per environment, from the EMF documents the handler printed."""
    found = {}
    for line in out.splitlines():
        if '"ProbeFailures"' in line and line.startswith('{"_aws"'):
            document = json.loads(line)
            found[document["environment"]] = document["ProbeFailures"][0]
    return found


def test_healthy_environments_report_no_failures(prober: Any, capsys: pytest.CaptureFixture[str]) -> None:
    reply = prober.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Context())
    assert reply == {"failed": {"dev": [], "prod": []}}
    assert probe_failures(capsys.readouterr().out) == {"dev": 0.0, "prod": 0.0}


def test_an_unready_live_version_is_a_failed_probe_of_its_environment(
        prober: Any, site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN prod's live alias on a version whose /readyz fails
    unready = site.registry.pusher.push_podinfo(REPOSITORY, "6.9.1", tag="unready", fault="unready")
    site.lam.update_function_code(FunctionName=PROD_FUNCTION, ImageUri=f"{REGISTRY}/{REPOSITORY}@{unready.digest}")
    version = site.lam.publish_version(FunctionName=PROD_FUNCTION)["Version"]
    site.lam.update_alias(FunctionName=PROD_FUNCTION, Name="live", FunctionVersion=version)
    # WHEN the schedule runs the prober
    reply = prober.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, Context())
    # THEN prod's /readyz is named, dev is fine, and prod's metric counts it
    assert reply == {"failed": {"dev": [], "prod": ["lambda /readyz"]}}
    assert probe_failures(capsys.readouterr().out) == {"dev": 0.0, "prod": 1.0}
