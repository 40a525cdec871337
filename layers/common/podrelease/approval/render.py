"""What the approval page and the approval/outcome emails say: one summary, as HTML and as plain text.

The summary comes first and fits a screen: the candidate beside what prod runs (where the record
knows it), who built it from which commit and ref (where the evidence says), each gate as a plain
verdict, dev's results in a line each, the time left and the votes so far. The raw evidence and
dev results stay available, folded (`<details>`), on the page only.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from podrelease.approval.store import iso

if TYPE_CHECKING:
    from collections.abc import Mapping

SECURITY_HEADERS: dict[str, str] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.35}"
    "h1{font-size:1.3rem;margin:.4rem 0}h2{font-size:1.05rem;margin:.8rem 0 .3rem}"
    "table{border-collapse:collapse;width:100%;font-size:.92rem}td,th{text-align:left;padding:.2rem .4rem;"
    "vertical-align:top;border-bottom:1px solid #ddd;overflow-wrap:anywhere}th{width:9rem;font-weight:600}"
    "pre{background:#f4f4f4;padding:.6rem;overflow:auto;font-size:.8rem;white-space:pre-wrap;overflow-wrap:anywhere}"
    "button{font-size:1rem;padding:.5rem 1.4rem;margin:.3rem 1rem .3rem 0;border-radius:4px;border:1px solid #555}"
    ".approve{background:#1f7a1f;color:#fff}.reject{background:#a11;color:#fff}.note{color:#555;font-size:.9rem}"
    ".ok{color:#1f7a1f}.bad{color:#a11}textarea{width:100%;max-width:36rem;font:inherit}"
    ".decide{background:#f7f7f0;border:1px solid #ccc;padding:.5rem .8rem;border-radius:4px}"
    "@media (max-width:600px){th{width:6rem}button{width:100%}}"
)


@dataclass(frozen=True)
class Line:
    """One row of the summary: a label, the plain text, and whether it is good news (None: neutral)."""

    label: str
    text: str
    good: bool | None = None


def _short(digest: Any) -> str:
    text = str(digest or "")
    return text[: len("sha256:") + 12] if text.startswith("sha256:") else text or "?"


def _signature_verdict(evidence: Mapping[str, Any]) -> Line:
    signatures = evidence.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        return Line("Signature", "no verified signature in the evidence", good=False)
    who = [str(entry.get("signer_identity") or entry.get("key_id") or entry.get("source") or "a trusted key")
           for entry in signatures if isinstance(entry, dict)]
    return Line("Signature", f"verified, by {', '.join(dict.fromkeys(who)) or 'a trusted key'}", good=True)


def _sbom_verdict(evidence: Mapping[str, Any]) -> Line:
    sbom = evidence.get("sbom")
    if not isinstance(sbom, dict):
        return Line("SBOM", "not required by the policy")
    sboms = [s for s in sbom.get("sboms") or [] if isinstance(s, dict)]
    if not sboms:
        return Line("SBOM", "required, none verified", good=False)
    first = sboms[0]
    return Line("SBOM", f"present and signed ({first.get('format', '?')}, {_short(first.get('sbom_digest'))})", good=True)


def _scan_verdict(evidence: Mapping[str, Any]) -> Line:
    scan = evidence.get("scan")
    if not isinstance(scan, dict):
        return Line("Scan", "not required by the policy")
    counts = scan.get("counts") or scan.get("findings") or {}
    detail = ", ".join(f"{k.lower()} {v}" for k, v in counts.items()) if isinstance(counts, dict) and counts else "no findings"
    return Line("Scan", f"passed the threshold ({detail})", good=True)


def _build_line(evidence: Mapping[str, Any]) -> Line:
    provenance = evidence.get("provenance")
    if isinstance(provenance, dict):
        who = provenance.get("actor") or provenance.get("builder") or "?"
        ref = provenance.get("ref") or "?"
        commit = str(provenance.get("commit") or "?")[:12]
        return Line("Built by", f"{who} from {ref} at {commit}", good=True)
    for entry in evidence.get("signatures") or []:
        if isinstance(entry, dict) and entry.get("signer_identity"):
            return Line("Built by", f"{entry['signer_identity']} (keyless signer; no provenance attestation)")
    return Line("Built by", "not recorded (no provenance attestation in the evidence)")


def _legacy_dev_lines(dev: Mapping[str, Any]) -> list[Line]:
    """Dev's outcome from its deployment state alone (a record from before the bake was measured)."""
    deployment = _section(dev, "deployment") or dict(dev)
    lines = []
    status = deployment.get("status") or deployment.get("lambda_status")
    if status:
        lines.append(Line("Dev Lambda", f"canary {str(status).lower()}"
                          f"{' (version ' + str(deployment['version']) + ')' if deployment.get('version') else ''}",
                          good=str(status) == "Succeeded"))
    fleet = deployment.get("fleet")
    if isinstance(fleet, dict):
        fleet_status = fleet.get("status") or fleet.get("phase") or "?"
        lines.append(Line("Dev fleet", f"{str(fleet_status).lower()}"
                          f"{', now ' + str(fleet['colour']) if fleet.get('colour') else ''}",
                          good=str(fleet_status) in ("Succeeded", "done")))
    for name in ("lambda", "ec2"):
        part = dev.get(name)
        if isinstance(part, dict) and part.get("status"):
            lines.append(Line(f"Dev {name}", str(part["status"]).lower(), good=part["status"] == "Succeeded"))
    return lines or [Line("Dev", "no results recorded", good=False)]


def _not_measured(facts: Mapping[str, Any]) -> str:
    return f"not measured: {facts.get('not_measured') or 'no figure recorded'}"


def alarms_line(label: str, alarms: Any) -> Line:
    """Quiet (no alarm went to ALARM during the bake), NOT quiet (which, when), or not measured (why)."""
    if not isinstance(alarms, dict) or "fired" not in alarms:
        return Line(label, _not_measured(alarms if isinstance(alarms, dict) else {}))
    fired = [f for f in alarms["fired"] if isinstance(f, dict)]
    if fired:
        return Line(label, "NOT quiet: " + "; ".join(f"{f.get('name')} went to ALARM at {f.get('at')} ({f.get('summary')})"
                                                    for f in fired), good=False)
    return Line(label, f"quiet: none of {', '.join(alarms.get('names') or [])} went to ALARM during the bake", good=True)


def traffic_line(label: str, traffic: Any, unit: str) -> Line:
    """Requests, errors (rate) and p99 latency during the bake, or not measured (why)."""
    if not isinstance(traffic, dict) or "requests" not in traffic:
        return Line(label, _not_measured(traffic if isinstance(traffic, dict) else {}))
    latency = f", p99 {traffic['p99_ms']:g} ms" if "p99_ms" in traffic else ", p99 latency not measured (no data points)"
    errors = int(traffic.get("errors", 0))
    return Line(label, f"{traffic['requests']} {unit}, {errors} errors ({float(traffic.get('error_rate', 0)):.2%}){latency}",
                good=errors == 0)


def _window(facts: Mapping[str, Any]) -> str:
    window = facts.get("window")
    return f", {window['start']} to {window['end']} ({window['seconds']} s)" if isinstance(window, dict) else ""


def _lambda_lines(facts: Mapping[str, Any], deployment: Mapping[str, Any]) -> list[Line]:
    if "status" not in facts:
        return [Line("Dev canary", _not_measured(facts))]
    version = f", version {deployment['version']}" if deployment.get("version") else ""
    hooks = facts.get("hooks") or {}
    return [
        Line("Dev canary", f"{str(facts['status']).lower()}: {facts.get('steps', '?')}{version}{_window(facts)}",
             good=facts["status"] == "Succeeded"),
        Line("Dev hooks", ", ".join(f"{hook} {str(result).lower()}" for hook, result in hooks.items()) or "none recorded",
             good=bool(hooks) and all(result == "Succeeded" for result in hooks.values())),
        alarms_line("Dev alarms", facts.get("alarms", facts)),
        traffic_line("Dev traffic", facts.get("traffic", facts), "invocations"),
    ]


def _fleet_lines(facts: Mapping[str, Any]) -> list[Line]:
    health = facts.get("health") or {}
    healthy = (f"; {health['healthy']} of {health['total']} targets healthy before traffic" if health
               else "; target health not recorded")
    checks = facts.get("checks") or []
    checked = ", ".join(f"{c['phase']} {c['passed']}/{c['total']} passed"
                        + (f" (failed: {', '.join(c['failed'])})" if c["failed"] else "") for c in checks) or "none recorded"
    return [
        Line("Dev fleet", f"{facts.get('phase', '?').lower()} on {facts.get('colour', '?')}: {facts.get('steps', '?')}"
             f"{healthy}{_window(facts)}", good=facts.get("phase") == "Succeeded" and bool(health)
             and health["healthy"] == health["total"]),
        Line("Fleet checks", checked, good=bool(checks) and all(not c["failed"] for c in checks)),
        alarms_line("Fleet alarms", facts.get("alarms", facts)),
        traffic_line("Fleet traffic", facts.get("traffic", facts), "requests"),
    ]


def _dev_lines(record: Mapping[str, Any]) -> list[Line]:
    """Dev's results: the canary's steps, the hooks, the alarms over the bake, the traffic's errors and
    latency, the fleet's checks and health (the `bake` facts, `podrelease.approval.bake`)."""
    dev, bake = _section(record, "dev"), _section(record, "bake")
    if not bake:
        return _legacy_dev_lines(dev)
    if "lambda" not in bake:
        return [*_legacy_dev_lines(dev), Line("Dev bake", _not_measured(bake))]
    lines = _lambda_lines(bake["lambda"], _section(dev, "deployment"))
    if isinstance(bake.get("fleet"), dict):
        lines += _fleet_lines(bake["fleet"])
    return lines


# --- deploy window (the release policy's, as dev's gate forecast it: podrelease.verify.windows) ---
def window_line(evidence: Mapping[str, Any]) -> Line | None:
    """When an approval now would reach prod: at once, after a wait (until when, why), or never
    (further than the policy's max wait: the release would fail with OutsideDeployWindow)."""
    ahead = evidence.get("window_ahead")
    if not isinstance(ahead, dict):
        return None
    label = f"{str(ahead.get('environment', 'prod')).capitalize()} window"
    policy = ahead.get("policy") if isinstance(ahead.get("policy"), dict) else {}
    hours = f" ({', '.join(map(str, policy.get('open') or []))} {policy.get('timezone', '')})" if policy else ""
    if ahead.get("open"):
        return Line(label, f"open: an approval deploys at once{hours}", good=True)
    if ahead.get("wait_until"):
        return Line(label, f"closed: an approval is recorded now and the release waits until {ahead['wait_until']} "
                           f"to deploy ({ahead.get('reason', '')})")
    return Line(label, f"closed too long: {ahead.get('reason', '')}", good=False)


def _section(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def _prod_now_text(prod: Mapping[str, Any], now: float) -> str:
    """Prod's digest, tag and age, and who approved it (the ledger's `live#prod`, as the last release there recorded it)."""
    text = f"{_short(prod.get('digest'))} {prod.get('version') or prod.get('tag') or ''}".strip()
    if prod.get("deployed_at"):
        age = int(now) - int(prod.get("deployed_epoch") or now)
        ago = f"{age // 86400} d {age % 86400 // 3600} h" if age >= 86400 else f"{age // 3600} h {age % 3600 // 60} min"
        text += f", deployed {prod['deployed_at']} ({ago} ago)"
    if prod.get("approved_by"):
        text += f", approved by {prod['approved_by']}"
    return text


def summary_lines(record: Mapping[str, Any], now: float) -> list[Line]:
    """The at-a-glance summary of an approval record, in the order the page and emails show it."""
    evidence, prod = _section(record, "evidence"), _section(record, "prod")
    tag = f" {record['tag']}" if record.get("tag") else ""
    candidate = f"{_short(record.get('digest'))}{tag} ({record.get('repository', '?')})"
    lines = [Line("Candidate", candidate)]
    if prod:
        lines.append(Line("Prod now", _prod_now_text(prod, now)))
    else:
        lines.append(Line("Prod now", "no release of this stack has reached prod yet"))
    lines += [_build_line(evidence), _signature_verdict(evidence), _sbom_verdict(evidence), _scan_verdict(evidence)]
    lines += _dev_lines(record)
    window = window_line(evidence)
    if window is not None:
        lines.append(window)
    left = int(record.get("expires_at", 0)) - int(now)
    lines.append(Line("Time left", f"{left // 3600} h {left % 3600 // 60} min (until {iso(record['expires_at'])})"
                      if left > 0 else "none: the approval window has closed", good=left > 0))
    lines.append(Line("Votes", votes_text(record)))
    return lines


def votes_text(record: Mapping[str, Any]) -> str:
    votes = [v for v in record.get("votes") or [] if isinstance(v, dict)]
    if not votes:
        return "none yet"
    return "; ".join(vote_text(v) for v in votes)


def vote_text(vote: Mapping[str, Any]) -> str:
    comment = f' - "{vote["comment"]}"' if vote.get("comment") else ""
    comment += " (and blocked the digest)" if vote.get("block") else ""
    return (f"{vote.get('decision', '?')} by {vote.get('email', '?')} (subject {vote.get('subject', '?')}) at "
            f"{iso(vote['at']) if vote.get('at') else '?'}, link {vote.get('link', '?')}{comment}")


def summary_text(record: Mapping[str, Any], now: float) -> str:
    """The summary as plain text (the emails)."""
    lines = summary_lines(record, now)
    width = max(len(line.label) for line in lines) + 2
    marks = {True: "ok  ", False: "NO  ", None: "    "}
    return "\n".join(f"{marks[line.good]}{(line.label + ':').ljust(width)}{line.text}" for line in lines)


def summary_html(record: Mapping[str, Any], now: float) -> str:
    rows = []
    for line in summary_lines(record, now):
        css = {True: ' class="ok"', False: ' class="bad"', None: ""}[line.good]
        mark = {True: "&#10003; ", False: "&#10007; ", None: ""}[line.good]
        rows.append(f"<tr><th>{html.escape(line.label)}</th><td{css}>{mark}{html.escape(line.text)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def raw_html(record: Mapping[str, Any]) -> str:
    """The raw evidence and dev results, folded."""
    def pre(value: Any) -> str:
        text = json.dumps(value, indent=2, sort_keys=True, default=str) if value not in (None, {}, []) else "(none)"
        return f"<pre>{html.escape(text)}</pre>"
    facts = {k: record.get(k) for k in ("release_id", "repository", "digest", "image_uri", "execution_arn")}
    return (f"<details><summary>Release facts</summary>{pre(facts)}</details>"
            f"<details><summary>Raw signature and SBOM evidence</summary>{pre(record.get('evidence'))}</details>"
            f"<details><summary>Raw dev deployment results</summary>{pre(record.get('dev'))}</details>")


def document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
