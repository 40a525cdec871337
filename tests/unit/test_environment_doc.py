"""docs/ENVIRONMENT.md's parameter table is the template's parameters, with the template's defaults.

GIVEN template.yaml (read with the local runtime's loader, `local.template.load_template`) and the
table under "## Template parameters" in docs/ENVIRONMENT.md WHEN they are compared THEN every
parameter has exactly one row, no row names a parameter the template lacks, and every documented
default is the template's (`required` for a parameter without one, `""` for an empty default).
The checker also runs on doctored copies of the page, so a broken table is known to fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ENVIRONMENT.md"
SECTION = "## Template parameters"
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<default>[^|]+?) \| (?P<why>.+) \|$")
REQUIRED = "required"


def documented(text: str) -> list[tuple[str, str | None, str]]:
    """(parameter, default or None for `required`, why) for each row of the parameter table."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    rows: list[tuple[str, str | None, str]] = []
    for line in text[start:end if end != -1 else None].splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        cell = match["default"].strip()
        if cell == REQUIRED:
            default = None
        elif cell.startswith("`") and cell.endswith("`"):
            default = cell[1:-1]
            default = "" if default == '""' else default
        else:
            msg = f"row {match['name']}: the default cell {cell!r} is neither `value`, `\"\"` nor {REQUIRED}"
            raise AssertionError(msg)
        rows.append((match["name"], default, match["why"].strip()))
    return rows


def problems(template: dict[str, Any], text: str) -> list[str]:
    parameters = template["Parameters"]
    rows = documented(text)
    found: list[str] = []
    names = [name for name, _, _ in rows]
    found += [f"{name} is in template.yaml but not in the table" for name in parameters if name not in names]
    found += [f"{name} is in the table but not a parameter of template.yaml" for name in names if name not in parameters]
    found += [f"{name} has {names.count(name)} rows" for name in sorted(set(names)) if names.count(name) > 1]
    for name, default, why in rows:
        if name not in parameters:
            continue
        spec = parameters[name]
        actual = str(spec["Default"]) if "Default" in spec else None
        if default != actual:
            shown = REQUIRED if actual is None else repr(actual)
            found.append(f"{name}: the table says {REQUIRED if default is None else repr(default)}, template.yaml {shown}")
        if not why:
            found.append(f"{name}: the row does not say why")
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_table_is_the_templates_parameters_with_their_defaults(template: dict[str, Any]) -> None:
    assert problems(template, DOC.read_text()) == []
    assert len(documented(DOC.read_text())) == len(template["Parameters"])


def _row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))


def test_a_parameter_missing_from_the_table_is_named(template: dict[str, Any]) -> None:
    text = DOC.read_text()
    doctored = text.replace(_row(text, "SignatureWaitSeconds") + "\n", "")
    assert problems(template, doctored) == ["SignatureWaitSeconds is in template.yaml but not in the table"]


def test_a_row_for_a_parameter_the_template_lacks_is_named(template: dict[str, Any]) -> None:
    text = DOC.read_text()
    row = _row(text, "LogLevel")
    doctored = text.replace(row, row + '\n| `CosignPublicKeys` | `""` | retired |')
    assert problems(template, doctored) == ["CosignPublicKeys is in the table but not a parameter of template.yaml"]


@pytest.mark.parametrize(("name", "cell", "expected"), [
    ("ApprovalTimeoutSeconds", "`3600`", "ApprovalTimeoutSeconds: the table says '3600', template.yaml '86400'"),
    ("NotifyEmail", '`""`', "NotifyEmail: the table says '', template.yaml required"),
    ("GitHubOrg", "required", "GitHubOrg: the table says required, template.yaml ''"),
])
def test_a_default_that_differs_from_the_templates_is_named(template: dict[str, Any], name: str, cell: str, expected: str) -> None:
    text = DOC.read_text()
    row = _row(text, name)
    doctored = text.replace(row, re.sub(r"^(\| `[^`]+` \| )[^|]+?( \|)", lambda m: m[1] + cell + m[2], row))
    assert problems(template, doctored) == [expected]
