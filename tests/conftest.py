"""Shared test helpers.

`functions/<name>/` folders are not packages (each is a Lambda code root holding only `app.py`),
so tests load a handler module from its file path with `load_handler`. The suite-wide log scan
is a plugin of its own (tests/log_scan.py), registered here for every tier.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

#: Plugins on for the whole suite: the scan that fails the run when a secret reaches a log line.
pytest_plugins = ["tests.log_scan"]


def import_handler(name: str) -> ModuleType:
    """Import `functions/<name>/app.py` afresh (module-scope settings and clients are rebuilt)."""
    path = ROOT / "functions" / name / "app.py"
    module_name = f"handler_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot load handler {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def copy_of_the_build(target: Path, edit_template: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of the local build (`make build-local`) to break on purpose: files are hard links
    (fast), the template is written anew (never through a link, so the original stays), with
    relative paths made absolute and `edit_template` applied to it."""
    import os
    import shutil

    import yaml

    from local.template import BUILD_DIR

    shutil.copytree(BUILD_DIR, target, copy_function=os.link, symlinks=True)
    template_path = target / "template.yaml"
    template = yaml.safe_load(template_path.read_text().replace("../../statemachines/", f"{ROOT}/statemachines/"))
    if edit_template is not None:
        edit_template(template)
    template_path.unlink()
    template_path.write_text(yaml.safe_dump(template, sort_keys=False))
    return target


def build_with_the_layer_one_folder_too_deep(target: Path) -> Path:
    """The build with the layer's package at python/python/podrelease, as `ContentUri:
    layers/common` made of the old source layout."""
    copy_of_the_build(target)
    layer = target / "CommonLayer" / "python"
    (layer / "python").mkdir()
    (layer / "podrelease").rename(layer / "python" / "podrelease")
    return target


def build_without_a_grant(target: Path, function: str, action: str) -> Path:
    """The build with `action` taken out of `function`'s own policy statements (not its boundary)."""
    def edit(template: dict[str, Any]) -> None:
        removed = 0
        for policy in template["Resources"][function]["Properties"]["Policies"]:
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = statement.get("Action", [])
                if isinstance(actions, list) and action in actions:
                    statement["Action"] = [a for a in actions if a != action]
                    removed += 1
        assert removed == 1, f"{function} grants {action} {removed} times"

    return copy_of_the_build(target, edit)


REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the region, so no test can reach a real AWS account."""
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)


@dataclass
class FakeLambdaContext:
    """The parts of a Lambda context Powertools reads."""

    function_name: str = "handler"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:handler"
    aws_request_id: str = "req-1"


@pytest.fixture
def load_handler() -> Callable[[str], ModuleType]:
    """The `import_handler` function, as a fixture: `app = load_handler("approval_page")`."""
    return import_handler


def create_ledger_table(name: str = "ledger", *, session: Any = None, endpoint_url: str | None = None) -> Any:
    """The ledger table as template.yaml's `Ledger` resource declares it (key schema, attributes,
    indexes, TTL), created by the local stack's own table helper under `name`; the boto3 Table.
    `session` (a boto3 Session, default boto3's: the environment's region) and `endpoint_url` pick
    the AWS it is made in."""
    import boto3

    from local.provision import create_table
    from local.template import load_template

    properties = {**load_template()["Resources"]["Ledger"]["Properties"], "TableName": name}
    dynamodb = (session or boto3).resource("dynamodb", endpoint_url=endpoint_url)
    create_table(dynamodb.meta.client, properties)
    return dynamodb.Table(name)


@pytest.fixture
def ledger_table() -> Callable[..., Any]:
    """Makes the shipped ledger table in the AWS the test runs against (moto): `ledger_table("ledger")`."""
    return create_ledger_table
