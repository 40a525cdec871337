"""Import rules that import-linter cannot check (`make lint` runs this file beside `lint-imports`,
whose contracts are in pyproject.toml).

Handlers: `functions/<name>/app.py` is a Lambda code root, not a package, so no import graph holds
it. A handler imports only
  * the standard library,
  * what its runtime gives it: boto3 and botocore (the Lambda runtime) and aws_lambda_powertools
    (the layer's dependency),
  * the shared package's public entry points: `podrelease.<stage>` or a module of it, where the
    stage is one of core, verify, release, approval, rotation, and neither a module nor an
    imported name is private (a leading underscore).
Never `local` or `tests` (dev tooling, not shipped), `scripts`, the workload's secret gate, another
handler, a relative import, or a library the shared package wraps (cryptography, sigstore).

The secret gate (workload/gate/secretgate.py) is copied alone into the workload image: it imports
the standard library and nothing else (the import-linter contract names the packages it must not
reach; this checks every import against the standard library's list).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))
GATE = ROOT / "workload" / "gate" / "secretgate.py"
STAGES = frozenset({"core", "verify", "release", "approval", "rotation"})
RUNTIME = frozenset({"boto3", "botocore", "aws_lambda_powertools"})


def imports(source: str) -> list[tuple[int, str, list[str]]]:
    """Every import of a module (at any depth: lazy and TYPE_CHECKING ones too): line, module, names."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def handler_refusals(source: str) -> list[str]:
    """Why each import of a handler's source breaks the rule above (empty: it keeps it)."""
    refusals = []
    for line, module, names in imports(source):
        parts = module.split(".")
        top = parts[0]
        if module.startswith("."):
            why = "a relative import"
        elif top == "podrelease":
            private = [p for p in [*parts[1:], *names] if p.startswith("_")]
            if len(parts) < 2 or parts[1] not in STAGES:
                why = f"not a stage package of podrelease ({', '.join(sorted(STAGES))})"
            elif private:
                why = f"private name {private[0]}"
            else:
                continue
        elif top in RUNTIME or top in sys.stdlib_module_names:
            continue
        else:
            why = f"{top} is neither the standard library, the runtime's ({', '.join(sorted(RUNTIME))}) nor podrelease"
        refusals.append(f"line {line}: {module}: {why}")
    return refusals


def gate_refusals(source: str) -> list[str]:
    return [f"line {line}: {module} is not the standard library" for line, module, _ in imports(source)
            if module.startswith(".") or module.split(".")[0] not in sys.stdlib_module_names]


def test_every_handler_imports_only_public_entry_points() -> None:
    assert len(HANDLERS) >= 12, "the handlers moved: point HANDLERS at them"
    problems = [f"{path.relative_to(ROOT)} {refusal}" for path in HANDLERS for refusal in handler_refusals(path.read_text())]
    assert problems == []


@pytest.mark.parametrize(("source", "refusal"), [
    ("from local.stack import ROOT", "line 1: local.stack: local is neither the standard library, the runtime's "
                                     "(aws_lambda_powertools, boto3, botocore) nor podrelease"),
    ("import tests.conftest", "line 1: tests.conftest: tests is neither the standard library, the runtime's "
                              "(aws_lambda_powertools, boto3, botocore) nor podrelease"),
    ("import secretgate", "line 1: secretgate: secretgate is neither the standard library, the runtime's "
                          "(aws_lambda_powertools, boto3, botocore) nor podrelease"),
    ("from cryptography.hazmat import x", "line 1: cryptography.hazmat: cryptography is neither the standard library, "
                                          "the runtime's (aws_lambda_powertools, boto3, botocore) nor podrelease"),
    ("from . import app", "line 1: .: a relative import"),
    ("import podrelease", "line 1: podrelease: not a stage package of podrelease (approval, core, release, rotation, verify)"),
    ("from podrelease import links", "line 1: podrelease: not a stage package of podrelease "
                                     "(approval, core, release, rotation, verify)"),
    ("from podrelease.core.obs import _known_secrets", "line 1: podrelease.core.obs: private name _known_secrets"),
    ("import podrelease.verify._bundle", "line 1: podrelease.verify._bundle: private name _bundle"),
    ("def handler():\n    from local import demo", "line 2: local: local is neither the standard library, the runtime's "
                                                     "(aws_lambda_powertools, boto3, botocore) nor podrelease"),
])
def test_a_handler_reaching_past_the_entry_points_is_refused(source: str, refusal: str) -> None:
    assert handler_refusals(source) == [refusal]


def test_what_a_handler_may_import_is_not_refused() -> None:
    source = ("import json\nfrom typing import TYPE_CHECKING\nimport boto3\nfrom botocore.exceptions import ClientError\n"
              "from aws_lambda_powertools.utilities import parameters\nfrom podrelease.core.obs import get_logger\n"
              "from podrelease.release import fleet\nif TYPE_CHECKING:\n    from aws_lambda_powertools.utilities.typing import LambdaContext\n")
    assert handler_refusals(source) == []


def test_the_secret_gate_imports_only_the_standard_library() -> None:
    assert imports(GATE.read_text()), "the gate's imports are read"
    assert gate_refusals(GATE.read_text()) == []


@pytest.mark.parametrize("source", ["import boto3", "from aws_lambda_powertools import Logger",
                                    "from podrelease.core import obs", "import secretgate_helpers", "from . import x"])
def test_a_gate_import_from_outside_the_standard_library_is_refused(source: str) -> None:
    assert len(gate_refusals(source)) == 1
