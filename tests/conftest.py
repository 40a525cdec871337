"""Shared test helpers.

`functions/<name>/` folders are not packages (each is a Lambda code root holding only `app.py`),
so tests load a handler module from its file path with `load_handler`.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


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
