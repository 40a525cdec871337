"""The fleet's boot script (template.yaml, Mappings.FleetBootstrap) and the files it relies on.

An instance learns everything from its own tags, which the Auto Scaling groups propagate and the
fleet controller sets: the script, the template's tags, podrelease.release.fleet and the image's host files
must agree on names, or instances boot into nothing. No instance boots here, so this checks the
contract between those places and that the script parses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from podrelease.release.fleet import IMAGE_TAG, RELEASE_TAG

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


@pytest.fixture(scope="module")
def script(template: dict[str, Any]) -> str:
    return str(template["Mappings"]["FleetBootstrap"]["UserData"]["Script"])


def test_the_boot_script_parses(script: str, tmp_path: Path) -> None:
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stderr
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")


def test_the_tags_it_reads_are_the_ones_the_groups_propagate(template: dict[str, Any], script: str) -> None:
    read = set(re.findall(r"imds tags/instance/([A-Za-z0-9_.:+=@-]+)", script))
    assert read == {IMAGE_TAG, "podinfo-secret"}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::AutoScaling::AutoScalingGroup":
            continue
        tags = {t["Key"]: t for t in resource["Properties"]["Tags"]}
        assert read <= set(tags), f"{name} does not carry {sorted(read - set(tags))}"
        assert all(tags[key]["PropagateAtLaunch"] for key in read), f"{name} does not propagate them to instances"
    # the controller writes the image (and release) tags the script reads
    assert IMAGE_TAG == "podinfo-image"
    assert RELEASE_TAG == "podinfo-release"


def test_instances_may_read_their_tags_and_nothing_but_imdsv2(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::EC2::LaunchTemplate":
            options = resource["Properties"]["LaunchTemplateData"]["MetadataOptions"]
            assert options["InstanceMetadataTags"] == "enabled", name
            assert options["HttpTokens"] == "required", name


def test_it_refuses_an_image_that_is_not_pinned_by_digest(script: str) -> None:
    assert 'case "$IMAGE" in *@sha256:*) ;; *)' in script
    assert 'docker pull "$IMAGE"' in script


def test_the_host_files_it_runs_ship_in_the_image(script: str) -> None:
    assert 'docker cp "$container:/opt/podinfo-host" /opt/podinfo-host' in script
    assert "COPY workload/ec2/ /opt/podinfo-host/" in (ROOT / "workload" / "Dockerfile").read_text()
    install = ROOT / "workload" / "ec2" / "install.sh"
    assert install.exists()
    # install.sh's contract: the three variables the boot script passes
    call = next(line for line in script.splitlines() if "/opt/podinfo-host/install.sh" in line)
    passed = set(re.findall(r"([A-Z_]+)=\"", call))
    required = set(re.findall(r': "\$\{([A-Z_]+):\?', install.read_text()))
    assert passed == required == {"IMAGE", "SECRET_ID", "AWS_REGION"}
