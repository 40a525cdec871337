"""Reading untrusted bytes: the one JSON-object reader and the one base64 reader of the verify package.

Everything the gates read from a registry or a bundle (manifests, referrers indexes, simple-signing
payloads, DSSE envelopes, sigstore bundles, in-toto statements, transparency-log entries) passes
through these two, so every size limit and every refusal is the same `MalformedSignature`, named
after what was being read.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from podrelease.core.errors import MalformedSignature

#: Largest document read as JSON by default (bytes): signature payloads and bundles are a few KiB.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


def json_object(raw: bytes | str, what: str, *, limit: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """`raw` as a JSON object of at most `limit` bytes; anything else is MalformedSignature naming `what`."""
    if len(raw) > limit:
        msg = f"{what} of {len(raw)} bytes exceeds the {limit}-byte limit"
        raise MalformedSignature(msg)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        msg = f"{what} is not valid JSON"
        raise MalformedSignature(msg) from exc
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
