"""The fleet's boot script (template.yaml, Mappings.FleetBootstrap) and the files it relies on.

An instance learns everything from its own tags, which the Auto Scaling groups propagate and the
fleet controller sets: the script, the template's tags, podrelease.release.fleet and the image's host files
must agree on names, or instances boot into nothing. No instance boots here: the script runs with
bash in a temp dir, the commands it calls (curl for the instance metadata, dnf, systemctl, aws,
docker) stubbed on PATH and /opt/podinfo-host moved under the temp dir, and what it did is read back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse

from podrelease.release.fleet import COLOURS, IMAGE_TAG, Fleet, FleetTarget

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo@sha256:" + "b" * 64
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:podrel/podinfo-jwt-dev-AbCdEf"

# The commands the boot script calls, each logging its arguments to $CALLS. curl answers as the
# instance metadata service (IMDSv2): a token, then files under $IMDS, or HTTP failure (-f: exit 22).
# `docker cp` lays out what the image holds at /opt/podinfo-host: an install.sh that records the
# environment it was run with in $INSTALLED.
STUBS = {
    "curl": """\
for arg; do case "$arg" in http://*) url=$arg ;; esac; done
echo "curl $*" >> "$CALLS"
case "$url" in
  */latest/api/token) echo imds-token ;;
  */latest/meta-data/*) cat "$IMDS/${url#*/latest/meta-data/}" 2>/dev/null || exit 22 ;;
  *) exit 7 ;;
esac
""",
    "dnf": 'echo "dnf $*" >> "$CALLS"\n',
    "systemctl": 'echo "systemctl $*" >> "$CALLS"\n',
    "aws": 'echo "aws $*" >> "$CALLS"\necho ecr-password\n',
    "docker": """\
echo "docker $*" >> "$CALLS"
case "$1" in
  login) read -r password; [ "$password" = ecr-password ] || exit 1 ;;
  create) echo container-1 ;;
  cp) mkdir -p "$3"
      cat > "$3/install.sh" <<'INSTALL'
#!/bin/bash
env | grep -E '^(IMAGE|SECRET_ID|AWS_REGION)=' | sort > "$INSTALLED"
INSTALL
      chmod +x "$3/install.sh" ;;
esac
""",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml_parse((ROOT / "template.yaml").read_text()))


@pytest.fixture(scope="module")
def script(template: dict[str, Any]) -> str:
    return str(template["Mappings"]["FleetBootstrap"]["UserData"]["Script"])


@dataclass
class Boot:
    """One run of the boot script: its exit status and stderr, the commands it called, what it installed."""

    returncode: int
    stderr: str
    calls: list[str]
    installed: dict[str, str] | None


def boot(script: str, tmp_path: Path, tags: dict[str, str]) -> Boot:
    """Run the boot script as an instance carrying `tags` would (see STUBS)."""
    bin_dir, imds = tmp_path / "bin", tmp_path / "imds"
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.parent.mkdir(exist_ok=True)
        stub.write_text("#!/bin/bash\nset -eu\n" + body)
        stub.chmod(0o755)
    for name, value in tags.items():
        (imds / "tags" / "instance").mkdir(parents=True, exist_ok=True)
        (imds / "tags" / "instance" / name).write_text(value)
    (imds / "placement").mkdir(parents=True)
    (imds / "placement" / "region").write_text(REGION)
    host = tmp_path / "opt" / "podinfo-host"
    assert script.count("/opt/podinfo-host") >= 3  # removed, copied out of the image, its install.sh run
    path = tmp_path / "user-data.sh"
    path.write_text(script.replace("/opt/podinfo-host", str(host)))
    calls, installed = tmp_path / "calls.log", tmp_path / "installed.env"
    calls.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "IMDS": str(imds), "INSTALLED": str(installed)}
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, str(path)], capture_output=True, text=True, env=env, check=False, timeout=30)  # noqa: S603
    done = dict(line.split("=", 1) for line in installed.read_text().splitlines()) if installed.exists() else None
    return Boot(result.returncode, result.stderr, calls.read_text().splitlines(), done)


@pytest.fixture
def groups(aws_credentials: None) -> Iterator[Any]:
    """The dev fleet's two Auto Scaling groups in moto, tagged as the template tags them at creation."""
    with mock_aws():
        ec2, asg = boto3.client("ec2", REGION), boto3.client("autoscaling", REGION)
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        launch = ec2.create_launch_template(LaunchTemplateName="dev", LaunchTemplateData={"ImageId": image})["LaunchTemplate"]
        for colour in COLOURS:
            asg.create_auto_scaling_group(
                AutoScalingGroupName=f"dev-{colour}", MinSize=0, MaxSize=2, DesiredCapacity=0, VPCZoneIdentifier=subnet,
                LaunchTemplate={"LaunchTemplateId": launch["LaunchTemplateId"], "Version": "$Latest"},
                Tags=[{"Key": IMAGE_TAG, "Value": "bootstrap-image", "PropagateAtLaunch": True},
                      {"Key": "podinfo-secret", "Value": SECRET, "PropagateAtLaunch": True}])
        yield asg


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


def test_an_instance_boots_the_image_the_controller_tagged_its_group_with(groups: Any, script: str, tmp_path: Path) -> None:
    # GIVEN the fleet controller tagged green for a release (what its next instances boot)
    target = FleetTarget(environment="dev", listener="", groups={c: f"dev-{c}" for c in COLOURS}, target_groups={},
                         alarm="", url="", size=2, steps=(100,), interval_seconds=0, launch_timeout_seconds=0)
    Fleet(None, groups, None, target).tag("green", IMAGE, "rel-1")
    group = groups.describe_auto_scaling_groups(AutoScalingGroupNames=["dev-green"])["AutoScalingGroups"][0]
    instance_tags = {t["Key"]: t["Value"] for t in group["Tags"] if t["PropagateAtLaunch"]}
    # WHEN an instance of the group boots with the tags the group propagates
    booted = boot(script, tmp_path, instance_tags)
    # THEN it pulled that image by digest (signed in to its registry) and installed it with the group's secret
    assert booted.returncode == 0, booted.stderr
    assert f"docker pull {IMAGE}" in booted.calls
    assert "docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com" in booted.calls
    assert booted.installed == {"IMAGE": IMAGE, "SECRET_ID": SECRET, "AWS_REGION": REGION}
    # and it read the metadata with an IMDSv2 session token only
    reads = [c for c in booted.calls if "/latest/meta-data/" in c]
    assert len(reads) == 3
    assert all("X-aws-ec2-metadata-token: imds-token" in c for c in reads)


def test_instances_may_read_their_tags_and_nothing_but_imdsv2(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::EC2::LaunchTemplate":
            options = resource["Properties"]["LaunchTemplateData"]["MetadataOptions"]
            assert options["InstanceMetadataTags"] == "enabled", name
            assert options["HttpTokens"] == "required", name


@pytest.mark.parametrize(("image", "error"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo:6.9.2",
     "podinfo-image tag 123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo:6.9.2 is not a digest reference"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo",
     "podinfo-image tag 123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo is not a digest reference"),
    ("", "podinfo-image tag  is not a digest reference"),
    (None, ""),  # no tag at all: the metadata read fails, and so does the script
])
def test_it_refuses_an_image_that_is_not_pinned_by_digest(script: str, tmp_path: Path, image: str | None, error: str) -> None:
    tags = {"podinfo-secret": SECRET} | ({IMAGE_TAG: image} if image is not None else {})
    booted = boot(script, tmp_path, tags)
    assert booted.returncode != 0
    assert booted.stderr.strip() == error
    assert not [c for c in booted.calls if not c.startswith("curl ")], "nothing is installed, pulled or started"
    assert booted.installed is None
    assert not (tmp_path / "opt").exists()


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
