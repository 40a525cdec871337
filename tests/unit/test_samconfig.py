"""The installations samconfig.toml describes do not watch each other's repositories.

Every image push to a WorkloadRepository starts a release in each stack that watches it, and
promotion copies into that stack's ProdRepository. GIVEN the config envs of samconfig.toml (the
parameters they override, the template's defaults for the rest) WHEN two envs deploy to the same
Region (possibly the same account) THEN they name no repository in common - neither the same
WorkloadRepository nor one's WorkloadRepository/ProdRepository as the other's - and within one env
the two repositories differ. The checker is also run on known-bad configurations.
"""

from __future__ import annotations

import shlex
import tomllib
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY_PARAMETERS = ("WorkloadRepository", "ProdRepository")


def template_defaults() -> dict[str, str]:
    parameters = yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]
    return {name: str(parameters[name]["Default"]) for name in REPOSITORY_PARAMETERS}


def installations(document: dict[str, Any], defaults: dict[str, str]) -> dict[str, tuple[str | None, dict[str, str]]]:
    """config env -> (Region, {WorkloadRepository, ProdRepository}) for every env that deploys."""
    found = {}
    for env, commands in document.items():
        if not isinstance(commands, dict) or "deploy" not in commands:
            continue
        merged: dict[str, Any] = {}
        for command in ("global", "deploy"):
            merged |= commands.get(command, {}).get("parameters", {})
        overrides = merged.get("parameter_overrides", "")
        words = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
        values = dict(defaults) | {k: v for k, _, v in (w.partition("=") for w in words) if k in REPOSITORY_PARAMETERS}
        found[env] = (merged.get("region"), values)
    return found


def conflicts(document: dict[str, Any], defaults: dict[str, str]) -> list[str]:
    envs = installations(document, defaults)
    problems = [f"{env}: WorkloadRepository and ProdRepository are both {repos['WorkloadRepository']}"
                for env, (_, repos) in envs.items() if repos["WorkloadRepository"] == repos["ProdRepository"]]
    for (first, (region_a, repos_a)), (second, (region_b, repos_b)) in combinations(sorted(envs.items()), 2):
        if region_a and region_b and region_a != region_b:
            continue  # ECR repositories and EventBridge rules are per Region
        shared = sorted(set(repos_a.values()) & set(repos_b.values()))
        if shared:
            problems.append(f"{first} and {second} ({region_a or region_b}) both name {', '.join(shared)}")
    return problems


def test_installations_in_one_region_watch_and_promote_to_repositories_of_their_own() -> None:
    document = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert len(installations(document, template_defaults())) >= 2
    assert conflicts(document, template_defaults()) == []


DEFAULTS = {"WorkloadRepository": "podinfo", "ProdRepository": "podinfo-prod"}


def config(region_b: str, overrides_a: str, overrides_b: str) -> dict[str, Any]:
    return {
        "version": 0.1,
        "dev": {"global": {"parameters": {"region": "us-east-1"}}, "deploy": {"parameters": {"parameter_overrides": overrides_a}}},
        "prod": {"global": {"parameters": {"region": region_b}}, "deploy": {"parameters": {"parameter_overrides": overrides_b}}},
    }


@pytest.mark.parametrize(("region_b", "overrides_a", "overrides_b", "expected"), [
    # The audit's samconfig: both installations watch podinfo.
    ("us-east-1", "WorkloadRepository=podinfo ProdRepository=podinfo-prod",
     "WorkloadRepository=podinfo ProdRepository=podinfo-prod LogLevel=INFO",
     ["dev and prod (us-east-1) both name podinfo, podinfo-prod"]),
    # One installation's prod repository is the other's workload repository: promotion would start a release.
    ("us-east-1", "WorkloadRepository=podinfo-staging ProdRepository=podinfo",
     "WorkloadRepository=podinfo ProdRepository=podinfo-production-prod",
     ["dev and prod (us-east-1) both name podinfo"]),
    # An env that overrides nothing takes the template's defaults.
    ("us-east-1", "", "LogLevel=DEBUG", ["dev and prod (us-east-1) both name podinfo, podinfo-prod"]),
    ("us-east-1", "WorkloadRepository=podinfo ProdRepository=podinfo", "WorkloadRepository=x ProdRepository=y",
     ["dev: WorkloadRepository and ProdRepository are both podinfo"]),
    ("eu-west-1", "", "", []),
    ("us-east-1", "WorkloadRepository=podinfo-staging ProdRepository=podinfo-staging-prod",
     "WorkloadRepository=podinfo-production ProdRepository=podinfo-production-prod", []),
])
def test_the_checker_refuses_installations_that_share_a_repository(
    region_b: str, overrides_a: str, overrides_b: str, expected: list[str],
) -> None:
    assert conflicts(config(region_b, overrides_a, overrides_b), DEFAULTS) == expected
