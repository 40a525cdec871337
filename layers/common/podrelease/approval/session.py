"""The approval page's browser state: the sign-in cookie, the session cookie and the form nonce.

All three are sealed values in the approval token's shape, `base64url(JSON) "." base64url(HMAC)`,
under keys derived from the approval signing key (`podrelease.approval.keys`), one key per purpose:
a session cookie is never accepted as a login-state cookie, a form nonce or an approval link, nor
the other way round. The key id travels in the payload, so a key rotation keeps sessions working
for the rotation's grace period, as it keeps the links working.

- login state (`approval_login`, 10 minutes, `SameSite=Lax`): the OIDC `state`, `nonce` and PKCE
  verifier of one sign-in, and the approval link it started from. Lax, not Strict: the provider
  sends the browser back with a top-level cross-site GET, on which a Strict cookie is not sent.
- session (`approval_session`, 15 minutes, `SameSite=Strict`): who signed in (provider subject,
  email, groups, issuer). Strict: no cross-site request ever carries it, so a form on another site
  posts without a session and decides nothing.
- form nonce: bound to the session id and the link's token id, issued with the page, checked in
  constant time on the POST.

Both cookies are `HttpOnly` and, when the page is served over HTTPS, `Secure`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from podrelease.approval.tokens import MAX_TOKEN_BYTES, b64decode, b64encode
from podrelease.core.errors import TokenInvalid

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podrelease.approval.keys import KeyRing

LOGIN_COOKIE = "approval_login"
SESSION_COOKIE = "approval_session"
LOGIN_SECONDS = 600
SESSION_SECONDS = 900
#: How long the page's form stays usable after it was shown.
FORM_SECONDS = SESSION_SECONDS
#: A cookie longer than this is refused before it is decoded (browsers keep at most 4096 bytes).
MAX_COOKIE_BYTES = 4096
MAX_GROUPS = 50


class SessionInvalid(TokenInvalid):
    """A cookie or form nonce that is damaged, forged, expired or made for another purpose."""


def _purpose_key(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, f"podrelease/approval/{purpose}".encode(), hashlib.sha256).digest()


def seal(ring: KeyRing, purpose: str, payload: Mapping[str, Any]) -> str:
    """`payload` (with the signing key's id added) sealed for one purpose."""
    body = b64encode(json.dumps({**payload, "kid": ring.current}, sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(_purpose_key(ring.signing_key, purpose), body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{b64encode(mac)}"


def unseal(keys: Mapping[str, bytes], purpose: str, value: str, now: float) -> dict[str, Any]:
    """The payload of a genuine, unexpired value sealed for `purpose`; SessionInvalid otherwise. The MAC is
    checked (in constant time) before anything in the payload is believed."""
    if not isinstance(value, str) or not value or len(value) > MAX_COOKIE_BYTES:
        msg = f"{purpose} is missing or too long"
        raise SessionInvalid(msg)
    parts = value.split(".")
    if len(parts) != 2:
        msg = f"{purpose} does not have two parts"
        raise SessionInvalid(msg)
    try:
        raw, given = b64decode(parts[0]), b64decode(parts[1])
        data = json.loads(raw)
    except (TokenInvalid, UnicodeDecodeError, ValueError) as exc:
        msg = f"{purpose} is not readable"
        raise SessionInvalid(msg) from exc
    kid = data.get("kid") if isinstance(data, dict) else None
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        msg = f"{purpose} names no known key"
        raise SessionInvalid(msg)
    expected = hmac.new(_purpose_key(key, purpose), parts[0].encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        msg = f"{purpose} signature does not verify"
        raise SessionInvalid(msg)
    exp = data.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
        msg = f"{purpose} has expired"
        raise SessionInvalid(msg)
    return dict(data)


def _text(data: Mapping[str, Any], name: str, purpose: str, *, allow_empty: bool = False) -> str:
    value = data.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        msg = f"{purpose}: {name} is missing"
        raise SessionInvalid(msg)
    return value


# --- the sign-in in progress ----------------------------------------------------------------------
@dataclass(frozen=True)
class LoginState:
    """One sign-in: what the provider must send back (`state`), what the ID token must carry
    (`nonce`), the PKCE verifier, and the approval link's token to return to."""

    state: str
    nonce: str
    verifier: str
    link_token: str
    exp: int

    @classmethod
    def begin(cls, link_token: str, now: float) -> LoginState:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), link_token,
                   int(now) + LOGIN_SECONDS)

    @property
    def challenge(self) -> str:
        """The PKCE S256 challenge of the verifier (RFC 7636)."""
        return b64encode(hashlib.sha256(self.verifier.encode("ascii")).digest())

    def seal(self, ring: KeyRing) -> str:
        return seal(ring, LOGIN_COOKIE, asdict(self))

    @classmethod
    def unseal(cls, keys: Mapping[str, bytes], value: str, now: float) -> LoginState:
        data = unseal(keys, LOGIN_COOKIE, value, now)
        link = _text(data, "link_token", LOGIN_COOKIE)
        if len(link) > MAX_TOKEN_BYTES:
            raise SessionInvalid(f"{LOGIN_COOKIE}: link_token is too long")
        return cls(_text(data, "state", LOGIN_COOKIE), _text(data, "nonce", LOGIN_COOKIE),
                   _text(data, "verifier", LOGIN_COOKIE), link, int(data["exp"]))


# --- the signed-in person -------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Who signed in, as the provider's ID token says: what an approver policy decides on."""

    subject: str
    email: str
    issuer: str
    groups: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Session:
    sid: str
    identity: Identity
    exp: int

    @classmethod
    def start(cls, identity: Identity, now: float) -> Session:
        return cls(secrets.token_urlsafe(16), identity, int(now) + SESSION_SECONDS)

    def seal(self, ring: KeyRing) -> str:
        i = self.identity
        return seal(ring, SESSION_COOKIE, {"sid": self.sid, "sub": i.subject, "email": i.email, "iss": i.issuer,
                                           "groups": list(i.groups), "exp": self.exp})

    @classmethod
    def unseal(cls, keys: Mapping[str, bytes], value: str, now: float) -> Session:
        data = unseal(keys, SESSION_COOKIE, value, now)
        groups = data.get("groups")
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS or not all(isinstance(g, str) for g in groups):
            raise SessionInvalid(f"{SESSION_COOKIE}: groups is not a list of strings")
        identity = Identity(_text(data, "sub", SESSION_COOKIE), _text(data, "email", SESSION_COOKIE),
                            _text(data, "iss", SESSION_COOKIE), tuple(groups))
        return cls(_text(data, "sid", SESSION_COOKIE), identity, int(data["exp"]))


# --- the page's form nonce ------------------------------------------------------------------------
def form_nonce(ring: KeyRing, session: Session, token_id: str, now: float) -> str:
    """A fresh nonce for one page shown to `session` for the link `token_id`."""
    return seal(ring, "form", {"sid": session.sid, "jti": token_id, "n": secrets.token_urlsafe(12),
                               "exp": int(now) + FORM_SECONDS})


def check_form_nonce(keys: Mapping[str, bytes], nonce: str, session: Session, token_id: str, now: float) -> None:
    """SessionInvalid unless `nonce` was issued by this page to this session for this link."""
    data = unseal(keys, "form", nonce, now)
    sid, jti = _text(data, "sid", "form"), _text(data, "jti", "form")
    if not (hmac.compare_digest(sid.encode(), session.sid.encode()) and hmac.compare_digest(jti.encode(), token_id.encode())):
        msg = "form nonce was issued to another session or link"
        raise SessionInvalid(msg)


# --- cookies --------------------------------------------------------------------------------------
def set_cookie(name: str, value: str, *, max_age: int, secure: bool, same_site: str) -> str:
    """A `Set-Cookie` value: HttpOnly always, Secure when served over HTTPS."""
    flags = f"; Max-Age={max_age}; Path=/; HttpOnly; SameSite={same_site}"
    return f"{name}={value}{flags}{'; Secure' if secure else ''}"


def clear_cookie(name: str, *, secure: bool, same_site: str) -> str:
    return set_cookie(name, "", max_age=0, secure=secure, same_site=same_site)


def read_cookies(cookies: list[str] | None) -> dict[str, str]:
    """name -> value of the request's cookies (Function URL payload 2.0 lists them one by one); a
    name sent twice counts as not sent (no guessing which one the browser meant)."""
    found: dict[str, str] = {}
    repeated: set[str] = set()
    for entry in cookies or []:
        for part in str(entry).split(";"):
            name, sep, value = part.strip().partition("=")
            if not sep or not name:
                continue
            if name in found:
                repeated.add(name)
            found[name] = value.strip()
    return {k: v for k, v in found.items() if k not in repeated}


def now_or(now: float | None) -> float:
    return time.time() if now is None else now
