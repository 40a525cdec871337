"""Signature-gate latency and cold import time, each beside a baseline measured in the same run.

    PYTHONPATH=layers/common:. python bench/bench_verify.py [--runs N] [--imports N]

Rows:
- key-based verify: `verify_legacy_layer` on the containers/image simple-signing vector
  (dir-img-cosign-valid) vs a bare `cryptography` ECDSA P-256 verify of the same signature;
- keyless verify: `verify_bundle` on the sigstore-conformance happy-path-v0.3 bundle with the pinned
  production root, through sigstore-python + our checks, and through our checks alone (builtin);
  and on its rekor2-happy-path bundle (Rekor v2 entry, RFC 3161 timestamp; the case's own root);
- cold import: `import podrelease.verify.signatures` (what a key-only verify function loads), and
  `podrelease.verify.keyless` + `sigstore.verify` (what a keyless one loads on first use), each in fresh
  interpreters, median of N, vs bare `import boto3`.
"""

# ruff: noqa: T201 - a script that prints its table
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from podrelease.verify.envelopes import verify_bundle, verify_legacy_layer  # noqa: E402
from podrelease.verify.trust_policy import TrustPolicy  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"


def per_call(function: Callable[[], object], runs: int) -> float:
    """Median seconds per call over `runs` timed batches (after a warm-up)."""
    function()
    batch = 20
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batch):
            function()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def cold_import(code: str, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)  # noqa: S603 - fixed code
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--runs", type=int, default=15)
    options.add_argument("--imports", type=int, default=7)
    args = options.parse_args()

    raw = (VECTORS / "containers-image" / "dir-img-cosign-valid" / "signature-1").read_bytes()
    layer = json.loads(raw[raw.index(b"\n") + 1 :])
    payload = base64.b64decode(layer["payload"])
    annotations = layer["annotations"]
    digest = (
        "sha256:"
        + hashlib.sha256((VECTORS / "containers-image" / "dir-img-cosign-valid" / "manifest.json").read_bytes()).hexdigest()
    )
    pem = (VECTORS / "containers-image" / "cosign.pub").read_bytes()
    key_policy = TrustPolicy.from_pem(pem)
    public_key = serialization.load_pem_public_key(pem)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TypeError(public_key)
    raw_signature = base64.b64decode(annotations["dev.cosignproject.cosign/signature"])

    def key_based() -> object:
        return verify_legacy_layer(layer["mimeType"], payload, annotations, key_policy, digest)

    def bare_ecdsa() -> None:
        public_key.verify(raw_signature, payload, ec.ECDSA(hashes.SHA256()))

    from podrelease.verify.certificates import GITHUB_ACTIONS_ISSUER, Identity  # noqa: PLC0415
    from podrelease.verify.keyless import keyless_policy  # noqa: PLC0415

    conformance = VECTORS / "sigstore-conformance"
    bundle = (conformance / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()
    artifact = "sha256:" + hashlib.sha256((conformance / "a.txt").read_bytes()).hexdigest()
    identity = Identity(
        issuer=GITHUB_ACTIONS_ISSUER,
        subject="https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
        ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main",
    )
    with_sigstore = keyless_policy([identity], use_sigstore=True)
    builtin = keyless_policy([identity], use_sigstore=False)
    # Rekor v2: hashedrekord 0.0.2 entry, time from an RFC 3161 timestamp (the case's staging root)
    from podrelease.verify.trusted_root import SigstoreTrustRoot  # noqa: PLC0415

    rekor2 = conformance / "rekor2-happy-path"
    rekor2_bundle = (rekor2 / "bundle.sigstore.json").read_bytes()
    rekor2_root = SigstoreTrustRoot.from_file(rekor2 / "trusted_root.json")
    rekor2_sigstore = keyless_policy([identity], root=rekor2_root, use_sigstore=True)

    rows: list[tuple[str, float, str, float]] = []
    base = per_call(bare_ecdsa, args.runs)
    rows.append(("key-based verify_legacy_layer", per_call(key_based, args.runs), "bare cryptography ECDSA verify", base))
    rows.append(
        (
            "keyless verify_bundle (sigstore-python + ours)",
            per_call(lambda: verify_bundle(bundle, with_sigstore, artifact, predicate_type=None), args.runs),
            "bare cryptography ECDSA verify",
            base,
        )
    )
    rows.append(
        (
            "keyless verify_bundle (ours only)",
            per_call(lambda: verify_bundle(bundle, builtin, artifact, predicate_type=None), args.runs),
            "bare cryptography ECDSA verify",
            base,
        )
    )
    rows.append(
        (
            "keyless Rekor v2 + TSA (sigstore-python + ours)",
            per_call(lambda: verify_bundle(rekor2_bundle, rekor2_sigstore, artifact, predicate_type=None), args.runs),
            "bare cryptography ECDSA verify",
            base,
        )
    )
    boto = cold_import("import boto3", args.imports)
    signatures = "podrelease.verify.signatures"
    rows.append((f"cold: import {signatures}", cold_import(f"import {signatures}", args.imports), "cold: import boto3", boto))
    rows.append(
        (
            "cold: + podrelease.verify.keyless + sigstore.verify",
            cold_import(f"import {signatures}, podrelease.verify.keyless, sigstore.verify, sigstore.models", args.imports),
            "cold: import boto3",
            boto,
        )
    )
    empty = cold_import("pass", args.imports)

    print(
        f"python {sys.version.split()[0]}; verify: median of {args.runs} batches of 20; "
        f"imports: median of {args.imports} fresh interpreters"
    )
    print(f"(an empty interpreter start takes {empty * 1000:.1f} ms and is included in every cold row)")
    print_rows(rows)


def print_rows(rows: list[tuple[str, float, str, float]]) -> None:
    """The table: each measurement beside its baseline (milliseconds) and their ratio."""
    width, base_width = max(len(r[0]) for r in rows) + 1, max(len(r[2]) for r in rows) + 1
    print(f"{'measured':{width}} {'ms':>9}   {'baseline':{base_width}} {'ms':>9} {'ratio':>8}")
    for name, value, baseline, reference in rows:
        print(f"{name:{width}} {value * 1000:9.3f}   {baseline:{base_width}} {reference * 1000:9.3f} {value / reference:7.1f}x")


if __name__ == "__main__":
    main()
