"""bench.metrics: the formulas of `make bench`, each against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench import metrics
from bench.metrics import Invocation, LoopRun, PollLoop

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

# A poll-design ASL, reduced to its control flow.
POLL_ASL = {
    "States": {
        "Verify": {"Type": "Task", "Next": "DeployDev"},
        "DeployDev": {"Type": "Task", "Next": "DevDeployed?"},
        "WaitDev": {"Type": "Wait", "SecondsPath": "$.settings.poll_seconds", "Next": "CheckDev"},
        "CheckDev": {"Type": "Task", "Next": "DevDeployed?"},
        "DevDeployed?": {"Type": "Choice", "Choices": [{"Next": "WaitDev"}], "Default": "RequestApproval"},
        "RequestApproval": {"Type": "Task", "Next": "Promote"},
        "Promote": {"Type": "Task", "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Sleep": {"Type": "Wait", "Seconds": 5, "Next": "Done"},  # a Wait outside any loop
    }
}


def history(*steps: tuple[float, str, str]) -> list[dict]:
    """(seconds after T0, event type, state name or "") -> GetExecutionHistory events."""
    events = []
    for i, (at, kind, name) in enumerate(steps, start=1):
        event: dict = {"id": i, "type": kind, "timestamp": T0 + timedelta(seconds=at)}
        if kind.endswith("StateEntered"):
            event["stateEnteredEventDetails"] = {"name": name}
        elif kind.endswith("StateExited"):
            event["stateExitedEventDetails"] = {"name": name}
        events.append(event)
    return events


def task(at: float, name: str, seconds: float = 1.0, attempts: int = 1) -> list[tuple[float, str, str]]:
    steps = [(at, "TaskStateEntered", name)]
    steps += [(at, "LambdaFunctionScheduled", "")] * attempts
    return [*steps, (at + seconds, "LambdaFunctionSucceeded", ""), (at + seconds, "TaskStateExited", name)]


# Pushed at T0-2 s: Verify 0-1 (its Lambda retried once), DeployDev 1-2, two laps (WaitDev 2-4, CheckDev 4-5,
# DevDeployed? 5; WaitDev 5-7, CheckDev 7-8, DevDeployed? 8), RequestApproval 8-20, Promote 20-23, end 25.
RELEASE = history(
    (0, "ExecutionStarted", ""),
    *task(0, "Verify", 1, attempts=2),
    *task(1, "DeployDev", 1),
    (2, "ChoiceStateEntered", "DevDeployed?"), (2, "ChoiceStateExited", "DevDeployed?"),
    (2, "WaitStateEntered", "WaitDev"), (4, "WaitStateExited", "WaitDev"), *task(4, "CheckDev", 1),
    (5, "ChoiceStateEntered", "DevDeployed?"), (5, "ChoiceStateExited", "DevDeployed?"),
    (5, "WaitStateEntered", "WaitDev"), (7, "WaitStateExited", "WaitDev"), *task(7, "CheckDev", 1),
    (8, "ChoiceStateEntered", "DevDeployed?"), (8, "ChoiceStateExited", "DevDeployed?"),
    *task(8, "RequestApproval", 12),
    *task(20, "Promote", 3),
    (25, "SucceedStateEntered", "Done"), (25, "SucceedStateExited", "Done"),
    (25, "ExecutionSucceeded", ""),
)


def test_transitions_count_states_entered_and_retries():
    # Verify, DeployDev, DevDeployed?, (WaitDev, CheckDev, DevDeployed?) x 2, RequestApproval, Promote, Done = 12 entered;
    # Verify's second LambdaFunctionScheduled is one retry: 13.
    assert metrics.transitions(RELEASE) == 13


def test_poll_loops_are_found_from_the_asl():
    assert metrics.poll_loops(POLL_ASL) == [PollLoop("WaitDev", ("WaitDev", "CheckDev", "DevDeployed?"))]
    assert metrics.poll_loops({"States": {"A": {"Type": "Task", "End": True}}}) == []


def test_loop_runs_count_laps_and_time_to_the_loops_exit():
    [run] = metrics.loop_runs(RELEASE, metrics.poll_loops(POLL_ASL))
    assert (run.laps, run.seconds) == (2, 6.0)  # first WaitDev at 2 s, RequestApproval at 8 s


@pytest.mark.parametrize(
    ("seconds", "at_bake0", "minute", "poll", "expected"),
    [
        (6.0, 6.0, 0.0, 30, 1),    # bake 0: 6 s of launches and checks fit in one 30 s poll
        (16.0, 6.0, 2.0, 30, 11),  # 10 s of local bake at 2 s a minute = 5 real minutes = 300 s; 306 s / 30 = 10.2 -> 11
        (96.0, 6.0, 2.0, 60, 46),  # 90 s local = 45 min = 2,700 s; 2,706 s / 60 = 45.1 -> 46
        (5.0, 6.0, 2.0, 30, 1),    # faster than at bake 0 (noise): nothing baked, one lap
    ],
)
def test_real_laps_scale_the_baked_time_to_real_minutes(seconds, at_bake0, minute, poll, expected):
    assert metrics.real_laps(seconds, at_bake0, minute, poll) == expected


def test_scaled_transitions_replace_local_laps_by_real_laps():
    loop = PollLoop("WaitDev", ("WaitDev", "CheckDev", "DevDeployed?"))
    # 13 counted with 2 local laps; 11 real laps add 9 laps of 3 states: 13 + 27 = 40.
    assert metrics.scaled_transitions(13, [LoopRun(loop, 2, 6.0)], [11]) == 40
    assert metrics.scaled_transitions(13, [], []) == 13  # no loop (the callbacks design): as counted


def test_stage_split_from_push_to_end():
    stages = metrics.stage_split(RELEASE, T0 - timedelta(seconds=2))
    assert stages == {"verify": 3.0, "deploy_dev": 7.0, "approval_round_trip": 12.0, "promote": 3.0, "deploy_prod": 2.0}


def test_stage_split_of_an_unfinished_release_is_a_named_error():
    with pytest.raises(metrics.HistoryIncomplete, match="Promote"):
        metrics.stage_split(RELEASE[:34], T0)  # Promote entered, never left


def test_env_intervals_and_their_overlap():
    intervals = metrics.env_intervals(RELEASE)
    assert intervals == {"dev": (T0, T0 + timedelta(seconds=8)), "prod": (T0 + timedelta(seconds=20), T0 + timedelta(seconds=25))}
    second = (T0 + timedelta(seconds=8), T0 + timedelta(seconds=9))  # starts as the first ends: no overlap
    third = (T0 + timedelta(seconds=7), T0 + timedelta(seconds=9))
    assert metrics.max_overlap([intervals["dev"], second]) == 1
    assert metrics.max_overlap([intervals["dev"], second, third]) == 2


def test_env_intervals_end_where_the_lock_is_let_go():
    # The callback design: the dev lock is let go in ReleaseDevLock (8-9), which resumes the next holder
    # at 8.5, before this release enters RequestApproval (9): a hand-off, not two holders.
    first = history(
        (0, "ExecutionStarted", ""), *task(0, "Verify", 1), *task(1, "DeployDev", 1), *task(2, "WatchDev", 6),
        *task(8, "ReleaseDevLock", 1), *task(9, "RequestApproval", 5), *task(14, "VerifyProd", 1), *task(15, "Promote", 2),
        *task(17, "DeployProd", 1), *task(18, "ReleaseProdLock", 1), *task(19, "RecordSuccess", 2), (21, "ExecutionSucceeded", ""),
    )
    intervals = metrics.env_intervals(first)
    assert intervals == {"dev": (T0, T0 + timedelta(seconds=8)), "prod": (T0 + timedelta(seconds=14), T0 + timedelta(seconds=18))}
    handed = (T0 + timedelta(seconds=8.5), T0 + timedelta(seconds=30))
    assert metrics.max_overlap([intervals["dev"], handed]) == 1
    assert metrics.max_overlap([intervals["prod"], (T0 + timedelta(seconds=18.5), T0 + timedelta(seconds=40))]) == 1
    assert metrics.max_overlap([intervals["prod"], (T0 + timedelta(seconds=17), T0 + timedelta(seconds=40))]) == 2


def test_costs():
    # 1,000 transitions = $0.025.
    assert metrics.sfn_cost(1000) == pytest.approx(0.025)
    # 512 MB for 0.2004 s -> billed 0.201 s = 0.1005 GB-s x $0.0000133334 = $0.00000134001 + $0.0000002 request.
    assert metrics.lambda_cost([Invocation("f", 512, 0.2004)]) == pytest.approx(0.0000015400067, rel=1e-9)
    # x86: 1 GB for 1 s = $0.0000166667 + $0.0000002.
    assert metrics.lambda_cost([Invocation("f", 1024, 1.0)], "x86_64") == pytest.approx(0.0000168667)
    # 61 s -> 2 min, 300 s -> 5 min, 59 s -> 1 min; the approval (3,600 s) is free: 8 min x $0.002.
    assert metrics.codepipeline_v2_cost({"verify": 61, "deploy_dev": 300, "approval_round_trip": 3600, "promote": 59}) == pytest.approx(0.016)


def test_real_stage_seconds_and_per_month():
    stages = {"verify": 4.0, "deploy_dev": 17.0, "deploy_prod": 5.0}
    at_bake0 = {"verify": 3.0, "deploy_dev": 7.0, "deploy_prod": 6.0}
    # deploy_dev: 7 + 10 s x 60 / 2 = 307 s; verify does not bake: as measured (4 s, not 3 + 1 x 30);
    # deploy_prod quicker than at bake 0 (noise): as measured.
    assert metrics.real_stage_seconds(stages, at_bake0, 2.0) == {"verify": 4.0, "deploy_dev": 307.0, "deploy_prod": 5.0}
    assert metrics.per_month(0.01, 100) == pytest.approx(30.0)
    assert metrics.ratio(3.0, 1.5) == 2.0
    assert metrics.ratio(3.0, 0.0) is None
