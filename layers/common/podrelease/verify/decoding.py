"""Reading untrusted bytes: the one JSON-object reader and the one base64 reader of the verify package.

Everything the gates read from a registry or a bundle (manifests, referrers indexes, simple-signing
payloads, DSSE envelopes, sigstore bundles, in-toto statements, transparency-log entries) passes
through these two, so every size limit and every refusal is the same `MalformedSignature`, named
after what was being read.

The JSON reader is strict, because a signed document must mean one thing to every reader: the
bytes must be UTF-8 (no UTF-16/32 guessing, no byte-order mark), every object's keys distinct (Go's
decoder keeps the last duplicate, Python's too, others the first: a payload naming
`docker-manifest-digest` twice could verify as one image and deploy as another), nothing but
whitespace after the value, and no `NaN`/`Infinity`. Each refusal names its reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from podrelease.core.errors import MalformedSignature

#: Largest document read as JSON by default (bytes): signature payloads and bundles are a few KiB.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


_JSON_WHITESPACE = " \t\r\n"


class _DuplicateKey(ValueError):
    pass


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(name)


_STRICT = json.JSONDecoder(object_pairs_hook=_distinct_keys, parse_constant=_no_constant)


def strict_json(raw: bytes | str, what: str) -> Any:
    """`raw` parsed by the strict rules above (any JSON value); MalformedSignature naming `what`
    and the reason otherwise."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = f"{what} is not UTF-8 (byte {exc.start})"
            raise MalformedSignature(msg) from exc
    else:
        text = raw
    if text.startswith("\ufeff"):
        msg = f"{what} starts with a byte-order mark"
        raise MalformedSignature(msg)
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    try:
        value, end = _STRICT.raw_decode(text, start)
    except _DuplicateKey as exc:
        msg = f"{what} has the key {str(exc)[:80]!r} more than once in one object"
        raise MalformedSignature(msg) from exc
    except (ValueError, RecursionError) as exc:
        msg = f"{what} is not valid JSON"
        raise MalformedSignature(msg) from exc
    if text[end:].strip(_JSON_WHITESPACE):
        msg = f"{what} has trailing data after its JSON value (at character {end})"
        raise MalformedSignature(msg)
    return value


def json_object(raw: bytes | str, what: str, *, limit: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """`raw` as a JSON object of at most `limit` bytes, read by `strict_json`; anything else is
    MalformedSignature naming `what`."""
    if len(raw) > limit:
        msg = f"{what} of {len(raw)} bytes exceeds the {limit}-byte limit"
        raise MalformedSignature(msg)
    value = strict_json(raw, what)
    if not isinstance(value, dict):
        msg = f"{what} is not a JSON object"
        raise MalformedSignature(msg)
    return value


def base64_bytes(value: Any, what: str, limit: int, *, urlsafe: bool = True) -> bytes:
    """The bytes of a base64 string that decodes to at most about `limit` bytes.

    `urlsafe`: also accept the URL-safe alphabet (some signature producers use it); transparency-log
    fields are standard base64 only."""
    if not isinstance(value, str) or not value:
        msg = f"{what} is missing or not a string"
        raise MalformedSignature(msg)
    if len(value) > limit * 4 // 3 + 4:
        msg = f"{what} is longer than {limit} bytes"
        raise MalformedSignature(msg)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        if not urlsafe:
            msg = f"{what} is not base64"
            raise MalformedSignature(msg) from exc
    try:
        return base64.urlsafe_b64decode(value)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is not base64"
        raise MalformedSignature(msg) from exc
