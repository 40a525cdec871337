"""The statemachine tier: the shipped ASL and template, run by moto's engine, with the real handlers.

One local runtime per test module (moto server + emulation + the stack from template.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.runtime import LocalRuntime
from tests.log_scan import known_secret


def module_runtime(work: Path, minute_seconds: float = 0.5, **options: Any) -> Iterator[LocalRuntime]:
    """A local runtime for one test module; at the end its secrets go to the log scan, then it stops."""
    runtime = LocalRuntime.start(work / "run", minute_seconds=minute_seconds, **options)
    try:
        yield runtime
    finally:
        try:
            tell_log_scan(runtime)
        finally:
            runtime.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    yield from module_runtime(tmp_path_factory.mktemp("local"), approval_timeout=45)


def tell_log_scan(env: LocalRuntime) -> None:
    """Give the suite-wide log scan this runtime's secrets (see LocalRuntime.known_secrets)."""
    for value, kind in env.known_secrets():
        known_secret(value, kind)


def execution_arn(env: LocalRuntime, name: str) -> str:
    return env.stack.outputs["ReleaseStateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + name


def wait_for(env: LocalRuntime, name: str, status_not: str = "RUNNING", timeout: float = 120) -> dict[str, Any]:
    """Wait until execution `name` exists and is no longer RUNNING; return describe_execution."""
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            execution = sfn.describe_execution(executionArn=execution_arn(env, name))
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.2)
            continue
        if execution["status"] != status_not:
            return dict(execution)
        time.sleep(0.2)
    raise AssertionError(f"execution {name} still {status_not} after {timeout}s")


def wait_for_state(env: LocalRuntime, name: str, state: str, timeout: float = 90) -> None:
    """Wait until execution `name` has entered `state`."""
    sfn = env.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            events = sfn.get_execution_history(executionArn=execution_arn(env, name), maxResults=1000)["events"]
        except sfn.exceptions.ExecutionDoesNotExist:
            events = []
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return
        time.sleep(0.2)
    raise AssertionError(f"execution {name} never entered {state}")


def history(env: LocalRuntime, name: str) -> list[dict[str, Any]]:
    return list(env.client("stepfunctions").get_execution_history(executionArn=execution_arn(env, name), maxResults=1000)["events"])


def live_image(env: LocalRuntime, environment: str) -> str:
    lam = env.client("lambda")
    function = env.stack.outputs["PodinfoDevFunctionName" if environment == "dev" else "PodinfoProdFunctionName"]
    alias = lam.get_alias(FunctionName=function, Name="live")
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"), f"{environment} alias left mid-shift"
    return str(lam.get_function(FunctionName=function, Qualifier=alias["FunctionVersion"])["Code"]["ImageUri"])


def ledger_item(env: LocalRuntime, key: str) -> dict[str, Any]:
    item = env.client("dynamodb").get_item(TableName=env.stack.outputs["LedgerTableName"], Key={"pk": {"S": key}}).get("Item")
    return dict(item or {})
