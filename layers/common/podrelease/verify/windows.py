"""Change windows and freezes: when a deploy of an environment may start.

An environment's `deploy_window` in the release policy (`podrelease.verify.policy`):

    "deploy_window": {
      "timezone": "Europe/Berlin",
      "open": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:00"}],
      "freezes": [{"from": "2026-12-20T00:00", "to": "2027-01-04T00:00", "reason": "year end"}],
      "max_wait_minutes": 4320
    }

- `timezone` (required): an IANA time zone name; every time of day and every freeze time without
  an offset is wall-clock time there (daylight saving included).
- `open` (optional): the windows a deploy may start in: `days` (mon..sun, the day the window
  starts), `from` and `to` (HH:MM; `to` at or before `from` runs past midnight into the next day;
  "24:00" is midnight at the end of the day). Absent: always open, except during freezes.
- `freezes` (optional): absolute periods, `from` inclusive and `to` exclusive (ISO 8601 date-times,
  with or without an offset), and a `reason` shown on the page. Freezes win over windows.
- `max_wait_minutes` (optional, 0..4320, default 4320 = 3 days: a weekend; the execution's 8-day limit also
  holds the approval wait): how long a release may wait for
  the next opening; further away, it fails with `OutsideDeployWindow` and deploys nothing.

`decide(window, now)` is the check the Verify/VerifyProd states run before an environment is
deployed: open now (`{"open": true}`), or the moment the release waits for (`wait_until`, UTC, whole
seconds, the form a Step Functions Wait state's `TimestampPath` reads), or OutsideDeployWindow.
A parse error is a PolicyError naming the place, like every other policy field.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from podrelease.core.errors import OutsideDeployWindow
from podrelease.core.policy_fields import fail, list_at, object_at

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_MAX_WAIT_MINUTES = 3 * 24 * 60
MAX_WAIT_MINUTES = 3 * 24 * 60
MAX_ENTRIES = 32
#: How far ahead an opening is looked for (a year and a bit: a yearly freeze pattern is visible).
HORIZON = dt.timedelta(days=400)
_CLOCK = re.compile(r"(?P<hour>[01]\d|2[0-4]):(?P<minute>[0-5]\d)")
UTC = dt.UTC


@dataclass(frozen=True)
class OpenWindow:
    """Days of the week (0 = Monday) and a start and length within the local day."""

    days: frozenset[int]
    start: dt.time
    minutes: int  # length; a window may run past midnight

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        end = (dt.datetime.combine(dt.date(2000, 1, 1), self.start) + dt.timedelta(minutes=self.minutes)).strftime("%H:%M")
        return f"{days} {self.start.strftime('%H:%M')}-{'24:00' if self.minutes and end == '00:00' else end}"


@dataclass(frozen=True)
class Freeze:
    start: dt.datetime  # aware, UTC
    end: dt.datetime
    reason: str


@dataclass(frozen=True)
class DeployWindow:
    timezone: str
    windows: tuple[OpenWindow, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    max_wait_minutes: int = DEFAULT_MAX_WAIT_MINUTES

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> dict[str, Any]:
        """JSON-able, for the evidence and the approval page."""
        return {
            "timezone": self.timezone,
            "open": [w.describe() for w in self.windows] or ["always"],
            "freezes": [{"from": _stamp(f.start), "to": _stamp(f.end), "reason": f.reason} for f in self.freezes],
            "max_wait_minutes": self.max_wait_minutes,
        }


# --- parsing ------------------------------------------------------------------------------------

def _entries(value: object, where: str) -> list[Any]:
    if isinstance(value, list) and not value:
        raise fail(where, "must be a non-empty list")
    return list_at(value, where, MAX_ENTRIES)


def _clock(value: object, where: str) -> int:
    """HH:MM as minutes after midnight (24:00 is 1440)."""
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match["hour"] == "24" and match["minute"] != "00"):
        raise fail(where, f"{str(value)[:40]!r} is not a time of day HH:MM (00:00..24:00)")
    return int(match["hour"]) * 60 + int(match["minute"])


def _open_window(value: object, where: str) -> OpenWindow:
    body = object_at(value, where, {"days", "from", "to"}, {"days", "from", "to"})
    days = _entries(body["days"], f"{where}.days")
    if any(day not in DAYS for day in days):
        raise fail(f"{where}.days", f"names a day that is not one of {', '.join(DAYS)}")
    start, end = _clock(body["from"], f"{where}.from"), _clock(body["to"], f"{where}.to")
    if start == 1440:
        raise fail(f"{where}.from", "24:00 is the end of a day; start at 00:00")
    minutes = end - start if end > start else end + 1440 - start
    return OpenWindow(frozenset(DAYS.index(d) for d in days), dt.time(start // 60, start % 60), minutes)


def _instant(value: object, where: str, zone: ZoneInfo) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise fail(where, f"{str(value)[:40]!r} is not an ISO 8601 date-time (2026-12-20T00:00 or with an offset)")
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _freeze(value: object, where: str, zone: ZoneInfo) -> Freeze:
    body = object_at(value, where, {"from", "to", "reason"}, {"from", "to"})
    start, end = _instant(body["from"], f"{where}.from", zone), _instant(body["to"], f"{where}.to", zone)
    if end <= start:
        raise fail(where, "ends at or before it starts")
    reason = body.get("reason", "freeze")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise fail(f"{where}.reason", "must be a non-empty string of at most 200 characters")
    return Freeze(start, end, reason)


def parse_window(value: object, where: str) -> DeployWindow:
    """An environment's `deploy_window` section (see the module docstring), checked strictly."""
    body = object_at(value, where, {"timezone", "open", "freezes", "max_wait_minutes"}, {"timezone"})
    name = body["timezone"]
    try:
        zone = ZoneInfo(name) if isinstance(name, str) and name else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None:
        raise fail(f"{where}.timezone", f"{str(name)[:60]!r} is not an IANA time zone name (Europe/Berlin, UTC)")
    windows = tuple(_open_window(v, f"{where}.open[{n}]") for n, v in enumerate(_entries(body["open"], f"{where}.open"))) \
        if "open" in body else ()
    freezes = tuple(_freeze(v, f"{where}.freezes[{n}]", zone)
                    for n, v in enumerate(_entries(body["freezes"], f"{where}.freezes"))) if "freezes" in body else ()
    wait = body.get("max_wait_minutes", DEFAULT_MAX_WAIT_MINUTES)
    if not isinstance(wait, int) or isinstance(wait, bool) or not 0 <= wait <= MAX_WAIT_MINUTES:
        raise fail(f"{where}.max_wait_minutes", f"must be an integer 0..{MAX_WAIT_MINUTES}")
    return DeployWindow(timezone=name, windows=windows, freezes=freezes, max_wait_minutes=wait)


# --- computing ----------------------------------------------------------------------------------

def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _intervals(window: DeployWindow, since: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The open intervals (UTC) that end after `since`, in order of their start. Wall-clock times
    that do not exist (a spring-forward gap) or exist twice (fall back) resolve as zoneinfo does
    (fold 0: the earlier offset); a window's length is wall-clock length, so it follows the day's DST."""
    zone = window.zone
    first = since.astimezone(zone).date() - dt.timedelta(days=1)  # a window that began yesterday may still be open
    for offset in range(HORIZON.days + 2):
        day = first + dt.timedelta(days=offset)
        found = []
        for entry in window.windows:
            if day.weekday() in entry.days:
                wall = dt.datetime.combine(day, entry.start)
                start = wall.replace(tzinfo=zone).astimezone(UTC)
                end = (wall + dt.timedelta(minutes=entry.minutes)).replace(tzinfo=zone).astimezone(UTC)
                if end > since and end > start:  # a window wholly inside a spring-forward gap has no length
                    found.append((start, end))
        yield from sorted(found)


def _frozen(window: DeployWindow, moment: dt.datetime) -> Freeze | None:
    """The freeze holding `moment` that ends last (overlapping freezes are waited out together)."""
    holding = [f for f in window.freezes if f.start <= moment < f.end]
    return max(holding, key=lambda f: f.end) if holding else None


def next_opening(window: DeployWindow, now: dt.datetime) -> dt.datetime | None:
    """The first moment at or after `now` inside an open window and outside every freeze, or None
    when there is none within HORIZON."""
    moment, limit = now.astimezone(UTC), now.astimezone(UTC) + HORIZON
    while moment <= limit:
        freeze = _frozen(window, moment)
        if freeze is not None:
            moment = freeze.end
            continue
        if not window.windows:
            return moment
        interval = next(((s, e) for s, e in _intervals(window, moment) if e > moment), None)
        if interval is None:
            return None
        if interval[0] <= moment:
            return moment
        moment = interval[0]
    return None


def decide(window: DeployWindow | None, environment: str, now: dt.datetime) -> dict[str, Any]:
    """May a deploy of `environment` start at `now`? `{"open": true}`; or `{"open": false,
    "wait_until", "reason", ...}`: wait until then (rounded up to the whole second); or
    OutsideDeployWindow when the next opening is further than the policy's max wait (or none)."""
    if window is None:
        return {"open": True}
    now = now.astimezone(UTC)
    opening = next_opening(window, now)
    if opening is not None and opening <= now:
        return {"open": True, "policy": window.describe()}
    freeze = _frozen(window, now)
    why = f"frozen ({freeze.reason}) until {_stamp(freeze.end)}" if freeze else \
        f"outside its window ({'; '.join(w.describe() for w in window.windows)} {window.timezone})"
    if opening is None or opening - now > dt.timedelta(minutes=window.max_wait_minutes):
        when = f"the next opening is {_stamp(opening)}" if opening else "no opening within 400 days"
        msg = (f"{environment} is {why}: {when}, further than the policy's max wait of {window.max_wait_minutes} minutes; "
               "nothing was deployed")
        raise OutsideDeployWindow(msg)
    waited = opening + dt.timedelta(microseconds=(1_000_000 - opening.microsecond) % 1_000_000)
    return {"open": False, "wait_until": _stamp(waited), "wait_seconds": math.ceil((waited - now).total_seconds()),
            "reason": f"{environment} is {why}", "policy": window.describe()}


def forecast(window: DeployWindow | None, environment: str, now: dt.datetime) -> dict[str, Any]:
    """`decide` for a page or an email: never raises; an opening too far away says so."""
    try:
        return decide(window, environment, now)
    except OutsideDeployWindow as exc:
        return {"open": False, "reason": str(exc), "policy": window.describe() if window else {}}


Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)
