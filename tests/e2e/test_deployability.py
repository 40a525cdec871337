"""What `sam build` ships is laid out as Lambda imports it, and the demo notices when it is not.

`make build` (arm64, what `sam deploy` uploads) and `make build-local` (the same template for this
machine, what the local runtime runs) both run before this tier (`make test`, `make e2e`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.template import BUILD_DIR, load_template
from tests.conftest import build_with_the_layer_one_folder_too_deep, build_without_a_grant

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / ".aws-sam" / "build"
pytestmark = pytest.mark.e2e
ELF_MACHINE = {0xB7: "arm64", 0x3E: "x86_64"}


def _machine(shared_object: Path) -> str:
    header = shared_object.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", shared_object
    return ELF_MACHINE.get(int.from_bytes(header[18:20], "little"), "other")


def _functions(build: Path) -> dict[str, str]:
    resources = load_template(build / "template.yaml")["Resources"]
    return {name: r["Properties"]["CodeUri"] for name, r in resources.items()
            if r["Type"] == "AWS::Serverless::Function" and "CodeUri" in r["Properties"]}


@pytest.mark.parametrize(("build", "architecture"), [(SHIPPED, "arm64"), (BUILD_DIR, None)], ids=["for Lambda", "for this machine"])
def test_sam_build_puts_the_package_where_lambda_imports_it(build: Path, architecture: str | None) -> None:
    assert (build / "template.yaml").exists(), f"{build} is missing: run make build build-local"
    layer = build / "CommonLayer"
    # Lambda mounts the layer at /opt and imports from /opt/python: the package must be right there
    assert (layer / "python" / "podrelease" / "__init__.py").is_file()
    assert not (layer / "python" / "python").exists()
    # the layer carries the package's dependencies, built for the function's architecture
    machines = {_machine(so) for so in (layer / "python" / "cryptography").rglob("*.so")}
    assert machines == {architecture or ("arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64")}
    # every function folder holds its handler and no copy of the shared package
    for name, folder in _functions(build).items():
        assert (build / folder / "app.py").is_file(), name
        assert not (build / folder / "podrelease").exists(), name


def _demo_on(build: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`make demo` (the happy scenario) as a user runs it, on the build at `build`."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common'}{os.pathsep}{ROOT}", "LOCAL_BUILD_DIR": str(build)}
    return subprocess.run(  # noqa: S603 - our own demo module
        [sys.executable, "-m", "local.demo", "--scenario", "happy", "--minute-seconds", "0.5", "--work-dir", str(work)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_the_demo_fails_when_the_layer_is_built_one_folder_too_deep(tmp_path: Path) -> None:
    # GIVEN the local build with the package one folder deeper (what `ContentUri: layers/common`
    # made of the old source layout: python/python/podrelease)
    build = build_with_the_layer_one_folder_too_deep(tmp_path / "build")
    # WHEN a user runs `make demo` on it
    result = _demo_on(build, tmp_path / "demo")
    # THEN the demo fails, and says why: no function can import its package
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Runtime.ImportModuleError" in result.stdout, result.stdout[-3000:]
    assert "No module named 'podrelease'" in result.stdout
    assert "== scenario happy: ended as expected" not in result.stdout


def test_the_demo_fails_when_a_function_loses_a_grant_it_needs(tmp_path: Path) -> None:
    # GIVEN the local build whose approval page may no longer call states:SendTaskSuccess
    build = build_without_a_grant(tmp_path / "build", "ApprovalPageFunction", "states:SendTaskSuccess")
    # WHEN a user runs `make demo` on it (the approver presses Approve)
    result = _demo_on(build, tmp_path / "demo")
    # THEN the demo fails at the approval, saying the role lacks the grant, as it would on AWS
    assert result.returncode != 0, result.stdout[-3000:]
    assert "the approval page answered HTTP 500" in result.stdout, result.stdout[-3000:]
    assert "(AccessDeniedException)" in result.stdout
    assert "== scenario happy: ended as expected" not in result.stdout
