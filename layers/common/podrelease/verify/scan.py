"""The scan gate: block a release on Amazon ECR scan findings at or above a configured severity.

ECR answers `DescribeImageScanFindings` for one image digest with the scan's status and, once it
is complete, `findingSeverityCounts` (every finding, whatever the page) plus the findings
themselves, paginated: `findings` (basic scanning: `name` is the CVE id) or `enhancedFindings`
(enhanced scanning, Amazon Inspector: the id is `packageVulnerabilityDetails.vulnerabilityId`).

Severities, most severe first: CRITICAL > HIGH > MEDIUM > LOW > INFORMATIONAL > UNDEFINED.
Enhanced scanning's UNTRIAGED, and any severity not on that list, rank with UNDEFINED (and are
named in the evidence).

Outcomes, each a named error:

- a complete scan with a finding at or above `block_at`: `ScanBlocked`, the summary on the error
  as `.evidence`;
- no scan of the digest (`ScanNotFoundException`), a failed scan, an unsupported image, expired
  scan eligibility: `ScanUnavailable`, because a threshold is configured and cannot be checked;
- a scan still in progress (`IN_PROGRESS`, `PENDING`): with `in_progress: "wait"` polled until
  `wait_seconds` have passed, then `ScanUnavailable`; with `in_progress: "fail"`, `ScanUnavailable`
  at once;
- ECR unreachable or refusing: `RegistryError` (transient, the state machine retries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from podrelease.core.errors import PolicyError, RegistryError, ScanBlocked, ScanUnavailable
from podrelease.core.obs import get_logger
from podrelease.verify.registry import require_digest

logger = get_logger(__name__)

#: Most severe first; the index is the rank.
SEVERITIES: tuple[str, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_LOWEST = len(SEVERITIES) - 1

IN_PROGRESS_CHOICES = ("wait", "fail")
#: The verify function's timeout (120 s) also covers the signature grace wait (at most 90 s).
MAX_WAIT_SECONDS = 60
MAX_TOP = 50
#: Pages of findings read (1000 per page) to pick the most severe ids; the counts cover them all.
MAX_PAGES = 10

_DONE = frozenset({"COMPLETE", "ACTIVE"})
_PENDING = frozenset({"IN_PROGRESS", "PENDING"})


def severity_rank(severity: str) -> int:
    """0 for CRITICAL ... 5 for UNDEFINED; unknown severities rank as UNDEFINED."""
    return _RANK.get(severity, _LOWEST)


@dataclass(frozen=True)
class ScanPolicy:
    """Block at or above `block_at`; `in_progress` says what a running scan means."""

    block_at: str
    in_progress: str = "wait"
    wait_seconds: int = 30
    top: int = 10

    def __post_init__(self) -> None:
        if self.block_at not in _RANK:
            msg = f"scan block_at {self.block_at!r} is not one of {', '.join(SEVERITIES)}"
            raise PolicyError(msg)
        if self.in_progress not in IN_PROGRESS_CHOICES:
            msg = f"scan in_progress {self.in_progress!r} is not one of {', '.join(IN_PROGRESS_CHOICES)}"
            raise PolicyError(msg)
        if not 0 <= self.wait_seconds <= MAX_WAIT_SECONDS:
            msg = f"scan wait_seconds {self.wait_seconds} is outside 0..{MAX_WAIT_SECONDS}"
            raise PolicyError(msg)
        if not 0 <= self.top <= MAX_TOP:
            msg = f"scan top {self.top} is outside 0..{MAX_TOP}"
            raise PolicyError(msg)


@dataclass(frozen=True)
class _Finding:
    id: str
    severity: str


def _finding_of(raw: Any) -> _Finding | None:
    if not isinstance(raw, dict):
        return None
    severity = str(raw.get("severity") or "UNDEFINED")
    details = raw.get("packageVulnerabilityDetails")
    ident = raw.get("name")
    if isinstance(details, dict) and details.get("vulnerabilityId"):
        ident = details["vulnerabilityId"]
    if not ident:
        ident = raw.get("findingArn") or raw.get("title")
    return _Finding(id=str(ident or "unnamed")[:200], severity=severity[:40])


class _Scanner:
    def __init__(self, ecr_client: Any, repository: str, digest: str, registry_id: str | None) -> None:
        self.ecr = ecr_client
        self.base: dict[str, Any] = {"repositoryName": repository, "imageId": {"imageDigest": digest}}
        if registry_id:
            self.base["registryId"] = registry_id
        self.where = f"{repository}@{digest}"

    def page(self, token: str | None) -> dict[str, Any]:
        kwargs = dict(self.base, maxResults=1000)
        if token:
            kwargs["nextToken"] = token
        try:
            reply = self.ecr.describe_image_scan_findings(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if code == "ScanNotFoundException":
                msg = (
                    f"the policy blocks on scan findings but {self.where} has no scan; "
                    "turn on scan on push for the repository (or start a scan) and release again"
                )
                raise ScanUnavailable(msg) from exc
            msg = f"ECR DescribeImageScanFindings failed: {code}"
            raise RegistryError(msg) from exc
        except BotoCoreError as exc:
            msg = f"ECR DescribeImageScanFindings failed: {type(exc).__name__}"
            raise RegistryError(msg) from exc
        if not isinstance(reply, dict):
            msg = "ECR DescribeImageScanFindings returned no object"
            raise RegistryError(msg)
        return reply


def _status(reply: dict[str, Any]) -> tuple[str, str]:
    status = reply.get("imageScanStatus") if isinstance(reply.get("imageScanStatus"), dict) else {}
    return str((status or {}).get("status") or "UNKNOWN"), str((status or {}).get("description") or "")[:300]


def _summary(first: dict[str, Any], findings: list[_Finding], policy: ScanPolicy, *, truncated: bool) -> dict[str, Any]:
    body = first.get("imageScanFindings") if isinstance(first.get("imageScanFindings"), dict) else {}
    raw_counts = (body or {}).get("findingSeverityCounts")
    counts: dict[str, int] = {}
    if isinstance(raw_counts, dict) and raw_counts:
        for severity, count in raw_counts.items():
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                counts[str(severity)[:40]] = count
    else:  # no counts from ECR: count what was read
        for finding in findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
    ordered = dict(sorted(counts.items(), key=lambda item: (severity_rank(item[0]), item[0])))
    unknown = sorted(s for s in ordered if s not in _RANK)
    worst = min((severity_rank(s) for s in ordered), default=None)
    top_findings = sorted(findings, key=lambda f: (severity_rank(f.severity), f.id))[: policy.top]
    summary: dict[str, Any] = {
        "status": _status(first)[0],
        "block_at": policy.block_at,
        "counts": ordered,
        "total": sum(ordered.values()),
        "worst": SEVERITIES[worst] if worst is not None else None,
        "top": [{"id": f.id, "severity": f.severity} for f in top_findings],
    }
    completed = (body or {}).get("imageScanCompletedAt")
    if completed is not None:
        summary["completed_at"] = completed.isoformat() if hasattr(completed, "isoformat") else str(completed)
    if unknown:
        summary["unknown_severities"] = unknown
    if truncated:
        summary["top_truncated"] = True
    return summary


def check_scan(
    ecr_client: Any,
    repository: str,
    digest: str,
    policy: ScanPolicy,
    *,
    registry_id: str | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Check repository@digest's ECR scan against `policy`; return the findings summary (evidence)
    or raise ScanBlocked / ScanUnavailable (see the module docstring)."""
    require_digest(digest)
    scanner = _Scanner(ecr_client, repository, digest, registry_id)
    deadline = clock() + (policy.wait_seconds if policy.in_progress == "wait" else 0)
    delay = 2.0
    while True:
        first = scanner.page(None)
        status, description = _status(first)
        if status in _DONE:
            break
        if status in _PENDING:
            remaining = deadline - clock()
            if remaining > 0:
                sleep(min(delay, remaining))
                delay = min(delay * 2, 10.0)
                continue
            waited = f"after waiting {policy.wait_seconds} s" if policy.in_progress == "wait" else "(policy: fail)"
            msg = f"the scan of {scanner.where} is still {status} {waited}; release again once it completes"
            raise ScanUnavailable(msg)
        note = f": {description}" if description else ""
        msg = f"the scan of {scanner.where} ended {status}{note}; there are no findings to check"
        raise ScanUnavailable(msg)

    findings: list[_Finding] = []
    page, pages, truncated = first, 1, False
    while True:
        body = page.get("imageScanFindings") if isinstance(page.get("imageScanFindings"), dict) else {}
        for key in ("findings", "enhancedFindings"):
            items = (body or {}).get(key)
            if isinstance(items, list):
                findings.extend(f for f in map(_finding_of, items) if f is not None)
        token = page.get("nextToken")
        if not isinstance(token, str) or not token:
            break
        if pages >= MAX_PAGES:
            truncated = True
            break
        page, pages = scanner.page(token), pages + 1

    summary = _summary(first, findings, policy, truncated=truncated)
    threshold = severity_rank(policy.block_at)
    blocking = {s: n for s, n in summary["counts"].items() if s in _RANK and severity_rank(s) <= threshold}
    if blocking:
        listed = ", ".join(f"{n} {s}" for s, n in blocking.items())
        ids = [f["id"] for f in summary["top"] if severity_rank(f["severity"]) <= threshold][:5]
        shown = f" ({', '.join(ids)})" if ids else ""
        error = ScanBlocked(f"{scanner.where} has {listed} finding(s), at or above {policy.block_at}{shown}")
        error.evidence = {"verified": False, "error": error.name, "scan": summary}  # type: ignore[attr-defined]
        logger.warning("scan findings block the release", extra={"digest": digest, "scan": summary})
        raise error
    logger.info("scan findings below the threshold", extra={"digest": digest, "counts": summary["counts"]})
    return summary
