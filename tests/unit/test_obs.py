"""Observability: `podrelease.core.obs` redaction, the redacting log formatter and the correlation id.

GIVEN values with sensitive keys, registered secrets or tokens in free text WHEN redacted (directly,
or by logging them through `get_logger()`) THEN each secret is replaced by `***` and nothing else
changes. `release_id_of` finds the release id in both payload shapes.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest

from podrelease.core import obs
from podrelease.core.obs import MASK, bind_release, get_logger, redact, register_secret, release_id_of

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "s3cr3t-Value-0123456789"
TASK_TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAbc123+def456/ghi789=="


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets, and leaves none behind."""
    monkeypatch.setattr(obs, "_known_secrets", set())


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "task_token",
        "taskToken",
        "Authorization",
        "authorization",
        "secret",
        "client_secret",
        "password",
        "signing_key",
        "signing-key",
        "private_key",
        "aws_credentials",
        "Cookie",
        "X-Approval-Token",
    ],
)
def test_a_sensitive_key_has_its_value_masked(key: str) -> None:
    assert redact({key: "anything at all", "digest": "sha256:ab"}) == {key: MASK, "digest": "sha256:ab"}


@pytest.mark.parametrize("value", [{"nested": "x"}, ["a", "b"], 12345, "short"])
def test_a_sensitive_key_is_masked_whatever_its_value(value: Any) -> None:
    assert redact({"password": value}) == {"password": MASK}


@pytest.mark.parametrize("empty", [None, "", [], {}])
def test_an_empty_sensitive_value_is_left_as_it_is(empty: Any) -> None:
    # an absent token is useful to see, and reveals nothing
    assert redact({"token": empty}) == {"token": empty}


def test_redaction_is_recursive_through_dicts_and_lists() -> None:
    event = {
        "headers": {"Authorization": "Bearer abc", "accept": "application/json"},
        "approvers": [{"email": "a@example.com", "token": "t1"}, {"email": "b@example.com", "token": "t2"}],
        "deeper": {"list": [[{"secret": "x", "ok": 1}]]},
        "tuple": ("plain", {"password": "p"}),
    }
    assert redact(event) == {
        "headers": {"Authorization": MASK, "accept": "application/json"},
        "approvers": [{"email": "a@example.com", "token": MASK}, {"email": "b@example.com", "token": MASK}],
        "deeper": {"list": [[{"secret": MASK, "ok": 1}]]},
        "tuple": ["plain", {"password": MASK}],
    }


def test_ordinary_fields_are_not_touched() -> None:
    record = {
        "release_id": "podinfo-5e5e5e5e5e5e-0123456789abcdef",
        "digest": "sha256:" + "5e" * 32,
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo@sha256:" + "5e" * 32,
        "stages_done": ["verify", "deploy dev"],
        "count": 3,
        "ok": True,
        "nothing": None,
        "detail": '{"version": "6.7.0", "commit": "0123456789abcdef0123456789abcdef01234567"}',
        "note": "deployment d-ABCDEFGHIJ failed at 2025-06-15T15:16:40Z: digest=0123456789abcdef0123456789abcdef",
    }
    assert redact(record) == record


def test_a_registered_secret_is_masked_inside_free_text_and_values() -> None:
    # GIVEN a secret registered once
    register_secret(SECRET)
    # WHEN it appears in a message, an ordinary field and a list
    out = redact({"message": f"login with {SECRET} failed", "note": SECRET, "items": [f"x{SECRET}y", "clean"]})
    # THEN every occurrence is masked and the rest of the text kept
    assert out == {"message": "login with *** failed", "note": MASK, "items": ["x***y", "clean"]}


def test_an_exception_object_is_redacted_as_its_text() -> None:
    # Powertools puts the exception object itself in stack_trace.value; it is serialized with str()
    register_secret(SECRET)
    assert redact({"value": ValueError(f"bad {SECRET}"), "n": 1.5}) == {"value": "bad ***", "n": 1.5}


def test_a_registered_bytes_secret_is_masked_as_text() -> None:
    register_secret(SECRET.encode())
    assert redact(f"key={SECRET}.") == "key=***."


def test_values_shorter_than_eight_characters_are_not_registered() -> None:
    # masking "admin" would mangle every line that says "admin"
    register_secret("admin")
    assert redact("the admin approved") == "the admin approved"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"task_token={TASK_TOKEN}", "task_token=***"),
        (f"taskToken: {TASK_TOKEN}", "taskToken: ***"),
        (f'{{"task_token": "{TASK_TOKEN}"}}', '{"task_token": "***"}'),
        (f"approval_token={TASK_TOKEN} rest", "approval_token=*** rest"),
        (f"https://approve.example.test/?r=podinfo-1&t={TASK_TOKEN}", "https://approve.example.test/?r=podinfo-1&t=***"),
        ("token=short", "token=short"),
    ],
    ids=["task_token=", "taskToken:", "json", "approval_token", "approval link t=", "short value kept"],
)
def test_long_tokens_in_free_text_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- the logger -------------------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[tuple[Any, io.StringIO]]:
    """The shared Logger from `get_logger()`, writing to a buffer for the test; state reset after."""
    logger = get_logger()
    buffer = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(buffer)
    try:
        yield logger, buffer
    finally:
        handler.setStream(previous)
        logger.remove_keys(["release_id"])
        logger.set_correlation_id(None)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_the_logger_writes_no_registered_secret_and_no_sensitive_field(log_output: tuple[Any, io.StringIO]) -> None:
    logger, buffer = log_output
    register_secret(SECRET)
    # WHEN a secret reaches the message, an ordinary extra field and a sensitive one
    logger.info(
        f"rotated with {SECRET}",
        extra={"note": f"value {SECRET} end", "signing_key": "raw-key-bytes", "digest": "sha256:ab", "n": 2},
    )
    # THEN the line is valid JSON with every secret masked and the facts kept
    [line] = lines(buffer)
    assert SECRET not in buffer.getvalue()
    assert "raw-key-bytes" not in buffer.getvalue()
    assert line["message"] == "rotated with ***"
    assert line["note"] == "value *** end"
    assert line["signing_key"] == MASK
    assert (line["digest"], line["n"], line["service"], line["level"]) == ("sha256:ab", 2, "podinfo-release", "INFO")


def test_the_logger_masks_secrets_in_exception_text(log_output: tuple[Any, io.StringIO]) -> None:
    logger, buffer = log_output
    register_secret(SECRET)
    # WHEN an exception whose message holds a secret is logged
    try:
        raise ValueError(f"bad credential {SECRET}")  # noqa: TRY301
    except ValueError:
        logger.exception("failed")
    # THEN neither the traceback text nor Powertools' structured stack_trace carries it
    assert SECRET not in buffer.getvalue()
    [line] = lines(buffer)
    assert line["exception"].endswith("ValueError: bad credential ***")
    assert line["stack_trace"]["value"] == "bad credential ***"


def test_bind_release_puts_the_release_id_on_every_following_line(log_output: tuple[Any, io.StringIO]) -> None:
    logger, buffer = log_output
    bind_release(logger, "podinfo-5e5e5e5e5e5e-0123456789abcdef")
    logger.info("one")
    logger.info("two")
    assert [(line["correlation_id"], line["release_id"]) for line in lines(buffer)] == [
        ("podinfo-5e5e5e5e5e5e-0123456789abcdef", "podinfo-5e5e5e5e5e5e-0123456789abcdef")
    ] * 2


def test_bind_release_without_an_id_adds_nothing(log_output: tuple[Any, io.StringIO]) -> None:
    logger, buffer = log_output
    bind_release(logger, None)
    logger.info("one")
    [line] = lines(buffer)
    assert "release_id" not in line
    assert line.get("correlation_id") is None


# --- release_id_of ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"release": {"id": "rel-1", "digest": "sha256:ab"}, "release_id": "ignored"}, "rel-1"),
        ({"release_id": "rel-2"}, "rel-2"),
        ({"release": {"digest": "sha256:ab"}, "release_id": "rel-3"}, "rel-3"),
        ({"release": {"id": 7}}, None),
        ({"release": "rel-4"}, None),
        ({"release_id": 5}, None),
        ({}, None),
        (None, None),
        ("rel-6", None),
        ([{"release_id": "rel-7"}], None),
    ],
    ids=[
        "nested",
        "flat",
        "nested without id",
        "non-string id",
        "release not a dict",
        "flat not a string",
        "empty",
        "None",
        "string",
        "list",
    ],
)
def test_release_id_of(event: Any, expected: str | None) -> None:
    assert release_id_of(event) == expected
