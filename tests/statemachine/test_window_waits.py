"""A Wait state's timestamp on the local clock (local/emulation/waits.py), which the release's
WaitForDevWindow / WaitForProdWindow states use to wait for a deploy window.

GIVEN the local runtime (a minute lasts `minute_seconds`, 0.5 s here)
WHEN a state machine waits until a UTC timestamp
THEN it waits the scaled time left (ten minutes: 5 s), a past timestamp not at all, and a malformed one
fails the execution with States.Runtime as on AWS.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from local.runtime import LocalRuntime
from tests.statemachine.test_sfn_semantics import _ended, _entered, _events, _start

pytestmark = pytest.mark.statemachine


def _waiter(env: LocalRuntime, name: str, until: str) -> str:
    states = {"WaitForProdWindow": {"Type": "Wait", "TimestampPath": "$.window.wait_until", "Next": "Done"},
              "Done": {"Type": "Succeed"}}
    return _start(env, name, states, "WaitForProdWindow", {"window": {"open": False, "wait_until": until}})


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_ten_minutes_away_waits_ten_local_minutes(env: LocalRuntime) -> None:
    now = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    arn = _waiter(env, "hour", _stamp(now + dt.timedelta(minutes=10)))
    execution = _ended(env, arn, timeout=120)
    took = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED"
    assert took >= 10 * env.emulation.minute_seconds - 1, f"ended after {took:.1f}s: the wait was not waited"
    assert any("Wait until" in entry[3] and "locally" in entry[3] for entry in env.emulation.timeline.entries)


def test_a_past_timestamp_does_not_wait(env: LocalRuntime) -> None:
    arn = _waiter(env, "past", _stamp(dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)))
    assert _ended(env, arn, timeout=60)["status"] == "SUCCEEDED"
    assert _entered(_events(env, arn)) == ["WaitForProdWindow", "Done"]


def test_a_malformed_timestamp_fails_as_on_aws(env: LocalRuntime) -> None:
    arn = _waiter(env, "malformed", "next tuesday")
    execution = _ended(env, arn, timeout=60)
    assert execution["status"] == "FAILED"
    assert execution.get("error") == "States.Runtime"
