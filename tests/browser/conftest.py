"""The browser tier: the approval page in headless Chromium, on real releases of the local runtime.

One local runtime per module (policy "keys+sbom", so the page has signature *and* SBOM evidence to
show) and one Chromium per module. The browser is Debian's `chromium` (`make install` installs it),
driven by playwright through `executable_path`: playwright's own browser download is never used.
A missing browser fails the tier with the command that installs it; nothing here is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover - only without `make install`
    raise ImportError("the browser tier needs the `playwright` package: run `make install`") from exc

from local.runtime import LocalRuntime
from tests.statemachine.conftest import module_runtime

#: Debian's package; `CHROMIUM=/path make browser` points the tier at another build.
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: Headless in a container: no sandbox (root has no user namespaces there), /tmp instead of a small
#: /dev/shm, no GPU, none of Chromium's own background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
]
#: The deadline of every wait on the page (an action, a navigation, an `expect` assertion): the handler
#: answers in well under a second on a quiet machine; the deadline is for a loaded one (each request
#: crosses the local Function URL, the Lambda worker process and moto), and only a failure waits it out.
PAGE_TIMEOUT_MS = 60_000
#: Starting Chromium on a loaded machine.
LAUNCH_TIMEOUT_MS = 120_000
expect.set_options(timeout=PAGE_TIMEOUT_MS)  # playwright's default for assertions is 5 s
#: The approval window of the module's releases: far longer than the module needs even on a loaded
#: machine (the second release waits through every forgery test), never waited for.
APPROVAL_WINDOW_SECONDS = 1800


def chromium_path() -> str:
    return os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = chromium_path()
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"the browser tier needs Chromium at {path}, which is missing. Run `make install` (it installs Debian's "
            "package: sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium), or point "
            "CHROMIUM=/path/to/chromium at another Chromium build.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


def new_context(browser: Browser, *, javascript: bool = True) -> BrowserContext:
    context = browser.new_context(java_script_enabled=javascript)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    return context


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """An ordinary browser profile (JavaScript on)."""
    ctx = new_context(browser)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def no_js_context(browser: Browser) -> Iterator[BrowserContext]:
    """A profile with JavaScript disabled: only plain HTML forms work in it."""
    ctx = new_context(browser, javascript=False)
    try:
        probe = ctx.new_page()
        probe.set_content("<title>off</title><script>document.title = 'on'</script>")
        assert probe.title() == "off", "scripts still run in the profile meant to have JavaScript disabled"
        probe.close()
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    tab = context.new_page()
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def env(chromium_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """The local runtime (only once the browser is known to be there: without it nothing here runs)."""
    yield from module_runtime(tmp_path_factory.mktemp("browser"), approval_timeout=APPROVAL_WINDOW_SECONDS, policy="keys+sbom")
