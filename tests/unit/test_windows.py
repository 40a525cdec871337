"""Change windows and freezes (`podrelease.verify.windows`), and the policy field that holds them.

GIVEN an environment's deploy_window WHEN a deploy would start at a moment THEN it is open, or the
release waits until an exact UTC second, or it fails with OutsideDeployWindow; a bad section is a
PolicyError naming the place.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from local import signing
from podrelease.approval.render import summary_text, window_line
from podrelease.core.errors import OutsideDeployWindow, PolicyError
from podrelease.release.summary import summarize
from podrelease.verify.policy import keys_document, parse_policy
from podrelease.verify.windows import decide, forecast, next_opening, parse_window

UTC = dt.UTC
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
BERLIN_OFFICE: dict[str, Any] = {"timezone": "Europe/Berlin", "open": [{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}]}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def window(**changes: Any) -> Any:
    return parse_window({**BERLIN_OFFICE, **changes}, "environments.prod.deploy_window")


@pytest.mark.parametrize(("now", "expected"), [
    # 2026-11-27 is a Friday; Berlin is UTC+1 in winter.
    ("2026-11-27T08:00:00+00:00", None),  # 09:00 Berlin: open at its first second
    ("2026-11-27T15:59:59+00:00", None),  # 16:59:59 Berlin: still open
    ("2026-11-27T07:30:00+00:00", "2026-11-27T08:00:00Z"),  # before opening: today at 09:00 Berlin
    ("2026-11-27T16:00:00+00:00", "2026-11-30T08:00:00Z"),  # Friday 17:00 closes: Monday 09:00
    ("2026-11-28T12:00:00+00:00", "2026-11-30T08:00:00Z"),  # Saturday
    ("2026-11-27T07:59:59.250000+00:00", "2026-11-27T08:00:00Z"),
])
def test_weekday_office_hours_in_berlin(now: str, expected: str | None) -> None:
    decision = decide(window(), "prod", at(now))
    if expected is None:
        assert decision["open"] is True
    else:
        assert decision["open"] is False
        assert decision["wait_until"] == expected
        assert decision["wait_seconds"] == int((at(expected.replace("Z", "+00:00")) - at(now)).total_seconds() + 0.999)
        assert decision["reason"] == "prod is outside its window (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin)"


def test_summer_time_moves_the_window_in_utc() -> None:
    # GIVEN the same wall-clock window WHEN Berlin is on summer time (UTC+2) THEN it opens an hour earlier in UTC.
    assert decide(window(), "prod", at("2026-07-03T06:30:00+00:00"))["wait_until"] == "2026-07-03T07:00:00Z"


def test_dst_spring_forward_day_keeps_wall_clock_hours() -> None:
    # 2026-03-29 (Sunday): Berlin jumps 02:00 -> 03:00. A 01:00-05:00 window lasts 3 real hours that day.
    spring = window(open=[{"days": ["sun"], "from": "01:00", "to": "05:00"}])
    assert decide(spring, "prod", at("2026-03-29T00:00:00+00:00"))["open"] is True  # 01:00 CET
    assert decide(spring, "prod", at("2026-03-29T02:59:59+00:00"))["open"] is True  # 04:59:59 CEST
    with pytest.raises(OutsideDeployWindow, match="the next opening is 2026-04-04T23:00:00Z"):  # 01:00 CEST a week on
        decide(spring, "prod", at("2026-03-29T03:00:00+00:00"))


def test_a_window_inside_the_spring_forward_gap_never_opens_that_day() -> None:
    gap = window(open=[{"days": ["sun"], "from": "02:00", "to": "03:00"}], max_wait_minutes=4320)
    # Sunday 2026-03-29 02:00-03:00 does not exist in Berlin: the next opening is a week later (too far).
    with pytest.raises(OutsideDeployWindow, match="the next opening is 2026-04-05T00:00:00Z"):
        decide(gap, "prod", at("2026-03-28T12:00:00+00:00"))


def test_dst_fall_back_day_window_lasts_its_wall_clock_hours() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET. 00:00-04:00 wall clock is 5 real hours.
    fall = window(open=[{"days": ["sun"], "from": "00:00", "to": "04:00"}])
    assert decide(fall, "prod", at("2026-10-25T02:59:59+00:00"))["open"] is True  # 03:59:59 CET
    assert next_opening(fall, at("2026-10-25T03:00:00+00:00")) == at("2026-10-31T23:00:00+00:00")  # next Sunday 00:00 CET


def test_overnight_window_runs_past_midnight() -> None:
    night = window(open=[{"days": ["fri"], "from": "22:00", "to": "02:00"}])
    assert decide(night, "prod", at("2026-11-28T00:30:00+00:00"))["open"] is True  # Saturday 01:30 Berlin
    assert next_opening(night, at("2026-11-28T01:00:00+00:00")) == at("2026-12-04T21:00:00+00:00")


def test_a_freeze_wins_over_the_window_and_overlapping_freezes_are_waited_out_together() -> None:
    frozen = window(freezes=[
        {"from": "2026-11-27T10:00", "to": "2026-11-27T12:00", "reason": "incident review"},
        {"from": "2026-11-27T11:00", "to": "2026-11-27T13:30", "reason": "board demo"},
    ])
    decision = decide(frozen, "prod", at("2026-11-27T09:30:00+00:00"))  # 10:30 Berlin
    assert decision["wait_until"] == "2026-11-27T12:30:00Z"  # 13:30 Berlin, the later freeze's end
    assert decision["reason"] == "prod is frozen (incident review) until 2026-11-27T11:00:00Z"


def test_a_freeze_ending_after_the_window_closes_waits_for_the_next_window() -> None:
    frozen = window(freezes=[{"from": "2026-11-27T12:00+01:00", "to": "2026-11-28T00:00+01:00"}])
    assert decide(frozen, "prod", at("2026-11-27T12:00:00+00:00"))["wait_until"] == "2026-11-30T08:00:00Z"


def test_freezes_alone_without_windows() -> None:
    only = parse_window({"timezone": "UTC", "freezes": [{"from": "2026-12-20T00:00", "to": "2027-01-04T00:00"}]}, "w")
    assert decide(only, "prod", at("2026-12-19T23:59:59+00:00"))["open"] is True
    assert next_opening(only, at("2026-12-24T00:00:00+00:00")) == at("2027-01-04T00:00:00+00:00")


def test_too_far_is_outside_deploy_window() -> None:
    short = window(max_wait_minutes=60)
    with pytest.raises(OutsideDeployWindow, match=r"next opening is 2026-11-30T08:00:00Z, further than .* 60 minutes"):
        decide(short, "prod", at("2026-11-27T16:00:00+00:00"))
    # The page's forecast says the same without raising.
    assert "further than the policy's max wait" in forecast(short, "prod", at("2026-11-27T16:00:00+00:00"))["reason"]


def test_exactly_at_max_wait_still_waits() -> None:
    assert decide(window(max_wait_minutes=30), "prod", at("2026-11-27T07:30:00+00:00"))["wait_until"] == "2026-11-27T08:00:00Z"


def test_a_freeze_with_no_end_in_sight_is_outside_deploy_window() -> None:
    forever = window(freezes=[{"from": "2026-01-01T00:00", "to": "2029-01-01T00:00"}])
    with pytest.raises(OutsideDeployWindow, match="no opening within 400 days"):
        decide(forever, "prod", at("2026-11-27T10:00:00+00:00"))


def test_no_window_is_always_open() -> None:
    assert decide(None, "dev", at("2026-11-28T03:00:00+00:00")) == {"open": True}


BAD: list[tuple[dict[str, Any], str]] = [
    ({"open": []}, "deploy_window.open: must be a non-empty list"),
    ({"timezone": "Mars/Olympus"}, "deploy_window.timezone: 'Mars/Olympus' is not an IANA time zone"),
    ({"timezone": "../etc/passwd"}, "deploy_window.timezone"),
    ({"timezone": 5}, "deploy_window.timezone"),
    ({"open": [{"days": ["someday"], "from": "09:00", "to": "17:00"}]}, "deploy_window.open[0].days: names a day"),
    ({"open": [{"days": WEEKDAYS, "from": "9am", "to": "17:00"}]}, "deploy_window.open[0].from: '9am' is not a time of day"),
    ({"open": [{"days": WEEKDAYS, "from": "09:00", "to": "24:30"}]}, "deploy_window.open[0].to"),
    ({"open": [{"days": WEEKDAYS, "from": "24:00", "to": "01:00"}]}, "deploy_window.open[0].from: 24:00 is the end"),
    ({"open": [{"days": WEEKDAYS, "from": "09:00"}]}, "deploy_window.open[0]: missing required field(s) 'to'"),
    ({"freezes": [{"from": "2026-12-20", "to": "2026-12-19"}]}, "deploy_window.freezes[0]: ends at or before it starts"),
    ({"freezes": [{"from": "christmas", "to": "2026-12-19"}]}, "deploy_window.freezes[0].from: 'christmas' is not an ISO"),
    ({"max_wait_minutes": 10_000}, "deploy_window.max_wait_minutes: must be an integer 0..4320"),
    ({"max_wait_minutes": True}, "deploy_window.max_wait_minutes"),
    ({"hours": "9-5"}, "deploy_window: unknown field(s) 'hours'"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_a_bad_window_is_a_policy_error_naming_the_place(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match="release policy environments.prod." + message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]").replace(".", r"\.")):
        window(**changes)


def test_the_release_policy_carries_each_environment_s_window() -> None:
    _, pem = signing.generate_key()
    document = json.loads(keys_document(pem))
    document["environments"]["prod"]["deploy_window"] = BERLIN_OFFICE
    policy = parse_policy(json.dumps(document))
    assert policy.environment("dev").window is None
    assert policy.environment("prod").describe()["deploy_window"] == {
        "timezone": "Europe/Berlin", "open": ["mon,tue,wed,thu,fri 09:00-17:00"], "freezes": [], "max_wait_minutes": 4320}
    document["environments"]["prod"]["deploy_window"] = {"timezone": "Nowhere/City"}
    with pytest.raises(PolicyError, match=r"environments\.prod\.deploy_window\.timezone"):
        parse_policy(json.dumps(document))


# --- what people read: the approval summary and the outcome email ---------------------------------
def test_the_approval_summary_says_when_an_approval_now_would_deploy() -> None:
    closed = forecast(window(), "prod", at("2026-11-27T16:00:00+00:00"))
    line = window_line({"window_ahead": {"environment": "prod", **closed}})
    assert line is not None
    assert (line.label, line.good) == ("Prod window", None)
    assert line.text == ("closed: an approval is recorded now and the release waits until 2026-11-30T08:00:00Z to deploy "
                         "(prod is outside its window (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin))")
    opened = window_line({"window_ahead": {"environment": "prod", **forecast(window(), "prod", at("2026-11-27T09:00:00+00:00"))}})
    assert opened is not None
    assert (opened.text, opened.good) == ("open: an approval deploys at once (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin)", True)
    far = forecast(window(max_wait_minutes=60), "prod", at("2026-11-27T16:00:00+00:00"))
    never = window_line({"window_ahead": {"environment": "prod", **far}})
    assert never is not None
    assert never.good is False
    assert never.text.startswith("closed too long: prod is outside its window")
    assert window_line({}) is None  # no forecast (an older execution): no line
    record = {"digest": "sha256:" + "a" * 64, "repository": "podinfo", "expires_at": 2_000_000_000,
              "evidence": {"window_ahead": {"environment": "prod", **closed}}}
    assert "    Prod window: closed: an approval is recorded now and the release waits until 2026-11-30T08:00:00Z" in \
        summary_text(record, 1_900_000_000)


def test_the_outcome_email_says_how_long_the_window_held_the_release() -> None:
    waited = decide(window(), "prod", at("2026-11-27T16:00:00+00:00"))
    state = {"release": {"id": "r1", "repository": "podinfo", "digest": "sha256:" + "b" * 64},
             "evidence": {"window": {"open": True}}, "evidence_prod": {"window": waited},
             "windows": {"prod": {"wait_until": waited["wait_until"], "reason": waited["reason"]}}}  # NoteProdWindow's
    summary = summarize("SUCCEEDED", state, "r1")
    message = summary["message"]
    assert summary["record"]["windows"] == state["windows"]  # the ledger's release record keeps it
    assert ("Waited for prod's deploy window until 2026-11-30T08:00:00Z "
            "(prod is outside its window (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin))") in message.splitlines()
    assert "dev's deploy window" not in message
