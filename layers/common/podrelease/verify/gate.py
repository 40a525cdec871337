"""The signature gate as the release runs it: verify, allowing a short wait for the signature.

A build pushes the image first and its signature right after (cosign needs the image's digest), so
the release may reach the gate a moment before the signature lands. Only `SignatureMissing` is
waited for, up to `grace_seconds`; every other refusal is final at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from podrelease.core.errors import SignatureMissing
from podrelease.verify.registry import Registry
from podrelease.verify.signatures import Verification, verify_image
from podrelease.verify.trust_policy import TrustPolicy


def verify_with_grace(
    registry: Registry,
    repository: str,
    digest: str,
    policy: TrustPolicy,
    grace_seconds: float,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Verification:
    deadline = clock() + grace_seconds
    delay = 1.0
    while True:
        try:
            return verify_image(registry, repository, digest, policy)
        except SignatureMissing:
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)
