"""The local stack: what creating `template.yaml` in moto made of it (physical ids, attributes, outputs, functions).

`local.template` reads and evaluates the template; `local.provision.create_stack` creates it
resource by resource and returns the `Stack` the emulation and the tests work with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Path | None  # the function's folder in sam build's output; None for image functions (podinfo)
    handler: str | None
    environment: dict[str, str]
    image_uri: str | None = None
    layers: list[Path] = field(default_factory=list)  # each layer's folder in sam build's output (Lambda's /opt)
    dead_letter_arn: str | None = None  # DeadLetterConfig.TargetArn: where Lambda puts an async event it gave up on


@dataclass
class Stack:
    name: str
    region: str
    account: str
    parameters: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)

    def function_by_name(self, name: str) -> LocalFunction | None:
        short = name.split(":function:")[-1].split(":")[0]
        return next((f for f in self.functions.values() if f.name == short), None)
