"""Keyless (Fulcio certificate) verification on real vectors and on a local sigstore instance.

GIVEN a keyless signature (third-party vector, or made by local/sigstore_local.py) WHEN it is
verified under a keyless policy THEN it passes with the signer's identity as evidence, or it is
refused with exactly the expected named error and reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from local.registry import MemoryRegistry
from local.signing import image_descriptor, publish
from local.sigstore_local import BUILD_IDENTITY, LocalSigstore
from podrelease.core.errors import MalformedSignature, PolicyError, SignatureInvalid, VerificationFailed
from podrelease.verify.certificates import GITHUB_ACTIONS_ISSUER, Identity
from podrelease.verify.envelopes import verify_bundle, verify_legacy_layer
from podrelease.verify.keyless import FulcioVerifier, keyless_policy, verifier_for
from podrelease.verify.kms import kms_trusted_key
from podrelease.verify.registry import OCI_MANIFEST
from podrelease.verify.signatures import verify_image
from podrelease.verify.transparency_log import merkle_root_from_proof
from podrelease.verify.trust_policy import TrustPolicy
from podrelease.verify.trusted_root import PRODUCTION_TRUSTED_ROOT, SigstoreTrustRoot

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
CONFORMANCE = VECTORS / "sigstore-conformance"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
A_TXT = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
FULCIO_DIR = VECTORS / "containers-image" / "dir-img-cosign-fulcio-rekor-valid"


def _legacy_signature(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    return json.loads(raw[raw.index(b"\n") + 1 :])


def _fulcio_vector() -> tuple[bytes, dict[str, Any], str]:
    signature = _legacy_signature(FULCIO_DIR / "signature-1")
    digest = "sha256:" + hashlib.sha256((FULCIO_DIR / "manifest.json").read_bytes()).hexdigest()
    return base64.b64decode(signature["payload"]), signature["annotations"], digest


MITR = Identity(issuer="https://github.com/login/oauth", subject="mitr@redhat.com")


# --- the pinned root ---------------------------------------------------------------------------------


def test_pinned_root_keeps_every_key_of_the_production_root_vector() -> None:
    """The pinned root is sigstore's production root: it holds every transparency log, CA and CT
    log of sigstore-python's copy (the vectors' signatures were made under them). A weekly refresh
    (scripts/refresh-trusted-root.py) may add keys and extend validity; one that drops a key fails
    here and needs a reviewer's eye, as it should."""
    vector = json.loads((VECTORS / "sigstore-python" / "production_trusted_root.json").read_bytes())
    shipped = json.loads(PRODUCTION_TRUSTED_ROOT.read_bytes())
    assert shipped["mediaType"] == vector["mediaType"]

    def keys(document: dict[str, Any], field: str) -> set[str]:
        return {entry.get("logId", {}).get("keyId") or json.dumps(entry["certChain"], sort_keys=True)
                for entry in document.get(field, [])}

    for field in ("tlogs", "ctlogs", "certificateAuthorities"):
        assert keys(vector, field) <= keys(shipped, field), f"the pinned root dropped {field} of the production root"
    root = SigstoreTrustRoot.production()
    assert root.tlog("c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d") is not None
    assert len(root.certificate_authorities) >= 2
    assert len(root.ctlogs) >= 2


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"mediaType": "something/else"}',
        b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}',
    ],
)
def test_unusable_trusted_root_is_a_policy_error(raw: bytes) -> None:
    with pytest.raises(PolicyError):
        SigstoreTrustRoot.from_json(raw)


@pytest.mark.parametrize(
    "rule",
    [
        {"issuer": "", "subject": "a"},
        {"issuer": "https://x", "subject": "a", "subject_regex": "a"},
        {"issuer": "https://x"},
        {"issuer": "https://x", "subject_regex": "("},
        {"issuer": "https://x", "subject": "a", "extra": 1},
    ],
)
def test_bad_identity_rule_is_a_policy_error(rule: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        Identity.from_dict(rule)


def test_keyless_policy_without_identities_is_refused() -> None:
    with pytest.raises(PolicyError):
        keyless_policy([])


# --- third-party vectors -------------------------------------------------------------------------------


def test_legacy_fulcio_rekor_vector_verifies_with_integrated_time() -> None:
    payload, annotations, digest = _fulcio_vector()
    evidence = verify_legacy_layer(
        "application/vnd.dev.cosign.simplesigning.v1+json", payload, annotations, keyless_policy([MITR]), digest
    )
    assert evidence.signer is not None
    assert dict(evidence.signer) == {
        "identity": "mitr@redhat.com",
        "issuer": "https://github.com/login/oauth",
        "signed_at": "2023-01-20T20:51:33+00:00",
        "time_source": "transparency log",
        "log_index": 11605770,
        "log_id": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
        "certificate_sha256": "e3149dd0d9210b862d10b5bda58eb79e38507f831c9a54a1e0a2cc933de556ac",
    }


def test_legacy_vector_with_root_from_its_pem_files() -> None:
    payload, annotations, digest = _fulcio_vector()
    chain = annotations["dev.sigstore.cosign/chain"].encode()
    # the chain's anchor is the vector's fulcio_v1.crt.pem
    assert (VECTORS / "containers-image" / "fulcio_v1.crt.pem").read_bytes().strip() in chain
    root = SigstoreTrustRoot.from_pems([chain], [(VECTORS / "containers-image" / "rekor.pub").read_bytes()])
    evidence = verify_legacy_layer(
        "application/vnd.dev.cosign.simplesigning.v1+json", payload, annotations, keyless_policy([MITR], root=root), digest
    )
    assert evidence.key_id == "4254f15c2eb294156b05189ff6d63d415b0952b2d3c3a701a6402fb0fee26055"


def test_keyless_legacy_signature_without_keyless_policy_is_refused() -> None:
    payload, annotations, digest = _fulcio_vector()
    key_policy = TrustPolicy.from_pem((VECTORS / "containers-image" / "cosign.pub").read_bytes())
    with pytest.raises(SignatureInvalid, match="no keyless verifier"):
        verify_legacy_layer("application/vnd.dev.cosign.simplesigning.v1+json", payload, annotations, key_policy, digest)


BEACON_POLICY = [Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=BEACON)]


@pytest.mark.parametrize(
    ("case", "kind", "signed_at"),
    [
        ("happy-path-v0.3", "bundle-message-signature", "2024-03-19T17:26:26+00:00"),
        ("happy-path-intoto-in-dsse-v3", "bundle-dsse", "2024-12-16T18:42:56+00:00"),
    ],
)
@pytest.mark.parametrize("use_sigstore", [True, False], ids=["sigstore-python", "builtin"])
def test_conformance_keyless_bundles_verify(case: str, kind: str, signed_at: str, *, use_sigstore: bool) -> None:
    bundle = (CONFORMANCE / case / "bundle.sigstore.json").read_bytes()
    policy = keyless_policy(BEACON_POLICY, use_sigstore=use_sigstore)
    evidence = verify_bundle(bundle, policy, A_TXT, predicate_type=None)
    assert evidence.kind == kind
    assert evidence.signer is not None
    assert evidence.signer["identity"] == BEACON
    assert evidence.signer["signed_at"] == signed_at


@pytest.mark.parametrize("case", ["signature-mismatch_fail", "message-digest-mismatch_fail"])
@pytest.mark.parametrize("use_sigstore", [True, False], ids=["sigstore-python", "builtin"])
def test_conformance_failing_bundles_are_refused(case: str, *, use_sigstore: bool) -> None:
    bundle = (CONFORMANCE / case / "bundle.sigstore.json").read_bytes()
    with pytest.raises(VerificationFailed):
        verify_bundle(bundle, keyless_policy(BEACON_POLICY, use_sigstore=use_sigstore), A_TXT, predicate_type=None)


def test_cosign_oci_attestation_verifies_under_its_root() -> None:
    root = SigstoreTrustRoot.from_file(VECTORS / "cosign" / "trusted_root_pgi.json")
    policy = keyless_policy([Identity(issuer="https://github.com/login/oauth", subject="cody@soyland.com")], root=root)
    digest = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
    evidence = verify_bundle(
        (VECTORS / "cosign" / "oci-attestation.sigstore.json").read_bytes(), policy, digest, predicate_type=None
    )
    assert evidence.predicate_type == "https://cosign.sigstore.dev/attestation/v1"
    # as an image *signature* it is refused: it is an attestation
    with pytest.raises(MalformedSignature, match="attestation"):
        verify_bundle((VECTORS / "cosign" / "oci-attestation.sigstore.json").read_bytes(), policy, digest)


# --- the refusal table (local sigstore instance) -----------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalSigstore:
    return LocalSigstore.create()


IMAGE = "sha256:" + "ab" * 32


def _mutate(bundle: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def _no_tlog(doc: dict[str, Any]) -> None:
    doc["verificationMaterial"]["tlogEntries"] = []


def _no_set(doc: dict[str, Any]) -> None:
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]


def _bad_set(doc: dict[str, Any]) -> None:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) - 60)


def _bad_proof(doc: dict[str, Any]) -> None:
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["rootHash"] = base64.b64encode(b"\x00" * 32).decode()


def _corrupt_certificate(doc: dict[str, Any]) -> None:
    doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(b"\x30\x03junk").decode()


def _tampered_payload(doc: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"x": 1}
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


Case = tuple[str, Callable[[LocalSigstore], bytes], type[Exception], str]


def _other_ca(local: LocalSigstore) -> bytes:
    return local.keyless_bundle(IMAGE, certificate_authority=LocalSigstore.create(name="rogue"))


def _late(local: LocalSigstore) -> bytes:
    # logged 20 minutes after the certificate was issued: outside its ten-minute validity
    return local.keyless_bundle(IMAGE, integrated_time=int((datetime.now(UTC) + timedelta(minutes=20)).timestamp()))


def _early(local: LocalSigstore) -> bytes:
    return local.keyless_bundle(IMAGE, integrated_time=int((datetime.now(UTC) - timedelta(minutes=20)).timestamp()))


def _other_log(local: LocalSigstore) -> bytes:
    rogue = LocalSigstore.create(name="rogue-log")
    rogue.intermediate, rogue.intermediate_key, rogue.root = local.intermediate, local.intermediate_key, local.root
    return rogue.keyless_bundle(IMAGE)


REFUSALS: list[Case] = [
    (
        "wrong identity",
        lambda s: s.keyless_bundle(IMAGE, identity="https://github.com/evil/podinfo/.github/workflows/build.yml@refs/heads/main"),
        SignatureInvalid,
        "is not allowed by the policy",
    ),
    (
        "identity only as a prefix",
        lambda s: s.keyless_bundle(IMAGE, identity=BUILD_IDENTITY + "x"),
        SignatureInvalid,
        "is not allowed by the policy",
    ),
    (
        "wrong issuer",
        lambda s: s.keyless_bundle(IMAGE, issuer="https://accounts.google.com"),
        SignatureInvalid,
        "is not allowed by the policy",
    ),
    ("certificate used after its validity", _late, SignatureInvalid, "not valid at the signing time"),
    ("certificate used before its validity", _early, SignatureInvalid, "not valid at the signing time"),
    ("untrusted chain", _other_ca, SignatureInvalid, "does not chain"),
    ("log the root does not name", _other_log, SignatureInvalid, "trusted root does not name"),
    (
        "missing tlog evidence",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _no_tlog),
        SignatureInvalid,
        "without transparency-log evidence",
    ),
    (
        "no signed entry timestamp: integratedTime unauthenticated, no verified time",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _no_set),
        SignatureInvalid,
        "no verified time",
    ),
    (
        "forged integrated time",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _bad_set),
        SignatureInvalid,
        "signed entry timestamp does not verify",
    ),
    (
        "inclusion proof to another root",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _bad_proof),
        SignatureInvalid,
        "inclusion proof",
    ),
    (
        "corrupt certificate",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _corrupt_certificate),
        MalformedSignature,
        "certificate cannot be parsed",
    ),
    ("corrupt bundle", lambda s: s.keyless_bundle(IMAGE)[:-40], MalformedSignature, "not valid JSON"),
    (
        "tampered payload",
        lambda s: _mutate(s.keyless_bundle(IMAGE), _tampered_payload),
        SignatureInvalid,
        "another signature, certificate or content",
    ),
]


@pytest.mark.parametrize(("name", "make", "error", "reason"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_keyless_refusal_table(
    local: LocalSigstore, name: str, make: Callable[[LocalSigstore], bytes], error: type[Exception], reason: str
) -> None:
    bundle = make(local)
    policy = TrustPolicy(keys=(), keyless=local.verifier())
    with pytest.raises(error, match=reason) as caught:
        verify_bundle(bundle, policy, IMAGE)
    assert type(caught.value) is error, name


def test_local_keyless_bundle_verifies_with_signer_evidence(local: LocalSigstore) -> None:
    for _ in range(4):  # a log with several entries: the proof has real hashes
        local.keyless_bundle("sha256:" + "cd" * 32)
    evidence = verify_bundle(local.keyless_bundle(IMAGE), TrustPolicy(keys=(), keyless=local.verifier()), IMAGE)
    assert evidence.kind == "bundle-dsse"
    assert evidence.signer is not None
    assert evidence.signer["identity"] == BUILD_IDENTITY
    assert evidence.signer["issuer"] == GITHUB_ACTIONS_ISSUER


def test_regex_identity_must_match_whole_san(local: LocalSigstore) -> None:
    bundle = local.keyless_bundle(IMAGE)
    good = Identity(
        issuer=GITHUB_ACTIONS_ISSUER,
        subject_regex=r"https://github\.com/acme/podinfo/\.github/workflows/build\.yml@refs/heads/.*",
    )
    partial = Identity(issuer=GITHUB_ACTIONS_ISSUER, subject_regex=r"https://github\.com/acme")
    assert verify_bundle(bundle, TrustPolicy(keys=(), keyless=local.verifier([good])), IMAGE).signer is not None
    with pytest.raises(SignatureInvalid, match="not allowed"):
        verify_bundle(bundle, TrustPolicy(keys=(), keyless=local.verifier([partial])), IMAGE)


def test_keyless_image_in_registry_through_the_gate(
    local: LocalSigstore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = MemoryRegistry()
    digest = registry.put_manifest("podinfo", b'{"schemaVersion":2,"layers":[]}', OCI_MANIFEST)
    publish(registry, "podinfo", local.keyless_referrer_artifact(digest, image_descriptor(registry, "podinfo", digest)))
    monkeypatch.setenv("SIGSTORE_TRUSTED_ROOT", str(local.write_trusted_root(tmp_path / "trusted_root.json")))
    verifier = verifier_for([Identity(issuer=GITHUB_ACTIONS_ISSUER, subject=BUILD_IDENTITY)])
    assert verifier.use_sigstore is False  # no CT logs in the local root
    verification = verify_image(registry, "podinfo", digest, TrustPolicy(keys=(), keyless=verifier))
    assert verification.evidence["signatures"][0]["signer"]["identity"] == BUILD_IDENTITY
    wrong = verifier_for(
        [
            Identity(
                issuer=GITHUB_ACTIONS_ISSUER,
                subject="https://github.com/acme/podinfo/.github/workflows/other.yml@refs/heads/main",
            )
        ]
    )
    with pytest.raises(SignatureInvalid, match="not allowed by the policy"):
        verify_image(registry, "podinfo", digest, TrustPolicy(keys=(), keyless=wrong))


def test_merkle_proof_rejects_wrong_shapes() -> None:
    leaf = hashlib.sha256(b"\x00x").digest()
    assert merkle_root_from_proof(leaf, 0, 1, []) == leaf
    with pytest.raises(SignatureInvalid):
        merkle_root_from_proof(leaf, 1, 1, [])
    with pytest.raises(SignatureInvalid):
        merkle_root_from_proof(leaf, 0, 2, [])


# --- KMS ---------------------------------------------------------------------------------------------


class _Kms:
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply

    def get_public_key(self, KeyId: str) -> dict[str, Any]:
        return {"KeyId": KeyId, **self.reply}


def test_kms_public_key_becomes_a_trusted_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = kms_trusted_key(_Kms({"PublicKey": der, "KeyUsage": "SIGN_VERIFY", "KeySpec": "ECC_NIST_P256"}), "alias/cosign")
    assert key.key_id == hashlib.sha256(der).hexdigest()
    with pytest.raises(PolicyError, match="not a signing key"):
        kms_trusted_key(_Kms({"PublicKey": der, "KeyUsage": "ENCRYPT_DECRYPT"}), "alias/enc")


# --- lazy import ---------------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    result = subprocess.run(  # noqa: S603 - our own interpreter and fixed code
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_key_only_policy_never_imports_sigstore() -> None:
    pem = (VECTORS / "containers-image" / "cosign.pub").read_text()
    modules = _modules_after(
        "from podrelease.verify.trust_policy import TrustPolicy\n"
        "from podrelease.verify.envelopes import verify_legacy_layer\n"
        "import podrelease.verify.policy, podrelease.verify.gate\n"
        f"TrustPolicy.from_pem({pem!r})"
    )
    assert "podrelease.verify.signatures" in modules
    assert not {m for m in modules if m == "sigstore" or m.startswith(("sigstore.", "sigstore_models"))}
    assert "podrelease.verify.keyless" not in modules


def test_keyless_policy_imports_sigstore_only_when_a_bundle_is_checked() -> None:
    built = _modules_after(
        "from podrelease.verify.keyless import keyless_policy\nfrom podrelease.verify.certificates import Identity\n"
        "keyless_policy([Identity(issuer='i', subject='s')])"
    )
    assert "sigstore" not in built
    used = _modules_after(
        "from pathlib import Path\n"
        "from podrelease.verify.keyless import keyless_policy\nfrom podrelease.verify.certificates import Identity\n"
        "from podrelease.verify.envelopes import verify_bundle\n"
        f"p = keyless_policy([Identity(issuer={GITHUB_ACTIONS_ISSUER!r}, subject={BEACON!r})])\n"
        f"verify_bundle(Path({str(CONFORMANCE / 'happy-path-v0.3' / 'bundle.sigstore.json')!r}).read_bytes(), p, {A_TXT!r}, predicate_type=None)"
    )
    assert "sigstore.verify" in used


def test_fulcio_verifier_is_a_keyless_verifier() -> None:
    verifier = FulcioVerifier(root=SigstoreTrustRoot.production(), identities=(MITR,))
    assert verifier.use_sigstore is True
    assert TrustPolicy(keys=(), keyless=verifier).keyless is verifier
