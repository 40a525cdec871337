"""Email subjects SNS accepts (podrelease.core.notify), as the outcome and approval emails compose them.

SNS Publish refuses a Subject that is not ASCII, does not begin with a letter, number or punctuation
mark, holds a line break or control character, or is 100 characters or longer: the email is then
never sent. GIVEN release ids and outcomes of every shape WHEN a subject is composed THEN it is
exactly the expected text, and it passes those rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from podrelease.approval.request import email_subject
from podrelease.core.notify import sns_subject
from podrelease.release.summary import summarize

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab12" * 16
SHORT = DIGEST[:19]
ID = "podinfo-ab12ab12ab12-0123456789abcdef"
LONG_ID = "podinfo-" + "x" * 72  # an execution name may be 80 characters long


def acceptable(subject: str) -> bool:
    """SNS's rules for a Subject (the Publish API reference)."""
    return (subject.isascii() and bool(re.match(r"[A-Za-z0-9!-/:-@\[-`{-~]", subject))
            and not re.search(r"[\x00-\x1f\x7f]", subject) and len(subject) < 100)


# A subject cut to fit keeps 95 characters and ends with "...]", 99 in all.
OUTCOMES: list[tuple[str, str, dict[str, Any], str]] = [
    ("success", "SUCCEEDED", {"id": ID, "digest": DIGEST}, f"podinfo {SHORT} released to prod [{ID}]"),
    ("failure", "FAILED", {"id": ID, "digest": DIGEST}, f"podinfo {SHORT} failed [{ID}]"),
    ("refused, no release", "REJECTED", {}, f"podinfo unknown digest refused [{ID}]"),
    ("80-character id", "SUCCEEDED", {"id": LONG_ID, "digest": DIGEST},
     f"podinfo {SHORT} released to prod [{LONG_ID[:49]}...]"),
    ("id with accents", "FAILED", {"id": "réléase-ünïcode", "digest": DIGEST}, f"podinfo {SHORT} failed [r?l?ase-?n?code]"),
    ("id with a line break", "FAILED", {"id": "release\nBcc: someone", "digest": DIGEST},
     f"podinfo {SHORT} failed [release?Bcc: someone]"),
    ("id with a tab and a bell", "FAILED", {"id": "a\tb\x07c\r", "digest": DIGEST}, f"podinfo {SHORT} failed [a?b?c?]"),
    ("emoji in a long id", "FAILED", {"id": "🚀" * 80, "digest": DIGEST}, f"podinfo {SHORT} failed [{'?' * 59}...]"),
    ("unknown outcome", "CANCELLED", {"id": ID, "digest": DIGEST}, f"podinfo {SHORT} cancelled [{ID}]"),
]


@pytest.mark.parametrize(("outcome", "release", "expected"), [c[1:] for c in OUTCOMES], ids=[c[0] for c in OUTCOMES])
def test_outcome_subjects(outcome: str, release: dict[str, Any], expected: str) -> None:
    state = {"release": release} if release else {}
    subject = summarize(outcome, state, ID)["subject"]
    assert subject == expected
    assert acceptable(subject), subject


APPROVALS: list[tuple[str, str, str]] = [
    ("plain", ID, f"Approve podinfo {SHORT}... for prod? [{ID}]"),
    ("80-character id", LONG_ID, f"Approve podinfo {SHORT}... for prod? [{LONG_ID[:45]}...]"),
    ("id with accents", "réléase", f"Approve podinfo {SHORT}... for prod? [r?l?ase]"),
    ("id with a line break", "a\r\nb", f"Approve podinfo {SHORT}... for prod? [a??b]"),
]


@pytest.mark.parametrize(("release_id", "expected"), [c[1:] for c in APPROVALS], ids=[c[0] for c in APPROVALS])
def test_approval_request_subjects(release_id: str, expected: str) -> None:
    subject = email_subject({"digest": DIGEST, "release_id": release_id})
    assert subject == expected
    assert acceptable(subject), subject


@pytest.mark.parametrize(("text", "expected"), [
    ("x" * 99, "x" * 99),
    ("x" * 100, "x" * 96 + "..."),
    ("[" + "x" * 120 + "]", None),  # must begin with a letter or number
    ("  podinfo  ", "podinfo"),
    ("\npodinfo", None),  # a leading line break would be the first character
])
def test_sns_subject_bounds(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="must begin with a letter or a number"):
            sns_subject(text)
    else:
        assert sns_subject(text) == expected


def test_every_subject_the_state_machine_publishes_is_composed_or_fixed_and_valid() -> None:
    states = json.loads((ROOT / "statemachines" / "release.asl.json").read_text())["States"]
    publishes = {name: s for name, s in states.items() if s.get("Resource") == "arn:aws:states:::sns:publish"}
    assert sorted(publishes) == ["NotifyFailure", "NotifySuccess"]
    for state in publishes.values():
        assert state["Parameters"]["Subject.$"] == "$.record.subject"
    # $.record comes from the record function (summarize, above) or, when that failed, a Pass state
    writers = {name: s for name, s in states.items() if s.get("ResultPath") == "$.record"}
    for name, state in writers.items():
        if state["Type"] == "Task":
            assert state["Resource"] == "${RecordFunctionArn}", name
        else:
            subject = state["Parameters"]["subject"]  # fixed text: an intrinsic could not bound an execution name
            assert "subject.$" not in state["Parameters"], name
            assert acceptable(subject), subject
