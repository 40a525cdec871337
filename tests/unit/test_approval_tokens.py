"""Approval tokens: what verifies, what is refused and with which error."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from podrelease.approval.keys import KeyRing, SigningKeys, parse_key_secret
from podrelease.approval.tokens import MAX_TOKEN_BYTES, Claims, mint_token, verify_token
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
    """A Secrets Manager client that counts reads, to show the cache."""

    def __init__(self, secret: str) -> None:
        self.secret, self.reads, self.stages = secret, 0, []

    def get_secret_value(self, SecretId: str, VersionStage: str = "AWSCURRENT") -> dict[str, str]:
        self.reads += 1
        self.stages.append(VersionStage)
        return {"SecretString": self.secret}


def signing_keys(client: FakeSecrets, max_age: int = 300) -> SigningKeys:
    return SigningKeys(SecretsProvider(boto3_client=client), "cache-test", max_age=max_age)  # type: ignore[arg-type]


def test_signing_keys_are_cached_for_max_age() -> None:
    client = FakeSecrets(secret_json("v1", KEY_V1))
    keys = signing_keys(client)
    first = keys.ring()
    client.secret = secret_json("v2", KEY_V2, ("v1", KEY_V1))  # rotated meanwhile

    assert keys.ring() == first == KeyRing(current="v1", keys={"v1": KEY_V1})
    assert client.reads == 1
    assert keys.ring(force_fetch=True) == KeyRing(current="v2", keys={"v2": KEY_V2, "v1": KEY_V1})
    assert client.reads == 2
    assert client.stages == ["AWSCURRENT", "AWSCURRENT"]


def test_signing_keys_without_cache_read_every_time() -> None:
    client = FakeSecrets(secret_json("v1", KEY_V1))
    keys = signing_keys(client, max_age=0)
    keys.ring()
    client.secret = secret_json("v2", KEY_V2, ("v1", KEY_V1))
    assert keys.ring().current == "v2"
    assert client.reads == 2


def test_a_token_of_a_key_rotated_after_the_cache_is_verified_after_one_fresh_read() -> None:
    client = FakeSecrets(secret_json("v1", KEY_V1))
    keys = signing_keys(client)
    assert keys.verify(mint(KEY_V1, "v1"), NOW).kid == "v1"
    client.secret = secret_json("v2", KEY_V2, ("v1", KEY_V1))  # rotated: v2 signs, v1 is previous

    assert keys.verify(mint(KEY_V1, "v1"), NOW).kid == "v1"  # known kid: from the cache
    assert client.reads == 1
    assert keys.verify(mint(KEY_V2, "v2"), NOW).kid == "v2"  # unknown kid: read once more
    assert client.reads == 2
    with pytest.raises(TokenInvalid, match="unknown key version 'v9'"):
        keys.verify(mint(OTHER_KEY, "v9"), NOW)  # still unknown after the fresh read: refused
    assert client.reads == 3


def test_an_unreadable_key_secret_is_a_configuration_error() -> None:
    class Denied(FakeSecrets):
        def get_secret_value(self, SecretId: str, VersionStage: str = "AWSCURRENT") -> dict[str, str]:
            raise RuntimeError("AccessDeniedException")

    with pytest.raises(ConfigurationError, match="cannot be read"):
        signing_keys(Denied("")).ring()
