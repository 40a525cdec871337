"""Email subjects as Amazon SNS accepts them.

SNS Publish takes a Subject only as ASCII text that begins with a letter, number or punctuation mark,
without line breaks or control characters, and shorter than 100 characters; anything else is an
InvalidParameter error and no email goes out. Release ids (execution names) and outcomes come from
outside (an execution started by hand may be named with any 80 characters), so every subject the
release emails carry is made with `sns_subject`.
"""

from __future__ import annotations

MAX_SUBJECT_CHARS = 99


def sns_subject(text: str) -> str:
    """`text` as a valid SNS Subject: every character outside printable ASCII (accented letters, line
    breaks, tabs, control characters) becomes "?", and a text over 99 characters is cut to 99, ending
    in "...]" when it ends with a bracketed release id, in "..." otherwise."""
    subject = "".join(ch if " " <= ch <= "~" else "?" for ch in text).strip()
    if not subject[:1].isalnum():
        msg = f"an email subject must begin with a letter or a number: {subject[:20]!r}"
        raise ValueError(msg)
    if len(subject) <= MAX_SUBJECT_CHARS:
        return subject
    tail = "...]" if subject.endswith("]") else "..."
    return subject[: MAX_SUBJECT_CHARS - len(tail)] + tail
