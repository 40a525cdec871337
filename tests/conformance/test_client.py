"""The conformance tier (`make conformance`): the sigstore-conformance client
(`tests/conformance/client`) on every bundle vector the project ships.

GIVEN a vector directory of tests/vectors/sigstore-conformance (a case of the suite's
`test/assets/bundle-verify`, same name; its README says what it is; a `_fail` suffix means
verification must fail), or another shipped bundle (cosign's OCI attestation, sigstore-go's
key-based DSSE bundle) WHEN the client verifies it as the conformance suite would
(`--skip-signing`, offline, the case's own trusted root when it has one) THEN it exits 0 exactly
for the valid ones, and a refusal says why.

Every outcome is recorded, and the run ends with the coverage report (`conftest.py`): which suite
cases the client was run on and how each ended, also written to build/conformance/coverage.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "conformance" / "client"
VECTORS = ROOT / "tests" / "vectors"
CONFORMANCE = VECTORS / "sigstore-conformance"
PRODUCTION_ROOT = VECTORS / "sigstore-python" / "production_trusted_root.json"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
ISSUER = "https://token.actions.githubusercontent.com"
A_TXT = CONFORMANCE / "a.txt"
CASES = sorted(p.name for p in CONFORMANCE.iterdir() if (p / "bundle.sigstore.json").is_file())
#: The suite's Rekor v2 cases (hashedrekord 0.0.2 entries, time from a TSA), from shared/vectors.
REKOR2_CASES = ("rekor2-dsse-happy-path", "rekor2-happy-path", "rekor2-no-timestamp_fail", "rekor2-timestamp-payload-mismatch_fail")


def run_client(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9"}
    return subprocess.run(  # noqa: S603 - our own client, fixed arguments
        [sys.executable, str(CLIENT), *args], capture_output=True, text=True, check=False, env=env, timeout=120
    )


def arguments(case: str, artifact: str) -> list[str]:
    directory = CONFORMANCE / case
    args = ["verify-bundle", "--bundle", str(directory / "bundle.sigstore.json")]
    if (directory / "key.pub").is_file():
        args += ["--key", str(directory / "key.pub")]
    elif case.startswith("managed-key"):
        pass  # the no-key case: nothing to verify with, must fail
    else:
        args += ["--certificate-identity", BEACON, "--certificate-oidc-issuer", ISSUER]
    trusted_root = directory / "trusted_root.json"
    args += ["--trusted-root", str(trusted_root if trusted_root.is_file() else PRODUCTION_ROOT)]
    return [*args, artifact]


def test_every_vector_is_covered() -> None:
    assert len(CASES) == 12
    assert set(REKOR2_CASES) <= set(CASES)
    assert os.access(CLIENT, os.X_OK)
    assert CLIENT.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("form", ["file", "digest"])
def test_conformance_vector(case: str, form: str, conformance_record: dict[str, object]) -> None:
    artifact = str(A_TXT) if form == "file" else "sha256:" + hashlib.sha256(A_TXT.read_bytes()).hexdigest()
    result = run_client(*arguments(case, artifact))
    expected = "refused" if case.endswith("_fail") else "verified"
    outcome = "verified" if result.returncode == 0 else "refused"
    conformance_record[f"{case} ({form})"] = {
        "suite": "sigstore-conformance bundle-verify",
        "expected": expected,
        "outcome": outcome,
        "reason": result.stderr.strip()[:200],
    }
    if case.endswith("_fail"):
        assert result.returncode != 0, result.stdout
        assert result.stderr.strip(), "a refusal says why"
    else:
        assert result.returncode == 0, result.stderr


def test_rekor2_cases_verify_on_the_timestamp_authority_time() -> None:
    # GIVEN the Rekor v2 happy paths (no integrated time) THEN the evidence's time is the TSA's
    for case, kind in (("rekor2-happy-path", "bundle-message-signature"), ("rekor2-dsse-happy-path", "bundle-dsse")):
        result = run_client(*arguments(case, str(A_TXT)))
        assert result.returncode == 0, result.stderr
        signature = json.loads(result.stdout)["signature"]
        assert (signature["kind"], signature["signer"]["time_source"]) == (kind, "timestamp authority")


def test_wrong_identity_is_refused() -> None:
    args = arguments("happy-path-v0.3", str(A_TXT))
    args[args.index("--certificate-identity") + 1] = "https://github.com/someone/else/.github/workflows/x.yml@refs/heads/main"
    result = run_client(*args)
    assert result.returncode == 1
    assert "not allowed by the policy" in result.stderr


def test_sigstore_go_text_dsse_bundle_is_not_an_artifact_signature(conformance_record: dict[str, object]) -> None:
    # GIVEN sigstore-go's key-based DSSE bundle: its payload is text/plain, no in-toto subject
    # WHEN the client is asked to verify it over an artifact THEN it refuses: nothing binds it to one
    result = run_client(
        "verify-bundle",
        "--bundle",
        str(VECTORS / "sigstore-go" / "bundle-public-key.json"),
        "--key",
        str(VECTORS / "sigstore-go" / "public-key.pem"),
        str(A_TXT),
    )
    conformance_record["sigstore-go bundle-public-key"] = {
        "suite": "shipped vector (sigstore-go examples)",
        "expected": "refused",
        "outcome": "verified" if result.returncode == 0 else "refused",
        "reason": result.stderr.strip()[:200],
    }
    assert result.returncode == 1
    assert "is not application/vnd.in-toto+json" in result.stderr


def test_cosign_oci_attestation_bundle(conformance_record: dict[str, object]) -> None:
    digest = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
    base = ["verify-bundle", "--bundle", str(VECTORS / "cosign" / "oci-attestation.sigstore.json")]
    root = ["--trusted-root", str(VECTORS / "cosign" / "trusted_root_pgi.json")]
    good = run_client(
        *base,
        "--certificate-identity",
        "cody@soyland.com",
        "--certificate-oidc-issuer",
        "https://github.com/login/oauth",
        *root,
        digest,
    )
    conformance_record["cosign oci-attestation"] = {
        "suite": "shipped vector (cosign testdata)",
        "expected": "verified",
        "outcome": "verified" if good.returncode == 0 else "refused",
        "reason": good.stderr.strip()[:200],
    }
    assert good.returncode == 0, good.stderr
    other = run_client(
        *base,
        "--certificate-identity",
        "cody@soyland.com",
        "--certificate-oidc-issuer",
        "https://github.com/login/oauth",
        *root,
        "sha256:" + "0" * 64,
    )
    assert other.returncode == 1
    assert "DigestMismatch" in other.stderr


def test_staging_without_a_pinned_root_is_a_usage_error() -> None:
    result = run_client(
        "verify-bundle",
        "--staging",
        "--bundle",
        str(CONFORMANCE / "happy-path-v0.3" / "bundle.sigstore.json"),
        "--certificate-identity",
        BEACON,
        "--certificate-oidc-issuer",
        ISSUER,
        str(A_TXT),
    )
    assert result.returncode == 2
    assert "no staging trusted root" in result.stderr


def test_signing_is_not_offered() -> None:
    assert run_client("sign-bundle", "--identity-token", "x", "--bundle", "b", "f").returncode == 2
