"""The command line: `podrelease [--stack NAME | --local] [--json] COMMAND ...`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from podrelease.core.times import epoch
from podrelease.release import dora as dora_metrics
from podrelease.release.actions import Actions
from podrelease_cli import operate, render, views
from podrelease_cli.target import LOCAL_STATE, Target, TargetError, from_local, from_stack

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def when(text: str) -> float:
    """A time: ISO-8601 ("2026-11-27T15:00:00Z") or an age ("90m", "24h", "7d", "2w")."""
    match = _RELATIVE.match(text.strip())
    if match:
        return time.time() - int(match.group(1)) * _UNIT[match.group(2)]
    seconds = epoch(text)
    if seconds is None:
        msg = f"{text!r} is neither an ISO time nor an age like 24h or 7d"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="podrelease", description="Operate podinfo releases: history, status, rollback, abort, "
                                  "re-release, blocked digests, DORA metrics. Every action is recorded with who did it.")
    where = top.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed stack's name (the caller's AWS credentials, AWS_REGION/--region)")
    where.add_argument("--local", action="store_true", help=f"the local runtime `make up` started ({LOCAL_STATE})")
    top.add_argument("--state-file", type=Path, default=LOCAL_STATE, help="--local: the state file `make up` wrote")
    top.add_argument("--region", help="the deployed stack's region (default: the AWS configuration's)")
    top.add_argument("--profile", help="an AWS profile to call with")
    top.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = top.add_subparsers(dest="command", required=True)
    releases = sub.add_parser("releases", help="release history, newest first (running releases on top)")
    releases.add_argument("--env", choices=views.ENVIRONMENTS, help="only releases that reached this environment")
    releases.add_argument("--since", type=when, help="only releases since this time (ISO or an age: 24h, 7d)")
    one = sub.add_parser("release", help="one release: timeline with stage durations, evidence, deployments, approval, actions")
    one.add_argument("release_id")
    sub.add_parser("status", help="per environment and target: the digest live now, since when, its release, approver, in flight")
    back = sub.add_parser("rollback", help="release an earlier digest into ENV (default: the previous successful release)")
    back.add_argument("environment", choices=views.ENVIRONMENTS)
    to = back.add_mutually_exclusive_group()
    to.add_argument("--to", dest="to_digest", metavar="DIGEST", help="the digest to roll back to")
    to.add_argument("--to-release", metavar="ID", help="the release whose digest to roll back to")
    back.add_argument("--fast", action="store_true", help="switch all traffic at once (no canary steps); still "
                      "re-verified, checked by the traffic hooks, recorded and notified")
    abort = sub.add_parser("abort", help="stop a running release and undo it as its failure path does")
    abort.add_argument("release_id")
    finish = sub.add_parser("finish", help="end a release's current canary bake and shift the rest of the traffic now "
                            "(the post-traffic checks still run)")
    finish.add_argument("release_id")
    again = sub.add_parser("rerelease", help="a new release of a digest, through every stage")
    again.add_argument("digest")
    blocking = sub.add_parser("block", help="refuse every release of a digest (DigestBlocked) until unblocked")
    blocking.add_argument("digest")
    blocking.add_argument("--reason", default="", help="why (kept with the block)")
    unblocking = sub.add_parser("unblock", help="lift a digest's block")
    unblocking.add_argument("digest")
    sub.add_parser("blocked", help="the blocked digests")
    metrics = sub.add_parser("dora", help="deployment frequency, lead time push->prod, change failure rate, time to restore")
    metrics.add_argument("--since", type=when, default=None, help="window start (default: 30 days ago)")
    metrics.add_argument("--until", type=when, default=None, help="window end (default: now)")
    return top


def run(args: argparse.Namespace, target: Target) -> tuple[Any, str]:  # one dispatch per command
    """(the facts, their readable form) of the command."""
    if args.command == "releases":
        rows = views.releases(target, args.env, args.since)
        return rows, render.table(rows, ["release_id", "outcome", "digest", "stopped_at", "error", "approved_by", "at"])
    if args.command == "release":
        detail = views.release(target, args.release_id)
        if detail is None:
            raise operate.OperationRefused(f"no release {args.release_id}")
        return detail, render.release(detail)
    if args.command == "status":
        rows = views.status(target)
        columns = ["environment", "target", "digest", "since", "release_id", "approved_by", "in_flight", "release_in_flight"]
        return rows, render.table(rows, columns)
    if args.command == "rollback":
        done = operate.rollback(target, args.environment, args.to_digest, args.to_release, fast=args.fast)
        return done, render.block(done)
    if args.command == "abort":
        done = operate.abort(target, args.release_id)
        return done, render.block(done)
    if args.command == "finish":
        done = operate.finish(target, args.release_id)
        return done, render.block(done)
    if args.command == "rerelease":
        done = operate.rerelease(target, args.digest)
        return done, render.block(done)
    if args.command == "block":
        done = operate.block(target, args.digest, args.reason)
        done |= {"blocked_at": views.iso(done.get("blocked_at"))}
        return done, render.block(done, ["digest", "blocked_by", "blocked_at", "reason"])
    if args.command == "unblock":
        done = operate.unblock(target, args.digest)
        return done, render.block(done)
    if args.command == "blocked":
        rows = [views.plain(b) | {"blocked_at": views.iso(b.get("blocked_at"))} for b in Actions(target.table()).all_blocked()]
        return rows, render.table(rows, ["digest", "blocked_by", "blocked_at", "reason"])
    until = args.until or time.time()
    since = args.since or until - 30 * dora_metrics.DAY
    figures = dora_metrics.compute(views.records(target), since, until).to_dict()
    return figures, render.block(figures | {"since": views.iso(since), "until": views.iso(until)})


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = from_local(args.state_file) if args.local else from_stack(args.stack, args.region, args.profile)
        facts, text = run(args, target)
    except (TargetError, operate.OperationRefused) as exc:
        print(f"podrelease: {exc}", file=sys.stderr)  # noqa: T201 - the command's answer
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"podrelease: AWS refused: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(render.as_json(facts) if args.json else text)  # noqa: T201
    return 0
