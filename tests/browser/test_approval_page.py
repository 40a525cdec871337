"""The approval page in a real browser, on real releases of the local runtime.

GIVEN two signed, SBOM-attested releases of the local runtime, each paused at RequestApproval
WHEN an approver (or a link scanner, a replayer, a forger) uses the emailed link in Chromium
THEN GET changes nothing, only the page's buttons decide, and a replayed, forged or expired link is
refused with a page saying so, all asserted through Step Functions, the ledger, ECR and Lambda.

The tests run in file order and share the two releases: the first is looked at, approved and
replayed; the second is attacked with forged and expired links while it waits, then rejected.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect

from local.demo import approval_link
from local.images import Pushed
from local.oidc import subject_of
from local.runtime import APPROVERS, PROD_REPOSITORY, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.approval.keys import KeyRing, parse_key_secret
from podrelease.approval.tokens import mint_token
from podrelease.release.events import execution_name
from tests.browser.conftest import new_context
from tests.log_scan import APPROVAL_TOKEN_SHAPE, known_secret
from tests.statemachine.conftest import execution_arn, history, ledger_item, live_image, wait_for, wait_for_state

pytestmark = pytest.mark.browser

ALICE, BOB = APPROVERS
#: How often the read-only page is reloaded and fetched the way link scanners do.
PREFETCHES = 5
#: The longest a release may take through one stage of the pipeline (to approval, to prod) before a
#: test gives up: a deadline on a poll of the outcome, generous for a loaded machine, never slept.
RELEASE_STAGE_SECONDS = 300


@dataclass
class Release:
    """One release paused at approval, as the test pushed it."""

    name: str
    image: Pushed
    signature: Pushed
    attestation: Pushed
    links: dict[str, str] = field(default_factory=dict)
    posted: str = ""  # the approve form's body, as the browser sent it
    tabs: dict[str, Page] = field(default_factory=dict)  # pages left open on the link, for replays

    @property
    def digest(self) -> str:
        return self.image.digest

    def token(self, approver: str) -> str:
        return token_of(self.links[approver])


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["t"][0]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def with_token(link: str, token: str) -> str:
    return link.split("?")[0] + "?t=" + token


def push(env: LocalRuntime, version: str) -> tuple[Pushed, Pushed, Pushed]:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, version)
    signature = env.pusher.sign_legacy(env.signing_key, image)
    attestation = env.pusher.attest_sbom(env.signing_key, image)
    return image, signature, attestation


def snapshot(env: LocalRuntime, name: str) -> tuple[str, int, dict[str, Any]]:
    """What a decision would change: the execution's status, its history, the approval record."""
    status = env.client("stepfunctions").describe_execution(executionArn=execution_arn(env, name))["status"]
    return status, len(history(env, name)), ledger_item(env, f"approval#{name}")


def settled(env: LocalRuntime, name: str, timeout: float = 60) -> tuple[str, int, dict[str, Any]]:
    """The snapshot once the approval request is done (every approver emailed and recorded)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        now = snapshot(env, name)
        notified = now[2].get("notified", {}).get("M", {})
        if now == last and set(notified) == set(APPROVERS):
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"approval request of {name} never settled: {last}")


def wait_paused(env: LocalRuntime, release: Release) -> Release:
    wait_for_state(env, release.name, "RequestApproval", timeout=RELEASE_STAGE_SECONDS)
    for approver in APPROVERS:
        link = approval_link(env, approver, release.name, timeout=RELEASE_STAGE_SECONDS)
        assert link is not None, f"no approval email for {approver}"
        known_secret(token_of(link), "approval token")
        release.links[approver] = link
    settled(env, release.name)
    return release


def prod_digests(env: LocalRuntime) -> set[str]:
    return {d["imageDigest"] for d in env.client("ecr").describe_images(repositoryName=PROD_REPOSITORY)["imageDetails"]}


def heading(page: Page) -> str:
    return page.locator("h1").inner_text().strip()


def summary(page: Page) -> dict[str, str]:
    """The page's at-a-glance table: label -> text."""
    return dict(zip(page.locator("th").all_inner_texts(), page.locator("td").all_inner_texts(), strict=True))


def folded(page: Page, title: str) -> Any:
    """The JSON in the folded <details> section `title` (read without unfolding it)."""
    return json.loads(page.locator(f"details:has(summary:text-is('{title}')) pre").text_content() or "")


def on_the_provider(page: Page, env: LocalRuntime) -> bool:
    assert env.oidc is not None
    return page.url.startswith(env.oidc.issuer + "/oauth2/authorize")


def sign_in_here(page: Page, approver: str) -> Response:
    """On the provider's sign-in page: sign in as `approver`; the response of the approval page it returns to."""
    back_at_the_link = lambda url: "/oauth2/" not in url and "?t=" in url  # noqa: E731 - the callback's refresh
    with page.expect_navigation(url=back_at_the_link) as returned:
        page.get_by_role("button", name=f"Authorize as {subject_of(approver)}").click()
    response = returned.value
    assert response is not None
    return response


def open_signed_in(page: Page, env: LocalRuntime, link: str, approver: str) -> Response:
    """Open the link as `approver`: signing in when sent to the provider (a session lasts 15 minutes)."""
    response = page.goto(link) or pytest.fail("no response")
    return sign_in_here(page, approver) if on_the_provider(page, env) else response


def press(page: Page, button: str) -> Response:
    """Press a button on the page; return the response to the form's POST once the page it answered
    with has loaded. (The response arrives before the browser swaps documents: reading the page
    right after it, or waiting for a load state the old document already reached, reads the old page.)"""
    with (
        page.expect_event("load"),
        page.expect_response(lambda r: r.request.is_navigation_request() and r.request.method == "POST") as sent,
    ):
        page.get_by_role("button", name=button, exact=True).click()
    return sent.value


def assert_refused(page: Page, response: Response | None, status: int, title: str, says: str) -> None:
    """The page refused with `status`, shows `title` and a message containing `says`, and offers no decision."""
    assert response is not None
    assert response.status == status, f"expected {status} {title!r}, got {response.status} {heading(page)!r}"
    expect(page.locator("h1")).to_have_text(title)
    expect(page.locator("p")).to_contain_text(says)
    expect(page.get_by_role("button")).to_have_count(0)  # a refusal page offers no decision
    assert response.headers["cache-control"] == "no-store"


# --- the two releases ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key_ring(env: LocalRuntime) -> KeyRing:
    """The stack's approval signing keys (read as the approval functions read them)."""
    secret = env.client("secretsmanager").get_secret_value(SecretId=env.stack.physical["ApprovalSigningKey"])["SecretString"]
    return parse_key_secret(secret)


@pytest.fixture(scope="module")
def first(env: LocalRuntime) -> Release:
    image, signature, attestation = push(env, "6.9.2")
    return wait_paused(env, Release(execution_name(WORKLOAD_REPOSITORY, image.digest), image, signature, attestation))


@pytest.fixture(scope="module")
def second(env: LocalRuntime, first: Release) -> Release:
    """Pushed only once the first is decided (the tests that use it come after the first's). A newer
    release of the repository that reaches approval supersedes an older one still waiting there:
    pushed while the first waited (as it once was, to overlap its dev rollout with the first's
    tests), on a loaded machine it got there first, and the first's approve and replay tests met
    "Release superseded"."""
    image, signature, attestation = push(env, "6.9.3")
    return wait_paused(env, Release(execution_name(WORKLOAD_REPOSITORY, image.digest), image, signature, attestation))


@pytest.fixture(scope="module")
def bob_context(browser: Browser) -> Iterator[BrowserContext]:
    """Bob's own browser profile (his cookies, his sign-in)."""
    ctx = new_context(browser)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the page's screenshots are kept (under the pytest basetemp)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)


# --- GET is read-only ---------------------------------------------------------------------------
def test_the_link_sends_to_sign_in_then_shows_the_summary_and_changes_nothing(
    env: LocalRuntime, first: Release, context: BrowserContext, no_js_context: BrowserContext, bob_context: BrowserContext,
    page: Page, artifacts: Path,
) -> None:
    before = settled(env, first.name)
    assert before[0] == "RUNNING"
    page.set_viewport_size({"width": 1280, "height": 800})

    # WHEN alice opens the emailed link: she is sent to sign in first
    page.goto(first.links[ALICE])
    assert on_the_provider(page, env), page.url
    assert snapshot(env, first.name) == before
    response = sign_in_here(page, ALICE)

    # THEN, signed in, she sees the summary first and the buttons without scrolling
    assert response.status == 200
    assert heading(page) == f"Approve podinfo release {first.name} for prod?"
    expect(page.locator("p.note")).to_contain_text(f"Signed in as {ALICE}")
    shown = summary(page)
    assert shown["Candidate"].startswith(first.digest[:19])
    assert "verified, by" in shown["Signature"]
    assert shown["SBOM"].startswith("\u2713 present and signed (spdx")
    # dev's bake, measured (podrelease.approval.bake): the canary, its hooks, alarms quiet, the traffic's figures
    assert shown["Dev canary"].startswith("\u2713 succeeded: ")
    assert shown["Dev hooks"] == "\u2713 BeforeAllowTraffic succeeded, AfterAllowTraffic succeeded"
    assert shown["Dev alarms"].startswith("\u2713 quiet: none of ")
    assert " invocations, " in shown["Dev traffic"]
    assert shown["Votes"] == "none yet"
    assert " h " in shown["Time left"]
    # what changes: prod's side (nothing yet in this runtime) and when an approval would reach it
    assert shown["Prod now"] == "no release of this stack has reached prod yet"
    assert shown["Prod window"] == "\u2713 open: an approval deploys at once"
    for button in ("Approve", "Reject", "Reject and block this digest"):
        box = page.get_by_role("button", name=button, exact=True).bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= 800, f"{button} is below the first 800 pixels at 1280 wide"
    page.screenshot(path=str(artifacts / "approval-page-1280.png"), full_page=True)
    # the raw evidence is there, folded: about this digest, from the signature and attestation pushed
    evidence = folded(page, "Raw signature and SBOM evidence")
    assert page.locator("details").first.get_attribute("open") is None
    assert evidence["digest"] == first.digest
    assert {(s["kind"], s["digest"], s["signature_manifest"]) for s in evidence["signatures"]} == {
        ("simple-signing", first.digest, first.signature.digest)
    }
    assert [(s["format"], s["attestation_manifest"]) for s in evidence["sbom"]["sboms"]] == [("spdx", first.attestation.digest)]
    dev = folded(page, "Raw dev deployment results")["deployment"]
    assert (dev["environment"], dev["status"]) == ("dev", "Succeeded")
    deployment = env.client("codedeploy").get_deployment(deploymentId=dev["id"])["deploymentInfo"]
    assert f"release={first.name}" in deployment["description"]
    # on a phone: no sideways scrolling, the buttons still there
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.get_by_role("button", name="Approve").is_visible()
    page.screenshot(path=str(artifacts / "approval-page-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    # only a form decides; the page is not cached, not framed, leaks no referrer, runs no script
    assert page.locator("form").get_attribute("method") == "post"
    assert page.locator("script").count() == 0
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]
    session = next(c for c in context.cookies() if c["name"] == "approval_session")
    assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")

    # WHEN the approver reloads it, a scanner fetches it (GET and HEAD), a profile without a session opens it
    for _ in range(PREFETCHES):
        again = page.reload()
        assert again is not None
        assert again.status == 200
    for _ in range(PREFETCHES):
        fetched = context.request.get(first.links[ALICE], max_redirects=0)
        assert fetched.status == 200
    head = context.request.head(first.links[ALICE])
    assert head.status == 405
    assert head.headers["allow"] == "GET, POST"
    scanner = no_js_context.new_page()
    scanner.goto(first.links[BOB])
    assert on_the_provider(scanner, env)  # sent to sign in; it shows nothing of the release
    scanner.close()
    # Tabs left open on the page, to press their buttons after the decision (replays).
    tab = context.new_page()
    assert open_signed_in(tab, env, first.links[ALICE], ALICE).status == 200
    first.tabs["alice-second-tab"] = tab
    tab = bob_context.new_page()
    assert open_signed_in(tab, env, first.links[BOB], BOB).status == 200
    first.tabs["bob"] = tab

    # THEN the release still waits, with the same history and the same approval record
    after = snapshot(env, first.name)
    assert after == before
    assert after[2]["status"]["S"] == "pending"
    assert "decided_by" not in after[2]


def test_bob_signed_in_with_alices_link_is_refused(env: LocalRuntime, first: Release, bob_context: BrowserContext) -> None:
    before = snapshot(env, first.name)
    page = bob_context.new_page()
    response = page.goto(first.links[ALICE])
    assert_refused(page, response, 403, "This link is not yours", f"signed in as {BOB}")
    page.close()
    assert snapshot(env, first.name) == before


def test_the_link_without_a_session_or_from_another_site_decides_nothing(
    env: LocalRuntime, first: Release, browser: Browser, context: BrowserContext
) -> None:
    before = snapshot(env, first.name)
    origin = "/".join(first.links[ALICE].split("/")[:3])
    action = first.links[ALICE].split("?")[0]
    # a valid link POSTed with no session, as from the page (Origin right): refused, nothing decided
    fresh = new_context(browser)
    no_session = fresh.request.post(action, form={"t": first.token(ALICE), "n": "x", "decision": "approve"},
                                    headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"}, max_redirects=0)
    assert (no_session.status, no_session.headers["x-approval-refusal"]) == (401, "SignInRequired")
    fresh.close()
    # a form on another site, submitted in alice's signed-in browser: refused, nothing decided
    evil = context.new_page()
    evil.set_content(f'<form method="post" action="{action}"><input name="t" value="{first.token(ALICE)}">'
                     '<button name="decision" value="approve">Win a prize</button></form>')
    with evil.expect_navigation() as sent:
        evil.get_by_role("button", name="Win a prize").click()
    response = sent.value
    assert response is not None
    assert (response.status, response.headers["x-approval-refusal"]) == (403, "CrossSiteRequest")
    evil.close()
    assert snapshot(env, first.name) == before


# --- POST decides -------------------------------------------------------------------------------
def test_approve_button_posts_the_form_and_the_digest_reaches_prod(
    env: LocalRuntime, first: Release, no_js_context: BrowserContext
) -> None:
    """With JavaScript off: the page is a plain HTML form, so it works without any."""
    prod_before = live_image(env, "prod")
    page = no_js_context.new_page()
    assert open_signed_in(page, env, first.links[ALICE], ALICE).status == 200  # signs in without JavaScript too
    page.locator("textarea[name=comment]").fill("canary clean, ship it")

    response = press(page, "Approve")

    assert response.request.method == "POST"
    assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    posted = parse_qs(response.request.post_data or "")
    assert (posted["t"], posted["decision"], posted["comment"]) == ([first.token(ALICE)], ["approve"], ["canary clean, ship it"])
    assert posted["n"][0]
    first.posted = response.request.post_data or ""
    assert response.status == 200
    expect(page.locator("h1")).to_have_text("Release approved")
    expect(page.locator("p").first).to_contain_text(f"was approved by {ALICE}")
    page.close()
    # THEN the same digest goes to prod and the release succeeds
    execution = wait_for(env, first.name, timeout=RELEASE_STAGE_SECONDS)
    assert execution["status"] == "SUCCEEDED"
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{first.digest}")
    assert live_image(env, "prod") != prod_before
    assert first.digest in prod_digests(env)
    record = ledger_item(env, f"approval#{first.name}")
    assert (record["status"]["S"], record["decided_by"]["S"], record["callback"]["S"]) == ("approved", ALICE, "delivered")
    assert record["decision_jti"]["S"] == claims_of(first.token(ALICE))["jti"]
    (vote,) = record["votes"]["L"]
    assert {k: v.get("S") for k, v in vote["M"].items() if "S" in v} == {
        "decision": "approved", "subject": subject_of(ALICE), "email": ALICE, "issuer": env.oidc.issuer if env.oidc else "",
        "link": claims_of(first.token(ALICE))["jti"], "approver": ALICE, "comment": "canary clean, ship it"}
    assert ledger_item(env, f"release#{first.name}")["outcome"]["S"] == "SUCCEEDED"


def test_a_decided_link_is_refused_when_replayed(env: LocalRuntime, first: Release, no_js_context: BrowserContext, page: Page) -> None:
    decided = snapshot(env, first.name)
    assert decided[0] == "SUCCEEDED"

    # the link opened again
    already = f"was already approved by {ALICE}"
    assert_refused(page, page.goto(first.links[ALICE]), 410, "Release already approved", already)
    # buttons pressed on pages opened before the decision: the same decision again, and the other one
    assert_refused(
        first.tabs["alice-second-tab"], press(first.tabs["alice-second-tab"], "Approve"), 410, "Release already approved", already
    )
    assert_refused(first.tabs["bob"], press(first.tabs["bob"], "Reject"), 410, "Release already approved", already)
    # the approve form replayed byte for byte in alice's session, with the page's own Origin
    origin = "/".join(first.links[ALICE].split("/")[:3])
    replay = no_js_context.request.post(first.links[ALICE].split("?")[0], data=first.posted, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert replay.status == 410
    for tab in first.tabs.values():
        tab.close()

    # THEN nothing changed: still approved by alice, still on prod
    assert snapshot(env, first.name) == decided
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{first.digest}")


# --- forged and expired links -------------------------------------------------------------------
def _mac_altered(token: str, **_: Any) -> str:
    payload, mac = token.split(".")
    return f"{payload}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"  # the first character: never padding bits


def _claims_altered(token: str, **_: Any) -> str:
    """Alice stretches her link's expiry by a year and keeps the MAC."""
    claims = claims_of(token)
    claims["exp"] += 365 * 24 * 3600
    payload = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{payload}.{token.split('.')[1]}"


def _resigned(token: str, ring: KeyRing, key: bytes | None = None, kid: str | None = None, **changes: Any) -> str:
    claims = claims_of(token)
    claims.update(changes)
    return mint_token(
        key or ring.signing_key,
        kid or ring.current,
        release_id=claims["rid"],
        execution_arn=claims["exe"],
        digest=claims["dig"],
        approver=claims["apr"],
        expires_at=claims["exp"],
    )


Forge = Callable[..., str]
NOT_VALID, NOT_FOR_THIS = "This approval link is not valid", "This approval link is not valid for this release"
#: What every refusal of a link that could have decided says: the person must know nothing happened.
NOTHING_DECIDED = "nothing was approved or rejected"
FORGERIES: list[tuple[str, Forge, int, str, str]] = [
    ("mac-altered", _mac_altered, 403, NOT_VALID, NOTHING_DECIDED),
    ("claims-altered-mac-kept", _claims_altered, 403, NOT_VALID, NOTHING_DECIDED),
    ("truncated", lambda token, **_: token[:-6], 403, NOT_VALID, NOTHING_DECIDED),
    (
        "signed-with-another-key",
        lambda token, ring, **_: _resigned(token, ring, key=secrets.token_bytes(32)),
        403,
        NOT_VALID,
        NOTHING_DECIDED,
    ),
    (
        "unknown-key-id",
        lambda token, ring, **_: _resigned(token, ring, key=secrets.token_bytes(32), kid="v999"),
        403,
        NOT_VALID,
        NOTHING_DECIDED,
    ),
    ("not-a-token", lambda token, **_: "not-a-token", 403, NOT_VALID, NOTHING_DECIDED),
    # genuinely signed (the real key leaked, say), but bound to someone or something else
    (
        "signed-for-an-outsider",
        lambda token, ring, **_: _resigned(token, ring, apr="mallory@example.com"),
        403,
        NOT_FOR_THIS,
        NOTHING_DECIDED,
    ),
    (
        "signed-for-another-digest",
        lambda token, ring, other, **_: _resigned(token, ring, dig=other.digest),
        403,
        NOT_FOR_THIS,
        NOTHING_DECIDED,
    ),
    (
        "signed-for-another-execution",
        lambda token, ring, other, env, **_: _resigned(token, ring, exe=execution_arn(env, other.name)),
        403,
        NOT_FOR_THIS,
        NOTHING_DECIDED,
    ),
    ("missing", lambda token, **_: "", 400, "Missing approval token", "needs the full link from the approval email (it ends in ?t=...)"),
]


@pytest.mark.parametrize(("forge", "status", "title", "says"), [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES])
def test_a_forged_link_is_refused_and_decides_nothing(
    env: LocalRuntime,
    first: Release,
    second: Release,
    key_ring: KeyRing,
    page: Page,
    forge: Forge,
    status: int,
    title: str,
    says: str,
) -> None:
    before = snapshot(env, second.name)
    assert before[0] == "RUNNING"
    genuine = second.token(ALICE)
    forged = forge(genuine, ring=key_ring, other=first, env=env)
    assert forged != genuine
    if "." in forged:  # shaped like a token: the log scan looks for it too
        known_secret(forged, "forged approval token")
    link = with_token(second.links[ALICE], forged) if forged else second.links[ALICE].split("?")[0]

    assert_refused(page, page.goto(link), status, title, says)
    assert snapshot(env, second.name) == before


def test_a_forged_or_tampered_form_decides_nothing(env: LocalRuntime, second: Release, key_ring: KeyRing, page: Page) -> None:
    """The genuine page, its form tampered with in the browser before pressing a button."""
    before = snapshot(env, second.name)
    cases = [
        ("t", _mac_altered(second.token(ALICE)), "Approve", 403, NOT_VALID),
        ("t", _resigned(second.token(ALICE), key_ring, apr="mallory@example.com"), "Approve", 403, NOT_FOR_THIS),
        ("t", second.token(BOB) + "x", "Reject", 403, NOT_VALID),
    ]
    for field_name, value, button, status, title in cases:
        known_secret(value, "forged approval token")
        assert open_signed_in(page, env, second.links[ALICE], ALICE).status == 200
        page.locator(f"input[name={field_name}]").evaluate("(input, value) => { input.value = value; }", value)
        assert_refused(page, press(page, button), status, title, NOTHING_DECIDED)
    # a decision the form does not offer
    assert open_signed_in(page, env, second.links[ALICE], ALICE).status == 200
    page.get_by_role("button", name="Approve").evaluate("(button) => { button.value = 'approve-all'; }")
    assert_refused(page, press(page, "Approve"), 400, "Bad request", "decision=approve or decision=reject")
    assert snapshot(env, second.name) == before


PAST_EXPIRY = "The link is past its expiry. Ask the release owner to start a new release."


def test_an_expired_link_is_refused(env: LocalRuntime, second: Release, key_ring: KeyRing, page: Page) -> None:
    """A genuine link of this release and approver, signed with the real key, whose expiry has passed."""
    before = snapshot(env, second.name)
    expired = _resigned(second.token(ALICE), key_ring, exp=int(time.time()) - 60)
    known_secret(expired, "expired approval token")

    assert_refused(page, page.goto(with_token(second.links[ALICE], expired)), 410, "This approval link has expired", PAST_EXPIRY)
    # the same token pressed through the genuine page's form
    assert open_signed_in(page, env, second.links[ALICE], ALICE).status == 200
    page.locator("input[name=t]").evaluate("(input, value) => { input.value = value; }", expired)
    assert_refused(page, press(page, "Approve"), 410, "This approval link has expired", PAST_EXPIRY)
    assert snapshot(env, second.name) == before


# --- Reject -------------------------------------------------------------------------------------
def test_reject_button_ends_the_release_rejected(
    env: LocalRuntime, first: Release, second: Release, bob_context: BrowserContext, page: Page
) -> None:
    assert snapshot(env, second.name)[0] == "RUNNING"
    bobs = bob_context.new_page()
    assert open_signed_in(bobs, env, second.links[BOB], BOB).status == 200

    response = press(bobs, "Reject")

    assert response.status == 200
    posted = parse_qs(response.request.post_data or "")
    assert (posted["t"], posted["decision"]) == ([second.token(BOB)], ["reject"])
    expect(bobs.locator("h1")).to_have_text("Release rejected")
    expect(bobs.locator("p").first).to_contain_text(f"was rejected by {BOB}")
    bobs.close()
    execution = wait_for(env, second.name, timeout=RELEASE_STAGE_SECONDS)
    assert (execution["status"], execution["error"]) == ("FAILED", "ApprovalRejected")
    record = ledger_item(env, f"approval#{second.name}")
    assert (record["status"]["S"], record["decided_by"]["S"]) == ("rejected", BOB)
    # prod is untouched: still the first release's digest, the second never copied there
    assert live_image(env, "prod").endswith(f"/{PROD_REPOSITORY}@{first.digest}")
    assert second.digest not in prod_digests(env)
    # and alice's link, still unexpired, is refused now
    assert_refused(page, page.goto(second.links[ALICE]), 410, "Release already rejected", f"was already rejected by {BOB}")


# --- logs ---------------------------------------------------------------------------------------
def test_no_token_reaches_the_approval_page_log(env: LocalRuntime, first: Release, second: Release) -> None:
    """The page logged every refusal above, and no token of any kind (the suite-wide scan checks all logs)."""
    log = (env.work_dir / "logs" / "podrel-approval-page.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refused = [line for line in lines if line.get("message") == "approval page refused"]
    assert len(refused) >= len(FORGERIES) + 8, "the page did not log the refusals: this scan would prove nothing"
    assert any(line.get("message") == "decision delivered" for line in lines)
    tokens = [release.token(approver) for release in (first, second) for approver in APPROVERS]
    for token in tokens:
        assert token not in log
        assert token.split(".")[1] not in log  # not even the MAC alone
    assert not APPROVAL_TOKEN_SHAPE.search(log)
    assert not re.search(r"[?&]t=", log), "a URL with its token reached the log"
