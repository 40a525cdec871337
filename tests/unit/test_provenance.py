"""The provenance gate: signed SLSA provenance v1 of this digest, from the builder, repository and
ref the environment's policy names.

GIVEN an image in a registry with (or without) provenance attestations, made as `cosign attest
--type slsaprovenance1` makes them (local/signing.py, local/sigstore_local.py) WHEN the gate runs
THEN it passes with the build's facts as evidence, or refuses with exactly the named reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from local import signing
from local.registry import MemoryRegistry
from local.sigstore_local import BUILD_IDENTITY, LocalSigstore
from podrelease.core.errors import PolicyError, ProvenanceInvalid, ProvenanceMismatch, ProvenanceMissing
from podrelease.verify.certificates import GITHUB_ACTIONS_ISSUER, Identity
from podrelease.verify.gate import enforce
from podrelease.verify.policy import EnvironmentPolicy, build_identity, default_document, keys_document, parse_policy
from podrelease.verify.provenance import ProvenanceRequirement, verify_provenance
from podrelease.verify.registry import OCI_MANIFEST
from podrelease.verify.trust_policy import TrustPolicy

REPOSITORY = "podinfo"
MAIN = ProvenanceRequirement(
    builder="https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main",
    repository="https://github.com/acme/podinfo",
    ref="refs/heads/main",
)


class Scene:
    def __init__(self) -> None:
        self.registry = MemoryRegistry()
        self.digest = self.registry.put_manifest(REPOSITORY, b'{"schemaVersion":2,"layers":[]}', OCI_MANIFEST)
        self.key, pem = signing.generate_key()
        self.trust = TrustPolicy.from_pem(pem)

    def descriptor(self) -> dict[str, Any]:
        return signing.image_descriptor(self.registry, REPOSITORY, self.digest)

    def attest(self, key: Any = None, **fields: Any) -> None:
        artifact = signing.provenance_attestation_artifact(key or self.key, self.digest, self.descriptor(), **fields)
        signing.publish(self.registry, REPOSITORY, artifact)

    def attest_statement(self, statement: bytes) -> None:
        bundle = signing.dsse_bundle(self.key, statement)
        artifact = signing.bundle_referrer_manifest(bundle, self.descriptor(), predicate_type=signing.SLSA_PROVENANCE_V1)
        signing.publish(self.registry, REPOSITORY, artifact)


def test_provenance_from_the_build_workflow_on_main_passes_with_the_build_as_evidence() -> None:
    # GIVEN an image whose provenance says the build workflow built it from main
    scene = Scene()
    scene.attest(commit="a" * 40, actor="alice", run_id=77)
    # WHEN the gate requires provenance from that workflow, repository and ref
    evidence = verify_provenance(scene.registry, REPOSITORY, scene.digest, scene.trust, MAIN).evidence
    # THEN it passes and the build's facts are the evidence
    assert {k: evidence[k] for k in ("builder", "repository", "ref", "commit", "actor", "workflow_run")} == {
        "builder": MAIN.builder,
        "repository": MAIN.repository,
        "ref": "refs/heads/main",
        "commit": "a" * 40,
        "actor": "alice",
        "workflow_run": "https://github.com/acme/podinfo/actions/runs/77/attempts/1",
    }
    assert evidence["verified"] is True
    assert evidence["key_id"] == scene.trust.key_ids[0]
    assert evidence["attestations"] == 1


def _predicate_without(path: str) -> dict[str, Any]:
    predicate = signing.provenance_predicate()
    *parents, last = path.split(".")
    node = predicate
    for part in parents:
        node = node[part]
    del node[last]
    return predicate


REFUSALS: list[tuple[str, Callable[[Scene], None], type[Exception], str]] = [
    ("nothing attached", lambda s: None, ProvenanceMissing,
     "the policy requires signed SLSA provenance and none for podinfo@{digest} is attached"),
    ("an SBOM only", lambda s: signing.publish(s.registry, REPOSITORY, signing.sbom_attestation_artifact(
        s.key, s.digest, s.descriptor())), ProvenanceMissing, "none for podinfo@{digest} is attached"),
    ("built from another ref", lambda s: s.attest(ref="refs/heads/feature"), ProvenanceMismatch,
     "builder is 'https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/feature', the policy requires "
     "'https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main'; ref is 'refs/heads/feature', "
     "the policy requires 'refs/heads/main'"),
    ("built from a fork", lambda s: s.attest(repository="https://github.com/mallory/podinfo"), ProvenanceMismatch,
     "repository is 'https://github.com/mallory/podinfo', the policy requires 'https://github.com/acme/podinfo'"),
    ("built by another workflow", lambda s: s.attest(workflow=".github/workflows/other.yml"), ProvenanceMismatch,
     "builder is 'https://github.com/acme/podinfo/.github/workflows/other.yml@refs/heads/main'"),
    ("a good one beside one from another ref", lambda s: (s.attest(), s.attest(ref="refs/heads/feature")),
     ProvenanceMismatch, "ref is 'refs/heads/feature'"),
    ("signed by an untrusted key", lambda s: s.attest(key=signing.generate_key()[0]), ProvenanceInvalid,
     "SignatureInvalid"),
    ("no commit", lambda s: s.attest_statement(signing.provenance_statement(
        s.digest, predicate=_predicate_without("buildDefinition.resolvedDependencies"))), ProvenanceInvalid,
     "names no single git commit"),
    ("no builder", lambda s: s.attest_statement(signing.provenance_statement(
        s.digest, predicate=_predicate_without("runDetails.builder.id"))), ProvenanceInvalid,
     "runDetails.builder.id is missing"),
    ("about another digest", lambda s: s.attest_statement(signing.provenance_statement("sha256:" + "cd" * 32)),
     ProvenanceMissing, "provenance attached for another digest (sha256:" + "cd" * 32 + ") counts for nothing"),
]


@pytest.mark.parametrize(("case", "setup", "error", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_named(case: str, setup: Callable[[Scene], None], error: type[Exception], message: str) -> None:
    # GIVEN the image with what the row attaches
    scene = Scene()
    setup(scene)
    # WHEN the gate requires provenance from main THEN it refuses with the row's named reason
    with pytest.raises(error) as refused:
        verify_provenance(scene.registry, REPOSITORY, scene.digest, scene.trust, MAIN)
    assert message.format(digest=scene.digest) in str(refused.value), case
    assert refused.value.evidence["error"] == error.__name__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sigstore() -> LocalSigstore:
    return LocalSigstore.create()


def test_keyless_provenance_must_name_the_certificates_own_workflow(sigstore: LocalSigstore) -> None:
    # GIVEN a policy that trusts the build workflow on any branch (an identity regex)
    scene = Scene()
    any_branch = Identity(issuer=GITHUB_ACTIONS_ISSUER,
                          subject_regex=r"https://github\.com/acme/podinfo/\.github/workflows/build\.yml@refs/heads/.+")
    trust = TrustPolicy(keys=(), keyless=sigstore.verifier([any_branch]))
    feature = BUILD_IDENTITY.replace("refs/heads/main", "refs/heads/feature")

    def attest(identity: str) -> None:
        bundle = sigstore.keyless_bundle(scene.digest, statement=signing.provenance_statement(scene.digest), identity=identity)
        artifact = signing.bundle_referrer_manifest(bundle, scene.descriptor(), predicate_type=signing.SLSA_PROVENANCE_V1)
        signing.publish(scene.registry, REPOSITORY, artifact)

    # WHEN the build on main attests provenance saying main THEN it passes, the signer recorded
    attest(BUILD_IDENTITY)
    evidence = verify_provenance(scene.registry, REPOSITORY, scene.digest, trust, MAIN).evidence
    assert evidence["signer_identity"] == BUILD_IDENTITY
    # WHEN a build on a feature branch signs provenance that claims main
    scene = Scene()
    attest(feature)
    # THEN the claim is refused: the certificate says which workflow and ref signed it
    with pytest.raises(ProvenanceMismatch, match="is not the signing certificate's identity"):
        verify_provenance(scene.registry, REPOSITORY, scene.digest, trust, MAIN)


def test_enforce_waits_for_provenance_with_the_attestation_wait_not_the_signature_grace() -> None:
    # GIVEN a signed image whose provenance is not attached yet, a policy with a 30 s attestation
    # wait and a 5 s signature grace, and a clock that only moves when the gate sleeps
    scene = Scene()
    signing.publish_legacy(scene.registry, REPOSITORY, scene.digest,
                           signing.legacy_signature_artifact(scene.key, "r/podinfo", scene.digest))
    policy = EnvironmentPolicy(name="prod", trust=scene.trust, provenance=MAIN, attestation_wait_seconds=30)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if now[0] >= 12:  # the build attests 12 s in: after the signature grace, within the wait
            scene.attest()

    # WHEN the gate runs THEN it waits past the signature's grace and passes with the provenance
    evidence = enforce(scene.registry, None, REPOSITORY, scene.digest, policy, 5, sleep=sleep, clock=lambda: now[0])
    assert evidence["provenance"]["ref"] == "refs/heads/main"
    assert 12 <= now[0] < 30
    # AND with nothing ever attached it gives up exactly at the wait's end, ProvenanceMissing
    scene = Scene()
    signing.publish_legacy(scene.registry, REPOSITORY, scene.digest,
                           signing.legacy_signature_artifact(scene.key, "r/podinfo", scene.digest))
    policy = EnvironmentPolicy(name="prod", trust=scene.trust, provenance=MAIN, attestation_wait_seconds=30)
    now[0] = 0.0
    with pytest.raises(ProvenanceMissing):
        enforce(scene.registry, None, REPOSITORY, scene.digest, policy, 5, sleep=lambda s: now.__setitem__(0, now[0] + s),
                clock=lambda: now[0])
    assert now[0] == 30


def _document(pem: str, **prod: Any) -> str:
    document = json.loads(keys_document(pem))
    document["environments"]["prod"].update(prod)
    return json.dumps(document)


def test_the_policy_reads_require_provenance_and_the_attestation_wait() -> None:
    _, pem = signing.generate_key()
    policy = parse_policy(_document(pem, require_provenance=dict(vars(MAIN)), attestation_wait_seconds=45))
    assert policy.environment("prod").provenance == MAIN
    assert policy.environment("prod").attestation_wait_seconds == 45
    assert policy.environment("dev").provenance is None
    assert policy.environment("dev").attestation_wait_seconds is None
    assert policy.environment("prod").describe()["require_provenance"] == dict(vars(MAIN))


@pytest.mark.parametrize(
    ("prod", "message"),
    [
        ({"require_provenance": {"builder": MAIN.builder, "repository": MAIN.repository}},
         "environments.prod.require_provenance: missing required field(s) 'ref'"),
        ({"require_provenance": {**vars(MAIN), "ref": "main"}},
         "environments.prod.require_provenance.ref: 'main' is not a git ref"),
        ({"require_provenance": {**vars(MAIN), "repository": "github.com/acme/podinfo"}},
         "environments.prod.require_provenance.repository: 'github.com/acme/podinfo' is not an https:// repository URL"),
        ({"require_provenance": {**vars(MAIN), "builder": "https://github.com/mallory/x/.github/workflows/b.yml@refs/heads/main"}},
         "environments.prod.require_provenance.builder: 'https://github.com/mallory/x/.github/workflows/b.yml@refs/heads/main' "
         "is not a workflow of https://github.com/acme/podinfo at refs/heads/main"),
        ({"require_provenance": {**vars(MAIN), "actor": "x"}}, "environments.prod.require_provenance: unknown field(s) 'actor'"),
        ({"attestation_wait_seconds": 121}, "environments.prod.attestation_wait_seconds: is 121; it must be 0..120"),
        ({"attestation_wait_seconds": "60"}, "environments.prod.attestation_wait_seconds: must be an integer"),
    ],
)
def test_a_bad_provenance_section_is_a_policy_error_naming_the_place(prod: dict[str, Any], message: str) -> None:
    _, pem = signing.generate_key()
    with pytest.raises(PolicyError) as refused:
        parse_policy(_document(pem, **prod))
    assert str(refused.value).startswith(f"release policy {message}")


def test_the_default_policy_requires_the_build_workflows_provenance() -> None:
    identity = build_identity("acme", "podinfo", "main")
    policy = parse_policy(default_document(identity), keyless_factory=lambda identities: LocalSigstore.create().verifier())
    assert policy.environment("prod").provenance == policy.environment("dev").provenance == MAIN
    assert policy.environment("prod").attestation_wait_seconds == policy.environment("dev").attestation_wait_seconds == 120

