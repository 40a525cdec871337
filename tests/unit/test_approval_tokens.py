"""Approval tokens: what verifies, what is refused and with which error."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest

from podrelease.approval.links import (
    MAX_TOKEN_BYTES,
    Claims,
    KeyRing,
    load_keys,
    mint_token,
    parse_key_secret,
    verify_token,
)
from podrelease.core.errors import ConfigurationError, TokenExpired, TokenInvalid

if TYPE_CHECKING:
    from collections.abc import Callable

NOW = 1_800_000_000
KEY_V2 = bytes(range(32))
KEY_V1 = bytes(range(100, 132))
OTHER_KEY = b"\x07" * 32
KEYS = {"v2": KEY_V2, "v1": KEY_V1}
DIGEST = "sha256:" + "ab" * 32
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:release:podinfo-abc"


def mint(key: bytes = KEY_V2, kid: str = "v2", **overrides: object) -> str:
    claims: dict[str, object] = {
        "release_id": "podinfo-abc",
        "execution_arn": EXECUTION,
        "digest": DIGEST,
        "approver": "alice@example.com",
        "expires_at": NOW + 3600,
        "token_id": "jti-1",
    }
    claims.update(overrides)
    return mint_token(key, kid, **claims)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def with_claims(token: str, **changes: object) -> str:
    """The same MAC over different claims: what an attacker editing the link produces."""
    payload, mac = token.split(".")
    claims = json.loads(unb64(payload))
    claims.update(changes)
    return b64(json.dumps(claims).encode()) + "." + mac


def flip_mac(token: str) -> str:
    payload, mac = token.split(".")
    raw = bytearray(unb64(mac))
    raw[0] ^= 1
    return payload + "." + b64(bytes(raw))


EXPECTED = Claims(rid="podinfo-abc", exe=EXECUTION, dig=DIGEST, apr="alice@example.com", exp=NOW + 3600, jti="jti-1", kid="v2")

VALID: list[tuple[str, Callable[[], str], Claims]] = [
    ("current key", mint, EXPECTED),
    (
        "previous key still valid after rotation",
        lambda: mint(KEY_V1, "v1"),
        Claims(**{**EXPECTED.to_dict(), "kid": "v1"}),
    ),
    ("one second before expiry", lambda: mint(expires_at=NOW + 1), Claims(**{**EXPECTED.to_dict(), "exp": NOW + 1})),
]

REFUSED: list[tuple[str, Callable[[], str], type[Exception]]] = [
    ("tampered digest", lambda: with_claims(mint(), dig="sha256:" + "cd" * 32), TokenInvalid),
    ("tampered approver", lambda: with_claims(mint(), apr="mallory@example.com"), TokenInvalid),
    ("tampered expiry", lambda: with_claims(mint(expires_at=NOW - 10), exp=NOW + 10**6), TokenInvalid),
    ("tampered MAC", lambda: flip_mac(mint()), TokenInvalid),
    ("MAC removed", lambda: mint().split(".")[0] + ".", TokenInvalid),
    ("signed with another key", lambda: mint(OTHER_KEY, "v2"), TokenInvalid),
    ("unknown key version", lambda: mint(OTHER_KEY, "v9"), TokenInvalid),
    ("kid switched to the previous key", lambda: with_claims(mint(), kid="v1"), TokenInvalid),
    ("expired", lambda: mint(expires_at=NOW - 1), TokenExpired),
    ("expires exactly now", lambda: mint(expires_at=NOW), TokenExpired),
    ("oversized", lambda: mint() + "A" * MAX_TOKEN_BYTES, TokenInvalid),
    ("garbage", lambda: "not a token", TokenInvalid),
    ("empty", lambda: "", TokenInvalid),
    ("three parts", lambda: mint() + ".AAAA", TokenInvalid),
    ("not base64url", lambda: "%%%%." + mint().split(".")[1], TokenInvalid),
    ("claims not JSON", lambda: b64(b"\xff\xfe") + "." + mint().split(".")[1], TokenInvalid),
    ("claims a list", lambda: b64(b"[1, 2]") + "." + mint().split(".")[1], TokenInvalid),
    ("claim missing", lambda: _resigned(lambda c: c.pop("dig")), TokenInvalid),
    ("extra claim", lambda: _resigned(lambda c: c.update(admin=True)), TokenInvalid),
    ("expiry is a string", lambda: _resigned(lambda c: c.update(exp=str(NOW + 60))), TokenInvalid),
    ("expiry is a boolean", lambda: _resigned(lambda c: c.update(exp=True)), TokenInvalid),
]


def _resigned(edit: Callable[[dict[str, object]], object]) -> str:
    """Correctly signed, malformed claims: proves the claim checks, not the MAC, refuse them."""
    import hashlib
    import hmac

    payload, _ = mint().split(".")
    claims = json.loads(unb64(payload))
    edit(claims)
    new_payload = b64(json.dumps(claims).encode())
    return new_payload + "." + b64(hmac.new(KEY_V2, new_payload.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize(("case", "make", "expected"), VALID, ids=[c[0] for c in VALID])
def test_valid_tokens_verify(case: str, make: Callable[[], str], expected: Claims) -> None:
    assert verify_token(make(), KEYS, now=NOW) == expected, case


@pytest.mark.parametrize(("case", "make", "error"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_tokens(
    case: str,
    make: Callable[[], str],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        verify_token(make(), KEYS, now=NOW)


def test_forged_expired_token_is_invalid_not_expired() -> None:
    # A forger must not learn anything from the error: the MAC is checked before the expiry.
    with pytest.raises(TokenInvalid):
        verify_token(mint(OTHER_KEY, "v2", expires_at=NOW - 10), KEYS, now=NOW)


def test_token_is_compact_and_distinct_per_approver() -> None:
    alice = mint(token_id=None)
    bob = mint(approver="bob@example.com", token_id=None)
    assert alice.count(".") == 1
    assert len(alice) < MAX_TOKEN_BYTES
    assert alice != bob
    assert verify_token(bob, KEYS, now=NOW).apr == "bob@example.com"


def test_short_signing_key_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        mint(b"short", "v2")


def secret_json(kid: str, key: bytes, previous: tuple[str, bytes] | None = None) -> str:
    data: dict[str, object] = {"kid": kid, "key": base64.b64encode(key).decode()}
    if previous:
        data["previous"] = {"kid": previous[0], "key": base64.b64encode(previous[1]).decode()}
    return json.dumps(data)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (secret_json("v2", KEY_V2), KeyRing(current="v2", keys={"v2": KEY_V2})),
        (secret_json("v2", KEY_V2, ("v1", KEY_V1)), KeyRing(current="v2", keys={"v2": KEY_V2, "v1": KEY_V1})),
    ],
    ids=["current only", "current and previous"],
)
def test_parse_key_secret(secret: str, expected: KeyRing) -> None:
    assert parse_key_secret(secret) == expected


@pytest.mark.parametrize(
    "secret",
    [
        "not json",
        json.dumps({"kid": "v1"}),
        json.dumps({"kid": "v1", "key": base64.b64encode(b"too short").decode()}),
        json.dumps({"kid": "v1", "key": "!!not base64!!"}),
        json.dumps({"kid": "has space", "key": base64.b64encode(KEY_V1).decode()}),
        json.dumps({"kid": "v2", "key": base64.b64encode(KEY_V2).decode(), "previous": {"kid": "v1"}}),
    ],
    ids=["not json", "no key", "short key", "not base64", "bad kid", "previous without key"],
)
def test_bad_key_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_key_secret(secret)


class FakeSecrets:
    """Counts reads, to show the cache."""

    def __init__(self, secret: str) -> None:
        self.secret, self.reads = secret, 0

    def get_secret_value(self, SecretId: str, VersionStage: str = "AWSCURRENT") -> dict[str, str]:
        self.reads += 1
        return {"SecretString": self.secret}


def test_load_keys_caches_for_max_age() -> None:
    client = FakeSecrets(secret_json("v1", KEY_V1))
    first = load_keys(client, "cache-test", now=1000.0)
    client.secret = secret_json("v2", KEY_V2, ("v1", KEY_V1))
    assert load_keys(client, "cache-test", now=1200.0) == first
    assert client.reads == 1
    assert load_keys(client, "cache-test", now=1301.0) == KeyRing(current="v2", keys={"v2": KEY_V2, "v1": KEY_V1})
    assert client.reads == 2
