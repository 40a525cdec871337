"""The release policy document (`podrelease.verify.policy`): strict parsing, one section per environment.

GIVEN a policy document WHEN it is parsed THEN it yields exactly the environments it says, or a
PolicyError whose message names the place and the problem. Nothing unreadable is ever an allow.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from local import signing
from podrelease.core.errors import ConfigurationError, PolicyError, PolicyUnavailable
from podrelease.verify import policy as policy_module
from podrelease.verify.policy import (
    KeylessIdentity,
    build_identity,
    installed_keyless_factory,
    keys_document,
    load_policy,
    parse_policy,
)
from podrelease.verify.scan import ScanPolicy
from podrelease.verify.trust_policy import TrustedKey, TrustPolicy

_, PEM = signing.generate_key()
_, PEM2 = signing.generate_key()
KEY_ID = TrustPolicy.from_pem(PEM).key_ids[0]
KEY_ID2 = TrustPolicy.from_pem(PEM2).key_ids[0]
ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main"

BASE: dict[str, Any] = {
    "version": 1,
    "environments": {
        "dev": {"signers": {"keys": [PEM]}},
        "prod": {
            "signers": {"keys": [PEM2]},
            "require_sbom": True,
            "scan": {"block_at": "HIGH"},
        },
    },
}


class FakeKeyless:
    """Stands in for podrelease.verify.keyless's verifier; records what the factory was given."""

    def __init__(self, identities: Sequence[KeylessIdentity]) -> None:
        self.identities = tuple(identities)

    def signing_key(self, verification_material: Mapping[str, Any], signature: bytes, *, signed_sha256: str) -> TrustedKey:
        raise NotImplementedError

    def check_bundle(self, bundle_json: bytes, expected_digest: str) -> None:
        raise NotImplementedError


def document(edit: Any = None) -> str:
    body = copy.deepcopy(BASE)
    if edit is not None:
        edit(body)
    return json.dumps(body)


def test_a_valid_document_gives_each_environment_its_own_requirements() -> None:
    policy = parse_policy(document())
    dev, prod = policy.environment("dev"), policy.environment("prod")
    assert (dev.name, dev.trust.key_ids, dev.require_sbom, dev.scan, dev.keyless) == ("dev", (KEY_ID,), False, None, ())
    assert (prod.trust.key_ids, prod.require_sbom) == ((KEY_ID2,), True)
    assert prod.scan == ScanPolicy(block_at="HIGH", in_progress="wait", wait_seconds=30, top=10)
    assert policy.source == "RELEASE_POLICY"
    assert prod.describe() == {
        "environment": "prod",
        "key_ids": [KEY_ID2],
        "keyless": [],
        "require_sbom": True,
        "scan": {"block_at": "HIGH", "in_progress": "wait"},
    }


def test_keyless_entries_are_handed_to_the_factory_as_plain_data() -> None:
    def edit(body: dict[str, Any]) -> None:
        body["environments"]["prod"]["signers"] = {
            "keyless": [
                {"identity": WORKFLOW, "issuer": ISSUER},
                {"identity_regex": r"https://github\.com/acme/.+@refs/tags/v.*", "issuer": ISSUER},
            ]
        }

    made: list[FakeKeyless] = []

    def factory(identities: Sequence[KeylessIdentity]) -> FakeKeyless:
        made.append(FakeKeyless(identities))
        return made[-1]

    prod = parse_policy(document(edit), keyless_factory=factory).environment("prod")
    assert [m.identities for m in made] == [
        (
            KeylessIdentity(issuer=ISSUER, identity=WORKFLOW),
            KeylessIdentity(issuer=ISSUER, identity_regex=r"https://github\.com/acme/.+@refs/tags/v.*"),
        )
    ]
    assert prod.trust.keyless is made[0]
    assert prod.trust.keys == ()
    assert prod.keyless[1].matches("https://github.com/acme/podinfo@refs/tags/v1.2", ISSUER)
    assert not prod.keyless[1].matches("https://github.com/acme/podinfo@refs/heads/main", ISSUER)
    assert not prod.keyless[0].matches(WORKFLOW, "https://accounts.google.com")


def test_the_installed_factory_builds_the_keyless_modules_verifier() -> None:
    keyless = pytest.importorskip("podrelease.verify.keyless")
    verifier = installed_keyless_factory([KeylessIdentity(issuer=ISSUER, identity=WORKFLOW)])
    assert type(verifier).__module__ == keyless.__name__
    assert hasattr(verifier, "signing_key")


def test_the_policy_comes_from_the_named_parameter() -> None:
    read: list[str] = []

    def reader(name: str) -> str:
        read.append(name)
        return document()

    policy = load_policy({"RELEASE_POLICY_PARAMETER": "/s/release-policy", "BUILD_IDENTITY": WORKFLOW}, reader)
    assert policy.environment("dev").trust.key_ids == (KEY_ID,)
    assert (read, policy.source) == (["/s/release-policy"], "ssm:/s/release-policy")


def test_an_unreadable_parameter_is_a_policy_error_never_the_default() -> None:
    def reader(name: str) -> str:
        raise LookupError(name)

    with pytest.raises(PolicyError, match=r"^release policy parameter /s/p cannot be read \(LookupError: /s/p\)"):
        load_policy({"RELEASE_POLICY_PARAMETER": "/s/p", "BUILD_IDENTITY": WORKFLOW}, reader)


def test_without_a_parameter_the_default_is_the_build_workflow_in_both_environments() -> None:
    policy = load_policy({"RELEASE_POLICY_PARAMETER": " ", "BUILD_IDENTITY": WORKFLOW}, _no_reads,
                         keyless_factory=lambda identities: identities)  # type: ignore[arg-type,return-value]
    for name in ("dev", "prod"):
        environment = policy.environment(name)
        assert environment.trust.key_ids == ()
        assert environment.require_sbom is True
        assert environment.trust.keyless == (KeylessIdentity(issuer=ISSUER, identity=WORKFLOW),)
    with pytest.raises(ConfigurationError, match=r"^no release policy: deploy with ReleasePolicyParameter"):
        load_policy({}, _no_reads)


def test_the_template_derives_the_build_identity_as_the_code_does() -> None:
    # the template's BUILD_IDENTITY (a Sub over GitHubOrg/GitHubRepo/GitHubBuildBranch) and
    # build_identity() must agree, or the default policy would trust a workflow that never signs
    from local.template import load_template

    variables = load_template()["Resources"]["VerifyFunction"]["Properties"]["Environment"]["Variables"]
    derivation = variables["BUILD_IDENTITY"]["Fn::If"][1]["Fn::Sub"]
    filled = derivation.replace("${GitHubOrg}", "acme").replace("${GitHubRepo}", "podinfo").replace("${GitHubBuildBranch}", "main")
    assert filled == build_identity("acme", "podinfo", "main") == WORKFLOW


def _no_reads(name: str) -> str:
    raise AssertionError(f"no parameter should be read, got {name}")


@pytest.mark.parametrize("name", ["staging", "", None, "DEV"])
def test_an_unknown_environment_is_refused(name: Any) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(document()).environment(name)
    assert str(info.value) == f"environment {str(name)[:40]!r} is not in the release policy (it has dev, prod)"


def _set(path: str, value: Any) -> Any:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _drop(path: str) -> Any:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        del node[last]

    return edit


DEV = "environments.dev"
INVALID: list[tuple[str, Any, str]] = [
    (
        "not JSON",
        "{version: 1}",
        "release policy: not valid JSON (line 1 column 2: Expecting property name enclosed in double quotes)",
    ),
    ("empty", "   ", "release policy: the document is empty"),
    ("a list", "[]", "release policy document: must be an object, not a list"),
    ("too large", "{" + " " * 70000 + "}", "release policy: the document is 70002 bytes, more than 65536"),
    (
        "duplicate key",
        '{"version": 1, "version": 1, "environments": {}}',
        "release policy: field 'version' appears twice in one object",
    ),
    (
        "unknown top-level field",
        _set("allow_all", True),
        "release policy document: unknown field(s) 'allow_all' (allowed: environments, version)",
    ),
    ("no version", _drop("version"), "release policy document: missing required field(s) 'version'"),
    ("version 2", _set("version", 2), "release policy version: is 2; this gate reads version 1"),
    ("version true", _set("version", True), "release policy version: is true; this gate reads version 1"),
    ("version as text", _set("version", "1"), 'release policy version: is "1"; this gate reads version 1'),
    ("environments not an object", _set("environments", []), "release policy environments: must be an object, not a list"),
    (
        "unknown environment",
        _set("environments.staging", {"signers": {"keys": [PEM]}}),
        "release policy environments: unknown field(s) 'staging' (allowed: dev, prod)",
    ),
    ("missing prod", _drop("environments.prod"), "release policy environments: missing required field(s) 'prod'"),
    ("environment not an object", _set(DEV, "trust me"), "release policy environments.dev: must be an object, not a string"),
    (
        "unknown environment field",
        _set(f"{DEV}.require_sbomb", True),
        "release policy environments.dev: unknown field(s) 'require_sbomb' (allowed: approvers, attestation_wait_seconds, deploy_window, require_provenance, require_sbom, scan, signers)",
    ),
    ("no signers", _drop(f"{DEV}.signers"), "release policy environments.dev: missing required field(s) 'signers'"),
    (
        "empty signers",
        _set(f"{DEV}.signers", {}),
        "release policy environments.dev.signers: has no keys, no KMS keys and no keyless identities: nothing could ever be allowed",
    ),
    (
        "empty key list",
        _set(f"{DEV}.signers", {"keys": [], "keyless": []}),
        "release policy environments.dev.signers: has no keys, no KMS keys and no keyless identities",
    ),
    (
        "unknown signer kind",
        _set(f"{DEV}.signers.x509", ["cert"]),
        "release policy environments.dev.signers: unknown field(s) 'x509' (allowed: keyless, keys, kms)",
    ),
    (
        "keys not a list",
        _set(f"{DEV}.signers.keys", PEM),
        "release policy environments.dev.signers.keys: must be a list, not a string",
    ),
    (
        "key not a string",
        _set(f"{DEV}.signers.keys", [PEM, 42]),
        "release policy environments.dev.signers.keys[1]: must be a PEM public key string, not a number",
    ),
    (
        "key not a key",
        _set(f"{DEV}.signers.keys", ["hello"]),
        "release policy environments.dev.signers.keys[0]: the trusted key set contains no PEM public key",
    ),
    (
        "two keys in one entry",
        _set(f"{DEV}.signers.keys", [PEM + PEM2]),
        "release policy environments.dev.signers.keys[0]: holds 2 keys; put one PEM public key per entry",
    ),
    (
        "repeated key",
        _set(f"{DEV}.signers.keys", [PEM, PEM]),
        f"release policy environments.dev.signers.keys[1]: repeats key {KEY_ID[:16]}",
    ),
    (
        "too many keys",
        _set(f"{DEV}.signers.keys", [PEM] * 17),
        "release policy environments.dev.signers.keys: has 17 entries, more than 16",
    ),
    (
        "keyless without issuer",
        _set(f"{DEV}.signers.keyless", [{"identity": WORKFLOW}]),
        "release policy environments.dev.signers.keyless[0]: missing required field(s) 'issuer'",
    ),
    (
        "keyless with both identities",
        _set(f"{DEV}.signers.keyless", [{"identity": WORKFLOW, "identity_regex": ".*", "issuer": ISSUER}]),
        "release policy environments.dev.signers.keyless[0]: needs exactly one of 'identity' (exact SAN) and 'identity_regex'",
    ),
    (
        "keyless with no identity",
        _set(f"{DEV}.signers.keyless", [{"issuer": ISSUER}]),
        "release policy environments.dev.signers.keyless[0]: needs exactly one of 'identity' (exact SAN) and 'identity_regex'",
    ),
    (
        "keyless bad regex",
        _set(f"{DEV}.signers.keyless", [{"identity_regex": "(unclosed", "issuer": ISSUER}]),
        "release policy environments.dev.signers.keyless[0].identity_regex: is not a valid regular expression",
    ),
    (
        "keyless http issuer",
        _set(f"{DEV}.signers.keyless", [{"identity": WORKFLOW, "issuer": "http://evil.example"}]),
        "release policy environments.dev.signers.keyless[0].issuer: 'http://evil.example' is not an https:// OIDC issuer URL",
    ),
    (
        "keyless empty identity",
        _set(f"{DEV}.signers.keyless", [{"identity": " ", "issuer": ISSUER}]),
        "release policy environments.dev.signers.keyless[0].identity: must not be empty",
    ),
    (
        "keyless unknown field",
        _set(f"{DEV}.signers.keyless", [{"identity": WORKFLOW, "issuer": ISSUER, "subject": "x"}]),
        "release policy environments.dev.signers.keyless[0]: unknown field(s) 'subject' (allowed: identity, identity_regex, issuer)",
    ),
    (
        "keyless entry not an object",
        _set(f"{DEV}.signers.keyless", [WORKFLOW]),
        "release policy environments.dev.signers.keyless[0]: must be an object, not a string",
    ),
    (
        "require_sbom as text",
        _set(f"{DEV}.require_sbom", "yes"),
        "release policy environments.dev.require_sbom: must be true or false, not a string",
    ),
    (
        "require_sbom as 1",
        _set(f"{DEV}.require_sbom", 1),
        "release policy environments.dev.require_sbom: must be true or false, not a number",
    ),
    (
        "scan without block_at",
        _set(f"{DEV}.scan", {}),
        "release policy environments.dev.scan: missing required field(s) 'block_at'",
    ),
    (
        "scan unknown severity",
        _set(f"{DEV}.scan", {"block_at": "SEVERE"}),
        "release policy environments.dev.scan: scan block_at 'SEVERE' is not one of CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED",
    ),
    (
        "scan lower-case severity",
        _set(f"{DEV}.scan", {"block_at": "high"}),
        "release policy environments.dev.scan: scan block_at 'high' is not one of",
    ),
    (
        "scan in_progress",
        _set(f"{DEV}.scan", {"block_at": "HIGH", "in_progress": "skip"}),
        "release policy environments.dev.scan: scan in_progress 'skip' is not one of wait, fail",
    ),
    (
        "scan wait as text",
        _set(f"{DEV}.scan", {"block_at": "HIGH", "wait_seconds": "30"}),
        "release policy environments.dev.scan.wait_seconds: must be an integer, not a string",
    ),
    (
        "scan wait as bool",
        _set(f"{DEV}.scan", {"block_at": "HIGH", "wait_seconds": True}),
        "release policy environments.dev.scan.wait_seconds: must be an integer, not a boolean",
    ),
    (
        "scan wait too long",
        _set(f"{DEV}.scan", {"block_at": "HIGH", "wait_seconds": 600}),
        "release policy environments.dev.scan: scan wait_seconds 600 is outside 0..60",
    ),
    (
        "scan unknown field",
        _set(f"{DEV}.scan", {"block_at": "HIGH", "ignore": ["CVE-1"]}),
        "release policy environments.dev.scan: unknown field(s) 'ignore' (allowed: block_at, in_progress, top, wait_seconds)",
    ),
    ("scan null", _set(f"{DEV}.scan", None), "release policy environments.dev.scan: must be an object, not null"),
]


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_an_invalid_document_is_a_policy_error_naming_the_place(edit: Any, message: str) -> None:
    text = edit if isinstance(edit, str) else document(edit)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, keyless_factory=FakeKeyless)
    assert type(info.value) is PolicyError
    assert str(info.value).startswith(message), str(info.value)


def test_keyless_signers_without_a_factory_are_refused() -> None:
    text = document(_set(f"{DEV}.signers", {"keys": [PEM], "keyless": [{"identity": WORKFLOW, "issuer": ISSUER}]}))
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert str(info.value) == (
        "release policy environments.dev.signers.keyless: "
        "keyless signers configured but no keyless verifier is available to check them"
    )


def test_a_factory_refusal_is_reported_at_its_place() -> None:
    def refuse(identities: Sequence[KeylessIdentity]) -> Any:
        msg = "the trusted root is damaged"
        raise PolicyError(msg)

    text = document(_set("environments.prod.signers", {"keyless": [{"identity": WORKFLOW, "issuer": ISSUER}]}))
    with pytest.raises(PolicyError) as info:
        parse_policy(text, keyless_factory=refuse)
    assert str(info.value) == "release policy environments.prod.signers.keyless: the trusted root is damaged"


def test_the_docstring_example_parses() -> None:
    doc = policy_module.__doc__ or ""
    example = doc[doc.index("    {\n") : doc.index("\n    }\n") + 6]
    body = json.loads(example)
    body["environments"]["dev"]["signers"]["keys"] = [PEM]  # the example's key is elided
    policy = parse_policy(json.dumps(body), keyless_factory=FakeKeyless)
    assert policy.environment("prod").keyless == (KeylessIdentity(issuer=ISSUER, identity=WORKFLOW),)
    assert policy.environment("prod").scan == ScanPolicy(block_at="HIGH", in_progress="wait", wait_seconds=30, top=10)


def test_keys_document_writes_a_policy_the_gate_reads_back() -> None:
    # GIVEN two concatenated PEM keys (what COSIGN_PUBLIC_KEYS holds), SBOM in dev, a prod scan
    text = keys_document(PEM + PEM2, require_sbom=["dev"], scan={"prod": {"block_at": "CRITICAL"}})
    # THEN it is one key per entry, and parses into exactly that
    assert [len(s["signers"]["keys"]) for s in json.loads(text)["environments"].values()] == [2, 2]
    policy = parse_policy(text)
    dev, prod = policy.environment("dev"), policy.environment("prod")
    assert (dev.trust.key_ids, dev.require_sbom, dev.scan) == ((KEY_ID, KEY_ID2), True, None)
    assert (prod.require_sbom, prod.scan) == (False, ScanPolicy(block_at="CRITICAL"))
    assert len(text) < 4096  # a Lambda environment holds 4 KiB in all


def test_keys_document_refuses_unknown_environments() -> None:
    with pytest.raises(PolicyError, match="unknown environment"):
        keys_document(PEM, require_sbom=["staging"])


def test_the_default_policy_trusts_what_the_shipped_build_workflow_signs() -> None:
    # The audit found the default policy (keys only) refusing every image build.yml makes (keyless
    # only). GIVEN the shipped workflow and the template's defaults
    import yaml

    from local.template import ROOT, load_template

    workflow_path = ROOT / ".github" / "workflows" / "build.yml"
    workflow = yaml.safe_load(workflow_path.read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = [step.get("run", "") for step in steps]
    parameters = load_template()["Parameters"]
    branch = parameters["GitHubBuildBranch"]["Default"]
    # THEN it signs and attests keyless (no --key: the certificate names the workflow) on the branch
    # the template's default names, and nothing else pushes a signature
    signs = [run for run in runs if run.startswith(("cosign sign", "cosign attest"))]
    assert len(signs) == 3
    assert all("--key" not in run for run in signs)
    assert any("--type spdxjson" in run for run in signs)
    assert any("--type slsaprovenance1" in run for run in signs)
    assert workflow[True]["push"]["branches"] == [branch]  # YAML reads the key `on` as True
    # AND the default policy trusts exactly that certificate identity, with its SBOM and its
    # provenance from that workflow, repository and branch, in both environments
    identity = build_identity("acme", "podinfo", branch)
    assert identity.endswith(f"/{workflow_path.relative_to(ROOT)}@refs/heads/{branch}")
    document = json.loads(policy_module.default_document(identity))
    provenance = {"builder": identity, "repository": "https://github.com/acme/podinfo", "ref": f"refs/heads/{branch}"}
    for section in document["environments"].values():
        assert section == {"signers": {"keyless": [{"identity": identity, "issuer": ISSUER}]}, "require_sbom": True,
                           "attestation_wait_seconds": 120, "require_provenance": provenance}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ParameterNotFound", PolicyError),
        ("AccessDeniedException", PolicyError),
        ("ThrottlingException", PolicyUnavailable),
        ("InternalServerError", PolicyUnavailable),
    ],
)
def test_a_parameter_that_is_missing_or_forbidden_stops_the_release_a_passing_failure_is_retried(
    code: str, expected: type[Exception]
) -> None:
    from botocore.exceptions import ClientError

    def reader(name: str) -> str:
        # as Powertools raises it: its own error, the SDK's as the cause
        sdk_error = ClientError({"Error": {"Code": code, "Message": "no"}}, "GetParameter")
        raise RuntimeError(str(sdk_error)) from sdk_error

    with pytest.raises(expected) as info:
        load_policy({"RELEASE_POLICY_PARAMETER": "/s/p"}, reader)
    assert type(info.value) is expected
    assert "release policy parameter /s/p" in str(info.value)
    assert code in str(info.value)
