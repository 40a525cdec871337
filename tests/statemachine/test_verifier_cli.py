"""The verifier CLI people run before pushing, against a registry that speaks the ECR API.

GIVEN the local runtime's ECR (moto + the local registry extension), reached like AWS through
AWS_ENDPOINT_URL, and images signed (or not) as the build would
WHEN `python -m podrelease.verify.cli verify-image` runs as a separate process
THEN it exits 0 with the same evidence the gate records, or 1 with the gate's named refusal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.iam import OPERATOR_KEY
from local.runtime import WORKLOAD_REPOSITORY, LocalRuntime
from podrelease.verify.policy import keys_document

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.statemachine


def _cli(env: LocalRuntime, *args: str) -> subprocess.CompletedProcess[str]:
    # The operator's credentials: the local AWS refuses keys it does not know, as AWS does.
    variables = {**os.environ, "AWS_ACCESS_KEY_ID": OPERATOR_KEY, "AWS_SECRET_ACCESS_KEY": OPERATOR_KEY, "AWS_ENDPOINT_URL": env.endpoint,
                 "PYTHONPATH": f"{ROOT / 'layers/common'}{os.pathsep}{ROOT}"}
    return subprocess.run(  # noqa: S603 - our own CLI module
        [sys.executable, "-m", "podrelease.verify.cli", "verify-image", "--repository", WORKLOAD_REPOSITORY, *args],
        env=variables, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )


def _public_key(env: LocalRuntime, tmp_path: Path) -> Path:
    path = tmp_path / "cosign.pub"
    path.write_text(env.public_pem)
    return path


def test_a_signed_image_verifies(env: LocalRuntime, tmp_path: Path) -> None:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "7.0.0")
    env.pusher.sign_legacy(env.signing_key, image)
    env.pusher.sign_bundle(env.signing_key, image)
    result = _cli(env, "--digest", image.digest, "--key", str(_public_key(env, tmp_path)))
    assert result.returncode == 0, result.stderr
    evidence = json.loads(result.stdout)
    assert evidence["digest"] == image.digest
    assert sorted(s["kind"] for s in evidence["signatures"]) == ["bundle-dsse", "simple-signing"]


def test_an_unsigned_image_is_refused_with_the_gate_s_reason(env: LocalRuntime, tmp_path: Path) -> None:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "7.0.1")
    result = _cli(env, "--digest", image.digest, "--key", str(_public_key(env, tmp_path)))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("refused: SignatureMissing:")


def test_the_whole_policy_runs_with_policy(env: LocalRuntime, tmp_path: Path) -> None:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "7.0.2")
    env.pusher.sign_legacy(env.signing_key, image)
    policy = tmp_path / "policy.json"
    policy.write_text(keys_document(env.public_pem, require_sbom=["prod"]))
    refused = _cli(env, "--digest", image.digest, "--policy", str(policy), "--environment", "prod")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].startswith("refused: SbomMissing:")
    env.pusher.attest_sbom(env.signing_key, image)
    accepted = _cli(env, "--digest", image.digest, "--policy", str(policy), "--environment", "prod")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["sbom"]


def test_a_malformed_policy_is_a_usage_error_not_an_allow(env: LocalRuntime, tmp_path: Path) -> None:
    image = env.pusher.push_podinfo(WORKLOAD_REPOSITORY, "7.0.3")
    env.pusher.sign_legacy(env.signing_key, image)
    policy = tmp_path / "policy.json"
    policy.write_text('{"version": 1, "environments": {"dev": {}}}')
    result = _cli(env, "--digest", image.digest, "--policy", str(policy))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: PolicyError: release policy")
