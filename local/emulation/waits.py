"""Step Functions Wait states on the local clock: a minute of waiting lasts `minute_seconds` here.

The release waits for an environment's deploy window with a Wait state whose `TimestampPath` the
verify function computed from the release policy (real UTC time: the windows are wall-clock
times). Waited for real, a window an hour away would hold a demo for an hour; so locally the time
left until that timestamp is scaled as the CodeDeploy emulation scales canary minutes (an hour
waits 60 x `minute_seconds` seconds), and the timeline says both. The Wait still waits without
polling (moto's engine sleeps on the execution's event, which a StopExecution wakes).

Also a fix of moto's engine (5.2.1): it measured a `Timestamp` against `datetime.now()`, the
machine's local time, where the timestamp is UTC ("Z"); here both are UTC.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp

_original: dict[str, Any] = {}


def _get_wait_seconds(active: Callable[[], Any]) -> Callable[[Timestamp, Any], int]:
    def wait_seconds(self: Timestamp, env: Any) -> int:
        self.string.eval(env=env)
        text: str = env.stack.pop()
        moment = self._from_timestamp_string(timestamp=text)
        if moment is None:
            return int(_original["get"](self, env))  # moto's own failure (States.Runtime) for a malformed timestamp
        real = (moment.replace(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)).total_seconds()
        if real <= 0:
            return 0
        emulation = active()
        local = math.ceil(real / 60 * emulation.minute_seconds)
        emulation.timeline.add("stepfunctions", f"Wait until {text}: {real / 60:.0f} min from now (locally {local}s)")
        return local

    return wait_seconds


def install(active: Callable[[], Any]) -> None:
    if _original:
        return
    _original["get"] = Timestamp._get_wait_seconds
    Timestamp._get_wait_seconds = _get_wait_seconds(active)  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    if not _original:
        return
    Timestamp._get_wait_seconds = _original.pop("get")  # type: ignore[method-assign]

