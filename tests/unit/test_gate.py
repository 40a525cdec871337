"""The signature gate's grace wait: `podrelease.verify.gate.verify_with_grace`.

GIVEN an image in a `MemoryRegistry` and a signature made with `local.signing` that is present,
late, absent or made with an untrusted key WHEN the gate runs with a fake clock and sleep THEN it
accepts, waits exactly the expected backoff, or refuses with the named error (only a missing
signature is waited for).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import DigestMismatch, SignatureInvalid, SignatureMissing
from podrelease.verify.gate import verify_with_grace
from podrelease.verify.registry import OCI_MANIFEST
from podrelease.verify.trust_policy import TrustPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = "podinfo"
IMAGE = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "note": "gate"}).encode()
OTHER_IMAGE = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "note": "other"}).encode()
KEY, KEY_PEM = signing.generate_key()
UNTRUSTED_KEY, _ = signing.generate_key()
POLICY = TrustPolicy.from_pem(KEY_PEM)


class FakeTime:
    """A clock that only moves when slept on; `on_sleep` runs before each sleep returns."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) <= len(self.on_sleep):
            self.on_sleep[len(self.sleeps) - 1]()


def image() -> tuple[MemoryRegistry, str]:
    registry = MemoryRegistry()
    return registry, registry.put_manifest(REPO, IMAGE, OCI_MANIFEST, tag="v1")


def sign(registry: MemoryRegistry, digest: str, key: object = KEY, for_digest: str | None = None) -> None:
    artifact = signing.legacy_signature_artifact(key, f"example/{REPO}", for_digest or digest)  # type: ignore[arg-type]
    signing.publish_legacy(registry, REPO, digest, artifact)


def test_a_signature_already_present_is_accepted_without_waiting() -> None:
    registry, digest = image()
    sign(registry, digest)
    fake = FakeTime()
    verification = verify_with_grace(registry, REPO, digest, POLICY, 30, sleep=fake.sleep, clock=fake.clock)
    assert verification.digest == digest
    assert len(verification.signatures) == 1
    assert fake.sleeps == []


def test_a_signature_that_lands_after_two_polls_is_accepted() -> None:
    # GIVEN an image whose signature is pushed while the gate sleeps for the second time
    registry, digest = image()
    fake = FakeTime()
    fake.on_sleep = [lambda: None, lambda: sign(registry, digest)]
    # WHEN the gate runs with a 30 s grace
    verification = verify_with_grace(registry, REPO, digest, POLICY, 30, sleep=fake.sleep, clock=fake.clock)
    # THEN it accepts on the third poll, having backed off 1 s then 2 s
    assert verification.digest == digest
    assert verification.evidence["verified"] is True
    assert fake.sleeps == [1.0, 2.0]


def test_a_signature_still_missing_after_the_grace_is_refused() -> None:
    # GIVEN an image that is never signed
    registry, digest = image()
    fake = FakeTime()
    # WHEN the gate runs with a 10 s grace
    with pytest.raises(SignatureMissing) as info:
        verify_with_grace(registry, REPO, digest, POLICY, 10, sleep=fake.sleep, clock=fake.clock)
    # THEN it backed off 1, 2, 4 s, slept only the 3 s left, then gave up exactly at the deadline
    assert type(info.value) is SignatureMissing
    assert fake.sleeps == [1.0, 2.0, 4.0, 3.0]
    assert fake.now == 110.0
    assert str(info.value) == f"no cosign signature is attached to {REPO}@{digest}"


def test_the_backoff_is_capped_at_ten_seconds() -> None:
    registry, digest = image()
    fake = FakeTime()
    with pytest.raises(SignatureMissing):
        verify_with_grace(registry, REPO, digest, POLICY, 60, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 5.0]
    assert sum(fake.sleeps) == 60.0


def test_no_grace_means_no_wait() -> None:
    registry, digest = image()
    fake = FakeTime()
    with pytest.raises(SignatureMissing):
        verify_with_grace(registry, REPO, digest, POLICY, 0, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda registry, digest, other: sign(registry, digest, key=UNTRUSTED_KEY), SignatureInvalid),
        (lambda registry, digest, other: sign(registry, digest, for_digest=other), DigestMismatch),
    ],
    ids=["untrusted key", "signed for another digest"],
)
def test_a_present_but_bad_signature_is_refused_at_once_without_sleeping(make: object, expected: type[Exception]) -> None:
    # GIVEN a signature that exists but cannot be accepted
    registry, digest = image()
    other = registry.put_manifest(REPO, OTHER_IMAGE, OCI_MANIFEST)
    make(registry, digest, other)  # type: ignore[operator]
    fake = FakeTime()
    # WHEN the gate runs with a long grace
    with pytest.raises(expected) as info:
        verify_with_grace(registry, REPO, digest, POLICY, 300, sleep=fake.sleep, clock=fake.clock)
    # THEN the refusal is final at once: no sleep at all
    assert type(info.value) is expected
    assert fake.sleeps == []
