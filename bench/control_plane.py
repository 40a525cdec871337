"""`make bench`: the whole control plane measured on the local runtime, in one run.

    PYTHONPATH=layers/common:. python -m bench.control_plane [--minute-seconds S] [--burst N] [--burst-deadline S]

Runs, in order:
1. with bakes at zero: on a local runtime of the tree (`make build-local`'s build) the cold import of
   every built function and one happy release; then one happy release of the poll design: the whole
   tree at `bench.runs.BASELINE_REVISION` (extracted with `git archive` into the work folder, built by
   its own `make build-local`), its release run by `bench/baseline_runner.py` in a subprocess on that
   tree's path (its local runtime, functions and ASL; our measurement code);
2. the same two releases at the shipped canary configs (a bake minute lasting `--minute-seconds`);
3. a burst of `--burst` signed pushes on a third runtime (bakes at zero, every approval given at once);
4. the signature-gate and secret-gate benches (bench/bench_verify.py, bench/bench_gate.py).
Then writes build/bench.json, docs/bench.md and the measured block of docs/scalability.md
(bench.report). A run of the tree's design that fails fails the command (after writing what was
measured); the pinned design failing is reported, not fatal.
"""

# ruff: noqa: T201 - a command that tells its progress
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import figures, report, runs
from bench.runs import ReleaseRun

ROOT = Path(__file__).resolve().parents[1]
_ROW = re.compile(r"^(?P<name>.+?)\s+(?P<ms>[\d.]+)\s{3}(?P<baseline>.+?)\s+(?P<base_ms>[\d.]+)\s+(?P<ratio>[\d.]+)x$")


def _gate_bench(script: str) -> dict[str, Any]:
    """Run one of the existing gate benches; keep its table as text and as rows."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script)], cwd=ROOT, check=True, capture_output=True,  # noqa: S603
                         text=True).stdout
    rows = [{"measured": m["name"], "ms": float(m["ms"]), "baseline": m["baseline"], "baseline_ms": float(m["base_ms"]),
             "ratio": float(m["ratio"])} for m in map(_ROW.match, out.splitlines()) if m]
    return {"rows": rows, "table": out}


def _machine() -> dict[str, Any]:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,  # noqa: S607
                              check=False).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,  # noqa: S607
                                text=True, check=False).stdout.strip())
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    return {"host": platform.node(), "os": platform.platform(), "cpu": model, "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0],
            "git_revision": revision + ("+uncommitted" if dirty else "")}


def _options() -> argparse.Namespace:
    options = argparse.ArgumentParser()
    options.add_argument("--minute-seconds", type=float, default=2.0, help="a canary minute, locally, at the shipped configs")
    options.add_argument("--burst", type=int, default=50)
    options.add_argument("--burst-deadline", type=float, default=1800.0,
                         help="seconds after the last push to wait for every release to end (the wait stops as soon "
                              "as they have; a busy machine needs minutes for 50 cold starts)")
    options.add_argument("--imports", type=int, default=3, help="fresh interpreters per cold import (median)")
    options.add_argument("--work", type=Path, default=ROOT / "build" / "bench-work")
    options.add_argument("--json", type=Path, default=ROOT / "build" / "bench.json")
    options.add_argument("--doc", type=Path, default=ROOT / "docs" / "bench.md")
    options.add_argument("--scalability", type=Path, default=ROOT / "docs" / "scalability.md",
                         help="the doc whose bench block is rewritten")
    options.add_argument("--from-raw", type=Path, help="recompute the figures from a previous run's raw.pickle (no runs)")
    options.add_argument("--skip-gates", action="store_true", help="leave out the gate benches (quicker, for trying the harness)")
    return options.parse_args()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every run; returns the raw measurements (pickled to the work folder before any figure is made)."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    raw: dict[str, Any] = {"run": {"command": "make bench", "started": started.isoformat(timespec="seconds"),
                                   "machine": _machine(), "minute_seconds": args.minute_seconds,
                                   "before_revision": runs.BASELINE_REVISION},
                           "errors": {}, "release_runs": {"before": {}, "after": {}}, "imports": {}, "burst": None,
                           "gate": None, "burst_deadline": args.burst_deadline}
    imports = raw["imports"]
    try:
        print(f"bench: the baseline tree ({runs.BASELINE_REVISION}): extract and build ...", flush=True)
        tree = runs.baseline_tree(args.work)
    except Exception as exc:
        traceback.print_exc()
        tree, raw["errors"]["before/build"] = None, f"{type(exc).__name__}: {exc}"
    for config, minute in (("bake0", 0.0), ("shipped", args.minute_seconds)):
        print(f"bench: one release of each design, {config} (a canary minute lasts {minute:g} s) ...", flush=True)
        on_runtime = (lambda env: imports.update(runs.cold_imports(env, args.imports))) if config == "bake0" else None
        for design in ("after", "before"):
            if design == "before" and tree is None:
                continue
            try:
                raw["release_runs"][design][config] = (
                    runs.release_run(args.work / config, minute, design, on_runtime) if design == "after"
                    else runs.baseline_release(tree, args.work / f"before-{config}", minute))  # type: ignore[arg-type]
            except Exception as exc:  # one design failing must not lose the other's figures
                traceback.print_exc()
                print(f"bench: {design}/{config} failed: {exc}", flush=True)
                raw["errors"][f"{design}/{config}"] = f"{type(exc).__name__}: {exc}"
    _keep(args, raw)  # what is measured so far survives a later failure (recompute with --from-raw)
    print(f"bench: burst of {args.burst} pushes ...", flush=True)
    try:
        raw["burst"] = runs.burst_run(args.work / "burst", args.burst, args.burst_deadline)
    except Exception as exc:
        traceback.print_exc()
        raw["errors"]["burst"] = f"{type(exc).__name__}: {exc}"
    _keep(args, raw)
    if not args.skip_gates:
        print("bench: signature gate and secret gate ...", flush=True)
        raw["gate"] = {"verify": _gate_bench("bench_verify.py"), "secret_gate": _gate_bench("bench_gate.py")}
        print(raw["gate"]["verify"]["table"] + raw["gate"]["secret_gate"]["table"], flush=True)
    raw["run"]["duration_s"] = round(time.monotonic() - clock, 1)
    return raw


def _keep(args: argparse.Namespace, raw: dict[str, Any]) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "raw.pickle").write_bytes(pickle.dumps(raw))


def compute(raw: dict[str, Any]) -> dict[str, Any]:
    """The figures of build/bench.json from the raw measurements."""
    result: dict[str, Any] = {"run": raw["run"], "errors": dict(raw["errors"])}
    release_runs: dict[str, dict[str, ReleaseRun]] = {d: c for d, c in raw["release_runs"].items() if "bake0" in c}
    if "after" in release_runs:
        result |= figures.release_figures(release_runs)
    imports = dict(raw["imports"])
    if imports:
        bare = imports.pop("import boto3")
        result["cold_import_ms"] = {"functions": imports, "import boto3": bare,
                                    "ratio_to_boto3": {name: round(ms / bare, 2) for name, ms in imports.items()}}
    if raw["burst"] is not None:
        result["burst"] = figures.burst_figures(raw["burst"]) | {"deadline_s": raw["burst_deadline"]}
    if raw["gate"] is not None:
        result["gate"] = raw["gate"]
    return result


def main() -> int:
    args = _options()
    if args.from_raw:
        raw = pickle.loads(args.from_raw.read_bytes())  # noqa: S301 - our own file, written by measure()
    else:
        raw = measure(args)
        _keep(args, raw)
    result = compute(raw)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.doc.write_text(report.markdown(result))
    if args.scalability.exists():
        args.scalability.write_text(report.replace_block(args.scalability.read_text(), report.scalability_block(result)))
    print(f"bench: wrote {args.json}, {args.doc} and the block of {args.scalability.name} "
          f"({result['run'].get('duration_s', 0):.0f} s of runs)", flush=True)
    failed = [name for name in result["errors"] if not name.startswith("before/")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
