"""The suite-wide log scan: a pytest plugin (registered by tests/conftest.py's `pytest_plugins`,
so it is on for every test of every tier) that fails the run when a secret reaches a log line.

Every log line of the whole session is collected and, at the end, searched for secrets:
 * in process: a handler on the root logger (plain library loggers: what Lambda would print as
   is) and one on Powertools' service logger, which formats each record with the service's own
   (redacting) formatter, i.e. exactly the JSON line the function prints to stdout;
 * out of process: every `logs/*.log` of a local runtime (one per function worker) under this
   session's pytest temp directory and `.demo/`, plus demo output handed in with `scan_text`.
Secrets are every value given to `podrelease.core.obs.register_secret` during the session (gathered
around every test, so a test that clears the set still contributes), everything passed to
`known_secret` (keys, task tokens, approval tokens a test created), and anything shaped like one
of our approval tokens. A finding fails the run (exit status 1) with the place and secret kind,
never the secret itself.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from podrelease.core import obs as _obs

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]

#: An approval token: base64url of the sorted claims JSON (`{"apr":...`), a dot, a MAC.
APPROVAL_TOKEN_SHAPE = re.compile(r"eyJhcHIiOi[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{40,}")
MIN_SECRET_CHARS = 8


class _Collector(logging.Handler):
    """Keeps every record it sees as the text that would be printed."""

    def __init__(self, scan: LogScan, service: bool) -> None:
        super().__init__(logging.DEBUG)
        self.scan, self.service = scan, service

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.service:
                text = self._service_line(record)
            elif record.name.startswith(_obs.SERVICE):
                return  # the service logger's records are scanned as the service prints them
            else:
                text = record.getMessage() + (" " + repr(record.args) if record.args else "")
        except Exception as exc:
            text = f"{record.msg!r} {record.args!r} (unformattable: {exc})"
        self.scan.lines.append((f"log:{record.name}", text))

    def _service_line(self, record: logging.LogRecord) -> str:
        service_logger = logging.getLogger(_obs.SERVICE)
        for handler in service_logger.handlers:
            if handler is not self and isinstance(handler, logging.StreamHandler) and handler.formatter is not None:
                return handler.formatter.format(record)
        return _obs.RedactingFormatter().format(record)


class LogScan:
    """Session-wide collection of log text and secrets; `findings()` says where a secret leaked."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.secrets: dict[str, str] = {}  # value -> kind
        self.dirs: list[Path] = [ROOT / ".demo"]
        self.handlers: list[tuple[logging.Logger, _Collector]] = []

    def install(self) -> None:
        # Powertools' own handler first: `Logger.registered_handler` is the service logger's first handler.
        _obs.get_logger()
        for logger, service in ((logging.getLogger(), False), (logging.getLogger(_obs.SERVICE), True)):
            handler = _Collector(self, service)
            logger.addHandler(handler)
            self.handlers.append((logger, handler))

    def uninstall(self) -> None:
        for logger, handler in self.handlers:
            logger.removeHandler(handler)
        self.handlers.clear()

    def known(self, value: str | bytes, kind: str = "test secret") -> None:
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if len(text) >= MIN_SECRET_CHARS:
            self.secrets.setdefault(text, kind)

    def gather_registered(self) -> None:
        for value in list(_obs._known_secrets):
            self.known(value, "registered secret")

    def text(self, source: str, text: str) -> None:
        self.lines.append((source, text))

    def files(self) -> list[Path]:
        found: list[Path] = []
        for base in self.dirs:
            if base.is_dir():
                found.extend(p for p in base.rglob("logs/*.log") if p.is_file())
        return sorted(set(found))

    def findings(self) -> list[str]:
        sources = list(self.lines)
        for path in self.files():
            try:
                sources.append((str(path), path.read_text(errors="replace")))
            except OSError:
                continue
        out: list[str] = []
        for source, text in sources:
            for secret, kind in self.secrets.items():
                if secret in text:
                    out.append(f"{source}: a {kind} ({len(secret)} chars) appears in a log line")
            if APPROVAL_TOKEN_SHAPE.search(text):
                out.append(f"{source}: an approval token appears in a log line")
        return sorted(set(out))

    def forget(self, secret: str) -> None:
        """Drop a secret and every collected line holding it (for the test that proves the scan works)."""
        self.secrets.pop(secret, None)
        _obs._known_secrets.discard(secret)
        self.lines = [(source, text) for source, text in self.lines if secret not in text]


LOG_SCAN = LogScan()


def known_secret(value: str | bytes, kind: str = "test secret") -> None:
    """Tell the suite-wide log scan about a secret this test made (a key, a task or approval token)."""
    LOG_SCAN.known(value, kind)


def scan_text(source: str, text: str) -> None:
    """Hand output that did not go through this process's logging (a subprocess's stdout) to the scan."""
    LOG_SCAN.text(source, text)


def pytest_sessionstart(session: pytest.Session) -> None:
    LOG_SCAN.install()
    LOG_SCAN.dirs.append(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    LOG_SCAN.gather_registered()
    yield
    LOG_SCAN.gather_registered()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield
    LOG_SCAN.gather_registered()  # before teardown, which may clear the registry


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    LOG_SCAN.gather_registered()
    findings = LOG_SCAN.findings()
    LOG_SCAN.uninstall()
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "log scan: secrets found in log output", red=True)
    for line in findings:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            sys.stderr.write(f"log scan: {line}\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
