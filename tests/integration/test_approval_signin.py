"""Sign-in bound to the link, and form posts only from the page, against moto and the local OIDC
provider (see approval_world.py). Every refusal is named (`X-Approval-Refusal`), decides nothing and
leaves the release waiting: the ledger record is byte-for-byte the same, the execution RUNNING.

GIVEN a release waiting for approval, alice's and bob's links
WHEN a request lacks one of: the sign-in, the link, the right person, the page's nonce, the page's origin
THEN it is refused by name and nothing changes (a signed-in person the approver check refuses is
noted in the record's `refused` list; nothing else of it changes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from local.oidc import subject_of
from podrelease.approval.keys import KeyRing
from podrelease.approval.session import LOGIN_COOKIE, SESSION_COOKIE, Identity, LoginState, Session, form_nonce
from tests.integration.approval_world import SIGNING_KEY, World, assert_security_headers, set_cookies, token_claims

ALICE, BOB = "alice@example.com", "bob@example.com"
FOREIGN_RING = KeyRing("k1", {"k1": b"\x02" * 32})  # same key id, another key: a forgery


def refused(world: World, execution: str, before: Any, response: dict[str, Any], status: int, reason: str) -> None:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["X-Approval-Refusal"] == reason
    assert 'name="decision"' not in response["body"]
    assert_security_headers(response)
    after = world.record()
    assert after is not None
    assert before is not None
    assert without_attempts(after) == without_attempts(before)
    if "refused" in after:  # the approver check's refusal, noted with who and why
        assert after["refused"]["L"][-1]["M"]["reason"]["S"] == reason
    assert world.execution(execution, settle=False)["status"] == "RUNNING"


def without_attempts(record: dict[str, Any]) -> dict[str, Any]:
    """A raw ledger record without the refused attempts noted on it (and their updated_at)."""
    return {k: v for k, v in record.items() if k not in ("refused", "updated_at")}


@pytest.fixture
def alice_page(pending: tuple[World, str, str]) -> tuple[World, str, dict[str, str], str, str]:
    """alice signed in, her page open: (world, execution, her cookies, her link's token, the page's nonce)."""
    world, execution, _ = pending
    token = world.links()[ALICE]
    cookies = world.sign_in(ALICE)
    return world, execution, cookies, token, world.nonce(token, cookies)


# --- POSTs that lack something ---------------------------------------------------------------------
Post = Callable[[World, dict[str, str], str, str], dict[str, Any]]


def post(world: World, form: dict[str, str], cookies: dict[str, str] | None = None,
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    return world.page("POST", form=form, cookies=cookies, headers=headers)


def forged_session(world: World, _cookies: dict[str, str], token: str, _nonce: str) -> dict[str, Any]:
    session = Session.start(Identity(subject_of(ALICE), ALICE, world.issuer), time.time())
    nonce = form_nonce(FOREIGN_RING, session, token_claims(token)["jti"], time.time())
    return post(world, {"t": token, "n": nonce, "decision": "approve"}, {SESSION_COOKIE: session.seal(FOREIGN_RING)})


def expired_session(world: World, _cookies: dict[str, str], token: str, _nonce: str) -> dict[str, Any]:
    ring = KeyRing("k1", {"k1": SIGNING_KEY})
    session = Session(Session.start(Identity(subject_of(ALICE), ALICE, world.issuer), 0).sid,
                      Identity(subject_of(ALICE), ALICE, world.issuer), int(time.time()) - 1)
    nonce = form_nonce(ring, session, token_claims(token)["jti"], time.time())
    return post(world, {"t": token, "n": nonce, "decision": "approve"}, {SESSION_COOKIE: session.seal(ring)})


def bobs_session(world: World, _cookies: dict[str, str], token: str, _nonce: str) -> dict[str, Any]:
    bob = world.sign_in(BOB)
    bobs_nonce = world.nonce(world.links()[BOB], bob)  # a genuine nonce, for bob's own link
    return post(world, {"t": token, "n": bobs_nonce, "decision": "approve"}, bob)


def bobs_nonce(world: World, cookies: dict[str, str], token: str, _nonce: str) -> dict[str, Any]:
    bob = world.sign_in(BOB)
    return post(world, {"t": token, "n": world.nonce(world.links()[BOB], bob), "decision": "approve"}, cookies)


POSTS: list[tuple[str, Post, int, str]] = [
    # the link without the sign-in
    ("valid link, no session", lambda w, _c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}), 401, "SignInRequired"),
    ("valid link, forged session", forged_session, 401, "SignInRequired"),
    ("valid link, expired session", expired_session, 401, "SignInRequired"),
    ("session cookie from another purpose", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"},
                                                                  {SESSION_COOKIE: n}), 401, "SignInRequired"),
    # the sign-in without the link, or with someone else's
    ("signed in, no link", lambda w, c, _t, n: post(w, {"n": n, "decision": "approve"}, c), 400, "BadForm"),
    ("signed in as bob, alice's link", bobs_session, 403, "WrongApprover"),
    # the page's nonce
    ("no nonce", lambda w, c, t, _n: post(w, {"t": t, "decision": "approve"}, c), 403, "FormNonceMissing"),
    ("forged nonce", lambda w, c, t, n: post(w, {"t": t, "n": n[:-4] + "AAAA", "decision": "approve"}, c), 403,
     "FormNonceInvalid"),
    ("another session's nonce", bobs_nonce, 403, "FormNonceInvalid"),
    ("the session cookie as nonce", lambda w, c, t, _n: post(w, {"t": t, "n": c[SESSION_COOKIE], "decision": "approve"}, c),
     403, "FormNonceInvalid"),
    # only from the page itself
    ("cross-site Origin", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c,
                                                  {"origin": "https://evil.example", "sec-fetch-site": ""}), 403, "CrossSiteRequest"),
    ("Sec-Fetch-Site cross-site", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c,
                                                          {"origin": "", "sec-fetch-site": "cross-site"}), 403, "CrossSiteRequest"),
    ("Sec-Fetch-Site same-site", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c,
                                                         {"sec-fetch-site": "same-site"}), 403, "CrossSiteRequest"),
    ("neither Origin nor Sec-Fetch-Site", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c,
                                                                  {"origin": "", "sec-fetch-site": ""}), 403, "CrossSiteRequest"),
    ("no Content-Type", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c, {"content-type": ""}), 415,
     "BadContentType"),
    ("text/plain", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c, {"content-type": "text/plain"}),
     415, "BadContentType"),
    ("multipart", lambda w, c, t, n: post(w, {"t": t, "n": n, "decision": "approve"}, c,
                                          {"content-type": "multipart/form-data; boundary=x"}), 415, "BadContentType"),
]


@pytest.mark.parametrize(("case", "send", "status", "reason"), POSTS, ids=[p[0] for p in POSTS])
def test_a_post_missing_a_part_decides_nothing(
    alice_page: tuple[World, str, dict[str, str], str, str], case: str, send: Post, status: int, reason: str
) -> None:
    world, execution, cookies, token, nonce = alice_page
    before = world.record()

    response = send(world, cookies, token, nonce)

    refused(world, execution, before, response, status, reason)


def test_the_same_post_with_every_part_decides(alice_page: tuple[World, str, dict[str, str], str, str]) -> None:
    """The control of the table above: with nothing missing, the decision counts."""
    world, execution, cookies, token, nonce = alice_page
    response = post(world, {"t": token, "n": nonce, "decision": "approve"}, cookies)
    assert response["statusCode"] == 200, response["body"]
    assert world.ledger()["status"] == "approved"
    assert world.execution(execution)["status"] == "SUCCEEDED"


def test_signed_in_as_another_approver_the_page_is_refused(pending: tuple[World, str, str]) -> None:
    world, execution, _ = pending
    before = world.record()
    response = world.page("GET", {"t": world.links()[ALICE]}, cookies=world.sign_in(BOB))
    refused(world, execution, before, response, 403, "WrongApprover")
    assert "signed in as bob@example.com" in response["body"]


# --- the return from the provider ------------------------------------------------------------------
def start(world: World) -> tuple[dict[str, str], dict[str, str]]:
    """Begin alice's sign-in and sign in at the provider: (the login cookie, the callback's query)."""
    import urllib.request

    begun = world.page("GET", {"t": world.links()[ALICE]})
    login = set_cookies(begun)
    pressed = urllib.request.Request(begun["headers"]["Location"], method="POST", data=f"sub={subject_of(ALICE)}".encode())  # noqa: S310
    opener = urllib.request.build_opener(type("Keep", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *_a, **_k: None}))
    with pytest.raises(urllib.error.HTTPError) as back:
        opener.open(pressed, timeout=30)
    return login, {k: v[0] for k, v in parse_qs(urlsplit(back.value.headers["Location"]).query).items()}


def callback(world: World, query: dict[str, str], cookies: dict[str, str]) -> dict[str, Any]:
    return world.page("GET", query, cookies=cookies, path="/callback")


CALLBACKS: list[tuple[str, Callable[[World, dict[str, str], dict[str, str]], dict[str, Any]], str]] = [
    ("no login cookie", lambda w, _l, q: callback(w, q, {}), "LoginStateInvalid"),
    ("forged login cookie", lambda w, _l, q: callback(
        w, q, {LOGIN_COOKIE: LoginState("s", "n", "v" * 43, w.links()[ALICE], int(time.time()) + 60).seal(FOREIGN_RING)}),
     "LoginStateInvalid"),
    ("another sign-in's state", lambda w, login, q: callback(w, {**q, "state": "not-this-one"}, login), "LoginStateMismatch"),
    ("provider said no", lambda w, login, q: callback(w, {"state": q["state"], "error": "access_denied"}, login), "SignInDenied"),
    ("another sign-in's login cookie", lambda w, _l, q: callback(w, q, start(w)[0]), "LoginStateMismatch"),
    ("code redeemed twice", lambda w, login, q: (callback(w, q, login), callback(w, q, login))[1], "SignInFailed"),
]


@pytest.mark.parametrize(("case", "send", "reason"), CALLBACKS, ids=[c[0] for c in CALLBACKS])
def test_a_bad_return_from_the_provider_starts_no_session(
    pending: tuple[World, str, str], case: str, send: Callable[..., dict[str, Any]], reason: str
) -> None:
    world, execution, _ = pending
    login, query = start(world)
    before = world.record()

    response = send(world, login, query)

    refused(world, execution, before, response, 401, reason)
    assert SESSION_COOKIE not in "".join(response.get("cookies") or [])


def test_the_session_cookie_is_strict_httponly_and_secure(pending: tuple[World, str, str]) -> None:
    world, _, _ = pending
    login, query = start(world)
    response = callback(world, query, login)
    assert response["statusCode"] == 200
    session = next(c for c in response["cookies"] if c.startswith(SESSION_COOKIE + "="))
    assert "; HttpOnly" in session
    assert "; Secure" in session
    assert "; SameSite=Strict" in session
    assert "Max-Age=900" in session
    cleared = next(c for c in response["cookies"] if c.startswith(LOGIN_COOKIE + "="))
    assert "Max-Age=0" in cleared
    assert f"url=https://approve.example.test/?t={world.links()[ALICE]}" in response["body"]  # back to the link


# --- the demo's auto-approver, over HTTP ---------------------------------------------------------
def test_the_demo_approver_signs_in_and_decides_over_http(pending: tuple[World, str, str]) -> None:
    """local.approver (what `make demo` presses the buttons with) against the page served over HTTP:
    it is sent to the provider, signs in as the link's approver, and decides with the page's nonce."""
    import threading

    import boto3
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    from local.approver import Approver
    from podrelease.release import podinfo
    from tests.integration.approval_world import REGION, SIGN_IN_PARAMETER, Context, sign_in_settings

    world, execution, _ = pending

    def serve(environ: dict[str, Any], start_response: Any) -> Any:  # a Function URL in front of the handler
        request = Request(environ)
        event = podinfo.request(request.path, request.method, query=request.query_string.decode(), body=request.get_data(),
                                headers={k: v for k, v in request.headers.items() if k.lower() != "cookie"})
        if request.headers.get("Cookie"):
            event["cookies"] = [c.strip() for c in request.headers["Cookie"].split(";")]
        answer = world.page_app.handler(event, Context())
        response = Response(answer["body"], answer["statusCode"], headers=answer["headers"])
        for cookie in answer.get("cookies") or []:
            response.headers.add("Set-Cookie", cookie)
        return response(environ, start_response)

    server = make_server("127.0.0.1", 0, serve, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    try:
        settings = {**sign_in_settings(world.issuer), "redirect_uri": base + "callback"}
        boto3.client("ssm", region_name=REGION).put_parameter(Name=SIGN_IN_PARAMETER, Value=json.dumps(settings), Overwrite=True)
        world.page_app.sign_in.cache_clear()
        link = f"{base}?t={world.links()[BOB]}"

        assert Approver(ALICE).decide(link, "approve")[0] == 403  # signed in, but not as bob
        assert world.ledger()["status"] == "pending"
        status, page = Approver(BOB).decide(link, "reject", "error budget spent")
    finally:
        server.shutdown()

    assert status == 200, page
    record = world.ledger()
    assert (record["status"], record["decided_by"]) == ("rejected", BOB)
    assert [(v["subject"], v["comment"]) for v in record["votes"]] == [(subject_of(BOB), "error budget spent")]
    assert world.execution(execution)["status"] == "FAILED"
