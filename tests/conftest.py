"""Shared test helpers.

`functions/<name>/` folders are not packages (each is a Lambda code root holding only `app.py`),
so tests load a handler module from its file path with `load_handler`.
"""

from __future__ import annotations

import importlib.util
import sys
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


@pytest.fixture
def load_handler() -> Callable[[str], ModuleType]:
    """The `import_handler` function, as a fixture: `app = load_handler("approval_page")`."""
    return import_handler
