"""The provenance gate: signed SLSA provenance v1 of this exact digest, from the expected build.

The build workflow (`.github/workflows/build.yml`) attests, beside the SBOM, an in-toto statement
with predicate type `https://slsa.dev/provenance/v1` whose subject is the image digest, signed
keyless like the image (`cosign attest --type slsaprovenance1`: a bundle in an OCI 1.1 referrer, or
a `.att` layer in legacy mode; `podrelease.verify.attachments` reads both). The predicate follows
GitHub's build type `https://actions.github.io/buildtypes/workflow/v1`:

    {"buildDefinition": {
        "buildType": "https://actions.github.io/buildtypes/workflow/v1",
        "externalParameters": {"workflow": {"ref": "refs/heads/main",
                                            "repository": "https://github.com/acme/podinfo",
                                            "path": ".github/workflows/build.yml"}},
        "internalParameters": {"github": {"event_name": "push", "actor": "octocat",
                                          "triggering_actor": "octocat", ...}},
        "resolvedDependencies": [{"uri": "git+https://github.com/acme/podinfo@refs/heads/main",
                                  "digest": {"gitCommit": "<40 hex>"}}]},
     "runDetails": {"builder": {"id": "https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main"},
                    "metadata": {"invocationId": "https://github.com/acme/podinfo/actions/runs/<id>/attempts/<n>"}}}

(`actor`/`triggering_actor` are what this project's workflow adds to GitHub's internal
parameters: who triggered the build, for the approvals' `no_self_approval`.)

Rules, as the SBOM gate's (`podrelease.verify.sbom`, whose candidate reader this shares):

- Every provenance attestation attached for this digest is **used**: each must verify under the
  environment's signers and read as SLSA provenance v1 (else `ProvenanceInvalid`), and each must
  name the policy's builder, source repository and ref (else `ProvenanceMismatch`, naming the
  field, what was expected and what was signed). One failing attestation fails the gate.
- A keyless signature binds the claim to the certificate: the builder id must equal the
  certificate's identity (the workflow and ref Fulcio saw in the OIDC token), else
  `ProvenanceMismatch`. (A key signs whatever it is given; the policy trusts its holder.)
- Provenance about another digest counts for nothing; with nothing else, `ProvenanceMissing`.

Evidence: builder, source repository, ref, commit, workflow run, actor (and triggering actor),
the signer's key id and keyless identity, where it was found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podrelease.core.errors import (
    DigestMismatch,
    MalformedSignature,
    PolicyError,
    ProvenanceInvalid,
    ProvenanceMismatch,
    ProvenanceMissing,
    SignatureInvalid,
    VerificationFailed,
)
from podrelease.core.obs import get_logger
from podrelease.verify.attachments import read_attachments
from podrelease.verify.registry import Registry, require_digest
from podrelease.verify.sbom import Candidate, attestation_candidate, peek, signer_of, verified_statement
from podrelease.verify.trust_policy import TrustPolicy

logger = get_logger(__name__)

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_PREDICATES = frozenset({SLSA_PROVENANCE_V1})
GITHUB_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TEXT_LIMIT = 1024


@dataclass(frozen=True)
class ProvenanceRequirement:
    """What an environment requires of the provenance: the exact builder id (the build workflow's
    `https://github.com/<owner>/<repo>/.github/workflows/build.yml@<ref>`), the source repository
    URL and the git ref built."""

    builder: str
    repository: str
    ref: str


@dataclass(frozen=True)
class Provenance:
    """What one verified provenance attestation says (the fields the gate reads)."""

    builder: str
    repository: str
    ref: str
    commit: str
    workflow_run: str
    build_type: str
    actor: str | None = None
    triggering_actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if v is not None}
        return dict(sorted(out.items()))


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _TEXT_LIMIT:
        msg = f"SLSA provenance {where} is missing, empty or longer than {_TEXT_LIMIT} characters"
        raise MalformedSignature(msg)
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"SLSA provenance {where} is not an object"
        raise MalformedSignature(msg)
    return value


def read_provenance(predicate: object) -> Provenance:
    """The fields of a signed SLSA provenance v1 predicate (GitHub's workflow build type).
    MalformedSignature when a field the gate needs is missing or of the wrong shape."""
    body = _object(predicate, "predicate")
    definition = _object(body.get("buildDefinition"), "buildDefinition")
    run = _object(body.get("runDetails"), "runDetails")
    build_type = _text(definition.get("buildType"), "buildDefinition.buildType")
    workflow = _object(_object(definition.get("externalParameters"), "externalParameters").get("workflow"),
                       "externalParameters.workflow")
    repository = _text(workflow.get("repository"), "externalParameters.workflow.repository")
    ref = _text(workflow.get("ref"), "externalParameters.workflow.ref")
    builder = _text(_object(run.get("builder"), "runDetails.builder").get("id"), "runDetails.builder.id")
    workflow_run = _text(_object(run.get("metadata"), "runDetails.metadata").get("invocationId"),
                         "runDetails.metadata.invocationId")
    dependencies = definition.get("resolvedDependencies")
    source = f"git+{repository}@{ref}"
    commits = [
        entry.get("digest", {}).get("gitCommit")
        for entry in (dependencies if isinstance(dependencies, list) else [])
        if isinstance(entry, Mapping) and entry.get("uri") == source and isinstance(entry.get("digest"), Mapping)
    ]
    if len(commits) != 1 or not isinstance(commits[0], str) or not _COMMIT.match(commits[0]):
        msg = f"SLSA provenance names no single git commit for its source {source[:200]} (resolvedDependencies)"
        raise MalformedSignature(msg)
    internal = definition.get("internalParameters")
    github = internal.get("github") if isinstance(internal, Mapping) else None
    github = github if isinstance(github, Mapping) else {}
    actor, triggering = github.get("actor"), github.get("triggering_actor")
    return Provenance(
        builder=builder,
        repository=repository,
        ref=ref,
        commit=commits[0],
        workflow_run=workflow_run,
        build_type=build_type,
        actor=_text(actor, "internalParameters.github.actor") if actor is not None else None,
        triggering_actor=_text(triggering, "internalParameters.github.triggering_actor") if triggering is not None else None,
    )


def _mismatches(found: Provenance, required: ProvenanceRequirement, signer_identity: str | None) -> list[str]:
    problems = [
        f"{name} is {getattr(found, name)[:200]!r}, the policy requires {getattr(required, name)!r}"
        for name in ("builder", "repository", "ref")
        if getattr(found, name) != getattr(required, name)
    ]
    if signer_identity is not None and signer_identity != found.builder:
        problems.append(f"builder {found.builder[:200]!r} is not the signing certificate's identity {signer_identity[:200]!r}")
    return problems


@dataclass(frozen=True)
class ProvenanceVerification:
    """A passed provenance gate: every attached provenance for the digest verified and matched."""

    digest: str
    provenance: Provenance
    key_id: str
    source: str
    attestation_manifest: str
    signer_identity: str | None = None
    count: int = 1

    @property
    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verified": True,
            "digest": self.digest,
            **self.provenance.to_dict(),
            "key_id": self.key_id,
            "source": self.source,
            "attestation_manifest": self.attestation_manifest,
            "attestations": self.count,
        }
        if self.signer_identity is not None:
            out["signer_identity"] = self.signer_identity
        return out


def _used(registry: Registry, repository: str, digest: str) -> tuple[list[Candidate], list[str]]:
    """The provenance candidates to verify, and the digests of provenance attached for other images."""
    ignored: list[dict[str, Any]] = []
    attached = read_attachments(registry, repository, digest, "attestation")
    expected_hex = digest.removeprefix("sha256:")
    used: list[Candidate] = []
    others: list[str] = []
    for attachment in attached.candidates:
        candidate = attestation_candidate(attachment, ignored, PROVENANCE_PREDICATES)
        if candidate is None:
            continue
        predicate, subjects = peek(candidate)
        if predicate is None:
            if candidate.announced in PROVENANCE_PREDICATES:
                used.append(candidate)  # announced as provenance but unreadable: fails closed
        elif predicate in PROVENANCE_PREDICATES:
            if expected_hex in subjects:
                used.append(candidate)
            else:
                others.extend(f"sha256:{s[:64]}" for s in subjects[:3])
        elif candidate.announced in PROVENANCE_PREDICATES:
            used.append(candidate)  # announces provenance, signs something else: refused when verified
    return used, others


def verify_provenance(
    registry: Registry, repository: str, digest: str, policy: TrustPolicy, required: ProvenanceRequirement
) -> ProvenanceVerification:
    """Require signed SLSA provenance of repository@digest from `required`'s builder, repository and
    ref (see the module docstring). Raises ProvenanceMissing, ProvenanceInvalid, ProvenanceMismatch;
    RegistryError passes through (transient). A refusal's evidence is on the error as `.evidence`."""
    if not isinstance(policy, TrustPolicy):
        msg = "no trust policy was given"
        raise PolicyError(msg)
    require_digest(digest)
    try:
        used, others = _used(registry, repository, digest)
    except MalformedSignature as exc:  # more attached than is read
        raise _refusal(ProvenanceInvalid(str(exc)), digest, []) from exc
    passed: list[ProvenanceVerification] = []
    refusals: list[dict[str, Any]] = []
    first: VerificationFailed | None = None
    for candidate in used:
        where = candidate.where()
        try:
            statement, result = verified_statement(candidate, policy, digest, PROVENANCE_PREDICATES, "SLSA provenance")
            found = read_provenance(statement.get("predicate"))
        except (SignatureInvalid, MalformedSignature, DigestMismatch) as exc:
            error: VerificationFailed = ProvenanceInvalid(f"{exc.name}: {str(exc)[:300]}")
            refusals.append({**where, "error": error.name, "reason": str(error)})
            first = first or error
            continue
        identity, _ = signer_of(result.key)
        problems = _mismatches(found, required, identity)
        if problems:
            error = ProvenanceMismatch(f"provenance of {repository}@{digest}: {'; '.join(problems)}")
            refusals.append({**where, "error": error.name, "reason": str(error)[:600], "provenance": found.to_dict()})
            first = first or error
            continue
        passed.append(ProvenanceVerification(digest, found, result.key.key_id, candidate.source, candidate.manifest, identity))
    if first is not None:
        raise _refusal(first, digest, refusals)
    if not passed:
        note = f"; provenance attached for another digest ({', '.join(others)}) counts for nothing" if others else ""
        msg = f"the policy requires signed SLSA provenance and none for {repository}@{digest} is attached{note}"
        raise _refusal(ProvenanceMissing(msg), digest, refusals)
    verification = passed[0]
    verification = ProvenanceVerification(
        digest, verification.provenance, verification.key_id, verification.source,
        verification.attestation_manifest, verification.signer_identity, count=len(passed),
    )
    logger.info("provenance verified", extra={"digest": digest, "provenance": verification.provenance.to_dict()})
    return verification


def _refusal(error: VerificationFailed, digest: str, refusals: list[dict[str, Any]]) -> VerificationFailed:
    error.evidence = {  # type: ignore[attr-defined]
        "verified": False,
        "digest": digest,
        "error": error.name,
        "provenance": {"refusals": refusals},
    }
    logger.warning("provenance refused", extra={"digest": digest, "error": error.name, "refusals": refusals})
    return error
