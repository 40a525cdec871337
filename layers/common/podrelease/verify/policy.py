"""The release policy: what each environment requires before an image may run there.

One JSON document (the verify function reads it, once per cold start, from the SSM parameter that
`ReleasePolicyParameter` names), a section per environment; both `dev` and `prod` must be present,
and no other:

    {
      "version": 1,
      "environments": {
        "dev": {
          "signers": {"keys": ["-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----\\n"]},
          "require_sbom": false
        },
        "prod": {
          "signers": {
            "keyless": [{
              "identity": "https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main",
              "issuer": "https://token.actions.githubusercontent.com"
            }]
          },
          "require_sbom": true,
          "scan": {"block_at": "HIGH", "in_progress": "wait", "wait_seconds": 30, "top": 10}
        }
      }
    }

Fields of an environment:

- `signers` (required): `keys`, a list of PEM public keys (one key per entry; ECDSA P-256/384/521,
  RSA >= 2048, Ed25519), and/or `kms`, a list of AWS KMS signing keys (key id, key ARN or alias;
  their public keys are read once, at cold start, with `GetPublicKey`), and/or `keyless`, a list of
  `{"identity" | "identity_regex", "issuer"}`
  (the certificate's SAN, exactly or as a regular expression matched against the whole SAN, and
  the exact OIDC issuer URL). At least one signer. The same signers sign SBOM attestations.
- `require_sbom` (default false): a signed SPDX or CycloneDX attestation of this digest is required.
- `require_provenance` (optional): `{"builder", "repository", "ref"}`: a signed SLSA provenance v1
  attestation of this digest from exactly that builder (the build workflow's
  `https://github.com/<owner>/<repo>/.github/workflows/build.yml@refs/heads/main`), source
  repository (`https://github.com/<owner>/<repo>`) and git ref (`refs/heads/main`) is required
  (`podrelease.verify.provenance`); its builder, source, ref, commit, run and actor become evidence.
- `attestation_wait_seconds` (optional, 0..120): how long, from the gate's start, a required SBOM or
  provenance attestation is waited for (the build attests well after it signs: see docs/policy-gates.md
  for how the default was sized). Absent: the signature's grace (SignatureWaitSeconds).
- `approvers` (optional): who approves a release into this environment: named `emails` and/or
  `groups`, `required` approvals (N of M), `rejections` that end it, `no_self_approval` and the
  `identities` map from provider identities to GitHub logins (`podrelease.core.approvers`).
- `scan` (optional): `block_at` (CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED),
  `in_progress` (`wait`, the default, or `fail`), `wait_seconds` (0..60, default 30), `top`
  (finding ids kept in the evidence, 0..50, default 10).
- `deploy_window` (optional): when a deploy may start there: windows in a time zone, freezes and
  the longest wait for the next opening (`podrelease.verify.windows`). Absent: any time.

Parsing is strict: invalid JSON, duplicate keys, unknown fields, wrong types, empty signers, a
missing or unknown environment are all a `PolicyError` that names the place (`environments.prod.
signers.keyless[0].issuer: ...`). There is no default that allows anything.

Default: a stack deployed without a policy parameter trusts what the shipped build workflow signs:
its keyless identity (`build_identity`, from GitHubOrg/GitHubRepo/GitHubBuildBranch) in both
environments, with its signed SBOM required (`default_document`). `keys_document` writes a document
for a team that signs with keys.

Keyless entries are parsed here into `KeylessIdentity` values and handed to a `keyless_factory`,
which returns the `KeylessVerifier` the signature gate consults (`podrelease.verify.keyless`, imported
only when a policy names keyless signers: sigstore's import is slow). Without a factory, keyless
entries are a PolicyError.

`podrelease.verify.gate.enforce` runs everything an environment requires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podrelease.core.approvers import ApproverPolicy, parse_approvers
from podrelease.core.errors import ConfigurationError, PolicyError, PolicyUnavailable
from podrelease.core.policy_fields import (
    fail,
    integer_at,
    list_at,
    object_at,
    parameter_name,
    read_document,
    text_at,
    type_name,
)
from podrelease.verify.provenance import ProvenanceRequirement
from podrelease.verify.scan import ScanPolicy
from podrelease.verify.trust_policy import KeylessVerifier, TrustedKey, TrustPolicy
from podrelease.verify.windows import DeployWindow, parse_window

ENVIRONMENTS: tuple[str, ...] = ("dev", "prod")
POLICY_VERSION = 1
MAX_SIGNERS = 16
#: The longest attestation wait a policy may set: with the signature's grace (at most 90 s, waited
#: from the same start) and a scan still in progress (at most 60 s) it fits the verify function's
#: 180 s timeout.
MAX_ATTESTATION_WAIT_SECONDS = 120
#: The attestation wait of the default policy (the build workflow's own output): see docs/policy-gates.md.
DEFAULT_ATTESTATION_WAIT_SECONDS = 120


@dataclass(frozen=True)
class KeylessIdentity:
    """Who may sign keyless: a certificate SAN (exact, or a regex over the whole SAN) and the exact
    OIDC issuer. Exactly one of `identity` and `identity_regex` is set."""

    issuer: str
    identity: str | None = None
    identity_regex: str | None = None

    def matches(self, san: str, issuer: str) -> bool:
        """A convenience for keyless verifiers: does a certificate's (SAN, issuer) satisfy this?"""
        if issuer != self.issuer:
            return False
        if self.identity is not None:
            return san == self.identity
        return self.identity_regex is not None and re.fullmatch(self.identity_regex, san) is not None


#: Builds the keyless verifier for an environment's keyless identities.
KeylessFactory = Callable[[Sequence[KeylessIdentity]], KeylessVerifier]
#: Turns a KMS key id/ARN/alias into its public key (`podrelease.verify.kms.default_resolver` in Lambda).
KmsResolver = Callable[[str], TrustedKey]


@dataclass(frozen=True)
class EnvironmentPolicy:
    """What one environment requires."""

    name: str
    trust: TrustPolicy
    require_sbom: bool = False
    scan: ScanPolicy | None = None
    keyless: tuple[KeylessIdentity, ...] = ()
    provenance: ProvenanceRequirement | None = None
    #: None: attestations share the signature's grace.
    attestation_wait_seconds: int | None = None
    #: None: a deploy may start at any time.
    window: DeployWindow | None = None
    #: Who approves a release into this environment (`podrelease.core.approvers`); None: the link's approver.
    approvers: ApproverPolicy | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for logs and evidence (key ids, never key material)."""
        out: dict[str, Any] = {
            "environment": self.name,
            "key_ids": list(self.trust.key_ids),
            "keyless": [{k: v for k, v in vars(identity).items() if v is not None} for identity in self.keyless],
            "require_sbom": self.require_sbom,
        }
        if self.scan is not None:
            out["scan"] = {"block_at": self.scan.block_at, "in_progress": self.scan.in_progress}
        if self.provenance is not None:
            out["require_provenance"] = dict(vars(self.provenance))
        if self.attestation_wait_seconds is not None:
            out["attestation_wait_seconds"] = self.attestation_wait_seconds
        if self.window is not None:
            out["deploy_window"] = self.window.describe()
        if self.approvers is not None:
            out["approvers"] = self.approvers.describe()
        return out


@dataclass(frozen=True)
class ReleasePolicy:
    """The whole policy: one EnvironmentPolicy per environment."""

    environments: Mapping[str, EnvironmentPolicy] = field(default_factory=dict)
    source: str = "RELEASE_POLICY"

    def environment(self, name: object) -> EnvironmentPolicy:
        if not isinstance(name, str) or name not in self.environments:
            known = ", ".join(sorted(self.environments))
            msg = f"environment {str(name)[:40]!r} is not in the release policy (it has {known})"
            raise PolicyError(msg)
        return self.environments[name]


# --- parsing ------------------------------------------------------------------------------------


_fail, _type_name, _object, _text, _integer = fail, type_name, object_at, text_at, integer_at


def _list(value: object, where: str) -> list[Any]:
    return list_at(value, where, MAX_SIGNERS)


def _keys(value: object, where: str) -> list[TrustedKey]:
    keys: list[TrustedKey] = []
    for number, entry in enumerate(_list(value, where)):
        at = f"{where}[{number}]"
        if not isinstance(entry, str):
            raise _fail(at, f"must be a PEM public key string, not {_type_name(entry)}")
        try:
            parsed = TrustPolicy.from_pem(entry).keys
        except PolicyError as exc:
            raise _fail(at, str(exc)) from exc
        if len(parsed) != 1:
            raise _fail(at, f"holds {len(parsed)} keys; put one PEM public key per entry")
        if parsed[0].key_id in {k.key_id for k in keys}:
            raise _fail(at, f"repeats key {parsed[0].key_id[:16]}")
        keys.append(parsed[0])
    return keys


def _keyless(value: object, where: str) -> list[KeylessIdentity]:
    identities: list[KeylessIdentity] = []
    for number, entry in enumerate(_list(value, where)):
        at = f"{where}[{number}]"
        body = _object(entry, at, {"identity", "identity_regex", "issuer"}, {"issuer"})
        issuer = _text(body["issuer"], f"{at}.issuer")
        if not issuer.startswith("https://"):
            raise _fail(f"{at}.issuer", f"{issuer[:80]!r} is not an https:// OIDC issuer URL")
        if ("identity" in body) == ("identity_regex" in body):
            raise _fail(at, "needs exactly one of 'identity' (exact SAN) and 'identity_regex'")
        if "identity" in body:
            identities.append(KeylessIdentity(issuer=issuer, identity=_text(body["identity"], f"{at}.identity")))
            continue
        pattern = _text(body["identity_regex"], f"{at}.identity_regex")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(f"{at}.identity_regex", f"is not a valid regular expression ({exc})") from exc
        identities.append(KeylessIdentity(issuer=issuer, identity_regex=pattern))
    return identities


def _scan(value: object, where: str) -> ScanPolicy:
    body = _object(value, where, {"block_at", "in_progress", "wait_seconds", "top"}, {"block_at"})
    block_at = _text(body["block_at"], f"{where}.block_at")
    in_progress = _text(body.get("in_progress", "wait"), f"{where}.in_progress")
    wait_seconds = _integer(body.get("wait_seconds", 30), f"{where}.wait_seconds")
    top = _integer(body.get("top", 10), f"{where}.top")
    try:
        return ScanPolicy(block_at=block_at, in_progress=in_progress, wait_seconds=wait_seconds, top=top)
    except PolicyError as exc:
        raise _fail(where, str(exc)) from exc


def _provenance(value: object, where: str) -> ProvenanceRequirement:
    body = _object(value, where, {"builder", "repository", "ref"}, {"builder", "repository", "ref"})
    builder, repository, ref = (_text(body[name], f"{where}.{name}") for name in ("builder", "repository", "ref"))
    if not repository.startswith("https://"):
        raise _fail(f"{where}.repository", f"{repository[:80]!r} is not an https:// repository URL")
    if not ref.startswith("refs/"):
        raise _fail(f"{where}.ref", f"{ref[:80]!r} is not a git ref (refs/heads/..., refs/tags/...)")
    if not builder.startswith(f"{repository}/") or not builder.endswith(f"@{ref}"):
        raise _fail(f"{where}.builder", f"{builder[:120]!r} is not a workflow of {repository} at {ref}")
    return ProvenanceRequirement(builder=builder, repository=repository, ref=ref)


def _attestation_wait(value: object, where: str) -> int:
    seconds = _integer(value, where)
    if not 0 <= seconds <= MAX_ATTESTATION_WAIT_SECONDS:
        raise _fail(where, f"is {seconds}; it must be 0..{MAX_ATTESTATION_WAIT_SECONDS}")
    return seconds


def _kms(value: object, where: str, resolver: KmsResolver | None, seen: set[str]) -> list[TrustedKey]:
    entries = _list(value, where)
    if entries and resolver is None:
        raise _fail(where, "KMS signers configured but no KMS client is available to read their public keys")
    keys: list[TrustedKey] = []
    for number, entry in enumerate(entries):
        at = f"{where}[{number}]"
        if not isinstance(entry, str):
            raise _fail(at, f"must be a KMS key id, key ARN or alias string, not {_type_name(entry)}")
        try:
            key = resolver(entry)  # type: ignore[misc]
        except PolicyError as exc:
            raise _fail(at, str(exc)) from exc
        if key.key_id in seen:
            raise _fail(at, f"repeats key {key.key_id[:16]}")
        seen.add(key.key_id)
        keys.append(key)
    return keys


def _environment(
    name: str, value: object, keyless_factory: KeylessFactory | None, kms_resolver: KmsResolver | None = None
) -> EnvironmentPolicy:
    where = f"environments.{name}"
    body = _object(value, where, {"signers", "require_sbom", "require_provenance", "attestation_wait_seconds", "scan",
                                         "deploy_window", "approvers"},
                   {"signers"})
    signers = _object(body["signers"], f"{where}.signers", {"keys", "keyless", "kms"})
    keys = _keys(signers.get("keys", []), f"{where}.signers.keys")
    keys += _kms(signers.get("kms", []), f"{where}.signers.kms", kms_resolver, {k.key_id for k in keys})
    identities = _keyless(signers.get("keyless", []), f"{where}.signers.keyless")
    if not keys and not identities:
        raise _fail(f"{where}.signers", "has no keys, no KMS keys and no keyless identities: nothing could ever be allowed")
    verifier: KeylessVerifier | None = None
    if identities:
        if keyless_factory is None:
            raise _fail(
                f"{where}.signers.keyless",
                "keyless signers configured but no keyless verifier is available to check them",
            )
        try:
            verifier = keyless_factory(tuple(identities))
        except PolicyError as exc:
            raise _fail(f"{where}.signers.keyless", str(exc)) from exc
    require_sbom = body.get("require_sbom", False)
    if not isinstance(require_sbom, bool):
        raise _fail(f"{where}.require_sbom", f"must be true or false, not {_type_name(require_sbom)}")
    scan = _scan(body["scan"], f"{where}.scan") if "scan" in body else None
    return EnvironmentPolicy(
        name=name,
        trust=TrustPolicy(keys=tuple(keys), keyless=verifier),
        require_sbom=require_sbom,
        scan=scan,
        keyless=tuple(identities),
        provenance=(_provenance(body["require_provenance"], f"{where}.require_provenance")
                    if "require_provenance" in body else None),
        attestation_wait_seconds=(_attestation_wait(body["attestation_wait_seconds"], f"{where}.attestation_wait_seconds")
                                  if "attestation_wait_seconds" in body else None),
        window=parse_window(body["deploy_window"], f"{where}.deploy_window") if "deploy_window" in body else None,
        approvers=parse_approvers(body["approvers"], f"{where}.approvers") if "approvers" in body else None,
    )


def parse_policy(
    text: str | bytes, *, keyless_factory: KeylessFactory | None = None, kms_resolver: KmsResolver | None = None
) -> ReleasePolicy:
    """Parse and validate a release policy document (see the module docstring)."""
    document = read_document(text)
    body = _object(document, "document", {"version", "environments"}, {"version", "environments"})
    version = body["version"]
    if version != POLICY_VERSION or isinstance(version, bool):
        raise _fail("version", f"is {json.dumps(version)[:40]}; this gate reads version {POLICY_VERSION}")
    environments = _object(body["environments"], "environments", set(ENVIRONMENTS), set(ENVIRONMENTS))
    parsed = {name: _environment(name, environments[name], keyless_factory, kms_resolver) for name in ENVIRONMENTS}
    return ReleasePolicy(environments=parsed, source="RELEASE_POLICY")


def keys_document(
    pem: str,
    *,
    require_sbom: Sequence[str] = (),
    scan: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A policy document (JSON text) in which every environment trusts the concatenated PEM keys
    `pem`; `require_sbom` names the environments that require an SBOM attestation, `scan` maps an
    environment to its scan section. The result is checked by `parse_policy` before it is returned,
    so what this writes is what the gate reads."""
    keys = [key.pem() for key in TrustPolicy.from_pem(pem).keys]
    unknown = sorted((set(require_sbom) | set(scan or {})) - set(ENVIRONMENTS))
    if unknown:
        msg = f"release policy: unknown environment(s) {', '.join(unknown)} (known: {', '.join(ENVIRONMENTS)})"
        raise PolicyError(msg)
    environments: dict[str, Any] = {}
    for name in ENVIRONMENTS:
        section: dict[str, Any] = {"signers": {"keys": keys}, "require_sbom": name in require_sbom}
        if scan and name in scan:
            section["scan"] = dict(scan[name])
        environments[name] = section
    text = json.dumps({"version": POLICY_VERSION, "environments": environments}, separators=(",", ":"))
    parse_policy(text)
    return text


def installed_keyless_factory(identities: Sequence[KeylessIdentity]) -> KeylessVerifier:
    """The keyless factory the verify function uses, importing `podrelease.verify.keyless` only now (a
    policy names keyless signers), never on the key-only path. It calls `keyless.verifier_for
    (identities)` when that module offers one, else builds the verifier with `keyless_policy`
    (the pinned production trusted root) from `{"issuer", "subject" | "subject_regex"}` rules."""
    try:
        from podrelease.verify import keyless  # noqa: PLC0415 - deliberately lazy: sigstore's import is slow
    except ImportError as exc:
        msg = "keyless signers configured but podrelease.verify.keyless cannot be imported"
        raise PolicyError(msg) from exc
    verifier_for = getattr(keyless, "verifier_for", None)
    if callable(verifier_for):
        built: KeylessVerifier = verifier_for(tuple(identities))
        return built
    rules: list[dict[str, str]] = []
    for identity in identities:
        if identity.identity is not None:
            rules.append({"issuer": identity.issuer, "subject": identity.identity})
        else:
            rules.append({"issuer": identity.issuer, "subject_regex": str(identity.identity_regex)})
    trust = keyless.keyless_policy(rules)
    if trust.keyless is None:  # pragma: no cover - keyless_policy always sets one
        msg = "keyless signers configured but podrelease.verify.keyless built no verifier"
        raise PolicyError(msg)
    return trust.keyless


def _kms_resolver(key_id: str) -> TrustedKey:
    from podrelease.verify.kms import default_resolver  # noqa: PLC0415 - only policies naming KMS keys need it

    return default_resolver(key_id)


#: SSM answers that mean the policy parameter is missing or may not be read: a PolicyError (an
#: operator must fix it). Any other failure to read it (throttling, network) is PolicyUnavailable.
POLICY_PARAMETER_ERRORS = frozenset({"ParameterNotFound", "ParameterVersionNotFound", "AccessDeniedException",
                                     "AccessDenied", "ValidationException", "InvalidKeyId"})

#: Where GitHub Actions' OIDC tokens come from (the build workflow signs keyless with one).
BUILD_ISSUER = "https://token.actions.githubusercontent.com"


def build_identity(owner: str, repository: str, branch: str) -> str:
    """The certificate identity of `.github/workflows/build.yml` run on `branch` of owner/repository:
    what `cosign sign` (keyless) in that workflow is issued. The template derives BUILD_IDENTITY the
    same way from GitHubOrg, GitHubRepo and GitHubBuildBranch (a test holds the two together)."""
    return f"https://github.com/{owner}/{repository}/.github/workflows/build.yml@refs/heads/{branch}"


def default_document(identity: str) -> str:
    """The policy a stack runs without a policy parameter: both environments accept what the
    shipped build workflow signs (its keyless identity, GitHub's issuer) and require its signed SBOM
    and its signed provenance (that workflow as builder, its repository and ref; required in dev
    too, so the approval page, which shows dev's evidence, names the build and who triggered it)."""
    section: dict[str, Any] = {"signers": {"keyless": [{"identity": identity, "issuer": BUILD_ISSUER}]},
                               "require_sbom": True, "attestation_wait_seconds": DEFAULT_ATTESTATION_WAIT_SECONDS}
    workflow = re.fullmatch(r"(?P<repository>https://github\.com/[^/]+/[^/]+)/\.github/workflows/[^@]+@(?P<ref>refs/.+)",
                            identity)
    if workflow is not None:
        section["require_provenance"] = {"builder": identity, "repository": workflow["repository"], "ref": workflow["ref"]}
    return json.dumps({"version": POLICY_VERSION, "environments": dict.fromkeys(ENVIRONMENTS, section)})


def load_policy(
    env: Mapping[str, str],
    read_parameter: Callable[[str], str],
    *,
    keyless_factory: KeylessFactory | None = installed_keyless_factory,
    kms_resolver: KmsResolver | None = _kms_resolver,
) -> ReleasePolicy:
    """The verify function's policy: the document in the SSM parameter RELEASE_POLICY_PARAMETER
    names, at version RELEASE_POLICY_VERSION when set (read with `read_parameter`; a long,
    multi-line document never passes through a command line or the 4 KB function environment),
    else the default for BUILD_IDENTITY (see `default_document`). Neither set, or a parameter
    that cannot be read, is a named error: no release passes without a policy."""
    name = parameter_name(env)
    if name:
        try:
            document = read_parameter(name)
        except Exception as exc:
            cause = exc.__cause__ or exc.__context__ or exc  # Powertools wraps the SDK's error in GetParameterError
            code = str(getattr(cause, "response", {}).get("Error", {}).get("Code", "")) or type(exc).__name__
            if code not in POLICY_PARAMETER_ERRORS and not isinstance(exc, LookupError | ValueError):
                msg = f"release policy parameter {name} could not be read now ({code}); the release retries"
                raise PolicyUnavailable(msg) from exc
            msg = (f"release policy parameter {name} cannot be read ({code}: {str(exc)[:200]}); "
                   "put the policy document there (make deploy POLICY=file does) or clear ReleasePolicyParameter")
            raise PolicyError(msg) from exc
        policy = parse_policy(document, keyless_factory=keyless_factory, kms_resolver=kms_resolver)
        return ReleasePolicy(environments=policy.environments, source=f"ssm:{name}")
    identity = env.get("BUILD_IDENTITY", "").strip()
    if identity:
        policy = parse_policy(default_document(identity), keyless_factory=keyless_factory, kms_resolver=kms_resolver)
        return ReleasePolicy(environments=policy.environments, source="default (the build workflow's keyless identity)")
    msg = ("no release policy: deploy with ReleasePolicyParameter (an SSM parameter holding the policy document) "
           "or with GitHubOrg and GitHubRepo (the default policy trusts their build workflow)")
    raise ConfigurationError(msg)
