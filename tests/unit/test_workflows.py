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
