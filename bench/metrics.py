"""The pure computations of `make bench`: transitions, stages, poll scaling and cost, from recorded histories.

Everything here takes data (a `GetExecutionHistory` event list, an ASL document, durations) and
returns numbers; nothing talks to AWS or the local runtime (that is `bench.runs`), so each formula is
unit-tested with hand-computed values (tests/unit/test_bench_metrics.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: AWS prices (us-east-1, on demand, no free tier), as published on the pages cited in docs/bench.md.
SFN_STANDARD_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard: $0.025 per 1,000 state transitions
LAMBDA_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}  # Lambda duration, first pricing tier
LAMBDA_PER_REQUEST = 0.20 / 1_000_000  # Lambda requests: $0.20 per 1M
CODEPIPELINE_V2_PER_ACTION_MINUTE = 0.002  # each action's minutes rounded up; manual approval actions are free

#: The stages of a release, in order, and the history marks that end each one (see `stage_split`).
STAGES = ("verify", "deploy_dev", "approval_round_trip", "promote", "deploy_prod")

#: The task events that start one attempt of a Task state (a retry is one more of them in the same state).
_ATTEMPT_EVENTS = {"LambdaFunctionScheduled", "TaskScheduled", "ActivityScheduled"}


class HistoryIncomplete(ValueError):
    """The history lacks a state a figure is measured from (the release failed, or the ASL renamed it)."""


@dataclass(frozen=True)
class Entry:
    """One state entered: its name and when."""

    name: str
    at: datetime


def _when(event: Mapping[str, Any]) -> datetime:
    stamp = event["timestamp"]
    return stamp if isinstance(stamp, datetime) else datetime.fromisoformat(str(stamp))


def last_event_at(events: Sequence[Mapping[str, Any]]) -> datetime:
    return _when(events[-1])


def entries(events: Sequence[Mapping[str, Any]]) -> list[Entry]:
    """Every `*StateEntered` event, in history order."""
    return [Entry(e["stateEnteredEventDetails"]["name"], _when(e)) for e in events if str(e["type"]).endswith("StateEntered")]


def transitions(events: Sequence[Mapping[str, Any]]) -> int:
    """The state transitions Step Functions bills for this history: one per state entered, plus one per
    retry of a Task (a second, third ... scheduling of its work inside the same state entry)."""
    count = 0
    attempts = 0
    for event in events:
        kind = str(event["type"])
        if kind.endswith("StateEntered"):
            count += 1
            attempts = 0
        elif kind in _ATTEMPT_EVENTS:
            attempts += 1
            if attempts > 1:
                count += 1
    return count


def _first(marks: Sequence[Entry], name: str, after: datetime | None = None) -> Entry:
    for mark in marks:
        if mark.name == name and (after is None or mark.at >= after):
            return mark
    raise HistoryIncomplete(f"the history never enters {name}")


def _exit_of(events: Sequence[Mapping[str, Any]], name: str) -> datetime:
    for event in events:
        if str(event["type"]).endswith("StateExited") and event["stateExitedEventDetails"]["name"] == name:
            return _when(event)
    raise HistoryIncomplete(f"the history never leaves {name}")


def _end(events: Sequence[Mapping[str, Any]]) -> datetime:
    last = events[-1]
    if not str(last["type"]).startswith("Execution") or last["type"] in ("ExecutionStarted",):
        raise HistoryIncomplete("the execution has not ended")
    return _when(last)


def stage_split(events: Sequence[Mapping[str, Any]], pushed_at: datetime) -> dict[str, float]:
    """Seconds per stage of one happy release, from the push to the execution's end:

    verify              push -> `Verify` exited (the starter, normalize, the dev lock, the gate);
    deploy_dev          -> `RequestApproval` entered (deploy and wait, release the dev lock);
    approval_round_trip -> `RequestApproval` exited (email, page, decision, task token);
    promote             -> `Promote` exited (prod lock, prod gate, the copy to the prod repository);
    deploy_prod         -> the execution's end (deploy and wait, release the lock, record, notify).
    """
    marks = entries(events)
    verified = _exit_of(events, "Verify")
    asked = _first(marks, "RequestApproval").at
    decided = _exit_of(events, "RequestApproval")
    promoted = _exit_of(events, "Promote")
    bounds = [pushed_at, verified, asked, decided, promoted, _end(events)]
    return {stage: round((bounds[i + 1] - bounds[i]).total_seconds(), 3) for i, stage in enumerate(STAGES)}


def env_intervals(events: Sequence[Mapping[str, Any]]) -> dict[str, tuple[datetime, datetime]]:
    """When this release held each environment's lock and worked in it: dev from `Verify` entered (the
    dev lock is held) to `ReleaseDevLock` entered; prod from `VerifyProd` entered (`Promote` in an
    ASL without it) to `ReleaseProdLock` entered. The lock is let go inside the `Release*Lock` task,
    which hands it to the next waiter: the next holder starts after that state is entered, never
    before, so two holders at once show as an overlap and a hand-off does not. Without that state
    (an ASL without it, or a release that failed) the interval ends at `RequestApproval` entered for
    dev, else at the execution's end. An execution that never got that far has no interval there."""
    marks = entries(events)
    names = {m.name for m in marks}
    end = _when(events[-1])
    found: dict[str, tuple[datetime, datetime]] = {}
    if "Verify" in names:
        start = _first(marks, "Verify").at
        last = next((n for n in ("ReleaseDevLock", "RequestApproval") if n in names), None)
        found["dev"] = (start, _first(marks, last, after=start).at if last else end)
    first = next((n for n in ("VerifyProd", "Promote") if n in names), None)
    if first:
        start = _first(marks, first).at
        found["prod"] = (start, _first(marks, "ReleaseProdLock", after=start).at if "ReleaseProdLock" in names else end)
    return found


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an interval ending when another starts does not overlap it)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda p: (p[0], p[1]))
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


@dataclass(frozen=True)
class PollLoop:
    """A Wait -> check Task -> Choice cycle of the ASL: `wait` is where each lap starts."""

    wait: str
    states: tuple[str, ...]


def poll_loops(definition: Mapping[str, Any]) -> list[PollLoop]:
    """The ASL's poll loops: each Wait state from which Next/Choices/Default lead back to it within
    three states. The callbacks design has none; the poll design has WaitDev and WaitProd."""
    states: Mapping[str, Any] = definition["States"]

    def successors(name: str) -> list[str]:
        state = states.get(name, {})
        found = [state["Next"]] if "Next" in state else []
        found += [c["Next"] for c in state.get("Choices", []) if "Next" in c]
        return found + ([state["Default"]] if "Default" in state else [])

    loops = []
    for name, state in states.items():
        if state.get("Type") != "Wait":
            continue
        paths: list[tuple[str, ...]] = [(name,)]
        for _ in range(3):
            paths = [(*p, n) for p in paths for n in successors(p[-1]) if n not in p[1:]]
            closed = [p for p in paths if p[-1] == name]
            if closed:
                loops.append(PollLoop(name, closed[0][:-1]))
                break
    return loops


@dataclass(frozen=True)
class LoopRun:
    """One poll loop as run: laps (entries of its Wait state) and seconds from the first lap to the loop's exit."""

    loop: PollLoop
    laps: int
    seconds: float


def loop_runs(events: Sequence[Mapping[str, Any]], loops: Sequence[PollLoop]) -> list[LoopRun]:
    marks = entries(events)
    runs = []
    for loop in loops:
        indexes = [i for i, m in enumerate(marks) if m.name == loop.wait]
        if not indexes:
            runs.append(LoopRun(loop, 0, 0.0))
            continue
        after = next((m for m in marks[indexes[-1]:] if m.name not in loop.states), None)
        end = after.at if after else _when(events[-1])
        runs.append(LoopRun(loop, len(indexes), (end - marks[indexes[0]].at).total_seconds()))
    return runs


def real_laps(seconds: float, seconds_at_bake0: float, minute_seconds: float, poll_seconds: float) -> int:
    """Laps a poll loop makes on AWS. Locally a bake minute lasts `minute_seconds`; the part of the
    loop's time that the bakes added (over the same loop at bake 0) is scaled to real minutes, the rest
    (launches, hooks, checks) is kept as measured; the real loop then polls every `poll_seconds`
    (`DeployPollSeconds`): at least one lap, one more per started poll interval."""
    baked = max(seconds - seconds_at_bake0, 0.0)
    real = seconds_at_bake0 + (baked * 60.0 / minute_seconds if minute_seconds > 0 else 0.0)
    return max(1, math.ceil(real / poll_seconds))


def scaled_transitions(counted: int, runs: Sequence[LoopRun], laps: Sequence[int]) -> int:
    """Transitions of the history with each loop's local laps replaced by its real laps (each lap
    enters every state of the loop once)."""
    return counted + sum((real - run.laps) * len(run.loop.states) for run, real in zip(runs, laps, strict=True))


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation of the control plane: its function, memory size and measured duration."""

    function: str
    memory_mb: int
    seconds: float


def lambda_cost(invocations: Iterable[Invocation], architecture: str = "arm64") -> float:
    """Requests plus GB-seconds (duration rounded up to the millisecond, as Lambda bills it)."""
    total = 0.0
    for call in invocations:
        billed = math.ceil(call.seconds * 1000) / 1000
        total += LAMBDA_PER_REQUEST + call.memory_mb / 1024 * billed * LAMBDA_PER_GB_SECOND[architecture]
    return total


def sfn_cost(transition_count: int) -> float:
    return transition_count * SFN_STANDARD_PER_TRANSITION


def codepipeline_v2_cost(action_seconds: Mapping[str, float], free: Iterable[str] = ("approval_round_trip",)) -> float:
    """$0.002 per action minute, each action's duration rounded up to the minute; the manual approval
    action is not charged."""
    skip = set(free)
    minutes = sum(math.ceil(seconds / 60) for stage, seconds in action_seconds.items() if stage not in skip and seconds > 0)
    return minutes * CODEPIPELINE_V2_PER_ACTION_MINUTE


#: The stages whose time the canary bakes lengthen (the others do not depend on the deployment config).
BAKED_STAGES = ("deploy_dev", "deploy_prod")


def real_stage_seconds(stages: Mapping[str, float], stages_at_bake0: Mapping[str, float],
                       minute_seconds: float) -> dict[str, float]:
    """Each stage's duration on AWS at the shipped configs. A deploy stage is scaled as `real_laps`
    scales a loop (the seconds the bakes added locally become real minutes, the rest stays as
    measured); the other stages do not bake and stay as measured."""
    found = {}
    for stage, seconds in stages.items():
        baked = max(seconds - stages_at_bake0[stage], 0.0) if stage in BAKED_STAGES and minute_seconds > 0 else 0.0
        found[stage] = round(stages_at_bake0[stage] + baked * 60.0 / minute_seconds if baked else seconds, 3)
    return found


def per_month(per_release: float, releases_per_day: int, days: int = 30) -> float:
    return per_release * releases_per_day * days


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 2) if baseline else None
