"""DORA metrics published on a schedule: the dora function (template.yaml's DoraFunction, its hourly
schedule rule) computes the figures from the ledger and publishes them with Powertools Metrics (EMF).

GIVEN the local runtime and a ledger holding releases whose figures are known by hand
WHEN the function's schedule fires (`LocalRuntime.run_schedule`, as the rule would, under its own role)
THEN the EMF documents in its log carry exactly those figures, in the stack's namespace, under the
names the releases dashboard shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from local.runtime import LocalRuntime
from podrelease.release.ledger import Ledger
from tests.statemachine.conftest import module_runtime

pytestmark = pytest.mark.statemachine
HOUR, DAY = 3600, 86400
ALL = ["verify", "deploy dev", "approval", "verify for prod", "promote", "deploy prod"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    yield from module_runtime(tmp_path_factory.mktemp("dora"))


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def emf_figures(env: LocalRuntime, function_name: str) -> dict[str, tuple[float, str, str, list[list[str]]]]:
    """Metric name -> (value, unit, namespace, dimensions) from the EMF documents in the function's log."""
    found: dict[str, tuple[float, str, str, list[list[str]]]] = {}
    for line in (env.work_dir / "logs" / f"{function_name}.log").read_text().splitlines():
        if not line.startswith("{") or "_aws" not in line:
            continue
        document: dict[str, Any] = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                value = value[-1] if isinstance(value, list) else value
                found[metric["Name"]] = (float(value), metric["Unit"], directive["Namespace"], directive["Dimensions"])
    return found


def test_the_scheduled_dora_function_publishes_the_ledgers_figures(env: LocalRuntime) -> None:
    # GIVEN a ledger with known releases in the last 30 days (and one older, outside the window)
    table = env.session.resource("dynamodb", region_name=env.stack.region, endpoint_url=env.endpoint)
    ledger = Ledger(table.Table(env.stack.outputs["LedgerTableName"]))
    now = time.time()
    known = [  # (id, record, recorded at)
        ("r1", {"outcome": "SUCCEEDED", "stages_done": ALL, "pushed_at": iso(now - 10 * DAY - 3 * HOUR)}, now - 10 * DAY),
        ("r2", {"outcome": "SUCCEEDED", "stages_done": ALL, "pushed_at": iso(now - 5 * DAY - HOUR)}, now - 5 * DAY),
        ("rb", {"outcome": "SUCCEEDED", "stages_done": ["verify for prod", "promote", "deploy prod"],
                "rollback": {"environment": "prod", "requested_by": "ops", "replaces": "r2"}}, now - 5 * DAY + 2 * HOUR),
        ("r3", {"outcome": "FAILED", "stages_done": ALL[:5], "stopped_at": "deploy prod"}, now - 3 * DAY),
        ("old", {"outcome": "SUCCEEDED", "stages_done": ALL, "pushed_at": iso(now - 41 * DAY)}, now - 40 * DAY),
    ]
    for release_id, record, at in known:
        ledger.record_release(release_id, record, at)
    # WHEN its schedule fires
    reply = env.run_schedule("DoraFunction")
    # THEN the figures are the hand-computed ones: r1 and r2 deployed (leads 3 h and 1 h), r2 rolled back
    # 2 h after it went live, r3 failed in prod's canary; "old" is outside the window
    expected = {"DoraDeployments": 2.0, "DoraDeploymentsPerDay": round(2 / 30, 4), "DoraLeadTime": 2 * HOUR,
                "DoraChangeFailureRate": round(2 / 3, 4), "DoraTimeToRestore": 2 * HOUR}
    assert reply["published"] == expected
    assert (reply["deployments"], reply["rollbacks"]) == (2, 1)
    published = emf_figures(env, env.stack.functions["DoraFunction"].name)
    assert {name: figure[0] for name, figure in published.items() if name.startswith("Dora")} == expected
    namespace = f"PodinfoRelease/{env.stack.name}"
    assert all(figure[2] == namespace for name, figure in published.items() if name.startswith("Dora"))
    assert (published["DoraLeadTime"][1], published["DoraDeployments"][1]) == ("Seconds", "Count")
    # AND the releases dashboard shows each of them under that namespace and the service dimension
    dashboard = env.client("cloudwatch").get_dashboard(DashboardName=f"{env.stack.name}-releases")["DashboardBody"]
    for name in expected:
        assert f'"{name}"' in dashboard, name
    assert [["service"]] in [figure[3] for figure in published.values()]
