"""The GitHub Actions workflows' supply-chain rules, checked on the shipped `.github/workflows/*.yml`.

GIVEN each workflow file WHEN it is parsed THEN every action is pinned to a full commit SHA (with
the release it stands for in a comment), the workflow-level token is empty or read-only, only the
jobs that need an OIDC token ask for `id-token: write`, and no `${{ ... }}` expression (in
particular nothing from `github.event`) is pasted into a `run:` script. The checker functions are
also run on known-bad snippets, so each rule is shown to fail when it should.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS_DIR = Path(__file__).parents[2] / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))

# (workflow file, job id) -> why it needs an OIDC token. Nothing else may ask for one.
ID_TOKEN_JOBS = {
    ("build.yml", "image"): "AWS build role (ECR push) and the Fulcio certificate for keyless cosign",
    ("deploy.yml", "dev"): "AWS deploy role of the dev stack",
    ("deploy.yml", "prod"): "AWS deploy role of the prod stack",
}

SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
VERSION_COMMENT = re.compile(r"^\s+#\s*v\d+(?:\.\d+){0,2}\b")
READ_ONLY = {"read", "none"}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name} is not a mapping"
    return document


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow.get("jobs", {}).items() for step in job.get("steps", [])]


def unpinned_uses(text: str) -> list[str]:
    """`uses:` lines not pinned to a 40-hex commit SHA followed by a `# vX.Y.Z` comment."""
    bad = []
    for line in text.splitlines():
        match = USES_LINE.match(line)
        if not match:
            continue
        ref = match.group("ref").strip("'\"")
        if ref.startswith("./"):
            continue  # a local action is pinned by this repository's own commit
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                bad.append(line.strip())
            continue
        if not SHA_PIN.match(ref) or not VERSION_COMMENT.match(match.group("rest")):
            bad.append(line.strip())
    return bad


def top_level_permission_problems(workflow: dict[str, Any]) -> list[str]:
    """The workflow-level token must be declared, and be empty or read-only."""
    if "permissions" not in workflow:
        return ["no top-level permissions (the repository default may be read-write)"]
    permissions = workflow["permissions"]
    if permissions in ({}, "read-all"):
        return []
    if isinstance(permissions, dict):
        return [f"{scope}: {level}" for scope, level in permissions.items() if level not in READ_ONLY]
    return [f"permissions: {permissions}"]


def id_token_jobs(workflow: dict[str, Any]) -> set[str]:
    jobs = workflow.get("jobs", {})
    return {
        job_id
        for job_id, job in jobs.items()
        if isinstance(job.get("permissions"), dict) and job["permissions"].get("id-token") == "write"
    }


def jobs_without_permissions(workflow: dict[str, Any]) -> list[str]:
    return [job_id for job_id, job in workflow.get("jobs", {}).items() if "permissions" not in job]


def expressions_in_run(workflow: dict[str, Any]) -> list[str]:
    """Expressions are expanded into the script text before the shell sees it; use env: instead."""
    return [
        f"{job_id}: {step.get('name', step['run'][:40])}"
        for job_id, step in steps(workflow)
        if "run" in step and "${{" in step["run"]
    ]


# --- the shipped workflows -------------------------------------------------------------------------


def test_the_workflows_exist() -> None:
    assert {path.name for path in WORKFLOWS} == {"build.yml", "ci.yml", "deploy.yml", "refresh-trusted-root.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path: Path) -> None:
    assert "uses:" in path.read_text()
    assert unpinned_uses(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_top_level_permissions_are_empty_or_read_only(path: Path) -> None:
    assert top_level_permission_problems(load(path)) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_declares_its_own_permissions(path: Path) -> None:
    assert jobs_without_permissions(load(path)) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_id_token_write_only_where_needed(path: Path) -> None:
    expected = {job for (workflow, job) in ID_TOKEN_JOBS if workflow == path.name}
    assert id_token_jobs(load(path)) == expected


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_inside_run_scripts(path: Path) -> None:
    assert expressions_in_run(load(path)) == []
    assert "${{ github.event" not in "\n".join(step["run"] for _, step in steps(load(path)) if "run" in step)


def test_prod_deploy_runs_in_the_protected_environment_after_dev() -> None:
    jobs = load(WORKFLOWS_DIR / "deploy.yml")["jobs"]
    assert jobs["prod"]["environment"] == "prod"
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["dev"]["environment"] == "dev"


def test_checkout_never_persists_the_token() -> None:
    for path in WORKFLOWS:
        for _, step in steps(load(path)):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, path.name


# --- the checkers fail on what they should ---------------------------------------------------------

SHA = "3d3c42e5aac5ba805825da76410c181273ba90b1"


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        (f"      - uses: actions/checkout@{SHA} # v7.0.1", False),
        (f"        uses: docker/build-push-action@{SHA} # v7", False),
        ("      - uses: ./.github/actions/local", False),
        ("      - uses: docker://alpine@sha256:" + "a" * 64, False),
        ("      - uses: actions/checkout@v7", True),
        ("      - uses: actions/checkout@main", True),
        (f"      - uses: actions/checkout@{SHA[:7]} # v7.0.1", True),
        (f"      - uses: actions/checkout@{SHA}", True),
        (f"      - uses: actions/checkout@{SHA.upper()} # v7.0.1", True),
        ("      - uses: docker://alpine:3.20", True),
    ],
)
def test_pin_checker(line: str, bad: bool) -> None:
    assert (unpinned_uses(line) != []) is bad


@pytest.mark.parametrize(
    ("permissions", "problems"),
    [
        ({}, []),
        ("read-all", []),
        ({"contents": "read"}, []),
        ({"contents": "write"}, ["contents: write"]),
        ({"contents": "read", "id-token": "write"}, ["id-token: write"]),
        ("write-all", ["permissions: write-all"]),
    ],
)
def test_top_level_permission_checker(permissions: Any, problems: list[str]) -> None:
    assert top_level_permission_problems({"permissions": permissions}) == problems
    assert top_level_permission_problems({}) != []


def test_id_token_and_run_checkers_catch_the_bad_cases() -> None:
    workflow = yaml.safe_load(
        """
        permissions: {}
        jobs:
          sneaky:
            permissions: {id-token: write}
            steps:
              - name: title
                run: echo "${{ github.event.pull_request.title }}"
          unset:
            steps:
              - run: echo "$TITLE"
        """
    )
    assert id_token_jobs(workflow) == {"sneaky"}
    assert jobs_without_permissions(workflow) == ["unset"]
    assert expressions_in_run(workflow) == ["sneaky: title"]


# --- build.yml: what it signs and attests, checked against what the gate reads ---------------------

BUILD = WORKFLOWS_DIR / "build.yml"


def build_steps() -> dict[str, dict[str, Any]]:
    return {step["name"]: step for _, step in steps(load(BUILD))}


def _step(prefix: str) -> tuple[int, dict[str, Any]]:
    named = list(build_steps().items())
    found = [(number, step) for number, (name, step) in enumerate(named) if name.startswith(prefix)]
    assert len(found) == 1, f"build.yml has {len(found)} steps named {prefix!r}..."
    return found[0]


def test_build_attests_sbom_and_provenance_keyless_after_signing() -> None:
    runs = [step.get("run", "") for step in build_steps().values()]
    cosign = [line.strip() for run in runs for line in run.splitlines() if line.strip().startswith("cosign ")]
    assert cosign == [
        'cosign sign --yes "$IMAGE"',
        'cosign attest --yes --type spdxjson --predicate sbom.spdx.json "$IMAGE"',
        'cosign attest --yes --type slsaprovenance1 --predicate provenance.json "$IMAGE"',
    ]


def test_the_sbom_lists_packages_not_files_and_its_size_is_checked_before_it_is_attested() -> None:
    from podrelease.verify.attachments import MAX_ATTACHMENT_BYTES

    sbom_at, sbom = _step("SBOM (SPDX")
    size_at, size = _step("SBOM size")
    attest_at, _ = _step("Attest the SBOM")
    assert sbom["env"]["SYFT_FILE_METADATA_SELECTION"] == "none"
    assert sbom_at < size_at < attest_at
    limit = int(load(BUILD)["jobs"]["image"]["env"]["SBOM_MAX_BYTES"])
    assert 0 < limit <= MAX_ATTACHMENT_BYTES // 4  # the bundle around it stays far below the gate's cap
    assert '-gt "$SBOM_MAX_BYTES"' in size["run"]
    assert "exit 1" in size["run"]


def test_ci_verifies_with_the_gates_code_and_pinned_root_not_cosign() -> None:
    _, verify = _step("Verify with the gate")
    run = verify["run"]
    assert "cosign verify" not in "\n".join(step.get("run", "") for step in build_steps().values())
    assert "python -m podrelease.verify.cli verify-image" in run
    assert "--policy" in run
    assert "default_document" in run
    assert "--trusted-root" not in run  # the pinned root shipped in the package
    assert "layers/common/requirements.txt" in run


def test_the_workflows_provenance_is_what_the_default_policy_requires(tmp_path: Path) -> None:
    # GIVEN the GitHub environment of a push to main (what the runner sets; no expressions)
    import json
    import subprocess

    from podrelease.verify.policy import build_identity, default_document
    from podrelease.verify.provenance import read_provenance

    _, step = _step("Provenance (SLSA v1)")
    env = {
        "PATH": "/usr/bin:/bin", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/podinfo",
        "GITHUB_REF": "refs/heads/main", "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_WORKFLOW_REF": "acme/podinfo/.github/workflows/build.yml@refs/heads/main", "GITHUB_RUN_ID": "99",
        "GITHUB_RUN_ATTEMPT": "2", "GITHUB_EVENT_NAME": "push", "GITHUB_ACTOR": "alice", "GITHUB_TRIGGERING_ACTOR": "bob",
        "GITHUB_REPOSITORY_ID": "1", "GITHUB_REPOSITORY_OWNER_ID": "2", "RUNNER_ENVIRONMENT": "github-hosted",
    }
    # WHEN the step's script runs
    subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, check=True)  # noqa: S603, S607 - the workflow's own script
    # THEN the gate reads the build from it, and it is exactly what the default policy requires
    found = read_provenance(json.loads((tmp_path / "provenance.json").read_text()))
    assert (found.commit, found.actor, found.triggering_actor) == ("0123456789abcdef0123456789abcdef01234567", "alice", "bob")
    assert found.workflow_run == "https://github.com/acme/podinfo/actions/runs/99/attempts/2"
    required = json.loads(default_document(build_identity("acme", "podinfo", "main")))["environments"]["prod"]["require_provenance"]
    assert {"builder": found.builder, "repository": found.repository, "ref": found.ref} == required


def test_the_attestations_delay_is_measured_from_the_push() -> None:
    build_at, _ = _step("Build linux/arm64")
    pushed_at, pushed = _step("Note when the image was pushed")
    attested_at, attested = _step("Attest the provenance")
    _, summary = _step("Summary")
    assert build_at < pushed_at < attested_at
    assert "PUSHED_AT=" in pushed["run"]
    assert "ATTESTED_AT=" in attested["run"]
    assert "gap=$((ATTESTED_AT - PUSHED_AT))" in summary["run"]
    assert "attestation_wait_seconds" in summary["run"]
