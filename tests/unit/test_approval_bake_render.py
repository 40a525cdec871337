"""Dev's bake on the approval page and in the emails (podrelease.approval.render, from the facts
podrelease.approval.bake gathers): each figure when measured, "not measured" with why when not, an
alarm that fired shown as NOT quiet; and the tags beside the digests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from podrelease.approval.bake import fleet_bake, fleet_steps_text, steps_text
from podrelease.approval.render import Line, alarms_line, summary_lines, summary_text, traffic_line
from podrelease.release.summary import summarize

NOW = 1_900_000_000
DIGEST = "sha256:" + "ab" * 32
WINDOW = {"start": "2030-03-17T17:40:00Z", "end": "2030-03-17T17:46:10Z", "seconds": 370}
LAMBDA = {"deployment": "d-1", "status": "Succeeded", "config": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
          "steps": "10% for 5 min, then 100%", "window": WINDOW,
          "hooks": {"BeforeAllowTraffic": "Succeeded", "AfterAllowTraffic": "Succeeded"},
          "alarms": {"names": ["dev-errors", "dev-latency"], "fired": []},
          "traffic": {"requests": 400, "errors": 0, "error_rate": 0.0, "p99_ms": 42.5}}
FLEET = {"phase": "Succeeded", "colour": "green", "steps": "10% for 5 min, then 100%", "window": WINDOW,
         "checks": [{"phase": "pre-traffic", "passed": 3, "total": 3, "failed": []},
                    {"phase": "post-traffic", "passed": 3, "total": 3, "failed": []}],
         "health": {"healthy": 2, "total": 2},
         "alarms": {"names": ["fleet-dev-errors"], "fired": []},
         "traffic": {"requests": 120, "errors": 0, "error_rate": 0.0, "p99_ms": 8.0}}


def record(bake: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"release_id": "r-1", "digest": DIGEST, "repository": "podinfo", "expires_at": NOW + 3600,
            "dev": {"deployment": {"status": "Succeeded", "version": "7"}}, **({"bake": bake} if bake is not None else {}), **extra}


def dev_lines(rec: dict[str, Any]) -> dict[str, Line]:
    return {line.label: line for line in summary_lines(rec, NOW) if line.label.startswith(("Dev", "Fleet"))}


def test_a_measured_bake_reads_as_one_line_per_fact() -> None:
    lines = dev_lines(record({"lambda": LAMBDA, "fleet": FLEET}))
    assert lines == {
        "Dev canary": Line("Dev canary", "succeeded: 10% for 5 min, then 100%, version 7, "
                                         "2030-03-17T17:40:00Z to 2030-03-17T17:46:10Z (370 s)", good=True),
        "Dev hooks": Line("Dev hooks", "BeforeAllowTraffic succeeded, AfterAllowTraffic succeeded", good=True),
        "Dev alarms": Line("Dev alarms", "quiet: none of dev-errors, dev-latency went to ALARM during the bake", good=True),
        "Dev traffic": Line("Dev traffic", "400 invocations, 0 errors (0.00%), p99 42.5 ms", good=True),
        "Dev fleet": Line("Dev fleet", "succeeded on green: 10% for 5 min, then 100%; 2 of 2 targets healthy before traffic, "
                                       "2030-03-17T17:40:00Z to 2030-03-17T17:46:10Z (370 s)", good=True),
        "Fleet checks": Line("Fleet checks", "pre-traffic 3/3 passed, post-traffic 3/3 passed", good=True),
        "Fleet alarms": Line("Fleet alarms", "quiet: none of fleet-dev-errors went to ALARM during the bake", good=True),
        "Fleet traffic": Line("Fleet traffic", "120 requests, 0 errors (0.00%), p99 8 ms", good=True),
    }


@pytest.mark.parametrize(("alarms", "expected"), [
    ({"names": ["a", "b"], "fired": []}, Line("Dev alarms", "quiet: none of a, b went to ALARM during the bake", good=True)),
    ({"names": ["a", "b"], "fired": [{"name": "b", "at": "2030-03-17T17:42:00Z", "summary": "Alarm updated from OK to ALARM"}]},
     Line("Dev alarms", "NOT quiet: b went to ALARM at 2030-03-17T17:42:00Z (Alarm updated from OK to ALARM)", good=False)),
    ({"names": ["a"], "not_measured": "CloudWatch did not answer (AccessDenied: no)"},
     Line("Dev alarms", "not measured: CloudWatch did not answer (AccessDenied: no)")),
    ({"not_measured": "no alarm is attached to the deployment"},
     Line("Dev alarms", "not measured: no alarm is attached to the deployment")),
    (None, Line("Dev alarms", "not measured: no figure recorded")),
])
def test_alarms_are_quiet_only_when_measured_and_none_fired(alarms: Any, expected: Line) -> None:
    assert alarms_line("Dev alarms", alarms) == expected


@pytest.mark.parametrize(("traffic", "expected"), [
    ({"requests": 40, "errors": 1, "error_rate": 0.025, "p99_ms": 250.0},
     Line("Dev traffic", "40 invocations, 1 errors (2.50%), p99 250 ms", good=False)),
    ({"requests": 40, "errors": 0, "error_rate": 0.0},
     Line("Dev traffic", "40 invocations, 0 errors (0.00%), p99 latency not measured (no data points)", good=True)),
    ({"not_measured": "no requests were recorded during the bake"},
     Line("Dev traffic", "not measured: no requests were recorded during the bake")),
])
def test_traffic_figures_or_why_not(traffic: Any, expected: Line) -> None:
    assert traffic_line("Dev traffic", traffic, "invocations") == expected


def test_a_bake_that_could_not_be_measured_says_why_and_never_invents_a_figure() -> None:
    lines = dev_lines(record({"lambda": {"not_measured": "CodeDeploy did not answer (AccessDeniedException: no)"}}))
    assert lines == {"Dev canary": Line("Dev canary", "not measured: CodeDeploy did not answer (AccessDeniedException: no)")}
    text = summary_text(record({"not_measured": "the release carries no dev deployment"}), NOW)
    assert re.search(r"\n    Dev bake: +not measured: the release carries no dev deployment\n", text), text
    assert "invocations" not in text


def test_a_record_from_before_the_bake_was_measured_still_shows_dev_s_outcome() -> None:
    assert dev_lines(record()) == {"Dev Lambda": Line("Dev Lambda", "canary succeeded (version 7)", good=True)}


def test_a_failed_fleet_check_is_named() -> None:
    fleet = FLEET | {"checks": [{"phase": "pre-traffic", "passed": 2, "total": 3, "failed": ["/readyz -> 503"]}]}
    assert dev_lines(record({"lambda": LAMBDA, "fleet": fleet}))["Fleet checks"] == Line(
        "Fleet checks", "pre-traffic 2/3 passed (failed: /readyz -> 503)", good=False)


def test_the_fleet_state_becomes_bake_facts_without_cloudwatch_when_it_has_no_window() -> None:
    state = {"phase": "Succeeded", "idle": "green", "steps_planned": [10, 100], "step_seconds": 300,
             "health": {"i-1": "healthy", "i-2": "unhealthy"},
             "checks": [{"phase": "pre-traffic", "results": [{"path": "/healthz", "ok": True, "status": 200},
                                                             {"path": "/readyz", "ok": False, "status": 503}]}]}
    assert fleet_bake(None, state) == {
        "phase": "Succeeded", "colour": "green", "steps": "10% for 5 min, then 100%",
        "checks": [{"phase": "pre-traffic", "passed": 1, "total": 2, "failed": ["/readyz -> 503"]}],
        "health": {"healthy": 1, "total": 2},
        "not_measured": "the fleet state has no start and end time (a release from before they were recorded)"}


@pytest.mark.parametrize(("config", "expected"), [
    ("CodeDeployDefault.LambdaCanary10Percent5Minutes", "10% for 5 min, then 100%"),
    ("CodeDeployDefault.LambdaLinear10PercentEvery1Minute", "+10% every 1 min to 100%"),
    ("CodeDeployDefault.LambdaAllAtOnce", "100% at once"),
    ("custom-config", "as configured in custom-config"),
])
def test_canary_steps_in_words(config: str, expected: str) -> None:
    assert steps_text(config) == expected


def test_fleet_steps_in_words() -> None:
    assert fleet_steps_text([10, 100], 2.0) == "10% for 2 s, then 100%"
    assert fleet_steps_text([25, 50, 100], 60) == "25% for 1 min, then 50% for 1 min, then 100%"
    assert fleet_steps_text([100], 0) == "100% at once"


def test_tags_stand_beside_the_digests() -> None:
    rec = record(tag="6.9.1", prod={"digest": "sha256:" + "cd" * 32, "tag": "6.9.0"})
    lines = {line.label: line.text for line in summary_lines(rec, NOW)}
    assert lines["Candidate"] == "sha256:abababababab 6.9.1 (podinfo)"
    assert lines["Prod now"] == "sha256:cdcdcdcdcdcd 6.9.0"


def test_the_outcome_email_carries_the_approval_summary_and_prod_s_tag_is_recorded() -> None:
    state = {"release": {"id": "r-1", "repository": "podinfo", "digest": DIGEST, "tag": "6.9.1"},
             "approval": {"approved_by": "alice@example.com", "decided_at": "2030-03-17T18:00:00Z"}}
    approval = record({"lambda": LAMBDA}, votes=[{"decision": "approved", "email": "alice@example.com", "subject": "s-1",
                                                   "at": NOW - 60, "link": "j-1"}])
    out = summarize("SUCCEEDED", state, "r-1", approval_summary=summary_text(approval, NOW))
    assert out["record"]["tag"] == "6.9.1"  # the ledger's live#prod takes it from here
    body = out["message"]
    assert "What was approved (the approval page's summary):" in body
    assert summary_text(approval, NOW) in body
    assert "approved by alice@example.com (subject s-1)" in body
    assert "ok  Dev alarms:" in body
    assert "What was approved" not in summarize("SUCCEEDED", state, "r-1")["message"]
