"""Starting a release from an ECR push event: at most one execution per repository and digest."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from podrelease.core.errors import EventTooLarge, ReleaseError
from podrelease.release.events import ImagePush, event_size, execution_name, fallback_execution_name, is_artifact_push, parse_push


def _execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name


def _existing(sfn: Any, arn: str) -> dict[str, Any] | None:
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
            raise
    return None


def blocked_push_name(repository: str, digest: str, event_id: str) -> str:
    """The execution of a new push of a digest that already had its release and is now blocked: named
    after the push event's id, so a duplicate delivery of that event starts nothing twice."""
    return f"{execution_name(repository, digest)}-b{hashlib.sha256(event_id.encode()).hexdigest()[:8]}"


def start_release(sfn: Any, state_machine_arn: str, event: Any, watched: tuple[str, ...],
                  blocked: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Start the release an ECR push event asks for, at most once per repository and digest.

    Artifact pushes (signatures, attestations, referrers) start nothing. A malformed or foreign
    event still starts an execution (named from the event's bytes) whose first state refuses it
    with a named error, so every refusal is visible in the execution history.
    A deliberate re-release uses `{"action": "rerelease", "repository", "digest", "attempt"}`, and an
    operator's rollback the same with `"rollback": {"environment", "requested_by", "replaces"}`.
    A new push of a digest whose release exists is a duplicate, unless `blocked(digest)`: then it
    starts an execution of its own (`blocked_push_name`) that fails fast with `DigestBlocked`.
    """
    push: ImagePush | None = None
    if isinstance(event, dict) and event.get("action") == "rerelease":
        attempt = int(event.get("attempt", 2))
        repository, digest = str(event.get("repository", "")), str(event.get("digest", ""))
        name = execution_name(repository, digest, attempt)
        payload: Any = {
            "version": "0",
            "id": f"rerelease-{attempt}",
            "detail-type": "ECR Image Action",
            "source": "aws.ecr",
            "account": state_machine_arn.split(":")[4],
            "region": state_machine_arn.split(":")[3],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "detail": {"result": "SUCCESS", "action-type": "PUSH", "repository-name": repository, "image-digest": digest},
            "rerelease": attempt,
        }
        if isinstance(event.get("rollback"), dict):  # `podrelease rollback`: into which environment, who asked
            payload["rollback"] = event["rollback"]
    elif is_artifact_push(event):
        return {"started": False, "reason": "the push is a signature, attestation or OCI artifact, not an image"}
    else:
        payload = event
        try:
            push = parse_push(event, watched)
            name = execution_name(push.repository, push.digest)
        except EventTooLarge:
            name = fallback_execution_name(event)
            payload = {"refused": "EventTooLarge", "size": event_size(event)}
        except ReleaseError:
            name = fallback_execution_name(event)
    arn = _execution_arn(state_machine_arn, name)
    existing = _existing(sfn, arn)
    if existing is not None and push is not None and blocked is not None and blocked(push.digest):
        name = blocked_push_name(push.repository, push.digest, str(event.get("id", "")))
        arn = _execution_arn(state_machine_arn, name)
        existing = _existing(sfn, arn)
    if existing is not None:
        return {"started": False, "duplicate": True, "execution_arn": arn, "status": existing.get("status")}
    try:
        started = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        return {"started": False, "duplicate": True, "execution_arn": arn}
    return {"started": True, "execution_arn": started["executionArn"], "name": name}
