"""The approval link's token: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first segment))`.

A token binds one approver to one release id, execution and digest until `exp`, and names the key
version (`kid`) that signed it. The MAC is checked in constant time before any claim is believed.

Hand-written on purpose, not a JWT library: the format is two base64url segments and one HMAC, a
few dozen lines of the standard library, with no algorithm header to negotiate (no `alg: none`, no
key confusion) and no dependency added to the layer of every function. The rotation function
(`podrelease.rotation.approval_key`) mints and verifies probe tokens with these same functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from podrelease.core.errors import ConfigurationError, TokenExpired, TokenInvalid

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A token longer than this is refused before it is decoded.
MAX_TOKEN_BYTES = 2048
#: Signing keys shorter than this are a configuration error (HMAC-SHA256 wants 256 bits).
MIN_KEY_BYTES = 32

_CLAIM_TYPES: dict[str, type] = {"rid": str, "exe": str, "dig": str, "apr": str, "exp": int, "jti": str, "kid": str}
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class UnknownKeyId(TokenInvalid):
    """The token names a key version this function does not know (maybe rotated since the cache)."""


@dataclass(frozen=True)
class Claims:
    """What an approval token asserts: this approver may decide this release of this digest until `exp`."""

    rid: str
    exe: str
    dig: str
    apr: str
    exp: int
    jti: str
    kid: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(segment: str) -> bytes:
    if not _B64URL_RE.fullmatch(segment):
        msg = "approval token is not base64url"
        raise TokenInvalid(msg)
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        msg = "approval token is not base64url"
        raise TokenInvalid(msg) from exc


def _mac(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def mint_token(
    key: bytes,
    kid: str,
    *,
    release_id: str,
    execution_arn: str,
    digest: str,
    approver: str,
    expires_at: int,
    token_id: str | None = None,
) -> str:
    """Sign a compact approval token for one approver of one release."""
    if len(key) < MIN_KEY_BYTES:
        msg = f"approval signing key must be at least {MIN_KEY_BYTES} bytes"
        raise ConfigurationError(msg)
    claims = Claims(
        rid=release_id,
        exe=execution_arn,
        dig=digest,
        apr=approver,
        exp=int(expires_at),
        jti=token_id or secrets.token_urlsafe(16),
        kid=kid,
    )
    payload = b64encode(json.dumps(claims.to_dict(), sort_keys=True, separators=(",", ":")).encode())
    token = f"{payload}.{b64encode(_mac(key, payload))}"
    if len(token) > MAX_TOKEN_BYTES:
        msg = f"approval token would be {len(token)} bytes, over the {MAX_TOKEN_BYTES}-byte limit; shorten the release id"
        raise ConfigurationError(msg)
    return token


def _parse_claims(raw: bytes) -> Claims:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        msg = "approval token claims are not JSON"
        raise TokenInvalid(msg) from exc
    if not isinstance(data, dict) or set(data) != set(_CLAIM_TYPES):
        msg = "approval token claims are not the expected set"
        raise TokenInvalid(msg)
    for name, kind in _CLAIM_TYPES.items():
        value = data[name]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            msg = f"approval token claim {name} has the wrong type"
            raise TokenInvalid(msg)
    return Claims(**data)


def verify_token(token: str, keys: Mapping[str, bytes], now: float | None = None) -> Claims:
    """Return the claims of a genuine, unexpired token; raise TokenInvalid or TokenExpired otherwise.

    The MAC is checked (in constant time) before any claim is believed, so a forged token is always
    TokenInvalid, never TokenExpired. A token naming a key version not in `keys` is UnknownKeyId.
    """
    if not isinstance(token, str) or not token:
        msg = "approval token is missing"
        raise TokenInvalid(msg)
    if len(token) > MAX_TOKEN_BYTES:
        msg = f"approval token is longer than {MAX_TOKEN_BYTES} bytes"
        raise TokenInvalid(msg)
    parts = token.split(".")
    if len(parts) != 2:
        msg = "approval token does not have two parts"
        raise TokenInvalid(msg)
    payload, mac_segment = parts
    claims = _parse_claims(b64decode(payload))
    given_mac = b64decode(mac_segment)
    key = keys.get(claims.kid)
    if key is None:
        msg = f"approval token was signed with unknown key version {claims.kid!r}"
        raise UnknownKeyId(msg)
    if not hmac.compare_digest(_mac(key, payload), given_mac):
        msg = "approval token signature does not verify"
        raise TokenInvalid(msg)
    current = time.time() if now is None else now
    if claims.exp <= current:
        msg = "approval link has expired"
        raise TokenExpired(msg)
    return claims
