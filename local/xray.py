"""A local X-Ray daemon: the UDP listener the functions' X-Ray SDK sends its segments to.

On Lambda, `Tracing: Active` gives each invocation a trace header (`_X_AMZN_TRACE_ID`, set by the
runtime per invocation, see `local.lambda_worker`) and an X-Ray daemon at `AWS_XRAY_DAEMON_ADDRESS`;
the SDK (Powertools' Tracer) sends every finished subsegment to it as one UDP datagram: a JSON
header line, `{"format": "json", "version": 1}`, then the segment document. This listener keeps
them, so tests can read what a release traced (its annotations, which functions ran under it).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

HEADER = {"format": "json", "version": 1}
MAX_DATAGRAM = 65535


def _document(datagram: bytes) -> dict[str, Any] | None:
    """The segment document of one datagram; None when it is not the daemon's format."""
    header, _, body = datagram.partition(b"\n")
    try:
        document = json.loads(body) if json.loads(header) == HEADER else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class XRayDaemon:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.documents: list[dict[str, Any]] = []
        self.malformed = 0  # datagrams that were not header + JSON document
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, name="xray-daemon", daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        """What Lambda sets for a traced function (the trace header is per invocation)."""
        return {"AWS_XRAY_DAEMON_ADDRESS": self.address, "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}

    def _serve(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except OSError:  # closed by stop()
                return
            document = _document(data)
            with self.lock:
                if document is None:
                    self.malformed += 1
                else:
                    self.documents.append(document)

    def segments(self) -> list[dict[str, Any]]:
        """Every document received, each with its nested subsegments flattened after it."""
        with self.lock:
            documents = list(self.documents)
        flat: list[dict[str, Any]] = []

        def walk(entity: dict[str, Any]) -> None:
            flat.append(entity)
            for child in entity.get("subsegments") or []:
                walk(child)

        for document in documents:
            walk(document)
        return flat

    def annotated(self, key: str, value: str) -> list[dict[str, Any]]:
        """The (sub)segments carrying annotation `key` = `value`."""
        return [s for s in self.segments() if (s.get("annotations") or {}).get(key) == value]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=2)
