"""From the runs of `make bench` (bench.runs) to the figures of build/bench.json (bench.metrics does the math)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any

from bench import metrics
from bench.metrics import Invocation
from bench.runs import BurstRun, ReleaseRun

#: The shipped `DeployPollSeconds` (template.yaml's default): what the poll design's laps are scaled to.
SHIPPED_POLL_SECONDS = 30.0


def _loop_function(run: ReleaseRun, loop: metrics.PollLoop) -> str | None:
    """The logical id of the function a poll loop's check Task invokes."""
    for name in loop.states:
        resource = str(run.definition["States"][name].get("Resource", ""))
        if ":function:" in resource:
            return run.function_ids.get(resource.split(":function:")[-1].split(":")[0])
    return None


def _design(run: ReleaseRun, at_bake0: ReleaseRun, poll_seconds: float) -> dict[str, Any]:
    """Transitions and cost of one release of one design at one config, with its poll laps (if any) made real."""
    loops = metrics.poll_loops(run.definition)
    runs = metrics.loop_runs(run.events, loops)
    runs0 = metrics.loop_runs(at_bake0.events, loops)
    laps = [metrics.real_laps(r.seconds, r0.seconds, run.minute_seconds, poll_seconds) for r, r0 in zip(runs, runs0, strict=True)]
    counted = metrics.transitions(run.events)
    scaled = metrics.scaled_transitions(counted, runs, laps)
    lambda_usd = metrics.lambda_cost(run.invocations)
    for loop_run, real in zip(runs, laps, strict=True):  # each extra (or spared) lap is one more (or one less) check
        function = _loop_function(run, loop_run.loop)
        calls = [c for c in run.invocations if c.function == function]
        if calls:
            check = Invocation(calls[0].function, calls[0].memory_mb, statistics.mean(c.seconds for c in calls))
            lambda_usd += (real - loop_run.laps) * metrics.lambda_cost([check])
    sfn_usd = metrics.sfn_cost(scaled)
    return {
        "transitions": scaled,
        "transitions_counted_locally": counted,
        "poll_loops": {r.loop.wait: {"local_laps": r.laps, "local_seconds": round(r.seconds, 2), "real_laps": real}
                       for r, real in zip(runs, laps, strict=True)},
        "lambda_invocations": len(run.invocations),
        "lambda_gb_seconds": round(sum(c.memory_mb / 1024 * c.seconds for c in run.invocations), 3),
        "cost_usd": {"step_functions": round(sfn_usd, 6), "lambda": round(lambda_usd, 6),
                     "total": round(sfn_usd + lambda_usd, 6)},
    }


def release_figures(runs: dict[str, dict[str, ReleaseRun]], poll_seconds: float = SHIPPED_POLL_SECONDS) -> dict[str, Any]:
    """`runs[design][config]`, design "before"/"after", config "bake0"/"shipped"."""
    after0 = runs["after"]["bake0"]
    stages = metrics.stage_split(after0.events, after0.pushed_at)
    figures: dict[str, Any] = {
        "shipped_poll_seconds": poll_seconds,
        "release_overhead_s": round(sum(stages.values()), 3),
        "release_overhead_s_by_stage": stages,
        "transitions_per_release": {},
        "cost_per_release_usd": {},
    }
    if "bake0" in runs.get("before", {}):
        before0 = runs["before"]["bake0"]
        before_stages = metrics.stage_split(before0.events, before0.pushed_at)
        figures["release_overhead_baseline"] = {
            "design": "before (poll loop)", "s": round(sum(before_stages.values()), 3), "by_stage": before_stages,
            "ratio": metrics.ratio(sum(stages.values()), sum(before_stages.values())),
        }
    for design, configs in runs.items():
        for config, run in configs.items():
            found = _design(run, configs["bake0"], poll_seconds)
            figures["transitions_per_release"].setdefault(design, {})[config] = found["transitions"]
            figures["cost_per_release_usd"].setdefault(design, {})[config] = found["cost_usd"]
            figures.setdefault("details", {}).setdefault(design, {})[config] = found
    figures["transitions_growth_with_bake"] = {  # the bar: within 10 of bake 0 at the shipped configs
        design: found["shipped"] - found["bake0"] for design, found in figures["transitions_per_release"].items()
        if "shipped" in found and "bake0" in found}
    shipped = runs["after"].get("shipped")
    if shipped is not None:
        real = metrics.real_stage_seconds(metrics.stage_split(shipped.events, shipped.pushed_at), stages, shipped.minute_seconds)
        figures["codepipeline_v2_cost_per_release_usd"] = {
            "shipped": round(metrics.codepipeline_v2_cost(real), 6),
            "bake0": round(metrics.codepipeline_v2_cost(stages), 6),
            "action_seconds_shipped": real,
        }
    return figures


def burst_figures(burst: BurstRun) -> dict[str, Any]:
    digests = [d for _, d in burst.pushes]
    per_digest = Counter(d for d, _, _, _ in burst.executions.values())
    ledger_text = [json.dumps(item) for item in burst.ledger]
    recorded = {d for d in digests if any(d in text for text in ledger_text)}
    lost = [d for d in digests if per_digest[d] == 0 and d not in recorded]
    intervals: dict[str, list[Any]] = {"dev": [], "prod": []}
    ends = []
    for _, status, _, events in burst.executions.values():
        for env, interval in metrics.env_intervals(events).items():
            intervals[env].append(interval)
        if status != "RUNNING" and events:
            ends.append(metrics.last_event_at(events))
    last_end = max(ends) if burst.finished and ends else burst.ended
    prod = burst.live.get("prod")
    statuses = Counter(status for _, status, _, _ in burst.executions.values())
    errors = Counter(error for _, status, error, _ in burst.executions.values() if status == "FAILED")
    in_flight = {env: metrics.max_overlap(found) for env, found in intervals.items()}
    failures = getattr(burst, "starter_failures", None)
    return {
        "pushes": len(digests),
        "releases_started": sum(1 for d in digests if per_digest[d] > 0),
        "lost": len(lost),
        "duplicated": sum(max(per_digest[d] - 1, 0) for d in digests),
        "max_in_flight_per_env": max(in_flight.values()),
        "max_in_flight_by_env": in_flight,
        "total_s": round((last_end - burst.started).total_seconds(), 1),
        "pushing_s": round((burst.pushes[-1][0] - burst.started).total_seconds(), 1) if burst.pushes else 0.0,
        "finished_before_deadline": burst.finished,
        "statuses": dict(statuses),
        "failed_by_error": dict(errors),
        "prod_digest": prod,
        "prod_digest_push_index": digests.index(prod) + 1 if prod in digests else None,
        "prod_is_newest": prod == digests[-1] if digests else False,
        # None: a run from before the starter's failures were recorded
        "starter_dead_letters": None if failures is None else dict(Counter(failures)),
        "transitions_total": sum(metrics.transitions(events) for _, _, _, events in burst.executions.values()),
    }
