"""A layer built one folder too deep (the package at python/python/podrelease, as the template's old
ContentUri made it) fails every function with Runtime.ImportModuleError, as on AWS. Its own module:
it starts a runtime of its own, which must not overlap another module's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from local.runtime import WORKLOAD_REPOSITORY, LocalRuntime
from tests.conftest import build_with_the_layer_one_folder_too_deep

pytestmark = pytest.mark.statemachine


def test_a_layer_built_one_folder_too_deep_fails_every_function(tmp_path: Path) -> None:
    # GIVEN the same build with the package one folder deeper in the layer (python/python/podrelease)
    build = build_with_the_layer_one_folder_too_deep(tmp_path / "build")
    with LocalRuntime.start(tmp_path / "run", minute_seconds=0.5, build_dir=build) as broken:
        # WHEN a function is invoked THEN it fails as Lambda fails it: the module cannot be imported
        reply = broken.client("lambda").invoke(FunctionName=broken.stack.functions["NormalizeFunction"].name, Payload=b"{}")
        error = json.loads(reply["Payload"].read())
        assert reply["FunctionError"] == "Unhandled"
        assert error["errorType"] == "Runtime.ImportModuleError"
        assert error["errorMessage"] == "Unable to import module 'app': No module named 'podrelease'"
        # AND a pushed, signed image does not become a release: the starter cannot import either
        image = broken.pusher.push_podinfo(WORKLOAD_REPOSITORY, "6.9.1")
        broken.pusher.sign_legacy(broken.signing_key, image)
        runtime = broken.emulation.runtime
        assert runtime is not None
        starter = broken.stack.functions["StarterFunction"].name
        deadline = time.time() + 120
        while not [e for name, e in list(runtime.async_failures) if name == starter] and time.time() < deadline:
            time.sleep(0.2)
        failures = [e for name, e in list(runtime.async_failures) if name == starter]
        assert failures, "the starter was never invoked"
        assert failures[0]["errorType"] == "Runtime.ImportModuleError"
        # AND, after Lambda's two retries, the push event is kept in the starter's dead-letter queue
        def dead_lettered() -> list[str]:
            return [e[3] for e in list(runtime.timeline.entries) if starter in e[3] and "dead-letter queue" in e[3]]
        while not dead_lettered() and time.time() < deadline:
            time.sleep(0.2)
        assert dead_lettered() == [f"{starter}: the event is in its dead-letter queue {broken.stack.name}-starter-dead-letters"]
        sqs = broken.client("sqs")
        queue = sqs.get_queue_url(QueueName=f"{broken.stack.name}-starter-dead-letters")["QueueUrl"]
        messages = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
        assert len(messages) == 1
        kept = json.loads(messages[0]["Body"])
        assert kept["detail-type"] == "ECR Image Action"
        assert kept["detail"]["image-digest"] == image.digest
        attributes = {name: value["StringValue"] for name, value in messages[0]["MessageAttributes"].items()}
        assert attributes["ErrorMessage"].startswith("Runtime.ImportModuleError: ")
        assert [e for e in list(runtime.timeline.entries) if starter in e[3] and "attempt 3 in" in e[3]]
        sfn = broken.client("stepfunctions")
        assert sfn.list_executions(stateMachineArn=broken.stack.outputs["ReleaseStateMachineArn"])["executions"] == []
        # AND nothing was deployed
        lam = broken.client("lambda")
        assert lam.get_alias(FunctionName=broken.stack.outputs["PodinfoDevFunctionName"], Name="live")["FunctionVersion"] == "1"
