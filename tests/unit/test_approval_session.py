"""The approval page's formats: link tokens, session and login-state cookies, form nonces, ID tokens.

Property-based (hypothesis): no input crashes a reader, and nothing but a genuine value of the right
purpose, for the right session and link, unexpired, is accepted. Table-driven: the ID token check
refuses each wrong claim by name.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from podrelease.approval.keys import KeyRing
from podrelease.approval.page import DecisionForm, check_post_origin, read_form
from podrelease.approval.refusal import ApprovalRefused
from podrelease.approval.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Identity,
    LoginState,
    Session,
    SessionInvalid,
    check_form_nonce,
    form_nonce,
    read_cookies,
    seal,
    unseal,
)
from podrelease.approval.signin import OidcClient, SignInFailed, SignInSettings
from podrelease.approval.tokens import verify_token
from podrelease.core.errors import TokenInvalid

NOW = 1_800_000_000
RING = KeyRing("k1", {"k1": bytes(range(32))})
ALICE = Identity("sub-alice", "alice@example.com", "https://idp.example", ("release-approvers",))
SESSION = Session("sid-1", ALICE, NOW + 900)
PURPOSES = (LOGIN_COOKIE, SESSION_COOKIE, "form")
ORIGIN = "https://approve.example"

texts = st.text(max_size=600) | st.from_regex(r"[A-Za-z0-9_-]{0,300}\.[A-Za-z0-9_-]{0,300}", fullmatch=True)
fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- no input crashes a reader or is accepted -------------------------------------------------------
@fast
@given(value=texts)
def test_no_text_is_a_session_a_login_state_a_nonce_or_a_link(value: str) -> None:
    for reader in (lambda: Session.unseal(RING.keys, value, NOW), lambda: LoginState.unseal(RING.keys, value, NOW),
                   lambda: check_form_nonce(RING.keys, value, SESSION, "jti-1", NOW)):
        with pytest.raises(SessionInvalid):
            reader()
    with pytest.raises(TokenInvalid):
        verify_token(value, RING.keys, NOW)


@fast
@given(payload=st.dictionaries(st.text(max_size=10), st.none() | st.booleans() | st.integers() | st.text(max_size=20), max_size=8),
       purpose=st.sampled_from(PURPOSES), other=st.sampled_from(PURPOSES))
def test_a_value_is_accepted_only_for_its_own_purpose(payload: dict[str, Any], purpose: str, other: str) -> None:
    sealed = seal(RING, purpose, {**payload, "exp": NOW + 60})
    if purpose == other:
        assert unseal(RING.keys, other, sealed, NOW)["exp"] == NOW + 60
    else:
        with pytest.raises(SessionInvalid):
            unseal(RING.keys, other, sealed, NOW)


@fast
@given(position=st.integers(min_value=0), char=st.sampled_from("AZaz09-_."))
def test_any_edit_of_a_session_cookie_is_refused(position: int, char: str) -> None:
    genuine = SESSION.seal(RING)
    index = position % len(genuine)
    edited = genuine[:index] + char + genuine[index + 1:]
    if edited == genuine:
        return
    try:
        decoded = Session.unseal(RING.keys, edited, NOW)
    except SessionInvalid:
        return
    # base64url's last character carries spare bits: an edit there may decode to the same bytes
    assert decoded == SESSION


@fast
@given(sid=st.text(min_size=1, max_size=20), jti=st.text(min_size=1, max_size=20))
def test_a_nonce_is_for_one_session_and_one_link(sid: str, jti: str) -> None:
    nonce = form_nonce(RING, SESSION, "jti-1", NOW)
    check_form_nonce(RING.keys, nonce, SESSION, "jti-1", NOW)
    if (sid, jti) != (SESSION.sid, "jti-1"):
        with pytest.raises(SessionInvalid):
            check_form_nonce(RING.keys, nonce, Session(sid, ALICE, SESSION.exp), jti, NOW)


def test_expired_and_foreign_values_are_refused() -> None:
    with pytest.raises(SessionInvalid, match="expired"):
        Session.unseal(RING.keys, SESSION.seal(RING), SESSION.exp)
    with pytest.raises(SessionInvalid, match="signature"):
        Session.unseal(RING.keys, SESSION.seal(KeyRing("k1", {"k1": b"\x01" * 32})), NOW)
    with pytest.raises(SessionInvalid, match="no known key"):
        Session.unseal(RING.keys, SESSION.seal(KeyRing("k9", {"k9": b"\x01" * 32})), NOW)


@fast
@given(body=st.text(max_size=400), content_type=st.none() | st.text(max_size=60))
def test_no_form_body_crashes_the_reader(body: str, content_type: str | None) -> None:
    outcome: DecisionForm | ApprovalRefused
    try:
        outcome = read_form(body, content_type)
    except ApprovalRefused as refusal:
        outcome = refusal
    if isinstance(outcome, ApprovalRefused):
        assert outcome.status in (400, 403, 415)
    else:
        assert outcome.decision in ("approve", "reject")


@fast
@given(headers=st.dictionaries(st.sampled_from(["origin", "sec-fetch-site", "referer"]), st.text(max_size=40)))
def test_only_the_pages_own_origin_passes(headers: dict[str, str]) -> None:
    site, origin = headers.get("sec-fetch-site", "").strip().lower(), headers.get("origin", "").strip()
    origin = "" if origin == "null" else origin
    allowed = bool(site or origin) and site in ("", "same-origin") and origin.rstrip("/") in ("", ORIGIN)
    reason = "passed"
    try:
        check_post_origin(headers, ORIGIN)
    except ApprovalRefused as refusal:
        reason = refusal.reason
    assert reason == ("passed" if allowed else "CrossSiteRequest")


@fast
@given(cookies=st.lists(st.text(max_size=80), max_size=5))
def test_no_cookie_header_crashes_the_reader(cookies: list[str]) -> None:
    assert isinstance(read_cookies(cookies), dict)


def test_a_cookie_sent_twice_counts_as_not_sent() -> None:
    assert read_cookies(["a=1", "approval_session=x", "approval_session=y"]) == {"a": "1"}


# --- the ID token -----------------------------------------------------------------------------------
ISSUER, CLIENT = "https://idp.example", "approval-page"
SIGNER = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


def client(**extra: str) -> OidcClient:
    oidc = OidcClient(SignInSettings.parse(json.dumps({"issuer": ISSUER, "client_id": CLIENT,
                                                       "redirect_uri": "https://approve.example/callback",
                                                       "jwks_uri": "https://idp.example/jwks", **extra})))
    oidc._keys = KeySet([SIGNER])
    return oidc


def id_token(key: RSAKey = SIGNER, alg: str = "RS256", **changes: Any) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "sub-alice", "email": "Alice@Example.com", "email_verified": True,
              "nonce": "n-1", "iat": NOW - 5, "exp": NOW + 300, "cognito:groups": ["release-approvers"]}
    claims.update(changes)
    return jwt.encode({"alg": alg, "kid": "idp-1"}, {k: v for k, v in claims.items() if v is not None}, key)


def test_a_genuine_id_token_gives_the_identity_with_the_groups_of_the_configured_claim() -> None:
    # GIVEN Cognito's claim configured: its groups are read
    assert client(groups_claim="cognito:groups").verify_id_token(id_token(), "n-1", NOW) == Identity(
        "sub-alice", "alice@example.com", ISSUER, ("release-approvers",))
    # GIVEN the default claim (`groups`): Cognito's claim is not read, the `groups` claim is
    assert client().verify_id_token(id_token(), "n-1", NOW).groups == ()
    assert client().verify_id_token(id_token(groups=["prod-approvers", 7]), "n-1", NOW).groups == ("prod-approvers",)


ID_TOKEN_REFUSALS = [
    ("signed by another key", lambda: id_token(key=STRANGER), "n-1", "does not verify"),
    ("another issuer", lambda: id_token(iss="https://evil.example"), "n-1", "not for this sign-in"),
    ("another client", lambda: id_token(aud="someone-else"), "n-1", "not for this sign-in"),
    ("expired", lambda: id_token(exp=NOW - 120), "n-1", "not for this sign-in"),
    ("another sign-in's nonce", lambda: id_token(), "n-2", "not for this sign-in"),
    ("no nonce", lambda: id_token(nonce=None), "n-1", "not for this sign-in"),
    ("no email", lambda: id_token(email=None), "n-1", "no subject or email"),
    ("unverified email", lambda: id_token(email_verified=False), "n-1", "not verified"),
    ("alg none", lambda: id_token().rsplit(".", 1)[0].replace(id_token().split(".")[0],
                                                              jwt.encode({"alg": "none"}, {}, None, algorithms=["none"]).split(".")[0]) + ".",
     "n-1", "does not verify"),
]


@pytest.mark.parametrize(("case", "make", "nonce", "says"), ID_TOKEN_REFUSALS, ids=[r[0] for r in ID_TOKEN_REFUSALS])
def test_a_wrong_id_token_is_refused(case: str, make: Any, nonce: str, says: str) -> None:
    oidc = client()
    oidc._key_set = lambda fresh=False: KeySet([SIGNER])  # type: ignore[method-assign]
    with pytest.raises(SignInFailed, match=says):
        oidc.verify_id_token(make(), nonce, NOW)


@settings(max_examples=100, deadline=None)
@given(value=texts)
def test_no_text_is_an_id_token(value: str) -> None:
    oidc = client()
    oidc._key_set = lambda fresh=False: KeySet([SIGNER])  # type: ignore[method-assign]
    with pytest.raises(SignInFailed):
        oidc.verify_id_token(value, "n-1", NOW)


def test_the_login_state_carries_a_pkce_s256_challenge() -> None:
    login = LoginState.begin("tok", time.time())
    assert len(login.challenge) == 43
    assert login.challenge != login.verifier
    assert LoginState.unseal(RING.keys, login.seal(RING), time.time()) == login
