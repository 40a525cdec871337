"""What every emulator shares: the `Timeline`, AWS-style errors, and the record of moto's patched methods."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.emulation import Emulation

#: The active emulation, as the patched moto methods find it (`Emulation.install` sets it).
Current = Callable[[], "Emulation"]

_MISSING = object()


@dataclass
class Timeline:
    """What happened, in order: (seconds since start, source, release id, text)."""

    started: float = field(default_factory=time.time)
    entries: list[tuple[float, str, str, str]] = field(default_factory=list)
    listeners: list[Callable[[tuple[float, str, str, str]], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: str, text: str, release: str = "") -> None:
        entry = (time.time() - self.started, source, release, text)
        with self.lock:
            self.entries.append(entry)
        for listener in list(self.listeners):
            listener(entry)


class LocalError(Exception):
    """An AWS-style error raised by an emulated API (code + message)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def error_response(exc: LocalError) -> tuple[int, dict[str, str], str]:
    """`exc` as moto's response handlers answer an error (status, headers, JSON body)."""
    return exc.status, {"x-amzn-ErrorType": exc.code}, json.dumps({"__type": exc.code, "message": exc.message})


class Patches:
    """The moto methods one emulator replaced, with what was there before, to put back in reverse order."""

    def __init__(self) -> None:
        self.saved: list[tuple[type, str, Any]] = []

    def patch(self, target: type, name: str, value: Any) -> None:
        self.saved.append((target, name, target.__dict__.get(name, _MISSING)))
        setattr(target, name, value)

    def restore(self) -> None:
        while self.saved:
            target, name, original = self.saved.pop()
            if original is _MISSING:
                if name in target.__dict__:
                    delattr(target, name)
            else:
                setattr(target, name, original)


def server_seconds(reply: dict[str, Any]) -> float | None:
    """The target's own time on a reply (its `Server-Timing: app;dur=<ms>` header), in seconds."""
    timing = str((reply.get("headers") or {}).get("server-timing", ""))
    match = re.search(r"dur=([0-9.]+)", timing)
    return float(match.group(1)) / 1000 if match else None


def p99_seconds(samples: list[float]) -> float:
    """The 99th percentile of `samples` (nearest rank: the largest of fewer than 100)."""
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)] if ordered else 0.0
