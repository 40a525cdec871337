"""The suite-wide log scan (tests/log_scan.py, on for the whole suite) catches a leaked secret; these tests prove it can fail.

Each test leaks on purpose into the session's collection, checks the scanner reports it, then
removes exactly what it leaked so the session itself still passes.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import pytest

from podrelease.approval.tokens import mint_token
from podrelease.core import obs
from tests.log_scan import LOG_SCAN

if TYPE_CHECKING:
    from pathlib import Path


def test_a_registered_secret_logged_without_redaction_is_found() -> None:
    secret = "leak-" + secrets.token_hex(16)
    obs.register_secret(secret)
    LOG_SCAN.gather_registered()
    try:
        logging.getLogger("tests.leaky").warning("connecting with password %s", secret)  # a plain logger: no redaction
        findings = LOG_SCAN.findings()
        assert any(f.startswith("log:tests.leaky: a registered secret") for f in findings), findings
        assert all(secret not in f for f in findings), "a finding must not repeat the secret"
    finally:
        LOG_SCAN.forget(secret)
    assert not any("tests.leaky" in f for f in LOG_SCAN.findings())


def test_the_same_secret_through_the_service_logger_is_masked_and_not_found() -> None:
    secret = "leak-" + secrets.token_hex(16)
    obs.register_secret(secret)
    LOG_SCAN.gather_registered()
    try:
        obs.get_logger("leaky").warning(f"connecting with {secret}")
        service_lines = [text for source, text in LOG_SCAN.lines if source.startswith("log:" + obs.SERVICE)]
        assert service_lines, "the service logger's lines are collected"
        assert not any(secret in f for f in LOG_SCAN.findings())
        assert not any("registered secret" in f and obs.SERVICE in f for f in LOG_SCAN.findings())
    finally:
        LOG_SCAN.forget(secret)


def test_an_approval_token_in_a_function_log_file_is_found(tmp_path: Path) -> None:
    token = mint_token(b"k" * 32, "v1", release_id="r", execution_arn="e", digest="d", approver="a", expires_at=2**31)
    log = tmp_path / "logs" / "podrel-approval-page.log"
    log.parent.mkdir()
    log.write_text('{"level":"INFO","message":"GET /?t=' + token + '"}\n')
    try:
        findings = LOG_SCAN.findings()
        assert f"{log}: an approval token appears in a log line" in findings, findings
    finally:
        log.unlink()
    assert not any(str(log) in f for f in LOG_SCAN.findings())


def test_subprocess_output_handed_to_the_scan_is_checked() -> None:
    secret = "task-" + secrets.token_hex(20)
    LOG_SCAN.known(secret, "task token")
    LOG_SCAN.text("demo stdout", f"waiting for {secret}")
    try:
        assert "demo stdout: a task token (45 chars) appears in a log line" in LOG_SCAN.findings()
    finally:
        LOG_SCAN.forget(secret)


def test_the_scan_is_on_for_the_whole_suite(pytestconfig: pytest.Config) -> None:
    # registered by the root conftest (tests/conftest.py), so every tier's session runs it
    import tests.conftest
    import tests.log_scan

    assert tests.conftest.pytest_plugins == ["tests.log_scan"]
    assert pytestconfig.pluginmanager.is_registered(tests.log_scan)
    assert LOG_SCAN.handlers, "the scan's log handlers are installed for the session"
