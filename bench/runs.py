"""The runs of `make bench` on the local runtime: one happy release, a burst of pushes, cold imports.

Each run starts its own `local.runtime.LocalRuntime` (moto + the emulation + the stack that `make
build-local` built) and pushes, signs and approves with the demo's own helpers (`local.demo`); what it
returns is raw measurement (histories, push times, invocation durations), which `bench.metrics`
turns into figures.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.metrics import Invocation
from local.demo import approval_link, decide
from local.emulation.lambda_runtime import lambda_python
from local.runtime import APPROVERS, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.release.events import execution_name

#: The "before" design: the whole tree of the last commit on main before the callbacks merge (3298c71,
#: items 1 and 2 of issue 12). Its ASL polls CodeDeploy and the fleet in Wait/Check/Choice loops and
#: its lock answers LockBusy to retry races; it runs with its own functions, layer and local runtime,
#: because pinning only its ASL on today's functions no longer works (today's lock queues a task token
#: instead of answering LockBusy, so the old ASL never reaches approval). def6662 rather than the
#: ASL-only pin d35a2e2 used before: it is main just before the change measured, so the two designs
#: differ by items 1 and 2 and nothing else merged in between (reconcile, ops CLI, provenance).
BASELINE_REVISION = "def6662"
ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).resolve().parent / "baseline_runner.py"


class BenchFailed(RuntimeError):
    """A run did not produce what the figure needs (the release did not succeed, the stack did not start)."""


def baseline_tree(work: Path, revision: str = BASELINE_REVISION) -> Path:
    """The baseline revision's whole tree under `work`, built with its own `make build-local` (the shared
    venvs of this checkout; their install rules are not run again). Reused when already built."""
    tree = work / f"baseline-{revision}"
    marker = tree / ".bench-built"
    if marker.exists() and marker.read_text() == revision:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=ROOT, check=True,  # noqa: S603, S607
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    sam, lam = (str((ROOT / name).resolve()) for name in (".venv-sam", ".venv-lambda"))
    make = ["make", "-C", str(tree), "build-local", f"SAM_VENV={sam}", f"LAMBDA_VENV={lam}",
            "-o", f"{sam}/.installed", "-o", f"{lam}/.installed"]
    subprocess.run(make, check=True, env=_baseline_env(tree))  # noqa: S603
    marker.write_text(revision)
    return tree


def _baseline_env(tree: Path) -> dict[str, str]:
    """This process's environment with the tree's build and this checkout's Lambda interpreter (our
    Makefile exports its own LOCAL_BUILD_DIR and PYTHONPATH: they must not reach the baseline)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOCAL_BUILD_DIR")}
    return env | {"LOCAL_BUILD_DIR": str(tree / ".aws-sam" / "build-local"),
                  "LOCAL_LAMBDA_VENV": str((ROOT / ".venv-lambda").resolve())}


def baseline_release(tree: Path, work_dir: Path, minute_seconds: float) -> ReleaseRun:
    """One happy release of the baseline design, measured by `bench/baseline_runner.py` in a fresh
    interpreter on the tree's path (its local runtime, functions and ASL; our measurement code)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "baseline-run.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-I", "-B", str(RUNNER), str(tree), str(work_dir), f"{minute_seconds:g}", str(out)]
    done = subprocess.run(command, cwd=tree, env=_baseline_env(tree), check=False)  # noqa: S603
    found = json.loads(out.read_text()) if out.exists() else {}
    if "run" not in found:
        raise BenchFailed(f"the baseline runner exited {done.returncode}: {found.get('errors') or 'no result written'}")
    run = found["run"]
    return ReleaseRun(run["design"], float(run["minute_seconds"]), datetime.fromisoformat(run["pushed_at"]), run["events"],
                      run["definition"], [Invocation(**i) for i in run["invocations"]], run["function_ids"])


def _record_invocations(env: LocalRuntime, into: list[Invocation]) -> Callable[[], None]:
    """Time every invocation of a control-plane function (podinfo, an image function, is the workload, not
    the control plane) until the returned function is called. Wraps the runtime's own `run`, the one
    entry point of every invocation."""
    runtime = env.emulation.runtime
    if runtime is None:
        raise BenchFailed("the local runtime has no Lambda runtime attached")
    original = runtime.run
    memory = {f.name: int(env.client("lambda").get_function_configuration(FunctionName=f.name)["MemorySize"])
              for f in env.stack.functions.values() if f.code_dir is not None}

    def timed(function: Any, qualifier: str | None, event: Any) -> dict[str, Any]:
        start = time.perf_counter()
        reply = original(function, qualifier, event)
        if function.name in memory:
            into.append(Invocation(function.logical_id, memory[function.name], time.perf_counter() - start))
        return reply

    runtime.run = timed  # type: ignore[method-assign]

    def stop() -> None:
        runtime.run = original  # type: ignore[method-assign]

    return stop


def _arn(env: LocalRuntime, name: str) -> str:
    return env.stack.outputs["ReleaseStateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + name


def history(env: LocalRuntime, name: str) -> list[dict[str, Any]]:
    sfn = env.client("stepfunctions")
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.get_execution_history(executionArn=_arn(env, name), maxResults=1000, **token)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        token = {"nextToken": page["nextToken"]}


def _wait_ended(env: LocalRuntime, name: str, timeout: float) -> dict[str, Any]:
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=_arn(env, name))
        except sfn.exceptions.ExecutionDoesNotExist:
            execution = {"status": "NOT_STARTED"}
        if execution["status"] not in ("RUNNING", "NOT_STARTED"):
            return dict(execution)
        time.sleep(0.25)
    raise BenchFailed(f"release {name} did not end within {timeout:.0f} s")


@dataclass
class ReleaseRun:
    """One happy release: its history, when its push started, its Lambda invocations, its definition."""

    design: str
    minute_seconds: float
    pushed_at: datetime
    events: list[dict[str, Any]]
    definition: dict[str, Any]
    invocations: list[Invocation] = field(default_factory=list)
    function_ids: dict[str, str] = field(default_factory=dict)  # function name -> logical id


def _push_signed(env: LocalRuntime, version: str) -> str:
    """A healthy podinfo image signed as the demo's happy scenario signs it (legacy `.sig` and a bundle)."""
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version, tag=version)
    env.pusher.sign_legacy(env.signing_key, image)
    env.pusher.sign_bundle(env.signing_key, image)
    return image.digest


def _one_release(env: LocalRuntime, design: str, version: str, minute_seconds: float) -> ReleaseRun:
    invocations: list[Invocation] = []
    stop_recording = _record_invocations(env, invocations)
    try:
        pushed_at = datetime.now(UTC)
        name = execution_name(WORKLOAD_REPOSITORY, _push_signed(env, version))
        link = approval_link(env, APPROVERS[0], name, timeout=600)
        if link is None:
            raise BenchFailed(f"{design}: no approval email for {name}")
        status, _ = decide(link, "approve")
        execution = _wait_ended(env, name, timeout=900)
    finally:
        stop_recording()
    if execution["status"] != "SUCCEEDED":
        raise BenchFailed(f"{design}: the happy release ended {execution['status']} ({execution.get('error')}: "
                          f"{str(execution.get('cause'))[:300]}); approval answered {status}")
    deployed = json.loads(env.client("stepfunctions").describe_state_machine(
        stateMachineArn=env.stack.outputs["ReleaseStateMachineArn"])["definition"])
    ids = {f.name: f.logical_id for f in env.stack.functions.values()}
    return ReleaseRun(design, minute_seconds, pushed_at, history(env, name), deployed, list(invocations), ids)


def release_run(work_dir: Path, minute_seconds: float, design: str,
                on_runtime: Callable[[LocalRuntime], None] | None = None) -> ReleaseRun:
    """On a local runtime of the tree on the path, one happy release of that tree's own design: push a
    signed, healthy image and approve its release as soon as the email comes. `on_runtime`: called with
    the runtime before the release (cold imports are measured there)."""
    env = LocalRuntime.start(work_dir, minute_seconds=minute_seconds)
    try:
        if on_runtime is not None:
            on_runtime(env)
        return _one_release(env, design, "6.9.10", minute_seconds)
    finally:
        stopped(env)


def stopped(env: LocalRuntime) -> None:
    """Stop the runtime; a failure to stop cleanly (seen under heavy load) is told, not raised: the
    figures measured before it stand."""
    try:
        env.stop()
    except Exception as exc:
        print(f"bench: the local runtime did not stop cleanly: {type(exc).__name__}: {exc}", flush=True)  # noqa: T201


# --- the burst --------------------------------------------------------------------------------------------


def _approve_everything(env: LocalRuntime, stop: threading.Event, approved: set[str]) -> None:
    """The approver presses Approve on every approval email as it arrives."""
    while not stop.is_set():
        for message in list(env.emulation.outbox.messages):
            if message["to"] != APPROVERS[0]:
                continue
            match = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", message["body"])
            if match and match.group(1) not in approved:
                approved.add(match.group(1))
                decide(match.group(1), "approve")
        stop.wait(0.2)


def live_digest(env: LocalRuntime, environment: str) -> str | None:
    """The image digest the environment's podinfo function serves on its `live` alias."""
    lam = env.client("lambda")
    function = env.stack.outputs["PodinfoDevFunctionName" if environment == "dev" else "PodinfoProdFunctionName"]
    alias = lam.get_alias(FunctionName=function, Name="live")
    uri = str(lam.get_function(FunctionName=function, Qualifier=alias["FunctionVersion"])["Code"].get("ImageUri", ""))
    return uri.split("@", 1)[1] if "@" in uri else None


@dataclass
class BurstRun:
    """What a burst of pushes left: push times and digests, every execution's history and input digest,
    the ledger's items, what is live, and whether everything ended before the deadline."""

    pushes: list[tuple[datetime, str]]
    executions: dict[str, tuple[str, str, str, list[dict[str, Any]]]]  # name -> (digest, status, error, history)
    ledger: list[dict[str, Any]]
    live: dict[str, str | None]
    started: datetime
    ended: datetime
    finished: bool
    starter_failures: list[str] = field(default_factory=list)  # errorType of each push the starter gave up on (its DLQ)


def _execution_digest(execution: dict[str, Any]) -> str:
    found = re.search(r"sha256:[0-9a-f]{64}", execution.get("input", ""))
    return found.group(0) if found else ""


def burst_run(work_dir: Path, count: int, deadline_seconds: float) -> BurstRun:
    """`count` signed pushes of distinct images, one after another as fast as the local ECR takes
    them, bakes at zero, every approval given at once; wait until every release ended or the deadline."""
    env = LocalRuntime.start(work_dir, minute_seconds=0.0, approval_timeout=3600)
    try:
        stop = threading.Event()
        approved: set[str] = set()
        threading.Thread(target=_approve_everything, args=(env, stop, approved), daemon=True).start()
        started = datetime.now(UTC)
        pushes = []
        for i in range(count):
            image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, f"6.10.{i}", tag=f"burst-{i}")
            env.pusher.sign_legacy(env.signing_key, image)
            pushes.append((datetime.now(UTC), image.digest))
        sfn = env.client("stepfunctions")
        machine = env.stack.outputs["ReleaseStateMachineArn"]
        deadline = time.time() + deadline_seconds
        finished = False
        while time.time() < deadline:
            listed = sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
            expected = {execution_name(WORKLOAD_REPOSITORY, d) for _, d in pushes}
            if expected <= {e["name"] for e in listed} and all(e["status"] != "RUNNING" for e in listed):
                finished = True
                break
            time.sleep(1.0)
        ended = datetime.now(UTC)
        stop.set()
        executions = {}
        for listed_execution in sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]:
            described = sfn.describe_execution(executionArn=listed_execution["executionArn"])
            executions[listed_execution["name"]] = (_execution_digest(described), described["status"],
                                                    str(described.get("error") or ""), history(env, listed_execution["name"]))
        ledger = env.client("dynamodb").scan(TableName=env.stack.outputs["LedgerTableName"])["Items"]
        live = {environment: live_digest(env, environment) for environment in ("dev", "prod")}
        runtime = env.emulation.runtime
        starter = env.stack.functions["StarterFunction"].name
        failures = [str(e.get("errorType")) for name, e in (runtime.async_failures if runtime else []) if name == starter]
        return BurstRun(pushes, executions, ledger, live, started, ended, finished, failures)
    finally:
        stopped(env)


# --- cold imports -----------------------------------------------------------------------------------------

_IMPORT = """
import sys, time, importlib
root, layers, module = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
version = f"python{sys.version_info.major}.{sys.version_info.minor}"
path = [root]
for layer in layers:
    path += [f"{layer}/python/lib/{version}/site-packages", f"{layer}/python"]
sys.path[:0] = path
start = time.perf_counter()
importlib.import_module(module)
print((time.perf_counter() - start) * 1000)
"""


def cold_imports(env: LocalRuntime, runs: int) -> dict[str, float]:
    """Milliseconds to import each function's handler module as built (the runtime's python3.12, the
    function's task root and layers on the path as Lambda lays them out, the function's environment),
    each in fresh interpreters, median of `runs`; and a bare `import boto3` the same way."""
    runtime = env.emulation.runtime
    if runtime is None:
        raise BenchFailed("the local runtime has no Lambda runtime attached")
    python = str(lambda_python())
    found: dict[str, float] = {}
    some_env: dict[str, str] = {}
    some_root = ""
    for function in sorted(env.stack.functions.values(), key=lambda f: f.logical_id):
        if function.code_dir is None or function.handler is None:
            continue
        process_env = runtime._env(function)  # noqa: SLF001 - exactly the environment Lambda gives the function
        some_env, some_root = process_env, str(function.code_dir)
        module = function.handler.rsplit(".", 1)[0]
        args = [python, "-I", "-B", "-c", _IMPORT, str(function.code_dir), *(str(layer) for layer in function.layers), module]
        found[function.logical_id] = _median_ms(args, process_env, str(function.code_dir), runs)
    bare = [python, "-I", "-B", "-c", _IMPORT, some_root, "boto3"]
    found["import boto3"] = _median_ms(bare, some_env, some_root, runs)
    return found


def _median_ms(args: list[str], env: dict[str, str], cwd: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run(args, env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout  # noqa: S603 - fixed code
        samples.append(float(out.strip().splitlines()[-1]))
    return round(statistics.median(samples), 1)
