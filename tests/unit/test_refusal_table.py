"""The refusal table: the whole gate (signature, SBOM, scan) as the Verify state runs it.

Each row builds one situation on a MemoryRegistry (and a fake ECR scan API), then runs
`podrelease.verify.gate.enforce` (`verify_image` with the grace wait, then `verify_sbom`, then
`check_scan`) under a prod-like policy: the trusted key (plus, for keyless rows, a keyless verifier
for the demo build workflow on a local sigstore instance), SBOM required, block at HIGH. Each row
says the exact error class and a fragment of the reason; a baseline row passes, so every refusal
is caused by its one deviation.

Keyless rows (wrong identity, wrong issuer, certificate used outside its validity; Rekor v2 entries
with a timestamp over another signature, outside the TSA's validity, or none) run when
`podrelease.verify.keyless` and `local.sigstore_local` are importable; `tests/unit/test_keyless.py` has
the full keyless table (chain, log, SET, inclusion proof), `tests/unit/test_rekor_v2.py` the Rekor v2
and timestamp one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import (
    DigestMismatch,
    MalformedSignature,
    SbomInvalid,
    SbomMissing,
    ScanBlocked,
    ScanUnavailable,
    SignatureInvalid,
    SignatureMissing,
)
from podrelease.verify.gate import enforce
from podrelease.verify.policy import EnvironmentPolicy
from podrelease.verify.registry import OCI_MANIFEST, sha256_digest
from podrelease.verify.scan import ScanPolicy
from podrelease.verify.trust_policy import TrustPolicy

REPOSITORY = "podinfo"
TAG = "6.9.1"
REFERENCE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}"


def _keyless() -> Any:
    try:
        from local import sigstore_local  # optional: present with the keyless gate
    except ImportError:
        return None
    return sigstore_local


SIGSTORE = _keyless()


class FakeScans:
    """DescribeImageScanFindings per digest; a digest without an entry has no scan."""

    def __init__(self) -> None:
        self.findings: dict[str, list[dict[str, str]]] = {}

    def describe_image_scan_findings(self, **kwargs: Any) -> dict[str, Any]:
        digest = kwargs["imageId"]["imageDigest"]
        if digest not in self.findings:
            raise ClientError({"Error": {"Code": "ScanNotFoundException", "Message": "no scan"}}, "DescribeImageScanFindings")
        findings = self.findings[digest]
        counts: dict[str, int] = {}
        for f in findings:
            counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        return {
            "imageScanStatus": {"status": "COMPLETE"},
            "imageScanFindings": {"findingSeverityCounts": counts, "findings": findings},
        }


@dataclass
class Scene:
    registry: MemoryRegistry = field(default_factory=MemoryRegistry)
    scans: FakeScans = field(default_factory=FakeScans)
    key: Any = None
    keyless: bool = False
    local: Any = None

    def __post_init__(self) -> None:
        self.key, self.pem = signing.generate_key()
        self.digest = self.push("6.9.1")
        self.other = self.push("6.9.0")
        self.target = self.digest  # what the release verifies (a tag resolved at push time)

    def push(self, version: str) -> str:
        config = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Labels": {"v": version}}}).encode()
        self.registry.put_blob(REPOSITORY, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": signing.OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
                "layers": [],
            }
        ).encode()
        return self.registry.put_manifest(REPOSITORY, manifest, OCI_MANIFEST, tag=TAG)

    def descriptor(self, digest: str | None = None) -> dict[str, Any]:
        return signing.image_descriptor(self.registry, REPOSITORY, digest or self.digest)

    # -- what a good build attaches --
    def sign(self, digest: str | None = None) -> None:
        digest = digest or self.digest
        signing.publish_legacy(self.registry, REPOSITORY, digest, signing.legacy_signature_artifact(self.key, REFERENCE, digest))

    def attest(self, digest: str | None = None) -> None:
        digest = digest or self.digest
        signing.publish(self.registry, REPOSITORY, signing.sbom_attestation_artifact(self.key, digest, self.descriptor(digest)))

    def clean_scan(self, digest: str | None = None) -> None:
        self.scans.findings[digest or self.digest] = [{"name": "CVE-2024-0001", "severity": "LOW"}]

    def good(self) -> None:
        self.sign()
        self.attest()
        self.clean_scan()

    def policy(self) -> EnvironmentPolicy:
        trust = TrustPolicy.from_pem(self.pem)
        if self.keyless:
            trust = TrustPolicy(keys=trust.keys, keyless=self.local.verifier())
        return EnvironmentPolicy(name="prod", trust=trust, require_sbom=True, scan=ScanPolicy(block_at="HIGH"))


# --- the deviations --------------------------------------------------------------------------------


def unsigned(s: Scene) -> None:
    s.attest()
    s.clean_scan()


def tampered_payload(s: Scene) -> None:
    payload = signing.simple_signing_payload(REFERENCE, s.digest)
    signature = base64.b64encode(signing.sign(s.key, payload)).decode()
    changed = payload.replace(b'"optional":null', b'"optional":{"creator":"someone else"}')
    assert changed != payload
    signing.publish_legacy(s.registry, REPOSITORY, s.digest, signing.legacy_signature_manifest([(changed, signature)]))
    s.attest()
    s.clean_scan()


def wrong_key(s: Scene) -> None:
    other_key, _ = signing.generate_key()
    signing.publish_legacy(s.registry, REPOSITORY, s.digest, signing.legacy_signature_artifact(other_key, REFERENCE, s.digest))
    s.attest()
    s.clean_scan()


def signature_over_another_digest(s: Scene) -> None:
    # a valid signature of the OTHER image, put under this image's `.sig` tag
    artifact = signing.legacy_signature_artifact(s.key, REFERENCE, s.other)
    signing.publish_legacy(s.registry, REPOSITORY, s.digest, artifact)
    s.attest()
    s.clean_scan()


def tag_moved_after_signing(s: Scene) -> None:
    # 6.9.0 is signed, attested and scanned; then the tag moves to the newer, unsigned push, and the
    # release (started by that push) verifies the digest the tag now names
    s.good()
    moved = s.push("6.9.2-unsigned")
    assert s.registry.tags[(REPOSITORY, TAG)] == moved
    s.target = moved


def tag_moved_signature_copied(s: Scene) -> None:
    # as above, and the old image's `.sig` manifest copied to the new digest's tag
    s.good()
    moved = s.push("6.9.2-unsigned")
    old_sig = s.registry.get_manifest(REPOSITORY, f"sha256-{s.digest[7:]}.sig")
    assert old_sig is not None
    s.registry.put_manifest(REPOSITORY, old_sig.raw, OCI_MANIFEST, tag=f"sha256-{moved[7:]}.sig")
    s.target = moved


def missing_sbom(s: Scene) -> None:
    s.sign()
    s.clean_scan()


def sbom_for_another_digest(s: Scene) -> None:
    s.sign()
    signing.publish(
        s.registry, REPOSITORY, signing.sbom_attestation_artifact(s.key, s.digest, s.descriptor(), "spdx", other_digest=s.other)
    )
    s.clean_scan()


def tampered_sbom(s: Scene) -> None:
    s.sign()
    envelope = json.loads(signing.dsse_envelope(s.key, signing.sbom_statement(s.digest, "cyclonedx")))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["components"] = []
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    manifest = signing.legacy_attestation_manifest([(json.dumps(envelope).encode(), signing.CYCLONEDX_PREDICATE)])
    signing.publish_attestation_legacy(s.registry, REPOSITORY, s.digest, manifest)
    s.clean_scan()


def good_and_bad_sbom(s: Scene) -> None:
    s.good()
    stranger, _ = signing.generate_key()
    signing.publish_attestation_legacy(
        s.registry, REPOSITORY, s.digest, signing.legacy_attestation_artifact(stranger, s.digest, "cyclonedx")
    )


def corrupt_bundle(s: Scene) -> None:
    bundle = signing.bundle_referrer_manifest(b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", ', s.descriptor())
    signing.publish(s.registry, REPOSITORY, bundle)
    s.attest()
    s.clean_scan()


def oversized_payload(s: Scene) -> None:
    payload = b'{"critical":' + b" " * (5 * 1024 * 1024) + b"{}}"
    signature = base64.b64encode(signing.sign(s.key, payload)).decode()
    signing.publish_legacy(s.registry, REPOSITORY, s.digest, signing.legacy_signature_manifest([(payload, signature)]))
    s.attest()
    s.clean_scan()


def non_json_payload(s: Scene) -> None:
    payload = b"sign me: " + s.digest.encode()
    signature = base64.b64encode(signing.sign(s.key, payload)).decode()
    signing.publish_legacy(s.registry, REPOSITORY, s.digest, signing.legacy_signature_manifest([(payload, signature)]))
    s.attest()
    s.clean_scan()


def duplicated_digest(first: str, last: str) -> Callable[[Scene], None]:
    """A simple-signing payload naming `docker-manifest-digest` twice ("target" or "other" image
    first), signed by the trusted key: a last-key-wins reader (Go's, Python's default) and a
    first-key-wins one would disagree about which image it signs."""

    def build(s: Scene) -> None:
        pick = {"target": s.digest, "other": s.other}
        payload = signing.simple_signing_payload(REFERENCE, pick[last]).replace(
            b'"image":{', b'"image":{"docker-manifest-digest":"' + pick[first].encode() + b'",'
        )
        assert payload.count(b"docker-manifest-digest") == 2
        signature = base64.b64encode(signing.sign(s.key, payload)).decode()
        signing.publish_legacy(s.registry, REPOSITORY, s.digest, signing.legacy_signature_manifest([(payload, signature)]))
        s.attest()
        s.clean_scan()

    return build


def high_finding(s: Scene) -> None:
    s.sign()
    s.attest()
    s.scans.findings[s.digest] = [{"name": "CVE-2024-9999", "severity": "HIGH"}, {"name": "CVE-2024-0001", "severity": "LOW"}]


def no_scan(s: Scene) -> None:
    s.sign()
    s.attest()


def keyless_signed(**options: Any) -> Callable[[Scene], None]:
    def build(s: Scene) -> None:
        s.keyless = True
        s.local = LOCAL_SIGSTORE
        signing.publish(s.registry, REPOSITORY, s.local.keyless_referrer_artifact(s.digest, s.descriptor(), **options))
        s.attest()
        s.clean_scan()

    return build


LOCAL_SIGSTORE = SIGSTORE.LocalSigstore.create() if SIGSTORE is not None else None
EVIL = "https://github.com/evil/podinfo/.github/workflows/build.yml@refs/heads/main"
KEYLESS_SKIP = pytest.mark.skipif(SIGSTORE is None, reason="podrelease.verify.keyless / local.sigstore_local not present")


def _in(minutes: int) -> int:
    return int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp())


NONE_ACCEPTED = "1 signature(s) attached to podinfo@{target}, none accepted; "
ROWS: list[Any] = [
    ("unsigned", unsigned, SignatureMissing, "no cosign signature is attached to podinfo@{target}"),
    (
        "tampered payload",
        tampered_payload,
        SignatureInvalid,
        NONE_ACCEPTED + "SignatureInvalid: simple-signing signature does not verify with any of the 1 trusted key(s)",
    ),
    (
        "wrong key",
        wrong_key,
        SignatureInvalid,
        NONE_ACCEPTED + "SignatureInvalid: simple-signing signature does not verify with any of the 1 trusted key(s)",
    ),
    (
        "signature over another digest",
        signature_over_another_digest,
        DigestMismatch,
        NONE_ACCEPTED + "DigestMismatch: valid signature by key {key16} is for {other}, not {target}",
    ),
    ("tag moved after signing", tag_moved_after_signing, SignatureMissing, "no cosign signature is attached to podinfo@{target}"),
    (
        "tag moved, old signature copied along",
        tag_moved_signature_copied,
        DigestMismatch,
        "DigestMismatch: valid signature by key {key16} is for {digest}, not {target}",
    ),
    (
        "missing SBOM",
        missing_sbom,
        SbomMissing,
        "the policy requires an SBOM attestation and none signed for podinfo@{target} is attached",
    ),
    (
        "SBOM for another digest",
        sbom_for_another_digest,
        SbomMissing,
        "1 SBOM attestation(s) attached are for another digest ({other}) and count for nothing",
    ),
    (
        "tampered SBOM",
        tampered_sbom,
        SbomInvalid,
        "1 of 1 SBOM attestation(s) for podinfo@{target} failed (every one used must verify); SignatureInvalid",
    ),
    (
        "a good SBOM does not excuse a bad one",
        good_and_bad_sbom,
        SbomInvalid,
        "1 of 2 SBOM attestation(s) for podinfo@{target} failed",
    ),
    (
        "corrupt bundle",
        corrupt_bundle,
        MalformedSignature,
        NONE_ACCEPTED + "MalformedSignature: the sigstore bundle is not valid JSON",
    ),
    ("oversized payload", oversized_payload, MalformedSignature, "over the 4194304-byte limit"),
    (
        "non-JSON payload",
        non_json_payload,
        MalformedSignature,
        NONE_ACCEPTED + "MalformedSignature: the simple-signing payload is not valid JSON",
    ),
    (
        "scan finding at the threshold",
        high_finding,
        ScanBlocked,
        "podinfo@{target} has 1 HIGH finding(s), at or above HIGH (CVE-2024-9999)",
    ),
    ("no scan", no_scan, ScanUnavailable, "the policy blocks on scan findings but podinfo@{target} has no scan"),
    (
        "docker-manifest-digest twice, this image last",
        duplicated_digest("other", "target"),
        MalformedSignature,
        NONE_ACCEPTED + "MalformedSignature: the simple-signing payload has the key 'docker-manifest-digest' more than once",
    ),
    (
        "docker-manifest-digest twice, this image first",
        duplicated_digest("target", "other"),
        MalformedSignature,
        NONE_ACCEPTED + "MalformedSignature: the simple-signing payload has the key 'docker-manifest-digest' more than once",
    ),
    pytest.param(
        "wrong identity",
        keyless_signed(identity=EVIL),
        SignatureInvalid,
        f"certificate identity {EVIL} from issuer https://token.actions.githubusercontent.com is not allowed by the policy",
        marks=KEYLESS_SKIP,
    ),
    pytest.param(
        "wrong issuer",
        keyless_signed(issuer="https://accounts.google.com"),
        SignatureInvalid,
        "from issuer https://accounts.google.com is not allowed by the policy",
        marks=KEYLESS_SKIP,
    ),
    pytest.param(
        "certificate used outside its validity",
        keyless_signed(integrated_time=_in(20)),
        SignatureInvalid,
        "not valid at the signing time",
        marks=KEYLESS_SKIP,
    ),
    pytest.param(
        "Rekor v2: TSA timestamp over another signature",
        keyless_signed(rekor_v2=True, timestamp_over=b"another signature"),
        SignatureInvalid,
        NONE_ACCEPTED + "SignatureInvalid: the RFC 3161 timestamp is over another signature",
        marks=KEYLESS_SKIP,
    ),
    pytest.param(
        "Rekor v2: timestamp outside the TSA's validity",
        keyless_signed(rekor_v2=True, timestamp_at=datetime.now(UTC) - timedelta(days=3)),
        SignatureInvalid,
        "is outside its timestamp authority's validity",
        marks=KEYLESS_SKIP,
    ),
    pytest.param(
        "Rekor v2: no verified time at all",
        keyless_signed(rekor_v2=True, timestamped=False),
        SignatureInvalid,
        NONE_ACCEPTED + "SignatureInvalid: no verified time: the log entry has no integrated time",
        marks=KEYLESS_SKIP,
    ),
]


def _ids(rows: list[Any]) -> list[str]:
    return [row.values[0] if hasattr(row, "values") else row[0] for row in rows]


@pytest.mark.parametrize(("name", "make", "error", "reason"), ROWS, ids=_ids(ROWS))
def test_refusal_table(name: str, make: Callable[[Scene], None], error: type[Exception], reason: str) -> None:
    # GIVEN an image with one thing wrong
    scene = Scene()
    make(scene)
    policy = scene.policy()
    # WHEN the gate runs under the policy (no grace wait)
    with pytest.raises(error) as info:
        enforce(scene.registry, scene.scans, REPOSITORY, scene.target, policy, 0)
    # THEN it is refused with exactly this named error and reason
    assert type(info.value) is error, f"{name}: {type(info.value).__name__}: {info.value}"
    expected = reason.format(target=scene.target, digest=scene.digest, other=scene.other, key16=policy.trust.key_ids[0][:16])
    assert expected in str(info.value)


def test_the_baseline_passes_with_combined_evidence() -> None:
    # GIVEN a signed, attested, scanned image: the row every refusal deviates from
    scene = Scene()
    scene.good()
    evidence = enforce(scene.registry, scene.scans, REPOSITORY, scene.digest, scene.policy(), 0)
    key_id = scene.policy().trust.key_ids[0]
    assert [(s["kind"], s["key_id"]) for s in evidence["signatures"]] == [("simple-signing", key_id)]
    assert [(s["format"], s["key_id"], s["source"]) for s in evidence["sbom"]["sboms"]] == [("spdx", key_id, "referrer")]
    assert (evidence["scan"]["counts"], evidence["scan"]["worst"]) == ({"LOW": 1}, "LOW")


@KEYLESS_SKIP
def test_keyless_signature_and_keyless_sbom_pass_with_the_signer_identity() -> None:
    # GIVEN the build workflow's keyless signature and its keyless SBOM attestation
    scene = Scene()
    scene.keyless, scene.local = True, LOCAL_SIGSTORE
    signing.publish(scene.registry, REPOSITORY, scene.local.keyless_referrer_artifact(scene.digest, scene.descriptor()))
    bundle = scene.local.keyless_bundle(scene.digest, statement=signing.sbom_statement(scene.digest, "cyclonedx"))
    signing.publish(
        scene.registry,
        REPOSITORY,
        signing.bundle_referrer_manifest(bundle, scene.descriptor(), predicate_type=signing.CYCLONEDX_PREDICATE),
    )
    scene.clean_scan()
    # WHEN the gate runs THEN the SBOM evidence names the workflow identity that signed it
    evidence = enforce(scene.registry, scene.scans, REPOSITORY, scene.digest, scene.policy(), 0)
    [sbom] = evidence["sbom"]["sboms"]
    assert (sbom["format"], sbom["signer_identity"], sbom["signer"]["issuer"]) == (
        "cyclonedx",
        SIGSTORE.BUILD_IDENTITY,
        "https://token.actions.githubusercontent.com",
    )


def test_an_sbom_pushed_just_after_the_signature_is_waited_for_within_the_grace() -> None:
    # GIVEN a signed image whose SBOM attestation lands while the gate waits
    scene = Scene()
    scene.sign()
    scene.clean_scan()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        scene.attest()

    evidence = enforce(
        scene.registry, scene.scans, REPOSITORY, scene.digest, scene.policy(), 5, sleep=sleep, clock=lambda: now[0]
    )
    assert len(evidence["sbom"]["sboms"]) == 1
    assert now[0] == 1.0
