"""The SBOM gate (`podrelease.verify.sbom.verify_sbom`) on attestations made by local/signing.py.

GIVEN an image in a MemoryRegistry with some attestations attached (cosign's legacy `.att` tag
and/or cosign v3 bundle referrers) WHEN the SBOM gate runs under a one-key policy THEN it passes
with exact evidence, or refuses with exactly the expected named error and reason.

Choice documented in `podrelease.verify.sbom`: an SBOM attestation about ANOTHER digest counts for
nothing (SbomMissing when nothing else is attached, its digest named in the message), while a
failing attestation about THIS digest fails the gate even beside a good one (SbomInvalid).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from local import signing
from local.registry import MemoryRegistry
from podrelease.core.errors import PolicyError, SbomInvalid, SbomMissing
from podrelease.verify.registry import OCI_MANIFEST, sha256_digest
from podrelease.verify.sbom import CYCLONEDX_PREDICATE, SPDX_PREDICATE, verify_sbom
from podrelease.verify.trust_policy import TrustPolicy

REPOSITORY = "podinfo"
OTHER = "sha256:" + "ab" * 32
PROVENANCE = "https://slsa.dev/provenance/v1"


@dataclass
class World:
    registry: MemoryRegistry
    key: ec.EllipticCurvePrivateKey
    key_id: str
    policy: TrustPolicy
    digest: str
    descriptor: dict[str, Any]

    def referrer(self, artifact: tuple[bytes, dict[str, bytes]]) -> str:
        return signing.publish(self.registry, REPOSITORY, artifact)

    def legacy(self, artifact: tuple[bytes, dict[str, bytes]]) -> str:
        return signing.publish_attestation_legacy(self.registry, REPOSITORY, self.digest, artifact)

    @property
    def att_tag(self) -> str:
        return f"tag:sha256-{self.digest[7:]}.att"


@pytest.fixture
def world() -> World:
    registry = MemoryRegistry()
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = b"podinfo layer"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": signing.OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(layer), "size": 13}],
        }
    ).encode()
    registry.put_blob(REPOSITORY, config)
    registry.put_blob(REPOSITORY, layer)
    digest = registry.put_manifest(REPOSITORY, manifest, OCI_MANIFEST, tag="6.9.1")
    key, pem = signing.generate_key()
    policy = TrustPolicy.from_pem(pem)
    return World(registry, key, policy.key_ids[0], policy, digest, signing.image_descriptor(registry, REPOSITORY, digest))


def canonical(document: Any) -> str:
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def raises_exactly(expected: type[Exception], world: World) -> Exception:
    with pytest.raises(expected) as info:
        verify_sbom(world.registry, REPOSITORY, world.digest, world.policy)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
    return info.value


# --- building bad attestations -------------------------------------------------------------------


def bundle_referrer(
    world: World,
    payload: bytes,
    *,
    key: Any = None,
    predicate: str | None = SPDX_PREDICATE,
    payload_type: str = signing.INTOTO_PAYLOAD_TYPE,
) -> str:
    bundle = signing.dsse_bundle(key or world.key, payload, payload_type)
    return world.referrer(signing.bundle_referrer_manifest(bundle, world.descriptor, predicate_type=predicate))


def tampered_bundle_referrer(world: World) -> str:
    """A good SPDX bundle whose payload is changed after signing (a package added)."""
    bundle = json.loads(signing.dsse_bundle(world.key, signing.sbom_statement(world.digest)))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["packages"].append({"name": "evil", "SPDXID": "SPDXRef-evil"})
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    raw = json.dumps(bundle).encode()
    return world.referrer(signing.bundle_referrer_manifest(raw, world.descriptor, predicate_type=SPDX_PREDICATE))


def tampered_legacy(world: World) -> str:
    envelope = json.loads(signing.dsse_envelope(world.key, signing.sbom_statement(world.digest, "cyclonedx")))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = world.digest[7:]  # same subject ...
    statement["predicate"]["components"] = []  # ... but the SBOM emptied after signing
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return world.legacy(signing.legacy_attestation_manifest([(json.dumps(envelope).encode(), CYCLONEDX_PREDICATE)]))


def corrupt_bundle(world: World, predicate: str | None) -> str:
    return world.referrer(
        signing.bundle_referrer_manifest(b'{"mediaType": "application/vnd.dev.sig', world.descriptor, predicate_type=predicate)
    )


def oversized_legacy(world: World) -> str:
    """A `.att` layer of 5 MiB: refused before it is read."""
    envelope = signing.dsse_envelope(world.key, b"{" + b" " * (5 * 1024 * 1024) + b"}")
    return world.legacy(signing.legacy_attestation_manifest([(envelope, SPDX_PREDICATE)]))


def plain_sbom_layer(world: World) -> str:
    """An `.att` layer announcing SPDX that is a bare SPDX file, not a signed DSSE envelope."""
    manifest, blobs = signing.legacy_attestation_manifest([(json.dumps(signing.sbom_document()).encode(), SPDX_PREDICATE)])
    return world.legacy((manifest.replace(signing.DSSE_ENVELOPE_MEDIA_TYPE.encode(), b"text/spdx"), blobs))


Attach = Callable[[World], Any]

# --- passing ---------------------------------------------------------------------------------------

PASSING: list[tuple[str, list[Attach], list[tuple[str, str, str]]]] = [
    # (id, attachments, [(format, predicate, source kind)])
    (
        "spdx referrer",
        [lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "spdx"))],
        [("spdx", SPDX_PREDICATE, "referrer")],
    ),
    (
        "cyclonedx referrer",
        [lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "cyclonedx"))],
        [("cyclonedx", CYCLONEDX_PREDICATE, "referrer")],
    ),
    (
        "spdx .att",
        [lambda w: w.legacy(signing.legacy_attestation_artifact(w.key, w.digest, "spdx"))],
        [("spdx", SPDX_PREDICATE, "att")],
    ),
    (
        "cyclonedx .att",
        [lambda w: w.legacy(signing.legacy_attestation_artifact(w.key, w.digest, "cyclonedx"))],
        [("cyclonedx", CYCLONEDX_PREDICATE, "att")],
    ),
    (
        "both places",
        [
            lambda w: w.legacy(signing.legacy_attestation_artifact(w.key, w.digest, "cyclonedx")),
            lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "spdx")),
        ],
        [("cyclonedx", CYCLONEDX_PREDICATE, "att"), ("spdx", SPDX_PREDICATE, "referrer")],
    ),
    (
        "with an image signature and a provenance beside it",
        [
            lambda w: w.referrer(signing.bundle_referrer_artifact(w.key, w.digest, w.descriptor)),
            lambda w: bundle_referrer(w, signing.cosign_sign_statement(w.digest, PROVENANCE), predicate=PROVENANCE),
            lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "spdx")),
        ],
        [("spdx", SPDX_PREDICATE, "referrer")],
    ),
    (
        "beside an SBOM for another digest (counts for nothing)",
        [
            lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "spdx", other_digest=OTHER)),
            lambda w: w.legacy(signing.legacy_attestation_artifact(w.key, w.digest, "spdx")),
        ],
        [("spdx", SPDX_PREDICATE, "att")],
    ),
]


@pytest.mark.parametrize(("attachments", "expected"), [(a, e) for _, a, e in PASSING], ids=[i for i, _, _ in PASSING])
def test_a_signed_sbom_for_this_digest_passes(
    world: World, attachments: list[Attach], expected: list[tuple[str, str, str]]
) -> None:
    for attach in attachments:
        attach(world)
    verification = verify_sbom(world.registry, REPOSITORY, world.digest, world.policy)
    got = [(s.format, s.predicate_type, "att" if s.source.startswith("tag:") else s.source) for s in verification.sboms]
    assert got == expected
    assert {s.key_id for s in verification.sboms} == {world.key_id}
    assert all(s.sbom_digest == canonical(signing.sbom_document(s.format)) for s in verification.sboms)


def test_evidence_names_format_sbom_digest_signer_and_where(world: World) -> None:
    # GIVEN one SPDX attestation in the .att tag and a CycloneDX one about another image
    att = world.legacy(signing.legacy_attestation_artifact(world.key, world.digest, "spdx"))
    other = world.referrer(signing.sbom_attestation_artifact(world.key, world.digest, world.descriptor, "cyclonedx", OTHER))
    # WHEN the gate runs THEN the evidence is exactly this
    assert verify_sbom(world.registry, REPOSITORY, world.digest, world.policy).evidence == {
        "verified": True,
        "digest": world.digest,
        "sboms": [
            {
                "format": "spdx",
                "predicate_type": SPDX_PREDICATE,
                "sbom_digest": canonical(signing.sbom_document("spdx")),
                "key_id": world.key_id,
                "source": world.att_tag + "#1",
                "attestation_manifest": att,
                "spec_version": "SPDX-2.3",
            }
        ],
        "other_digests": [
            {"source": "referrer", "attestation_manifest": other, "predicateType": CYCLONEDX_PREDICATE, "subjects": OTHER}
        ],
        "ignored": [],
    }


def test_the_sbom_digest_is_of_the_document_not_of_the_envelope(world: World) -> None:
    document = {"spdxVersion": "SPDX-2.3", "name": "ünïcode", "packages": []}
    bundle_referrer(world, signing.sbom_statement(world.digest, predicate=document))
    [sbom] = verify_sbom(world.registry, REPOSITORY, world.digest, world.policy).sboms
    expected = hashlib.sha256('{"name":"ünïcode","packages":[],"spdxVersion":"SPDX-2.3"}'.encode()).hexdigest()
    assert sbom.sbom_digest == "sha256:" + expected


# --- refused ---------------------------------------------------------------------------------------

REFUSED: list[tuple[str, list[Attach], type[Exception], str]] = [
    ("missing", [], SbomMissing, "the policy requires an SBOM attestation and none signed for podinfo@{digest} is attached"),
    (
        "only an image signature",
        [
            lambda w: w.referrer(signing.bundle_referrer_artifact(w.key, w.digest, w.descriptor)),
            lambda w: signing.publish_legacy(
                w.registry, REPOSITORY, w.digest, signing.legacy_signature_artifact(w.key, "r/p", w.digest)
            ),
        ],
        SbomMissing,
        "none signed for podinfo@{digest} is attached",
    ),
    (
        "unknown predicate only",
        [lambda w: bundle_referrer(w, signing.cosign_sign_statement(w.digest, PROVENANCE), predicate=PROVENANCE)],
        SbomMissing,
        "is attached (1 other artifact(s) attached, none an SBOM attestation)",
    ),
    (
        "SBOM for another digest, referrer",
        [lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor, "spdx", other_digest=OTHER))],
        SbomMissing,
        f"1 SBOM attestation(s) attached are for another digest ({OTHER}) and count for nothing",
    ),
    (
        "SBOM for another digest, .att",
        [lambda w: w.legacy(signing.legacy_attestation_artifact(w.key, w.digest, "cyclonedx", other_digest=OTHER))],
        SbomMissing,
        f"are for another digest ({OTHER}) and count for nothing",
    ),
    (
        "tampered bundle",
        [tampered_bundle_referrer],
        SbomInvalid,
        "1 of 1 SBOM attestation(s) for podinfo@{digest} failed (every one used must verify); "
        "SignatureInvalid: DSSE signature does not verify with any of the 1 trusted key(s)",
    ),
    ("tampered .att envelope", [tampered_legacy], SbomInvalid, "SignatureInvalid: DSSE signature does not verify"),
    (
        "wrong key",
        [lambda w: w.referrer(signing.sbom_attestation_artifact(signing.generate_key()[0], w.digest, w.descriptor))],
        SbomInvalid,
        "SignatureInvalid: DSSE signature does not verify with any of the 1 trusted key(s)",
    ),
    (
        "good referrer plus bad .att, both used",
        [
            lambda w: w.referrer(signing.sbom_attestation_artifact(w.key, w.digest, w.descriptor)),
            lambda w: w.legacy(signing.legacy_attestation_artifact(signing.generate_key()[0], w.digest)),
        ],
        SbomInvalid,
        "1 of 2 SBOM attestation(s) for podinfo@{digest} failed (every one used must verify); SignatureInvalid",
    ),
    (
        "good and bad layers in one .att",
        [
            lambda w: w.legacy(
                signing.legacy_attestation_manifest(
                    [
                        (signing.dsse_envelope(w.key, signing.sbom_statement(w.digest)), SPDX_PREDICATE),
                        (
                            signing.dsse_envelope(signing.generate_key()[0], signing.sbom_statement(w.digest, "cyclonedx")),
                            CYCLONEDX_PREDICATE,
                        ),
                    ]
                )
            )
        ],
        SbomInvalid,
        "1 of 2 SBOM attestation(s)",
    ),
    (
        "non-JSON payload",
        [lambda w: bundle_referrer(w, b"SPDXVersion: not json")],
        SbomInvalid,
        "MalformedSignature: the in-toto statement is not valid JSON",
    ),
    ("oversized .att layer", [oversized_legacy], SbomInvalid, "MalformedSignature: attestation layer 1 declares"),
    (
        "corrupt bundle announced as SPDX",
        [lambda w: corrupt_bundle(w, SPDX_PREDICATE)],
        SbomInvalid,
        "MalformedSignature: the sigstore bundle is not valid JSON",
    ),
    (
        "corrupt bundle announcing nothing (fails closed)",
        [lambda w: corrupt_bundle(w, None)],
        SbomInvalid,
        "MalformedSignature: the sigstore bundle is not valid JSON",
    ),
    (
        "SPDX predicate that is no SPDX document",
        [lambda w: bundle_referrer(w, signing.sbom_statement(w.digest, predicate={"hello": "world"}))],
        SbomInvalid,
        "MalformedSignature: the SPDX predicate is not an SPDX document (no spdxVersion 'SPDX-x.y')",
    ),
    (
        "CycloneDX predicate that is no BOM",
        [
            lambda w: bundle_referrer(
                w, signing.sbom_statement(w.digest, "cyclonedx", predicate={}), predicate=CYCLONEDX_PREDICATE
            )
        ],
        SbomInvalid,
        "the CycloneDX predicate is not a CycloneDX BOM",
    ),
    (
        "announced SPDX, signed statement says provenance",
        [lambda w: bundle_referrer(w, signing.sbom_statement(w.digest, predicate_type=PROVENANCE))],
        SbomInvalid,
        "MalformedSignature: statement predicate 'https://slsa.dev/provenance/v1' is not an SBOM",
    ),
    (
        "announced CycloneDX, signed statement says SPDX",
        [lambda w: bundle_referrer(w, signing.sbom_statement(w.digest), predicate=CYCLONEDX_PREDICATE)],
        SbomInvalid,
        "announces 'https://cyclonedx.org/bom' but its signed statement says 'https://spdx.dev/Document'",
    ),
    (
        "DSSE payload that is not in-toto",
        [lambda w: bundle_referrer(w, signing.sbom_statement(w.digest), payload_type="text/plain")],
        SbomInvalid,
        "MalformedSignature: DSSE payload type 'text/plain' is not application/vnd.in-toto+json",
    ),
    (
        "not an in-toto statement type",
        [lambda w: bundle_referrer(w, signing.sbom_statement(w.digest, statement_type="https://example.com/Statement"))],
        SbomInvalid,
        "in-toto statement type 'https://example.com/Statement' is not accepted",
    ),
    (
        "SBOM layer that is not a DSSE envelope",
        [plain_sbom_layer],
        SbomInvalid,
        "layer announces https://spdx.dev/Document but has media type 'text/spdx'",
    ),
]


@pytest.mark.parametrize(
    ("attachments", "error", "fragment"), [(a, e, f) for _, a, e, f in REFUSED], ids=[i for i, *_ in REFUSED]
)
def test_the_sbom_gate_refuses_with_its_named_reason(
    world: World, attachments: list[Attach], error: type[Exception], fragment: str
) -> None:
    for attach in attachments:
        attach(world)
    refused = raises_exactly(error, world)
    assert fragment.format(digest=world.digest) in str(refused)
    evidence = refused.evidence  # type: ignore[attr-defined]
    assert evidence["verified"] is False
    assert evidence["error"] == error.__name__


def test_a_refusal_lists_every_failed_envelope_in_its_evidence(world: World) -> None:
    good = world.referrer(signing.sbom_attestation_artifact(world.key, world.digest, world.descriptor))
    bad = world.legacy(signing.legacy_attestation_artifact(signing.generate_key()[0], world.digest, "cyclonedx"))
    refused = raises_exactly(SbomInvalid, world)
    assert good not in json.dumps(refused.evidence)  # type: ignore[attr-defined]
    assert refused.evidence["sbom"]["refusals"] == [  # type: ignore[attr-defined]
        {
            "source": world.att_tag + "#1",
            "attestation_manifest": bad,
            "error": "SignatureInvalid",
            "reason": "DSSE signature does not verify with any of the 1 trusted key(s)",
        }
    ]


def test_an_sbom_signed_by_a_second_trusted_key_passes(world: World) -> None:
    other_key, other_pem = signing.generate_key()
    world.policy = TrustPolicy.from_pem(world.policy.keys[0].pem() + other_pem)
    world.referrer(signing.sbom_attestation_artifact(other_key, world.digest, world.descriptor))
    [sbom] = verify_sbom(world.registry, REPOSITORY, world.digest, world.policy).sboms
    assert sbom.key_id == TrustPolicy.from_pem(other_pem).key_ids[0]


def test_no_policy_is_a_policy_error(world: World) -> None:
    with pytest.raises(PolicyError, match="no trust policy was given"):
        verify_sbom(world.registry, REPOSITORY, world.digest, None)  # type: ignore[arg-type]
