"""The approval links' signing keys: the secret `{"kid", "key", "previous": {"kid", "key"}?}`.

`current` signs new links; `current` and `previous` both verify, so a link mailed before a rotation
still works for the rotation's grace period (see `podrelease.rotation.approval_key`). The secret is
read through Powertools' `SecretsProvider`, which keeps it for `KEY_CACHE_SECONDS`; a token naming a
key id the cached copy does not hold forces one fresh read (the key may have rotated since).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters import GetParameterError

from podrelease.approval.tokens import MIN_KEY_BYTES, Claims, UnknownKeyId, verify_token
from podrelease.core.errors import ConfigurationError
from podrelease.core.obs import register_secret

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

#: How long a function trusts its copy of the signing keys (the rotation's grace counts it in).
KEY_CACHE_SECONDS = 300

_KID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True)
class KeyRing:
    """The signing keys: `current` signs new tokens, every key in `keys` verifies."""

    current: str
    keys: dict[str, bytes]

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.current]


def _decode_key(entry: Any, where: str) -> tuple[str, bytes]:
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not isinstance(entry.get("key"), str):
        msg = f"approval key secret: {where} must be an object with string fields kid and key"
        raise ConfigurationError(msg)
    kid, text = entry["kid"], entry["key"].strip()
    register_secret(text)
    if not _KID_RE.fullmatch(kid):
        msg = f"approval key secret: {where} kid must be 1-64 characters of [A-Za-z0-9._:-]"
        raise ConfigurationError(msg)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"approval key secret: {where} key is not base64"
        raise ConfigurationError(msg) from exc
    if len(key) < MIN_KEY_BYTES:
        msg = f"approval key secret: {where} key must decode to at least {MIN_KEY_BYTES} bytes"
        raise ConfigurationError(msg)
    return kid, key


def parse_key_secret(secret_string: str) -> KeyRing:
    """Parse `{"kid", "key", "previous": {"kid", "key"}?}`; every key is registered for log masking."""
    register_secret(secret_string)
    try:
        data = json.loads(secret_string)
    except ValueError as exc:
        msg = "approval key secret is not JSON"
        raise ConfigurationError(msg) from exc
    current_kid, current_key = _decode_key(data, "the secret")
    keys = {current_kid: current_key}
    previous = data.get("previous")
    if previous is not None:
        old_kid, old_key = _decode_key(previous, "previous")
        keys.setdefault(old_kid, old_key)
    return KeyRing(current=current_kid, keys=keys)


class SigningKeys:
    """The key ring of one secret, cached by Powertools' `SecretsProvider` (injected) for `max_age` seconds."""

    def __init__(self, provider: SecretsProvider, secret_id: str, max_age: int = KEY_CACHE_SECONDS) -> None:
        self.provider, self.secret_id, self.max_age = provider, secret_id, max_age

    def ring(self, *, force_fetch: bool = False) -> KeyRing:
        """The keys, from the cache unless it is older than `max_age` or `force_fetch` is set."""
        try:
            # AWSCURRENT is the default, named anyway: a rotation moves the label, and the name makes the
            # read exact (moto, for one, keeps its default on the version first created).
            value = self.provider.get(self.secret_id, max_age=self.max_age, force_fetch=force_fetch, VersionStage="AWSCURRENT")
        except GetParameterError as exc:
            msg = f"approval key secret {self.secret_id} cannot be read"
            raise ConfigurationError(msg) from exc
        if not isinstance(value, str):
            msg = f"approval key secret {self.secret_id} has no SecretString"
            raise ConfigurationError(msg)
        return parse_key_secret(value)

    def verify(self, token: str, now: float | None = None) -> Claims:
        """`verify_token` against the cached keys; a token signed with a key id they lack (rotated
        after this process read the secret) is checked once more against a fresh read."""
        try:
            return verify_token(token, self.ring().keys, now)
        except UnknownKeyId:
            return verify_token(token, self.ring(force_fetch=True).keys, now)
