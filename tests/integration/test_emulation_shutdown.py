"""The local emulation stops cleanly: a CodeDeploy deployment still baking when the runtime stops
ends with it, instead of living on and failing (KeyError) against the next runtime's reset moto."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from local.emulation import Emulation

REGION = "us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo@sha256:" + "a" * 64
CANARY = "CodeDeployDefault.LambdaCanary10Percent5Minutes"


def _deployment_baking(codedeploy: Any, deployment_id: str, timeout: float = 60.0) -> None:
    """Wait until the canary's first step has shifted traffic (the bake has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        assert info["status"] not in ("Failed", "Stopped", "Succeeded"), info["status"]
        weights = boto3.client("lambda", region_name=REGION).get_alias(FunctionName="f", Name="live")
        if weights.get("RoutingConfig", {}).get("AdditionalVersionWeights"):
            return
        time.sleep(0.05)
    raise AssertionError("the canary never started baking")


def test_a_baking_deployment_ends_with_the_runtime(tmp_path: Path, monkeypatch: Any) -> None:
    thread_errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(repr(args.exc_value)))
    was_installed, was_current = Emulation._installed, Emulation.current
    with mock_aws(config={"lambda": {"use_docker": False}}):
        # GIVEN a Lambda canary whose bake lasts five emulated minutes of a minute each
        emulation = Emulation("123456789012", REGION, minute_seconds=60.0, work_dir=tmp_path)
        Emulation.install(emulation)
        try:
            role = boto3.client("iam", region_name=REGION).create_role(
                RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            lam = boto3.client("lambda", region_name=REGION)
            lam.create_function(FunctionName="f", Role=role, PackageType="Image", Code={"ImageUri": IMAGE})
            lam.publish_version(FunctionName="f")
            lam.publish_version(FunctionName="f")
            lam.create_alias(FunctionName="f", Name="live", FunctionVersion="1")
            codedeploy = boto3.client("codedeploy", region_name=REGION)
            codedeploy.create_application(applicationName="a", computePlatform="Lambda")
            codedeploy.create_deployment_group(
                applicationName="a", deploymentGroupName="g", deploymentConfigName=CANARY, serviceRoleArn=role,
                deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
            spec = {"version": 0.0, "Resources": [{"f": {"Type": "AWS::Lambda::Function", "Properties": {
                "Name": "f", "Alias": "live", "CurrentVersion": "1", "TargetVersion": "2"}}}]}
            deployment = codedeploy.create_deployment(
                applicationName="a", deploymentGroupName="g",
                revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(spec)}})
            _deployment_baking(codedeploy, deployment["deploymentId"])
            # WHEN the runtime stops mid-bake
            emulation.shutdown()
            # THEN the deployment's thread has ended with it, without an error
            assert not [t for t in emulation.codedeploy.threads if t.is_alive()]
        finally:
            if was_installed:
                Emulation.current = was_current
            else:
                Emulation.uninstall()
    assert thread_errors == []
