"""Rekor v2 entries and RFC 3161 timestamps in the keyless gate, on a local sigstore instance
(`local.sigstore_local`: a Rekor v1 log, a Rekor v2 log with an Ed25519 key, a timestamp authority).

GIVEN a keyless bundle logged one way or another, with or without a timestamp WHEN the gate
verifies it (`verify_bundle` under the local root) THEN it passes with the time it was given by the
evidence that vouches for one, or it is refused with exactly the named error and reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.sigstore_local import BUILD_IDENTITY, LocalSigstore
from local.timestamp_local import LocalTimestampAuthority
from podrelease.core.errors import MalformedSignature, SignatureInvalid
from podrelease.verify.certificates import GITHUB_ACTIONS_ISSUER, Identity
from podrelease.verify.envelopes import verify_bundle
from podrelease.verify.keyless import FulcioVerifier, sigstore_gaps
from podrelease.verify.timestamp import MAX_TIMESTAMPS, material_timestamps, verify_timestamp
from podrelease.verify.trust_policy import TrustPolicy
from podrelease.verify.trusted_root import SigstoreTrustRoot

IMAGE = "sha256:" + "ab" * 32
BUILD = Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=BUILD_IDENTITY)
CONFORMANCE = Path(__file__).resolve().parents[1] / "vectors" / "sigstore-conformance"
A_TXT = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
BEACON = Identity(
    issuer=GITHUB_ACTIONS_ISSUER,
    subject="https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main",
)


# --- the suite's Rekor v2 vectors, in both engines ---------------------------------------------------------


def _vector(case: str, *, use_sigstore: bool) -> tuple[bytes, TrustPolicy]:
    root = SigstoreTrustRoot.from_file(CONFORMANCE / case / "trusted_root.json")
    verifier = FulcioVerifier(root=root, identities=(BEACON,), use_sigstore=use_sigstore)
    return (CONFORMANCE / case / "bundle.sigstore.json").read_bytes(), TrustPolicy(keys=(), keyless=verifier)


@pytest.mark.parametrize(
    ("case", "kind", "signed_at"),
    [
        ("rekor2-happy-path", "bundle-message-signature", "2025-06-12T12:02:20+00:00"),
        ("rekor2-dsse-happy-path", "bundle-dsse", "2026-05-13T19:23:33+00:00"),
    ],
)
@pytest.mark.parametrize("use_sigstore", [True, False], ids=["sigstore-python", "builtin"])
def test_rekor2_vectors_verify_on_the_tsa_time(case: str, kind: str, signed_at: str, *, use_sigstore: bool) -> None:
    bundle, trust = _vector(case, use_sigstore=use_sigstore)
    evidence = verify_bundle(bundle, trust, A_TXT, predicate_type=None)
    assert evidence.kind == kind
    assert evidence.signer is not None
    assert (evidence.signer["signed_at"], evidence.signer["time_source"]) == (signed_at, "timestamp authority")


@pytest.mark.parametrize(
    ("case", "builtin_reason"),
    [
        ("rekor2-no-timestamp_fail", "no verified time: the log entry has no integrated time"),
        ("rekor2-timestamp-payload-mismatch_fail", "the RFC 3161 timestamp is over another signature"),
    ],
)
@pytest.mark.parametrize("use_sigstore", [True, False], ids=["sigstore-python", "builtin"])
def test_rekor2_failing_vectors_are_refused(case: str, builtin_reason: str, *, use_sigstore: bool) -> None:
    bundle, trust = _vector(case, use_sigstore=use_sigstore)
    with pytest.raises((SignatureInvalid, MalformedSignature)) as caught:
        verify_bundle(bundle, trust, A_TXT, predicate_type=None)
    if not use_sigstore:  # the gate's own checks name the reason
        assert builtin_reason in str(caught.value)


@pytest.fixture(scope="module")
def local() -> LocalSigstore:
    instance = LocalSigstore.create()
    for _ in range(3):  # several entries in each log: proofs with real hashes
        instance.keyless_bundle(IMAGE)
        instance.keyless_bundle(IMAGE, rekor_v2=True)
    return instance


def policy(local: LocalSigstore, *, use_sigstore: bool = False) -> TrustPolicy:
    return TrustPolicy(keys=(), keyless=FulcioVerifier(root=local.trust_root(), identities=(BUILD,), use_sigstore=use_sigstore))


def _mutate(bundle: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = doc["verificationMaterial"]["tlogEntries"][0]
    return entry


# --- accepted ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "source"),
    [
        ({"rekor_v2": True}, "timestamp authority"),
        ({"entry": ("dsse", "0.0.2")}, "timestamp authority"),
        ({"entry": ("intoto", "0.0.2")}, "transparency log"),
        ({}, "transparency log"),
        ({"timestamped": True}, "transparency log"),
    ],
    ids=["hashedrekord 0.0.2 over the PAE + TSA", "dsse 0.0.2 + TSA", "intoto 0.0.2 (Rekor v1)", "dsse 0.0.1 (Rekor v1)",
         "Rekor v1 and a TSA"],
)
def test_each_entry_kind_verifies_on_its_verified_time(local: LocalSigstore, options: dict[str, Any], source: str) -> None:
    evidence = verify_bundle(local.keyless_bundle(IMAGE, **options), policy(local), IMAGE)
    assert evidence.signer is not None
    assert (evidence.signer["identity"], evidence.signer["time_source"]) == (BUILD_IDENTITY, source)


def test_witness_cosignatures_on_the_checkpoint_are_read_not_trusted(local: LocalSigstore) -> None:
    def cosigned(doc: dict[str, Any]) -> None:
        proof = _entry(doc)["inclusionProof"]
        witness = base64.b64encode(b"\x01\x02\x03\x04" + b"\x00" * 8 + b"\x07" * 64).decode()
        proof["checkpoint"]["envelope"] += f"\u2014 witness.example {witness}\n"

    bundle = _mutate(local.keyless_bundle(IMAGE, rekor_v2=True), cosigned)
    assert verify_bundle(bundle, policy(local), IMAGE).signer is not None


# --- refused ----------------------------------------------------------------------------------------


def _checkpoint_by_another_log(doc: dict[str, Any]) -> None:
    rogue = LocalSigstore.create(name="rogue")
    rogue.origin = LocalSigstore.create().origin  # same origin line, another key
    other = rogue.log_v2(base64.b64decode(_entry(doc)["canonicalizedBody"]))
    _entry(doc)["inclusionProof"]["checkpoint"] = other["inclusionProof"]["checkpoint"]


def _hashedrekord_over_the_payload(local: LocalSigstore) -> bytes:
    # a Rekor v2 entry naming the DSSE payload's hash instead of the PAE's: not this envelope's
    bundle = json.loads(local.keyless_bundle(IMAGE, rekor_v2=True))
    body = json.loads(base64.b64decode(_entry(bundle)["canonicalizedBody"]))
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    body["spec"]["hashedRekordV002"]["data"]["digest"] = base64.b64encode(hashlib.sha256(payload).digest()).decode()
    raw = json.dumps(body, separators=(",", ":")).encode()
    bundle["verificationMaterial"]["tlogEntries"] = [local.log_v2(raw)]
    return json.dumps(bundle).encode()


def _second_timestamp(doc: dict[str, Any], stamp: str) -> None:
    doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"].append({"signedTimestamp": stamp})


Case = tuple[str, Callable[[LocalSigstore], bytes], type[Exception], str]
LATER = datetime.now(UTC) + timedelta(minutes=30)

REFUSALS: list[Case] = [
    ("no timestamp on a Rekor v2 entry", lambda s: s.keyless_bundle(IMAGE, rekor_v2=True, timestamped=False),
     SignatureInvalid, "no verified time: the log entry has no integrated time"),
    ("timestamp over another signature", lambda s: s.keyless_bundle(IMAGE, rekor_v2=True, timestamp_over=b"another signature"),
     SignatureInvalid, "the RFC 3161 timestamp is over another signature"),
    ("a bad timestamp is not excused by a good SET", lambda s: s.keyless_bundle(IMAGE, timestamped=True, timestamp_over=b"x"),
     SignatureInvalid, "the RFC 3161 timestamp is over another signature"),
    ("timestamp before the TSA's validity", lambda s: s.keyless_bundle(IMAGE, rekor_v2=True,
                                                                        timestamp_at=datetime.now(UTC) - timedelta(days=3)),
     SignatureInvalid, "is outside its timestamp authority's validity"),
    ("certificate not valid at the timestamp's time", lambda s: s.keyless_bundle(IMAGE, rekor_v2=True, timestamp_at=LATER),
     SignatureInvalid, "not valid at the signing time"),
    ("timestamp from another TSA", lambda s: _mutate(
        s.keyless_bundle(IMAGE, rekor_v2=True),
        lambda d: d["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"].__setitem__(
            0, {"signedTimestamp": base64.b64encode(
                LocalTimestampAuthority.create(start=datetime.now(UTC) - timedelta(days=30)).timestamp(
                    base64.b64decode(d["dsseEnvelope"]["signatures"][0]["sig"]))).decode()})),
     SignatureInvalid, "is not signed by a timestamp authority of the trusted root"),
    ("the same timestamp twice", lambda s: _mutate(
        s.keyless_bundle(IMAGE, rekor_v2=True),
        lambda d: _second_timestamp(d, d["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"])),
     MalformedSignature, "the same RFC 3161 timestamp is given twice"),
    ("timestamp that is not DER", lambda s: _mutate(
        s.keyless_bundle(IMAGE, rekor_v2=True),
        lambda d: d["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"].__setitem__(
            0, {"signedTimestamp": base64.b64encode(b"\x30\x03abc").decode()})),
     MalformedSignature, "cannot be read"),
    ("checkpoint signed by another log key", lambda s: _mutate(s.keyless_bundle(IMAGE, rekor_v2=True), _checkpoint_by_another_log),
     SignatureInvalid, "checkpoint is not signed by log"),
    ("Rekor v2 entry without its inclusion proof", lambda s: _mutate(
        s.keyless_bundle(IMAGE, rekor_v2=True), lambda d: _entry(d).pop("inclusionProof")),
     SignatureInvalid, "neither a signed entry timestamp (SET) nor an inclusion proof"),
    ("hashedrekord 0.0.2 over the payload, not the PAE", _hashedrekord_over_the_payload,
     SignatureInvalid, "the log entry is about another signature, certificate or content"),
    ("malformed checkpoint signature line", lambda s: _mutate(
        s.keyless_bundle(IMAGE, rekor_v2=True),
        lambda d: _entry(d)["inclusionProof"]["checkpoint"].__setitem__("envelope", _entry(d)["inclusionProof"]["checkpoint"]["envelope"] + "junk\n")),
     MalformedSignature, "checkpoint has a malformed signature line"),
]


@pytest.mark.parametrize(("name", "make", "error", "reason"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_rekor_v2_refusal_table(
    local: LocalSigstore, name: str, make: Callable[[LocalSigstore], bytes], error: type[Exception], reason: str
) -> None:
    bundle = make(local)
    with pytest.raises(error) as caught:
        verify_bundle(bundle, policy(local), IMAGE)
    assert type(caught.value) is error, f"{name}: {caught.value}"
    assert reason in str(caught.value)


# --- the TSA's validity: both ends included ---------------------------------------------------------------


def test_a_timestamp_at_the_very_end_of_the_tsa_validity_counts_and_one_second_later_does_not() -> None:
    instance = LocalSigstore.create()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    instance.tsa_valid_until = end
    root = instance.trust_root()
    assert instance.tsa is not None
    signature = b"a signature"
    at_end = instance.tsa.timestamp(signature, at=end)
    assert verify_timestamp(at_end, signature, root) == end
    later = instance.tsa.timestamp(signature, at=end + timedelta(seconds=1))
    with pytest.raises(SignatureInvalid, match="outside its timestamp authority's validity"):
        verify_timestamp(later, signature, root)


def test_a_tampered_token_does_not_verify(local: LocalSigstore) -> None:
    assert local.tsa is not None
    token = bytearray(local.tsa.timestamp(b"sig"))
    token[-10] ^= 0x01  # inside the CMS signature
    with pytest.raises(SignatureInvalid, match="not signed by a timestamp authority"):
        verify_timestamp(bytes(token), b"sig", local.trust_root())


def test_timestamps_are_read_from_both_layouts_and_bounded() -> None:
    token = base64.b64encode(b"\x30\x00").decode()
    legacy = {"dev.sigstore.cosign/rfc3161timestamp": json.dumps({"SignedRFC3161Timestamp": token})}
    assert material_timestamps(legacy) == [b"\x30\x00"]
    many = {"timestampVerificationData": {"rfc3161Timestamps": [
        {"signedTimestamp": base64.b64encode(bytes([n])).decode()} for n in range(MAX_TIMESTAMPS + 1)
    ]}}
    with pytest.raises(MalformedSignature, match="timestamps, more than"):
        material_timestamps(many)


# --- sigstore-python: its gaps are set aside, nothing else ------------------------------------------------


def test_sigstore_python_refusals_stand_except_for_what_it_does_not_implement(local: LocalSigstore) -> None:
    # GIVEN sigstore-python on (it refuses every local bundle: the local certificates have no SCT)
    strict = policy(local, use_sigstore=True)
    # WHEN the entry is of a kind sigstore-python 4.5.1 does not read THEN the gate's own checks decide
    for entry in (("intoto", "0.0.2"), ("dsse", "0.0.2")):
        bundle = local.keyless_bundle(IMAGE, entry=entry)
        assert sigstore_gaps(bundle, local.trust_root()) == [f"log entry kind {entry[0]} {entry[1]}"]
        assert verify_bundle(bundle, strict, IMAGE).signer is not None
    # WHEN it is a kind it reads THEN its refusal stands
    for options in ({}, {"rekor_v2": True}):
        bundle = local.keyless_bundle(IMAGE, **options)
        assert sigstore_gaps(bundle, local.trust_root()) == []
        with pytest.raises(SignatureInvalid, match="sigstore-python refused the bundle"):
            verify_bundle(bundle, strict, IMAGE)


def test_a_timestamp_at_the_tsa_end_is_a_sigstore_python_gap() -> None:
    instance = LocalSigstore.create()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    instance.tsa_valid_until = end
    bundle = instance.keyless_bundle(IMAGE, rekor_v2=True, timestamp_at=end)
    assert sigstore_gaps(bundle, instance.trust_root()) == ["timestamp at its authority's validity end"]
    assert verify_bundle(bundle, policy(instance, use_sigstore=True), IMAGE).signer is not None
