"""Talking HTTP to podinfo's Lambda target: the one copy of the Function URL event format.

podinfo runs behind the Lambda Web Adapter, which takes a Lambda Function URL event (payload
format 2.0) and answers with `{statusCode, headers, body, isBase64Encoded}`. The traffic hooks and
the workload secret's rotation invoke a version or the alias directly with such an event; the local
runtime builds the same events for its Function URLs and its load balancers, and its podinfo
stand-in reads them and answers in the same shape. All of them use this module.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_HTTP = "the adapter's reply is not an HTTP response"


def request(path: str, method: str = "GET", *, headers: Mapping[str, str] | None = None, query: str = "",
            body: str | bytes = "", source_ip: str = "127.0.0.1") -> dict[str, Any]:
    """A Function URL (payload 2.0) request for `path`; a body that is not UTF-8 travels base64."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        text, encoded = raw.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(raw).decode(), True
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    agent = lowered.get("user-agent", "")
    now = time.time()
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) or None
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "queryStringParameters": params,
        "requestContext": {
            "accountId": "anonymous",
            "domainName": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": agent},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def bearer(token: str) -> dict[str, str]:
    """The Authorization header podinfo's token endpoints read."""
    return {"authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Incoming:
    """A request event as the receiving side reads it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def parse_request(event: Mapping[str, Any]) -> Incoming:
    http = (event.get("requestContext") or {}).get("http") or {}
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    return Incoming(method=str(http.get("method", "GET")), path=str(event.get("rawPath") or http.get("path") or "/"),
                    headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}, body=raw)


def response(status: int, body: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The adapter's answer to one request."""
    return {"statusCode": status, "headers": {str(k).lower(): str(v) for k, v in (headers or {}).items()},
            "body": body, "isBase64Encoded": False}


@dataclass(frozen=True)
class Reply:
    """podinfo's answer: `status` None when there was no HTTP answer (`error` says why)."""

    status: int | None
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body or "null")


def decode(payload: bytes | str | Mapping[str, Any]) -> Reply:
    """The adapter's reply (the invocation's payload, raw or parsed) as a Reply."""
    try:
        reply = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
        body = reply.get("body") or ""
        if reply.get("isBase64Encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        return Reply(int(reply.get("statusCode", 0)), str(body), dict(reply.get("headers") or {}))
    except (ValueError, AttributeError, TypeError):
        return Reply(None, error=NOT_HTTP)


def invoke(lambda_client: Any, function: str, qualifier: str | None, event: dict[str, Any]) -> Reply:
    """Invoke `function` (at `qualifier`) with a request event; a function error is a Reply without status."""
    reply = lambda_client.invoke(FunctionName=function, **({"Qualifier": qualifier} if qualifier else {}),
                                 Payload=json.dumps(event).encode())
    raw = reply["Payload"].read()
    if reply.get("FunctionError"):
        return Reply(None, error=f"function error: {raw[:200]!r}")
    return decode(raw)
