"""The signature gate on real third-party vectors and on artifacts made by local/signing.py.

GIVEN a vector or a signed/tampered artifact WHEN it is verified THEN it passes with exact evidence,
or it is refused with exactly the expected named error (never a subclass, never a crash).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import (
    DigestMismatch,
    MalformedSignature,
    PolicyError,
    RegistryError,
    SignatureInvalid,
    SignatureMissing,
)
from podrelease.verify.attachments import COSIGN_SIGN_PREDICATE
from podrelease.verify.envelopes import (
    bundle_predicate_type,
    dsse_pae,
    verify_bundle,
    verify_dsse,
    verify_legacy_layer,
    verify_message_signature,
    verify_simple_signing,
)
from podrelease.verify.registry import OCI_MANIFEST, sha256_digest
from podrelease.verify.signatures import verify_image
from podrelease.verify.trust_policy import TrustPolicy

VECTORS = Path(__file__).parents[1] / "vectors"
CI = VECTORS / "containers-image"
CONFORMANCE = VECTORS / "sigstore-conformance"
A_TXT_DIGEST = sha256_digest((CONFORMANCE / "a.txt").read_bytes())
OTHER_DIGEST = "sha256:" + "ab" * 32


def raises_exactly(expected: type[Exception], call: Callable[[], Any]) -> Exception:
    with pytest.raises(expected) as info:
        call()
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
    return info.value


def key_policy(path: Path) -> TrustPolicy:
    return TrustPolicy.from_pem(path.read_text())


def spki_id(key: Any) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# --- containers/image: legacy simple-signing vectors ---------------------------------------------


def dir_signature(path: Path) -> tuple[str, bytes, dict[str, Any]]:
    """containers/image `dir:` signature file: b"\\x00sigstore-json\\n" + JSON."""
    raw = path.read_bytes()
    prefix = b"\x00sigstore-json\n"
    assert raw.startswith(prefix)
    body = json.loads(raw[len(prefix) :])
    return body["mimeType"], base64.b64decode(body["payload"]), body["annotations"]


def manifest_digest(case: str) -> str:
    return sha256_digest((CI / case / "manifest.json").read_bytes())


CONTAINERS_IMAGE_CASES = [
    # case, signature file, trusted key, expected error (None = verifies)
    ("dir-img-cosign-valid", "signature-1", "cosign.pub", None),
    ("dir-img-cosign-valid-2", "signature-1", "cosign.pub", None),
    ("dir-img-cosign-valid-2", "signature-2", "cosign.pub", None),
    ("dir-img-cosign-valid-with-tag", "signature-1", "cosign.pub", None),
    ("dir-img-cosign-key-rekor-valid", "signature-1", "cosign2.pub", None),
    ("dir-img-cosign-mixed", "signature-2", "cosign.pub", None),
    ("dir-img-cosign-mixed", "signature-1", "cosign.pub", SignatureInvalid),
    ("dir-img-cosign-valid", "signature-1", "cosign2.pub", SignatureInvalid),
    ("dir-img-cosign-key-rekor-valid", "signature-1", "cosign.pub", SignatureInvalid),
    ("dir-img-cosign-fulcio-rekor-valid", "signature-1", "cosign.pub", SignatureInvalid),
    ("dir-img-cosign-modified-manifest", "signature-1", "cosign.pub", DigestMismatch),
    ("dir-img-cosign-manifest-digest-error", "signature-1", "cosign.pub", DigestMismatch),
    ("dir-img-cosign-other-attachment", "signature-1", "cosign.pub", MalformedSignature),
]


@pytest.mark.parametrize(("case", "signature", "key", "expected"), CONTAINERS_IMAGE_CASES)
def test_containers_image_vectors(case: str, signature: str, key: str, expected: type[Exception] | None) -> None:
    mime, payload, annotations = dir_signature(CI / case / signature)
    policy = key_policy(CI / key)
    digest = manifest_digest(case)

    def call() -> Any:
        return verify_legacy_layer(mime, payload, annotations, policy, digest)

    if expected is None:
        evidence = call()
        assert evidence.kind == "simple-signing"
        assert evidence.key_id == policy.keys[0].key_id
        assert evidence.digest == digest
    else:
        raises_exactly(expected, call)


def test_containers_image_tagged_reference_is_evidence() -> None:
    mime, payload, annotations = dir_signature(CI / "dir-img-cosign-valid-with-tag" / "signature-1")
    digest = manifest_digest("dir-img-cosign-valid-with-tag")
    evidence = verify_legacy_layer(mime, payload, annotations, key_policy(CI / "cosign.pub"), digest)
    assert evidence.docker_reference == "192.168.64.2:5000/skopeo-signed:tag"


def test_keyless_legacy_signature_is_refused_by_key_policy_with_reason() -> None:
    mime, payload, annotations = dir_signature(CI / "dir-img-cosign-fulcio-rekor-valid" / "signature-1")
    digest = manifest_digest("dir-img-cosign-fulcio-rekor-valid")
    error = raises_exactly(
        SignatureInvalid,
        lambda: verify_legacy_layer(mime, payload, annotations, key_policy(CI / "cosign.pub"), digest),
    )
    assert "keyless" in str(error)


def test_simple_signing_direct_call_with_vector() -> None:
    _, payload, annotations = dir_signature(CI / "dir-img-cosign-valid" / "signature-1")
    signature = annotations["dev.cosignproject.cosign/signature"]
    policy = key_policy(CI / "cosign.pub")
    digest = manifest_digest("dir-img-cosign-valid")
    assert verify_simple_signing(payload, signature, policy, digest).key_id == policy.keys[0].key_id
    raises_exactly(DigestMismatch, lambda: verify_simple_signing(payload, signature, policy, OTHER_DIGEST))
    raises_exactly(SignatureInvalid, lambda: verify_simple_signing(payload + b" ", signature, policy, digest))
    changed = payload.replace(b"cosign-signed", b"cosign-evil")
    raises_exactly(SignatureInvalid, lambda: verify_simple_signing(changed, signature, policy, digest))
    raises_exactly(MalformedSignature, lambda: verify_simple_signing(payload, "not base64!", policy, digest))
    raises_exactly(MalformedSignature, lambda: verify_simple_signing(b"[1]", signature, policy, digest))


def vector_registry(case: str, signatures: list[str], *, with_image: bool = True) -> tuple[MemoryRegistry, str]:
    """The vector's image and its signatures as a registry holds them (a `.sig` manifest)."""
    registry = MemoryRegistry()
    layers = []
    digest = ""
    for name in signatures:
        _, payload, annotations = dir_signature(CI / case / name)
        layers.append((payload, annotations["dev.cosignproject.cosign/signature"]))
        digest = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    if with_image:
        digest = registry.put_manifest("podinfo", (CI / case / "manifest.json").read_bytes(), OCI_MANIFEST)
    signing.publish_legacy(registry, "podinfo", digest, signing.legacy_signature_manifest(layers))
    return registry, digest


def test_vector_through_registry_mixed_signatures() -> None:
    registry, digest = vector_registry("dir-img-cosign-mixed", ["signature-1", "signature-2"])
    result = verify_image(registry, "podinfo", digest, key_policy(CI / "cosign.pub"))
    assert [s.kind for s in result.signatures] == ["simple-signing"]
    assert [r["error"] for r in result.refusals] == ["SignatureInvalid"]
    json.dumps(result.evidence)  # JSON-able


def test_vector_without_image_manifest_cannot_be_checked() -> None:
    registry, digest = vector_registry("dir-img-cosign-no-manifest", ["signature-1"], with_image=False)
    raises_exactly(RegistryError, lambda: verify_image(registry, "podinfo", digest, key_policy(CI / "cosign.pub")))


# --- sigstore-conformance and cosign bundles -------------------------------------------------------


def bundle_bytes(case: str) -> bytes:
    return (CONFORMANCE / case / "bundle.sigstore.json").read_bytes()


def certificate_key_policy(case: str) -> TrustPolicy:
    """A policy trusting the key inside a keyless bundle's certificate (to test the signature alone)."""
    material = json.loads(bundle_bytes(case))["verificationMaterial"]
    raw = (
        material["certificate"]["rawBytes"]
        if "certificate" in material
        else material["x509CertificateChain"]["certificates"][0]["rawBytes"]
    )
    cert = x509.load_der_x509_certificate(base64.b64decode(raw))
    pem = cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return TrustPolicy.from_pem(pem)


MANAGED_KEY = CONFORMANCE / "managed-key-happy-path" / "key.pub"

BUNDLE_CASES = [
    # bundle case, trusted key file, digest, expected error
    ("managed-key-happy-path", MANAGED_KEY, A_TXT_DIGEST, None),
    ("managed-key-and-trusted-root", CONFORMANCE / "managed-key-and-trusted-root" / "key.pub", A_TXT_DIGEST, None),
    ("managed-key-happy-path", MANAGED_KEY, OTHER_DIGEST, DigestMismatch),
    ("managed-key-happy-path", CI / "cosign.pub", A_TXT_DIGEST, SignatureInvalid),
    ("signature-mismatch_fail", MANAGED_KEY, A_TXT_DIGEST, SignatureInvalid),
    ("message-digest-mismatch_fail", MANAGED_KEY, A_TXT_DIGEST, SignatureInvalid),
    ("happy-path-v0.3", MANAGED_KEY, A_TXT_DIGEST, SignatureInvalid),
    ("happy-path-intoto-in-dsse-v3", MANAGED_KEY, A_TXT_DIGEST, SignatureInvalid),
]


@pytest.mark.parametrize(("case", "key", "digest", "expected"), BUNDLE_CASES)
def test_conformance_bundles(case: str, key: Path, digest: str, expected: type[Exception] | None) -> None:
    policy = key_policy(key)
    if expected is None:
        evidence = verify_bundle(bundle_bytes(case), policy, digest)
        assert evidence.kind == "bundle-message-signature"
        assert evidence.key_id == policy.keys[0].key_id
    else:
        raises_exactly(expected, lambda: verify_bundle(bundle_bytes(case), policy, digest))


def test_managed_key_hint_is_the_key_id() -> None:
    hint = json.loads(bundle_bytes("managed-key-happy-path"))["verificationMaterial"]["publicKey"]["hint"]
    assert base64.b64decode(hint).hex() == key_policy(MANAGED_KEY).keys[0].key_id


@pytest.mark.parametrize("case", ["managed-key-no-key_fail", "managed-key-wrong-key_fail"])
def test_missing_or_corrupt_key_is_a_policy_error(case: str) -> None:
    key_file = CONFORMANCE / case / "key.pub"
    text = key_file.read_text() if key_file.exists() else ""
    raises_exactly(PolicyError, lambda: TrustPolicy.from_pem(text))


def test_keyless_message_signatures_checked_with_the_certificate_key() -> None:
    # GIVEN policies trusting exactly the key in each keyless bundle's certificate
    # WHEN the good bundle's message signature is checked THEN that key signed it
    good = json.loads(bundle_bytes("happy-path-v0.3"))["messageSignature"]
    policy = certificate_key_policy("happy-path-v0.3")
    assert verify_message_signature(good, policy, A_TXT_DIGEST).key_id == policy.keys[0].key_id


#: The digest the message-digest-mismatch case's bundle claims (a.txt's is sha256:a0cf...).
HINTED_DIGEST = "sha256:a1cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
KEYLESS_MESSAGE_FAILURES = [
    # conformance case, named error, its reason
    ("signature-mismatch_fail", SignatureInvalid, "message signature does not verify with any of the 1 trusted key(s)"),
    (
        "message-digest-mismatch_fail",
        DigestMismatch,
        f"messageDigest {HINTED_DIGEST} disagrees with {A_TXT_DIGEST}, which the signature covers",
    ),
]


@pytest.mark.parametrize(("case", "expected", "reason"), KEYLESS_MESSAGE_FAILURES, ids=[c[0] for c in KEYLESS_MESSAGE_FAILURES])
def test_keyless_message_signature_failures_are_named(case: str, expected: type[Exception], reason: str) -> None:
    # GIVEN a conformance failure case, its certificate's key trusted (so only the case's own flaw can fail it)
    message_signature = json.loads(bundle_bytes(case))["messageSignature"]
    policy = certificate_key_policy(case)
    # WHEN it is checked THEN it is refused with exactly the named error and reason
    error = raises_exactly(expected, lambda: verify_message_signature(message_signature, policy, A_TXT_DIGEST))
    assert str(error) == reason


def test_cosign_keyless_attestation_bundle() -> None:
    raw = (VECTORS / "cosign" / "oci-attestation.sigstore.json").read_bytes()
    assert bundle_predicate_type(raw) == "https://cosign.sigstore.dev/attestation/v1"
    digest = (
        "sha256:"
        + json.loads(base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"]))["subject"][0]["digest"]["sha256"]
    )
    error = raises_exactly(SignatureInvalid, lambda: verify_bundle(raw, key_policy(MANAGED_KEY), digest))
    assert "keyless" in str(error)


def test_dsse_pae_matches_the_dsse_spec_example() -> None:
    assert dsse_pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sigstore_go_public_key_dsse_bundle() -> None:
    raw = (VECTORS / "sigstore-go" / "bundle-public-key.json").read_bytes()
    envelope = json.loads(raw)["dsseEnvelope"]
    policy = key_policy(VECTORS / "sigstore-go" / "public-key.pem")
    result = verify_dsse(envelope, policy)
    assert (result.payload_type, result.payload) == ("text/plain", b"hello, world!")
    assert result.key.key_id == policy.keys[0].key_id
    # Not an in-toto statement, so not a signature of any image.
    error = raises_exactly(MalformedSignature, lambda: verify_bundle(raw, policy, A_TXT_DIGEST))
    assert "in-toto" in str(error)
    # The DSSE check itself can fail: another key, or a changed payload.
    raises_exactly(SignatureInvalid, lambda: verify_dsse(envelope, key_policy(MANAGED_KEY)))
    tampered = {**envelope, "payload": base64.b64encode(b"hello, world?").decode()}
    raises_exactly(SignatureInvalid, lambda: verify_dsse(tampered, policy))


# --- trust policy -------------------------------------------------------------------------------


def test_policy_reads_concatenated_keys_with_spki_ids() -> None:
    text = (CI / "cosign.pub").read_text() + (CI / "cosign2.pub").read_text()
    policy = TrustPolicy.from_pem(text)
    expected = [
        spki_id(serialization.load_pem_public_key((CI / name).read_bytes())) for name in ("cosign.pub", "cosign2.pub")
    ]
    assert list(policy.key_ids) == expected


def _pem(key: Any) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


BAD_POLICIES = [
    ("empty", ""),
    ("whitespace", "  \n"),
    ("not pem", "hello"),
    ("truncated", (CI / "cosign.pub").read_text()[:-30]),
    ("junk after key", (CI / "cosign.pub").read_text() + "junk"),
    ("certificate", (CI / "fulcio_v1.crt.pem").read_text()),
    (
        "private key",
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode(),
    ),
    ("short rsa", _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())),
    ("p-224", _pem(ec.generate_private_key(ec.SECP224R1()).public_key())),
]


@pytest.mark.parametrize(("name", "text"), BAD_POLICIES, ids=[c[0] for c in BAD_POLICIES])
def test_bad_policies_are_policy_errors(name: str, text: str) -> None:
    raises_exactly(PolicyError, lambda: TrustPolicy.from_pem(text))


def test_policy_with_no_keys_cannot_be_built() -> None:
    raises_exactly(PolicyError, lambda: TrustPolicy(keys=()))


def test_ed25519_and_rsa_keys_verify_simple_signing() -> None:
    digest = "sha256:" + "cd" * 32
    payload = signing.simple_signing_payload("example/podinfo", digest)
    ed = ed25519.Ed25519PrivateKey.generate()
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    for private, signature in (
        (ed, ed.sign(payload)),
        (rs, rs.sign(payload, padding.PKCS1v15(), hashes.SHA256())),
    ):
        policy = TrustPolicy.from_pem(_pem(private.public_key()))
        b64 = base64.b64encode(signature).decode()
        assert verify_simple_signing(payload, b64, policy, digest).key_id == spki_id(private.public_key())
        changed = payload.replace(b"example/", b"evil.example/")
        raises_exactly(SignatureInvalid, lambda c=changed, p=policy, s=b64: verify_simple_signing(c, s, p, digest))


# --- round trips with local/signing.py through MemoryRegistry ------------------------------------

REPO = "podinfo"
IMAGE = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "note": "image"}).encode()
OTHER_IMAGE = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "note": "other"}).encode()
KEY, KEY_PEM = signing.generate_key()
OTHER_KEY, _ = signing.generate_key()
POLICY = TrustPolicy.from_pem(KEY_PEM)


def new_image() -> tuple[MemoryRegistry, str]:
    registry = MemoryRegistry()
    return registry, registry.put_manifest(REPO, IMAGE, OCI_MANIFEST, tag="v1")


def legacy(key: ec.EllipticCurvePrivateKey = KEY, *, for_digest: str | None = None) -> Callable[..., None]:
    def build(registry: MemoryRegistry, digest: str) -> None:
        artifact = signing.legacy_signature_artifact(key, f"example/{REPO}", for_digest or digest)
        signing.publish_legacy(registry, REPO, digest, artifact)

    return build


def bundle(
    key: ec.EllipticCurvePrivateKey = KEY, *, kind: str = "dsse", for_digest: str | None = None
) -> Callable[..., None]:
    def build(registry: MemoryRegistry, digest: str) -> None:
        subject = signing.image_descriptor(registry, REPO, digest)
        artifact = signing.bundle_referrer_artifact(key, for_digest or digest, subject, kind=kind)
        signing.publish(registry, REPO, artifact)

    return build


def tampered_legacy(registry: MemoryRegistry, digest: str) -> None:
    payload = signing.simple_signing_payload(f"example/{REPO}", digest)
    signature = base64.b64encode(signing.sign(KEY, payload)).decode()
    changed = payload.replace(b"example/", b"evil.example/")
    signing.publish_legacy(registry, REPO, digest, signing.legacy_signature_manifest([(changed, signature)]))


def tampered_bundle(registry: MemoryRegistry, digest: str) -> None:
    raw = json.loads(signing.dsse_bundle(KEY, signing.cosign_sign_statement(digest)))
    statement = json.loads(base64.b64decode(raw["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"tampered": True}
    raw["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    subject = signing.image_descriptor(registry, REPO, digest)
    signing.publish(registry, REPO, signing.bundle_referrer_manifest(json.dumps(raw).encode(), subject))


def corrupt_bundle(registry: MemoryRegistry, digest: str) -> None:
    subject = signing.image_descriptor(registry, REPO, digest)
    signing.publish(
        registry, REPO, signing.bundle_referrer_manifest(b'{"mediaType": "application/vnd.dev.sig', subject)
    )


def corrupt_stored_blob(registry: MemoryRegistry, digest: str) -> None:
    legacy()(registry, digest)
    for key in list(registry.blobs):
        if b'"critical"' in registry.blobs[key]:
            registry.blobs[key] = registry.blobs[key].replace(b"critical", b"CRITICAL")


def oversized_payload(registry: MemoryRegistry, digest: str) -> None:
    payload = signing.simple_signing_payload(f"example/{REPO}", digest, optional={"pad": "x" * (4 * 1024 * 1024)})
    signature = base64.b64encode(signing.sign(KEY, payload)).decode()
    signing.publish_legacy(registry, REPO, digest, signing.legacy_signature_manifest([(payload, signature)]))


def sbom_attestation_only(registry: MemoryRegistry, digest: str) -> None:
    statement = signing.cosign_sign_statement(digest, predicate_type="https://cyclonedx.org/bom")
    subject = signing.image_descriptor(registry, REPO, digest)
    artifact = signing.bundle_referrer_manifest(
        signing.dsse_bundle(KEY, statement), subject, predicate_type="https://cyclonedx.org/bom"
    )
    signing.publish(registry, REPO, artifact)


def sbom_attestation_unannounced(registry: MemoryRegistry, digest: str) -> None:
    statement = signing.cosign_sign_statement(digest, predicate_type="https://spdx.dev/Document")
    subject = signing.image_descriptor(registry, REPO, digest)
    signing.publish(
        registry,
        REPO,
        signing.bundle_referrer_manifest(signing.dsse_bundle(KEY, statement), subject, predicate_type=None),
    )


def nothing(registry: MemoryRegistry, digest: str) -> None:
    del registry, digest


def both(*builders: Callable[..., None]) -> Callable[..., None]:
    def build(registry: MemoryRegistry, digest: str) -> None:
        for builder in builders:
            builder(registry, digest)

    return build


OTHER = sha256_digest(OTHER_IMAGE)

ROUND_TRIPS: list[tuple[str, Callable[..., None], type[Exception] | None, list[str]]] = [
    # name, what is attached, expected error (None: verifies), kinds of accepted signatures
    ("legacy signed", legacy(), None, ["simple-signing"]),
    ("bundle dsse signed", bundle(), None, ["bundle-dsse"]),
    ("bundle message signed", bundle(kind="message"), None, ["bundle-message-signature"]),
    ("legacy and bundle", both(legacy(), bundle()), None, ["simple-signing", "bundle-dsse"]),
    ("wrong key and a good one", both(legacy(OTHER_KEY), bundle()), None, ["bundle-dsse"]),
    ("unsigned", nothing, SignatureMissing, []),
    ("only an sbom attestation", sbom_attestation_only, SignatureMissing, []),
    ("only an unannounced attestation", sbom_attestation_unannounced, SignatureMissing, []),
    ("tampered legacy payload", tampered_legacy, SignatureInvalid, []),
    ("tampered bundle payload", tampered_bundle, SignatureInvalid, []),
    ("wrong key legacy", legacy(OTHER_KEY), SignatureInvalid, []),
    ("wrong key bundle", bundle(OTHER_KEY), SignatureInvalid, []),
    ("wrong key message bundle", bundle(OTHER_KEY, kind="message"), SignatureInvalid, []),
    ("legacy for another digest", legacy(for_digest=OTHER), DigestMismatch, []),
    ("bundle for another digest", bundle(for_digest=OTHER), DigestMismatch, []),
    ("message bundle for another digest", bundle(kind="message", for_digest=OTHER), DigestMismatch, []),
    ("other digest beats wrong key", both(legacy(OTHER_KEY), bundle(for_digest=OTHER)), DigestMismatch, []),
    ("corrupt bundle", corrupt_bundle, MalformedSignature, []),
    ("corrupt stored blob", corrupt_stored_blob, MalformedSignature, []),
    ("oversized payload", oversized_payload, MalformedSignature, []),
    ("wrong key beats corrupt", both(corrupt_bundle, legacy(OTHER_KEY)), SignatureInvalid, []),
]


@pytest.mark.parametrize(("name", "attach", "expected", "kinds"), ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_round_trip(name: str, attach: Callable[..., None], expected: type[Exception] | None, kinds: list[str]) -> None:
    registry, digest = new_image()
    attach(registry, digest)
    if expected is None:
        result = verify_image(registry, REPO, digest, POLICY)
        assert sorted(s.kind for s in result.signatures) == sorted(kinds)
        assert {s.key_id for s in result.signatures} == set(POLICY.key_ids)
        for evidence in result.evidence["signatures"]:
            assert registry.get_manifest(REPO, evidence["signature_manifest"]) is not None
        assert json.loads(json.dumps(result.evidence))["digest"] == digest
    else:
        error = raises_exactly(expected, lambda: verify_image(registry, REPO, digest, POLICY))
        evidence = error.evidence  # type: ignore[attr-defined]
        assert evidence["verified"] is False
        assert evidence["error"] == expected.__name__
        json.dumps(evidence)


def test_legacy_evidence_carries_reference_and_manifest() -> None:
    registry, digest = new_image()
    legacy()(registry, digest)
    result = verify_image(registry, REPO, digest, POLICY)
    [evidence] = result.evidence["signatures"]
    sig_tag = digest.replace(":", "-") + ".sig"
    sig_manifest = registry.get_manifest(REPO, sig_tag)
    assert sig_manifest is not None
    assert evidence == {
        "kind": "simple-signing",
        "key_id": POLICY.keys[0].key_id,
        "digest": digest,
        "docker_reference": f"example/{REPO}",
        "signature_manifest": sig_manifest.digest,
        "source": f"tag:{sig_tag}",
    }


def test_attestations_are_listed_as_ignored_next_to_a_signature() -> None:
    registry, digest = new_image()
    both(bundle(), sbom_attestation_only)(registry, digest)
    result = verify_image(registry, REPO, digest, POLICY)
    assert [s.predicate_type for s in result.signatures] == [COSIGN_SIGN_PREDICATE]
    assert [i["predicateType"] for i in result.ignored] == ["https://cyclonedx.org/bom"]


def test_bundle_referrer_manifest_has_cosign_v3_layout() -> None:
    registry, digest = new_image()
    subject = signing.image_descriptor(registry, REPO, digest)
    manifest, blobs = signing.bundle_referrer_artifact(KEY, digest, subject)
    body = json.loads(manifest)
    assert body["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert body["subject"] == subject
    assert body["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    [layer] = body["layers"]
    assert blobs[layer["digest"]] == blobs[layer["digest"]]
    bundle_doc = json.loads(blobs[layer["digest"]])
    statement = json.loads(base64.b64decode(bundle_doc["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == COSIGN_SIGN_PREDICATE
    assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
