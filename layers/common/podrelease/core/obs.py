"""Observability: one logger setup for every function, with redaction and the correlation id.

Every function calls `get_logger()` at module scope. The correlation id is the release id (the
execution name); `bind_release` puts it on every following log line. The formatter masks values of
sensitive keys (tokens, secrets, Authorization headers) and any value registered with
`register_secret`, wherever it appears in a message or an extra field, so a secret cannot reach a
log line by accident.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE = "podinfo-release"
MASK = "***"
SENSITIVE_KEY = re.compile(
    r"(token|secret|password|authorization|signing[_-]?key|private[_-]?key|credential|cookie)", re.IGNORECASE
)
# Step Functions task tokens and our approval tokens are long opaque strings; mask them in free text.
# A bare `t` (the approval link's query parameter) only as a whole word, so `commit=<sha>` is not masked.
_TOKEN_IN_TEXT = re.compile(
    r"((?:task_?token|token|(?<![A-Za-z0-9])t)[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/=_.-]{24,})", re.IGNORECASE
)
_known_secrets: set[str] = set()


def register_secret(value: str | bytes) -> None:
    """Mask this exact value wherever it would appear in a log line from now on."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if len(text) >= 8:
        _known_secrets.add(text)


def redact(value: Any, key: str = "") -> Any:
    """Return `value` with sensitive keys and known secret values masked (recursively)."""
    if key and SENSITIVE_KEY.search(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, BaseException):  # Powertools' stack_trace.value is the exception object itself
        value = str(value)
    if isinstance(value, str):
        text = value
        for secret in _known_secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _TOKEN_IN_TEXT.sub(lambda m: m.group(1) + MASK, text)
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter with every field passed through `redact` before serialising."""

    def serialize(self, log: Any) -> str:
        return super().serialize(redact(log) if isinstance(log, dict) else log)


def get_logger(name: str | None = None) -> Logger:
    return Logger(service=SERVICE, child=name is not None, logger_formatter=RedactingFormatter() if name is None else None)


def get_tracer() -> Tracer:
    """X-Ray tracing for the function (`Tracing: Active` in the template); one per function."""
    return Tracer(service=SERVICE)


def bind_release(logger: Logger, release_id: str | None, tracer: Tracer | None = None) -> None:
    """Make `release_id` the correlation id of every following log line of this invocation and,
    with a tracer, the `release_id` annotation of its trace (searchable in X-Ray)."""
    if release_id:
        logger.set_correlation_id(release_id)
        logger.append_keys(release_id=release_id)
        if tracer is not None:
            tracer.put_annotation("release_id", release_id)


def release_id_of(event: Any) -> str | None:
    """Find the release id in a state machine payload (release.id) or a flat payload (release_id)."""
    if not isinstance(event, dict):
        return None
    release = event.get("release")
    if isinstance(release, dict) and isinstance(release.get("id"), str):
        return str(release["id"])
    rid = event.get("release_id")
    return rid if isinstance(rid, str) else None
