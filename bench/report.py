"""docs/bench.md, written from one run's build/bench.json (nothing in it is typed by hand)."""

from __future__ import annotations

from typing import Any

from bench import metrics

DESIGNS = {"before": "before: poll loop and retry lock (tree at {rev})", "after": "after: callbacks and ordered lock (the tree)"}
CONFIGS = {"bake0": "bakes at zero", "shipped": "shipped configs"}
PER_DAY = (10, 100, 1000)


def _usd(value: float) -> str:
    return f"${value:.5f}" if value >= 0.0001 else f"${value:.6f}"


def _header(result: dict[str, Any]) -> list[str]:
    run = result["run"]
    machine = run["machine"]
    return [
        "# `make bench`: the control plane, measured",
        "",
        "Written by `make bench` (`python -m bench.control_plane`, see [bench/control_plane.py](../bench/control_plane.py)); "
        "the same figures are in `build/bench.json`. Do not edit the numbers by hand: run `make bench` again.",
        "",
        f"- **When:** {run['started']} (UTC), {run.get('duration_s', 0):.0f} s for the whole run.",
        f"- **Machine:** {machine['cpu']}, {machine['cpus']} CPUs, {machine['os']}; load average at start "
        f"{', '.join(str(x) for x in machine['load_average_at_start'])} (a shared, busy machine: compare ratios, not absolutes).",
        f"- **Tree:** git {machine['git_revision']}; the \"before\" design is the whole tree at {run['before_revision']}, "
        "main's last commit before the callback waits and the ordered lock (`git archive`, built by its own "
        "`make build-local`, its release run by [bench/baseline_runner.py](../bench/baseline_runner.py) on its own local "
        "runtime, functions and ASL; measured by the same code as the tree's design).",
        f"- **Local time scale:** a canary minute lasts {run['minute_seconds']:g} s at the shipped configs and 0 s at bake 0; "
        "the local poll is 1 s (`DeployPollSeconds=1`).",
        "",
    ]


def _overhead(result: dict[str, Any]) -> list[str]:
    if "release_overhead_s" not in result:
        return []
    stages = result["release_overhead_s_by_stage"]
    base = result.get("release_overhead_baseline", {})
    before = base.get("by_stage", {})
    lines = ["## Release overhead (push to end, happy release, bakes at zero)", "",
             "| stage | after (s) | before (s) | ratio |", "|---|---:|---:|---:|"]
    for stage in metrics.STAGES:
        ratio = metrics.ratio(stages[stage], before[stage]) if stage in before else None
        shown = ratio if ratio is not None else "-"
        lines.append(f"| {stage} | {stages[stage]:.1f} | {before.get(stage, float('nan')):.1f} | {shown} |")
    lines.append(f"| **release_overhead_s** | **{result['release_overhead_s']:.1f}** | {base.get('s', float('nan')):.1f} | "
                 f"{base.get('ratio', '-')} |")
    lines += ["", "Stages are cut at history events: verify = push start to `Verify` exited; deploy_dev = to `RequestApproval` "
              "entered; approval_round_trip = to `RequestApproval` exited (email, page, decision; the approver here answers at "
              "once); promote = to `Promote` exited; deploy_prod = to the execution's end.", ""]
    return lines


def _transitions(result: dict[str, Any]) -> list[str]:
    if "transitions_per_release" not in result:
        return []
    rev = result["run"]["before_revision"]
    lines = ["## State transitions and cost per release", "",
             "| design | config | transitions | counted locally | poll laps (local -> real) | Step Functions | Lambda | total |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for design, configs in result["details"].items():
        for config, found in configs.items():
            loops = found["poll_loops"].items()
            laps = "; ".join(f"{name} {loop['local_laps']} -> {loop['real_laps']}" for name, loop in loops) or "none"
            cost = found["cost_usd"]
            lines.append(f"| {DESIGNS[design].format(rev=rev)} | {CONFIGS[config]} | **{found['transitions']}** | "
                         f"{found['transitions_counted_locally']} | {laps} | {_usd(cost['step_functions'])} | "
                         f"{_usd(cost['lambda'])} | **{_usd(cost['total'])}** |")
    growth = result.get("transitions_growth_with_bake", {})
    if growth:
        lines += ["", "Transitions the shipped configs add over bake 0 (`transitions_growth_with_bake`): " +
                  ", ".join(f"{DESIGNS[d].format(rev=rev)} **{n:+d}**" for d, n in growth.items()) + "."]
    pipeline = result.get("codepipeline_v2_cost_per_release_usd")
    if pipeline:
        minutes = ", ".join(f"{k} {v / 60:.1f} min" for k, v in pipeline["action_seconds_shipped"].items())
        lines += ["", f"CodePipeline V2 for the same five stages as actions: **{_usd(pipeline['shipped'])}** per release at the "
                  f"shipped configs ({minutes}; the approval action is free), {_usd(pipeline['bake0'])} at bake 0."]
    lines += [
        "",
        "How the figures are made:",
        "",
        "- **Transitions** are counted from each release's `GetExecutionHistory`: one per `*StateEntered` event, plus one per "
        "retry of a Task (a second scheduling of its work within one state entry), as Step Functions bills them.",
        f"- **The poll design's laps are scaled to the shipped poll** ({figures_poll(result)} s, `DeployPollSeconds`' default). "
        "A poll loop is a Wait state that Next/Choice edges lead back to (found in the ASL, not by name). For each loop, the "
        "seconds the bakes added over the same loop at bake 0 are scaled from local minutes to real minutes, the rest "
        "(launches, hooks, checks) is kept as measured; real laps = ceil(real loop seconds / poll), at least one. Each lap "
        "replaced adds or removes one entry of every state in the loop, and one invocation of its check function at that "
        "function's mean measured duration. A design without poll loops is counted as is.",
        "- **Step Functions:** Standard workflows, $0.025 per 1,000 state transitions "
        "([AWS Step Functions pricing](https://aws.amazon.com/step-functions/pricing/)); free tier ignored.",
        "- **Lambda:** every control-plane invocation of the release timed on the local runtime (podinfo itself is the workload "
        "and not counted), GB-seconds from each function's `MemorySize` in the template, arm64 (the template's default "
        "architecture): $0.0000133334 per GB-second (first tier) and $0.20 per million requests "
        "([AWS Lambda pricing](https://aws.amazon.com/lambda/pricing/)). Local durations are on a busy 2-core machine, so "
        "they are upper bounds; the transitions dominate the poll design's cost anyway.",
        "- **CodePipeline V2:** $0.002 per action execution minute, each action rounded up to the minute, manual approval "
        "actions free ([AWS CodePipeline pricing](https://aws.amazon.com/codepipeline/pricing/)); the stage durations at the "
        "shipped configs are scaled as the poll loops are.",
        "",
    ]
    return lines


def figures_poll(result: dict[str, Any]) -> str:
    return f"{result.get('shipped_poll_seconds', 30):g}"


def _monthly(result: dict[str, Any], heading: str = "##") -> list[str]:
    if "cost_per_release_usd" not in result:
        return []
    lines = [f"{heading} Cost per release and per month (30 days), at the shipped configs", "", "| design | per release | " +
             " | ".join(f"{n:,}/day" for n in PER_DAY) + " |", "|---|---:|" + "---:|" * len(PER_DAY)]
    rev = result["run"]["before_revision"]
    for design, configs in result["cost_per_release_usd"].items():
        if "shipped" in configs:
            each = configs["shipped"]["total"]
            lines.append(f"| {DESIGNS[design].format(rev=rev)} | {_usd(each)} | " +
                         " | ".join(f"${metrics.per_month(each, n):,.2f}" for n in PER_DAY) + " |")
    pipeline = result.get("codepipeline_v2_cost_per_release_usd")
    if pipeline:
        lines.append(f"| CodePipeline V2, same stages | {_usd(pipeline['shipped'])} | " +
                     " | ".join(f"${metrics.per_month(pipeline['shipped'], n):,.2f}" for n in PER_DAY) + " |")
    return [*lines, ""]


def _burst(result: dict[str, Any]) -> list[str]:
    burst = result.get("burst")
    if not burst:
        return []
    keys = ["pushes", "releases_started", "lost", "duplicated", "max_in_flight_per_env", "max_in_flight_by_env", "total_s",
            "pushing_s", "finished_before_deadline", "statuses", "failed_by_error", "prod_digest", "prod_digest_push_index",
            "prod_is_newest", "starter_dead_letters", "transitions_total", "deadline_s"]
    lines = ["## Burst: pushes as fast as the local ECR takes them", "", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | `{burst.get(key)}` |" for key in keys]
    lines += ["", "Each push is a distinct signed podinfo image (bakes at zero, every approval given as soon as its email "
              "arrives). `lost`: pushed digests that became neither an execution nor a ledger record; "
              "`starter_dead_letters`: push events the starter failed on three times (on AWS they wait in "
              "`StarterDeadLetters` for a redrive; recorded from this run on); `duplicated`: "
              "executions beyond one per digest; in flight: a release holds dev from `Verify` entered to `ReleaseDevLock` "
              "entered, prod from `VerifyProd` entered to `ReleaseProdLock` entered (to its end when it never gets there; "
              "the lock is handed on inside `Release*Lock`); a push whose release ended `Superseded` is not lost; "
              "`total_s`: first push to the last release's "
              "end (to the deadline when releases were still running); `prod_digest_push_index`: which push (1-based) is "
              "live in prod at the end; the newest is push "
              f"{burst.get('pushes')}.", ""]
    return lines


def _imports(result: dict[str, Any]) -> list[str]:
    found = result.get("cold_import_ms")
    if not found:
        return []
    bare = found["import boto3"]
    lines = ["## Cold import of every function as built", "",
             "`.aws-sam/build-local` (`make build-local`), the Lambda runtime's python3.12 (`.venv-lambda`), each function's "
             "task root and layer on the path as Lambda lays them out and its own environment; time to import the handler "
             f"module, median of fresh interpreters. Baseline: a bare `import boto3` the same way, **{bare:.1f} ms**.", "",
             "| function | ms | x boto3 |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.1f} | {found['ratio_to_boto3'][name]:.2f} |" for name, ms in sorted(found["functions"].items())]
    return [*lines, ""]


def _gates(result: dict[str, Any]) -> list[str]:
    gate = result.get("gate")
    if not gate:
        return []
    return ["## Signature gate and secret gate", "", "`bench/bench_verify.py` and `bench/bench_gate.py`, in the same run:", "",
            "```", gate["verify"]["table"].rstrip(), "", gate["secret_gate"]["table"].rstrip(), "```", ""]


def markdown(result: dict[str, Any]) -> str:
    lines = _header(result)
    if result.get("errors"):
        lines += ["## Runs that failed", ""] + [f"- `{name}`: {error}" for name, error in result["errors"].items()] + [""]
    for part in (_overhead, _transitions, _monthly, _burst, _imports, _gates):
        lines += part(result)
    return "\n".join(lines).rstrip() + "\n"


def scalability_block(result: dict[str, Any]) -> str:
    """The measured before/after block of docs/scalability.md (between its bench markers)."""
    run = result["run"]
    lines = [f"Measured by `make bench` on {run['started']} (git {run['machine']['git_revision']}, "
             f"{run['machine']['cpus']} CPUs, load {run['machine']['load_average_at_start'][0]}).", ""]
    found = result.get("transitions_per_release", {})
    if found:
        before, after = found.get("before", {}), found.get("after", {})
        lines += ["| state transitions per release | before: poll loop | after: the tree | after / before |",
                  "|---|---:|---:|---:|"]
        for config in ("bake0", "shipped"):
            b, a = before.get(config), after.get(config)
            lines.append(f"| {CONFIGS[config]} | {b if b is not None else '-'} | {a if a is not None else '-'} | "
                         f"{metrics.ratio(a, b) if a is not None and b else '-'} |")
        lines.append("")
    lines += _monthly(result, "###")
    burst = result.get("burst")
    if burst:
        lines += [f"Burst of {burst['pushes']} signed pushes against the tree's lock: releases started "
                  f"{burst['releases_started']}, lost {burst['lost']}, duplicated {burst['duplicated']}, at most "
                  f"{burst['max_in_flight_per_env']} release in flight per environment, "
                  f"{'all ended' if burst['finished_before_deadline'] else 'not every push an ended release by the deadline'}, "
                  f"after "
                  f"{burst['total_s']:.0f} s; live in prod at the end: push {burst['prod_digest_push_index']} of "
                  f"{burst['pushes']} ({'the newest' if burst['prod_is_newest'] else 'not the newest'}).", ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str, begin: str = "<!-- bench:begin -->", end: str = "<!-- bench:end -->") -> str:
    """`text` with what lies between the markers replaced by `block` (the markers stay)."""
    head, found, rest = text.partition(begin)
    if not found or end not in rest:
        raise ValueError(f"the markers {begin} ... {end} are missing")
    return head + begin + "\n" + block + end + rest.split(end, 1)[1]
