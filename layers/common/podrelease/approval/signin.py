"""Sign-in through the organisation's OpenID Connect provider: authorization code flow with PKCE.

On AWS the provider is the stack's Cognito user pool (its hosted UI; the pool may federate an
external OIDC or SAML provider) or, with `SignInIssuerUrl`, any OIDC provider directly; locally it is
the embedded provider of `local.oidc`. Its settings are one JSON document (an SSM parameter the
template writes, `SIGN_IN_PARAMETER`): `issuer`, `client_id`, `redirect_uri` (this page's
`/callback`) and optionally `authorization_endpoint`, `token_endpoint`, `jwks_uri` (otherwise read
from the issuer's discovery document) and `groups_claim` (the ID token claim listing the person's
groups, for the approver policy; default `groups`). The client is public: PKCE, no client secret.

The ID token is checked with joserfc: signature against the provider's JWKS (one fresh read when the
token names a key id the cached set lacks), `iss`, `aud`, `exp`, `iat`, `nonce`, and a non-empty
`sub` and `email` (an email the provider marks unverified is refused).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from podrelease.approval.session import Identity
from podrelease.core.errors import ConfigurationError, ReleaseError

if TYPE_CHECKING:
    from podrelease.approval.session import LoginState

#: Signature algorithms accepted on ID tokens (Cognito and the local provider sign with RS256).
ID_TOKEN_ALGORITHMS = ["RS256", "ES256"]
HTTP_TIMEOUT_SECONDS = 10
#: Clock skew allowed on exp/iat.
LEEWAY_SECONDS = 60
MAX_ID_TOKEN_BYTES = 16 * 1024
#: The ID token claim holding the person's groups, unless the settings name another (Cognito's is `cognito:groups`).
DEFAULT_GROUPS_CLAIM = "groups"


class SignInFailed(ReleaseError):
    """The sign-in did not produce a trustworthy identity (provider error, bad or foreign ID token)."""


@dataclass(frozen=True)
class SignInSettings:
    issuer: str
    client_id: str
    redirect_uri: str
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    jwks_uri: str = ""
    groups_claim: str = DEFAULT_GROUPS_CLAIM

    @classmethod
    def parse(cls, document: Any) -> SignInSettings:
        try:
            data = json.loads(document) if isinstance(document, str) else document
        except ValueError as exc:
            raise ConfigurationError("sign-in settings are not JSON") from exc
        if not isinstance(data, dict):
            raise ConfigurationError("sign-in settings must be a JSON object")
        values = {}
        for name in ("issuer", "client_id", "redirect_uri", "authorization_endpoint", "token_endpoint", "jwks_uri",
                     "groups_claim"):
            value = data.get(name, "")
            if not isinstance(value, str):
                raise ConfigurationError(f"sign-in settings: {name} must be a string")
            values[name] = value.strip()
        values["groups_claim"] = values["groups_claim"] or DEFAULT_GROUPS_CLAIM
        for name in ("issuer", "client_id", "redirect_uri"):
            if not values[name]:
                raise ConfigurationError(f"sign-in settings: {name} is missing")
        for name in ("issuer", "redirect_uri", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if values[name] and not values[name].startswith(("https://", "http://")):
                raise ConfigurationError(f"sign-in settings: {name} must be an http(s) URL")
        return cls(**values)

    @property
    def origin(self) -> str:
        """This page's origin (scheme://host[:port]), from the registered redirect URI."""
        parts = urllib.parse.urlsplit(self.redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secure(self) -> bool:
        return self.redirect_uri.startswith("https://")


def _http_json(request: urllib.request.Request | str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as reply:  # noqa: S310 - http(s) checked in settings
            data = json.loads(reply.read(1024 * 1024))
    except urllib.error.HTTPError as exc:
        detail = exc.read(400).decode(errors="replace")
        raise SignInFailed(f"the sign-in provider answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise SignInFailed(f"the sign-in provider could not be reached or read: {type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise SignInFailed("the sign-in provider's answer is not a JSON object")
    return data


class OidcClient:
    """The page's OIDC client: where to send the browser, how to turn the code into an Identity."""

    def __init__(self, settings: SignInSettings) -> None:
        self.settings = settings
        self._discovered: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def _endpoint(self, name: str) -> str:
        configured = getattr(self.settings, name)
        if configured:
            return str(configured)
        if self._discovered is None:
            self._discovered = _http_json(self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration")
        value = self._discovered.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise SignInFailed(f"the provider's discovery document has no {name}")
        return value

    def authorize_url(self, login: LoginState) -> str:
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.settings.client_id, "redirect_uri": self.settings.redirect_uri,
            "scope": "openid email profile", "state": login.state, "nonce": login.nonce,
            "code_challenge": login.challenge, "code_challenge_method": "S256",
        })
        endpoint = self._endpoint("authorization_endpoint")
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def redeem(self, code: str, login: LoginState, now: float | None = None) -> Identity:
        """Exchange the authorization code (with the PKCE verifier) and check the ID token."""
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.settings.redirect_uri,
            "client_id": self.settings.client_id, "code_verifier": login.verifier,
        }).encode()
        request = urllib.request.Request(self._endpoint("token_endpoint"), data=body, method="POST",  # noqa: S310 - http(s) checked
                                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                                  "Accept": "application/json"})
        id_token = _http_json(request).get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("the provider's token answer has no id_token")
        return self.verify_id_token(id_token, login.nonce, now)

    def _key_set(self, *, fresh: bool = False) -> KeySet:
        if self._keys is None or fresh:
            try:
                self._keys = KeySet.import_key_set(_http_json(self._endpoint("jwks_uri")))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise SignInFailed("the provider's JWKS cannot be read") from exc
        return self._keys

    def _decode(self, id_token: str) -> dict[str, Any]:
        try:
            return dict(jwt.decode(id_token, self._key_set(), algorithms=ID_TOKEN_ALGORITHMS).claims)
        except (JoseError, ValueError, TypeError, KeyError) as first:
            # The provider may have rotated its keys since the set was cached: read it once more.
            try:
                return dict(jwt.decode(id_token, self._key_set(fresh=True), algorithms=ID_TOKEN_ALGORITHMS).claims)
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise SignInFailed(f"the ID token does not verify ({type(exc).__name__})") from first

    def verify_id_token(self, id_token: str, nonce: str, now: float | None = None) -> Identity:
        """The Identity of a genuine ID token of this provider, for this client, this sign-in, now."""
        if not isinstance(id_token, str) or len(id_token) > MAX_ID_TOKEN_BYTES:
            raise SignInFailed("the ID token is missing or too long")
        claims = self._decode(id_token)
        current = int(time.time() if now is None else now)
        registry = jwt.JWTClaimsRegistry(
            now=current, leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            exp={"essential": True}, iat={"essential": True},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise SignInFailed(f"the ID token is not for this sign-in ({type(exc).__name__})") from exc
        subject, email = claims.get("sub"), claims.get("email")
        if not isinstance(subject, str) or not subject or not isinstance(email, str) or "@" not in email:
            raise SignInFailed("the ID token carries no subject or email")
        if claims.get("email_verified") in (False, "false"):
            raise SignInFailed("the provider says the email is not verified")
        value = claims.get(self.settings.groups_claim)
        groups = [g for g in value if isinstance(g, str)] if isinstance(value, list) else []
        return Identity(subject=subject, email=email.strip().lower(), issuer=self.settings.issuer, groups=tuple(groups))
