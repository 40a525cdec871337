"""Strict signed payloads: every JSON a signature covers is read once, by one strict reader.

GIVEN a document that a trusted key really signed (a simple-signing payload, an in-toto statement
in a DSSE envelope, the sigstore bundle around it) but that two JSON readers could read two ways
(a key twice, bytes that are not UTF-8, data after the value) WHEN the gate verifies it THEN it is
refused as MalformedSignature naming the document and the reason, whatever the signature says.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from local import signing
from podrelease.core.errors import MalformedSignature
from podrelease.verify.decoding import json_object, strict_json
from podrelease.verify.envelopes import verify_bundle, verify_simple_signing
from podrelease.verify.trust_policy import TrustPolicy

IMAGE = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
KEY, PEM = signing.generate_key()
POLICY = TrustPolicy.from_pem(PEM)

DUPLICATE = "more than once in one object"
NOT_UTF8 = "is not UTF-8"
TRAILING = "has trailing data after its JSON value"


def _statement(digest: str = IMAGE) -> bytes:
    return signing.cosign_sign_statement(digest)


# Each row: the signed document's bytes, as a trusted key signs them, and where the reader names it.
def simple_signing(payload: bytes) -> MalformedSignature:
    signature = base64.b64encode(signing.sign(KEY, payload)).decode()
    with pytest.raises(MalformedSignature) as caught:
        verify_simple_signing(payload, signature, POLICY, IMAGE)
    return caught.value


def in_toto(statement: bytes) -> MalformedSignature:
    with pytest.raises(MalformedSignature) as caught:
        verify_bundle(signing.dsse_bundle(KEY, statement), POLICY, IMAGE)
    return caught.value


def bundle(document: bytes) -> MalformedSignature:
    with pytest.raises(MalformedSignature) as caught:
        verify_bundle(document, POLICY, IMAGE)
    return caught.value


SS = signing.simple_signing_payload("registry/podinfo", IMAGE)
GOOD_BUNDLE = signing.dsse_bundle(KEY, _statement())

ROWS: list[tuple[str, Callable[[bytes], MalformedSignature], bytes, str]] = [
    ("simple-signing: digest twice", simple_signing,
     SS.replace(b'"image":{', b'"image":{"docker-manifest-digest":"' + OTHER.encode() + b'",'), DUPLICATE),
    ("simple-signing: not UTF-8", simple_signing, SS.replace(b'"optional":null', b'"optional":"\xff"'), NOT_UTF8),
    ("simple-signing: UTF-16", simple_signing, SS.decode().encode("utf-16"), NOT_UTF8),
    ("simple-signing: trailing data", simple_signing, SS + b'{"critical":{}}', TRAILING),
    ("in-toto: subject twice", in_toto, _statement().replace(b'"subject":', b'"subject":[],"subject":'), DUPLICATE),
    ("in-toto: predicateType twice", in_toto,
     _statement().replace(b'"predicateType":', b'"predicateType":"https://example.com/x","predicateType":'), DUPLICATE),
    ("in-toto: not UTF-8", in_toto, _statement().replace(b'"predicate":{}', b'"predicate":{"x":"\xc3"}'), NOT_UTF8),
    ("in-toto: trailing data", in_toto, _statement() + b"\x00", TRAILING),
    ("bundle: dsseEnvelope twice", bundle, GOOD_BUNDLE.replace(b'"dsseEnvelope":', b'"dsseEnvelope":{},"dsseEnvelope":'), DUPLICATE),
    ("bundle: trailing data", bundle, GOOD_BUNDLE + b"[]", TRAILING),
    ("bundle: byte-order mark", bundle, b"\xef\xbb\xbf" + GOOD_BUNDLE, "byte-order mark"),
]


@pytest.mark.parametrize(("name", "verify", "document", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_ambiguous_signed_documents_are_refused_with_their_reason(
    name: str, verify: Callable[[bytes], MalformedSignature], document: bytes, reason: str
) -> None:
    error = verify(document)
    assert type(error) is MalformedSignature, name
    assert reason in str(error), f"{name}: {error}"


def test_the_baselines_verify() -> None:
    # GIVEN the same documents without the ambiguity THEN they verify: each row fails on its one change
    signature = base64.b64encode(signing.sign(KEY, SS)).decode()
    assert verify_simple_signing(SS, signature, POLICY, IMAGE).digest == IMAGE
    assert verify_bundle(GOOD_BUNDLE, POLICY, IMAGE).digest == IMAGE
    assert verify_bundle(GOOD_BUNDLE + b"\n", POLICY, IMAGE).digest == IMAGE  # whitespace after the value is not data


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a":1,"b":{"c":1,"c":1}}', "has the key 'c' more than once in one object"),
        (b'{"a":NaN}', "is not valid JSON"),
        (b'{"a":1} x', "has trailing data after its JSON value (at character 7)"),
        (b'{"a":"\xed\xa0\x80"}', "is not UTF-8 (byte 6)"),  # an encoded surrogate is not UTF-8
    ],
)
def test_the_reader_names_each_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedSignature) as caught:
        json_object(raw, "the document")
    assert str(caught.value) == f"the document {reason}"


def test_strict_json_reads_any_value_once() -> None:
    assert strict_json(b' [1, {"a": "\xc3\xa9"}] \n', "x") == [1, {"a": "\u00e9"}]
    assert json.loads(b'{"a":1,"a":2}') == {"a": 2}  # what a lenient reader would have made of it
