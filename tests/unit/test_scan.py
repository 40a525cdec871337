"""The scan gate (`podrelease.verify.scan.check_scan`): ECR scan findings against the policy's threshold.

A fake ECR client answers DescribeImageScanFindings with exact pages (statuses, basic and enhanced
findings, pagination); two tests run against moto's ECR to make sure the real API shapes (and
ScanNotFoundException) are read the same way.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from podrelease.core.errors import PolicyError, RegistryError, ScanBlocked, ScanUnavailable
from podrelease.verify.scan import ScanPolicy, check_scan, severity_rank

REPOSITORY = "podinfo"
DIGEST = "sha256:" + "5e" * 32
WHERE = f"{REPOSITORY}@{DIGEST}"


def finding(name: str, severity: str) -> dict[str, Any]:
    return {"name": name, "severity": severity, "uri": f"https://cve.example/{name}"}


def enhanced(vulnerability: str, severity: str) -> dict[str, Any]:
    return {"severity": severity, "packageVulnerabilityDetails": {"vulnerabilityId": vulnerability}, "title": vulnerability}


def complete(
    findings: list[dict[str, Any]], counts: dict[str, int] | None = None, *, key: str = "findings", next_token: str | None = None
) -> dict[str, Any]:
    if counts is None:
        counts = {}
        for f in findings:
            counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    page: dict[str, Any] = {
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {
            "imageScanCompletedAt": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            "findingSeverityCounts": counts,
            key: findings,
        },
    }
    if next_token:
        page["nextToken"] = next_token
    return page


def status(name: str, description: str = "") -> dict[str, Any]:
    return {"imageScanStatus": {"status": name, "description": description}}


class FakeEcr:
    """Answers DescribeImageScanFindings from a script of replies (or ClientErrors), records calls."""

    def __init__(self, *replies: dict[str, Any] | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    def describe_image_scan_findings(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "DescribeImageScanFindings")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run(ecr: Any, policy: ScanPolicy, clock: Clock | None = None) -> dict[str, Any]:
    clock = clock or Clock()
    return check_scan(ecr, REPOSITORY, DIGEST, policy, sleep=clock.sleep, clock=clock)


def test_findings_below_the_threshold_pass_with_an_exact_summary() -> None:
    # GIVEN a complete scan with one MEDIUM and two LOW findings, and a HIGH threshold
    ecr = FakeEcr(complete([finding("CVE-2024-3", "LOW"), finding("CVE-2024-1", "MEDIUM"), finding("CVE-2024-2", "LOW")]))
    # WHEN the scan gate runs THEN it passes and summarizes the findings, most severe first
    assert run(ecr, ScanPolicy(block_at="HIGH")) == {
        "status": "COMPLETE",
        "block_at": "HIGH",
        "counts": {"MEDIUM": 1, "LOW": 2},
        "total": 3,
        "worst": "MEDIUM",
        "top": [
            {"id": "CVE-2024-1", "severity": "MEDIUM"},
            {"id": "CVE-2024-2", "severity": "LOW"},
            {"id": "CVE-2024-3", "severity": "LOW"},
        ],
        "completed_at": "2025-01-02T03:04:05+00:00",
    }
    assert ecr.calls == [{"repositoryName": REPOSITORY, "imageId": {"imageDigest": DIGEST}, "maxResults": 1000}]


def test_a_clean_scan_passes() -> None:
    summary = run(FakeEcr(complete([])), ScanPolicy(block_at="LOW"))
    assert (summary["counts"], summary["total"], summary["worst"], summary["top"]) == ({}, 0, None, [])


@pytest.mark.parametrize(
    ("block_at", "findings", "message"),
    [
        ("HIGH", [finding("CVE-1", "HIGH")], f"{WHERE} has 1 HIGH finding(s), at or above HIGH (CVE-1)"),
        (
            "HIGH",
            [finding("CVE-1", "CRITICAL"), finding("CVE-2", "HIGH"), finding("CVE-3", "LOW")],
            f"{WHERE} has 1 CRITICAL, 1 HIGH finding(s), at or above HIGH (CVE-1, CVE-2)",
        ),
        ("CRITICAL", [finding("CVE-9", "CRITICAL")], f"{WHERE} has 1 CRITICAL finding(s), at or above CRITICAL (CVE-9)"),
        (
            "MEDIUM",
            [finding("CVE-5", "MEDIUM"), finding("CVE-6", "INFORMATIONAL")],
            f"{WHERE} has 1 MEDIUM finding(s), at or above MEDIUM (CVE-5)",
        ),
        ("UNDEFINED", [finding("CVE-7", "UNDEFINED")], f"{WHERE} has 1 UNDEFINED finding(s), at or above UNDEFINED (CVE-7)"),
    ],
    ids=["high at high", "critical and high at high", "critical at critical", "medium at medium", "everything"],
)
def test_findings_at_or_above_the_threshold_block(block_at: str, findings: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ScanBlocked) as info:
        run(FakeEcr(complete(findings)), ScanPolicy(block_at=block_at))
    assert str(info.value) == message
    assert info.value.evidence["scan"]["block_at"] == block_at  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("block_at", "passes"),
    [("CRITICAL", True), ("HIGH", False), ("MEDIUM", False), ("LOW", False), ("INFORMATIONAL", False), ("UNDEFINED", False)],
)
def test_the_order_of_severities(block_at: str, passes: bool) -> None:
    # GIVEN exactly one HIGH finding: only a CRITICAL threshold lets it through
    ecr = FakeEcr(complete([finding("CVE-1", "HIGH")]))
    if passes:
        assert run(ecr, ScanPolicy(block_at=block_at))["worst"] == "HIGH"
    else:
        with pytest.raises(ScanBlocked):
            run(ecr, ScanPolicy(block_at=block_at))


def test_counts_come_from_ecr_even_when_the_findings_are_paginated() -> None:
    # GIVEN 2 pages of enhanced (Inspector) findings and ECR's total counts on the first page
    first = complete(
        [enhanced("CVE-A", "LOW")], {"CRITICAL": 1, "LOW": 1, "UNTRIAGED": 2}, key="enhancedFindings", next_token="page-2"
    )
    second = complete([enhanced("CVE-B", "CRITICAL")], {"CRITICAL": 1, "LOW": 1, "UNTRIAGED": 2}, key="enhancedFindings")
    ecr = FakeEcr(first, second)
    with pytest.raises(ScanBlocked) as info:
        run(ecr, ScanPolicy(block_at="CRITICAL", top=5))
    assert str(info.value) == f"{WHERE} has 1 CRITICAL finding(s), at or above CRITICAL (CVE-B)"
    summary = info.value.evidence["scan"]  # type: ignore[attr-defined]
    assert summary["counts"] == {"CRITICAL": 1, "LOW": 1, "UNTRIAGED": 2}
    assert summary["unknown_severities"] == ["UNTRIAGED"]
    assert summary["top"] == [{"id": "CVE-B", "severity": "CRITICAL"}, {"id": "CVE-A", "severity": "LOW"}]
    assert [c.get("nextToken") for c in ecr.calls] == [None, "page-2"]


def test_top_keeps_only_the_n_most_severe_ids() -> None:
    findings = [finding(f"CVE-{n}", "LOW") for n in range(5)] + [finding("CVE-X", "MEDIUM")]
    summary = run(FakeEcr(complete(findings)), ScanPolicy(block_at="HIGH", top=2))
    assert summary["top"] == [{"id": "CVE-X", "severity": "MEDIUM"}, {"id": "CVE-0", "severity": "LOW"}]
    assert summary["total"] == 6


def test_a_scan_in_progress_is_waited_for_when_the_policy_says_wait() -> None:
    # GIVEN a scan IN_PROGRESS twice, then COMPLETE
    ecr = FakeEcr(status("IN_PROGRESS"), status("PENDING"), complete([finding("CVE-1", "LOW")]))
    clock = Clock()
    summary = run(ecr, ScanPolicy(block_at="HIGH", in_progress="wait", wait_seconds=30), clock)
    assert summary["worst"] == "LOW"
    assert clock.slept == [2.0, 4.0]


def test_a_scan_still_in_progress_after_the_wait_is_unavailable() -> None:
    clock = Clock()
    with pytest.raises(ScanUnavailable) as info:
        run(FakeEcr(status("IN_PROGRESS")), ScanPolicy(block_at="HIGH", wait_seconds=10), clock)
    assert str(info.value) == f"the scan of {WHERE} is still IN_PROGRESS after waiting 10 s; release again once it completes"
    assert sum(clock.slept) == 10


def test_a_scan_in_progress_fails_at_once_when_the_policy_says_fail() -> None:
    clock = Clock()
    with pytest.raises(ScanUnavailable) as info:
        run(FakeEcr(status("IN_PROGRESS")), ScanPolicy(block_at="HIGH", in_progress="fail"), clock)
    assert str(info.value) == f"the scan of {WHERE} is still IN_PROGRESS (policy: fail); release again once it completes"
    assert clock.slept == []


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            client_error("ScanNotFoundException"),
            ScanUnavailable,
            f"the policy blocks on scan findings but {WHERE} has no scan; "
            "turn on scan on push for the repository (or start a scan) and release again",
        ),
        (
            status("FAILED", "UnsupportedImageError: the OS is not supported"),
            ScanUnavailable,
            f"the scan of {WHERE} ended FAILED: UnsupportedImageError: the OS is not supported; there are no findings to check",
        ),
        (
            status("UNSUPPORTED_IMAGE"),
            ScanUnavailable,
            f"the scan of {WHERE} ended UNSUPPORTED_IMAGE; there are no findings to check",
        ),
        ({}, ScanUnavailable, f"the scan of {WHERE} ended UNKNOWN; there are no findings to check"),
        (client_error("ThrottlingException"), RegistryError, "ECR DescribeImageScanFindings failed: ThrottlingException"),
        (client_error("ImageNotFoundException"), RegistryError, "ECR DescribeImageScanFindings failed: ImageNotFoundException"),
    ],
    ids=["no scan", "failed", "unsupported", "no status", "throttled (transient)", "no image"],
)
def test_no_usable_scan_is_a_clear_error(reply: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        run(FakeEcr(reply), ScanPolicy(block_at="CRITICAL"))
    assert type(info.value) is error
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_at": "SEVERE"}, "scan block_at 'SEVERE' is not one of CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED"),
        ({"block_at": "HIGH", "in_progress": "ignore"}, "scan in_progress 'ignore' is not one of wait, fail"),
        ({"block_at": "HIGH", "wait_seconds": 61}, "scan wait_seconds 61 is outside 0..60"),
        ({"block_at": "HIGH", "top": -1}, "scan top -1 is outside 0..50"),
    ],
)
def test_an_unusable_scan_policy_is_a_policy_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as info:
        ScanPolicy(**kwargs)
    assert str(info.value) == message


def test_severity_rank_puts_unknown_severities_last() -> None:
    assert [severity_rank(s) for s in ("CRITICAL", "HIGH", "INFORMATIONAL", "UNDEFINED", "UNTRIAGED")] == [0, 1, 4, 5, 5]


# --- against moto's ECR ------------------------------------------------------------------------------


@pytest.fixture
def moto_image(aws_credentials: None) -> Any:
    with mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        ecr.create_repository(repositoryName=REPOSITORY)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "1" * 64, "size": 2},
                "layers": [],
            }
        )
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest, imageTag="6.9.1", imageDigest=digest)
        yield ecr, digest


def test_moto_no_scan_is_unavailable(moto_image: Any) -> None:
    ecr, digest = moto_image
    with pytest.raises(ScanUnavailable, match=f"{REPOSITORY}@{digest} has no scan"):
        check_scan(ecr, REPOSITORY, digest, ScanPolicy(block_at="HIGH"))


def test_moto_scan_findings_are_read_and_block(moto_image: Any) -> None:
    # GIVEN moto's scan (it reports one fake HIGH finding, CVE-9999-9999)
    ecr, digest = moto_image
    ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageDigest": digest})
    # THEN a CRITICAL threshold passes with that finding in the summary, and a HIGH one blocks
    summary = check_scan(ecr, REPOSITORY, digest, ScanPolicy(block_at="CRITICAL"))
    assert (summary["counts"], summary["top"]) == ({"HIGH": 1}, [{"id": "CVE-9999-9999", "severity": "HIGH"}])
    with pytest.raises(ScanBlocked, match=r"has 1 HIGH finding\(s\), at or above HIGH \(CVE-9999-9999\)"):
        check_scan(ecr, REPOSITORY, digest, ScanPolicy(block_at="HIGH"))
