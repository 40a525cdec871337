"""The workload's secret readers against moto: the EC2 fetcher, the Lambda extension path, and a rotation.

- `workload/ec2/podinfo-secret-fetch` (run in process under `mock_aws`): the file it leaves (stages,
  mode 0400, directory 0500, owner, atomic replace) and its named errors.
- `secretgate.ExtensionSource` against `local/secrets_extension.py` (the extension's HTTP API,
  emulated) backed by a moto server.
- A rotation through the project's own rotation code (`podrelease.rotation.workload_secret.Rotator`), its checks
  sent to a real gate over HTTP: afterwards the gate issues with the new value and accepts the new
  and the previous one.
"""

from __future__ import annotations

import http.client
import importlib.machinery
import importlib.util
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.secretsmanager.models import secretsmanager_backends
from moto.server import ThreadedMotoServer

from local.secrets_extension import SecretsExtension
from podrelease.release import podinfo
from podrelease.release.ledger import Ledger
from podrelease.rotation.workload_secret import STEPS, Rotator, Target, staging_labels
from secretgate import (
    ExtensionSource,
    FileSource,
    WorkloadSecretUnreadable,
    check_token,
    make_server,
    sign_token,
    verify_token,
)
from tests.conftest import FAKE_CREDENTIALS, REGION, ROOT
from tests.log_scan import known_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

FETCH = ROOT / "workload" / "ec2" / "podinfo-secret-fetch"
NAME = "podrel/podinfo-jwt-dev"
FIRST = "first-" + uuid.uuid4().hex + uuid.uuid4().hex
SECOND = "second-" + uuid.uuid4().hex + uuid.uuid4().hex
PENDING = "pending-" + uuid.uuid4().hex + uuid.uuid4().hex
for _value in (FIRST, SECOND, PENDING):
    known_secret(_value, "workload secret (test)")


def _secret(value: str) -> str:
    return json.dumps({"jwt-secret": value})


def load_fetch() -> ModuleType:
    """The fetch script has no .py suffix (it is installed as /usr/local/bin/podinfo-secret-fetch)."""
    loader = importlib.machinery.SourceFileLoader("podinfo_secret_fetch", str(FETCH))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# --- podinfo-secret-fetch --------------------------------------------------------------------------------
OWNER = (9898, 9898) if os.geteuid() == 0 else (os.getuid(), os.getgid())


@pytest.fixture
def fetch() -> ModuleType:
    return load_fetch()


@pytest.fixture
def sm(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name=NAME, SecretString=_secret(FIRST))
        yield client


def _run(fetch: ModuleType, output: Path, client: Any = None) -> int:
    return int(fetch.main(["--secret-id", NAME, "--region", REGION, "--output", str(output),
                           "--owner", f"{OWNER[0]}:{OWNER[1]}"], client=client))


def test_fetch_writes_the_staged_values_readable_only_by_the_service_user(fetch: ModuleType, sm: Any, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    assert _run(fetch, output) == 0
    assert json.loads(output.read_text()) == {"AWSCURRENT": FIRST}  # no AWSPREVIOUS/AWSPENDING version yet
    st, dst = output.stat(), output.parent.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o400, *OWNER)
    assert (dst.st_mode & 0o7777, dst.st_uid, dst.st_gid) == (0o500, *OWNER)
    out, err = capsys.readouterr()
    assert out == f"podinfo-secret-fetch: {output} written; stages AWSCURRENT\n"
    assert FIRST not in out + err


def test_a_rotation_replaces_the_file_atomically_and_keeps_the_previous_value(fetch: ModuleType, sm: Any, tmp_path: Path) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    assert _run(fetch, output) == 0
    reader = FileSource(output, ttl=3600)  # the gate's reader, with a cache that would outlive the test
    assert reader.staged() == {"AWSCURRENT": FIRST}
    before = output.stat()
    sm.put_secret_value(SecretId=NAME, SecretString=_secret(SECOND))  # AWSCURRENT moves; FIRST becomes AWSPREVIOUS
    assert _run(fetch, output) == 0
    assert json.loads(output.read_text()) == {"AWSCURRENT": SECOND, "AWSPREVIOUS": FIRST}
    assert output.stat().st_ino != before.st_ino  # a new file renamed over the old one, not rewritten in place
    assert sorted(p.name for p in output.parent.iterdir()) == ["jwt.json"]  # no temporary file left
    assert (output.stat().st_mode & 0o7777, output.stat().st_uid) == (0o400, OWNER[0])
    assert reader.staged() == {"AWSCURRENT": SECOND, "AWSPREVIOUS": FIRST}  # picked up at once: the file changed


def test_unchanged_values_leave_the_file_untouched(fetch: ModuleType, sm: Any, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    assert _run(fetch, output) == 0
    before = output.stat()
    assert _run(fetch, output) == 0
    after = output.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert capsys.readouterr().out.splitlines()[-1].endswith("unchanged; stages AWSCURRENT")


def test_a_pending_value_is_written_too(fetch: ModuleType, sm: Any, tmp_path: Path) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    sm.put_secret_value(SecretId=NAME, SecretString=_secret(PENDING), VersionStages=["AWSPENDING"])
    assert _run(fetch, output) == 0
    assert json.loads(output.read_text()) == {"AWSCURRENT": FIRST, "AWSPENDING": PENDING}


class Refusing:
    """A Secrets Manager client whose GetSecretValue fails as IAM or KMS would refuse it."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message

    def get_secret_value(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": self.code, "Message": self.message}}, "GetSecretValue")


@pytest.mark.parametrize(("client", "named"), [
    (Refusing("AccessDeniedException", "User: arn:aws:sts::1:assumed-role/podinfo-ec2/i-1 is not authorized"),
     "access denied reading AWSCURRENT"),
    (Refusing("AccessDeniedException", "Access to KMS is not allowed"), "KMS access denied reading AWSCURRENT"),
    (Refusing("DecryptionFailure", "Secrets Manager can't decrypt the protected secret text using the provided KMS key."),
     "KMS access denied reading AWSCURRENT"),
    (None, "not found"),  # the real (moto) API, a secret that does not exist
], ids=["iam", "kms-access", "kms-decrypt", "missing"])
def test_awscurrent_unreadable_exits_1_names_the_cause_and_keeps_the_last_file(
        fetch: ModuleType, sm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], client: Any, named: str) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    assert _run(fetch, output) == 0
    good = output.read_bytes()
    capsys.readouterr()
    if client is None:
        code = int(fetch.main(["--secret-id", "podrel/nope", "--region", REGION, "--output", str(output),
                               "--owner", f"{OWNER[0]}:{OWNER[1]}"]))
    else:
        code = _run(fetch, output, client=client)
    out, err = capsys.readouterr()
    assert code == 1
    assert named in err
    assert f"{output} left as it was" in err
    assert output.read_bytes() == good  # the service keeps working with what it had
    assert FIRST not in out + err


def test_a_reader_never_sees_half_a_file(fetch: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "podinfo-secret" / "jwt.json"
    fetch.write_atomically(output, {"AWSCURRENT": FIRST}, *OWNER)
    reader = FileSource(output, ttl=0)
    errors: list[Exception] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                assert reader.staged()["AWSCURRENT"] in (FIRST, SECOND)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(300):
        fetch.write_atomically(output, {"AWSCURRENT": SECOND if i % 2 else FIRST, "AWSPREVIOUS": FIRST}, *OWNER)
    done.set()
    thread.join()
    assert errors == []
    assert reader.reads > 10  # the reader really did read during the rewrites


# --- ExtensionSource against the emulated extension, backed by a moto server ------------------------------------
@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _reset(endpoint)  # the server's backends are this process's: start from nothing, leave nothing
    yield endpoint
    _reset(endpoint)
    server.stop()


def _reset(endpoint: str) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/moto-api/reset")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def _client(endpoint: str, service: str = "secretsmanager") -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


@pytest.fixture
def extension(moto_endpoint: str) -> Iterator[SecretsExtension]:
    with SecretsExtension(lambda: _client(moto_endpoint)) as running:
        known_secret(running.session_token, "local extension session token")
        yield running


def test_the_gate_reads_every_staged_value_through_the_extension(moto_endpoint: str, extension: SecretsExtension) -> None:
    sm = _client(moto_endpoint)
    arn = sm.create_secret(Name=NAME, SecretString=_secret(FIRST))["ARN"]
    source = extension.source(arn, ttl=0)
    assert source.staged() == {"AWSCURRENT": FIRST}  # AWSPREVIOUS, AWSPENDING: no version carries them, skipped
    sm.put_secret_value(SecretId=arn, SecretString=_secret(PENDING), VersionStages=["AWSPENDING"])
    assert source.staged() == {"AWSCURRENT": FIRST, "AWSPENDING": PENDING}
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=_version(sm, arn, "AWSPENDING"),
                                   RemoveFromVersionId=_version(sm, arn, "AWSCURRENT"))
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=_version(sm, arn, "AWSPENDING"))
    assert source.staged() == {"AWSCURRENT": PENDING, "AWSPREVIOUS": FIRST}


def _version(sm: Any, arn: str, stage: str) -> str:
    return next(v for v, stages in staging_labels(sm, arn).items() if stage in stages)


def test_the_extension_refuses_another_token_and_a_missing_secret_is_named(moto_endpoint: str, extension: SecretsExtension) -> None:
    arn = _client(moto_endpoint).create_secret(Name=NAME, SecretString=_secret(FIRST))["ARN"]
    with pytest.raises(WorkloadSecretUnreadable, match="HTTP 401"):
        ExtensionSource(arn, ttl=0, port=extension.port, session_token="another-token", host="127.0.0.1").staged()
    with pytest.raises(WorkloadSecretUnreadable, match=r"AWSCURRENT: HTTP 400: ResourceNotFoundException"):
        extension.source(arn.replace(NAME, "podrel/nope"), ttl=0).staged()


# --- a rotation by the project's rotation code, checked through a real gate --------------------------------------
def _gate_invoker(port: int) -> Any:
    """Rotator's invoke: the Function URL event the Lambda Web Adapter would turn into HTTP, sent to the gate."""

    def invoke(function: str, qualifier: str, event: dict[str, Any]) -> podinfo.Reply:
        return podinfo.decode(_call(port, event))

    return invoke


def _call(port: int, event: dict[str, Any]) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        request = podinfo.parse_request(event)
        connection.request(request.method, request.path, body=request.body or None, headers=request.headers)
        response = connection.getresponse()
        return podinfo.response(response.status, response.read().decode())
    finally:
        connection.close()


def test_after_a_rotation_the_gate_issues_with_the_new_value_and_accepts_current_and_previous(
        moto_endpoint: str, extension: SecretsExtension, ledger_table: Callable[..., Any]) -> None:
    sm = _client(moto_endpoint)
    arn = sm.create_secret(Name=NAME, SecretString=_secret(FIRST))["ARN"]
    old_version = _version(sm, arn, "AWSCURRENT")
    table = ledger_table("ledger", endpoint_url=moto_endpoint)
    gate = make_server(extension.source(arn, ttl=0), ("127.0.0.1", 0), upstream=("127.0.0.1", 9))
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    port = int(gate.server_address[1])
    try:
        issued_before = json.loads(_call(port, podinfo.request("/token", "POST", body="before"))["body"])["token"]
        assert check_token(issued_before, [FIRST])["name"] == "before"
        # What RotateSecret does before it calls the function: a new version id staged AWSPENDING.
        token = str(uuid.uuid4())
        secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][REGION].secrets[NAME]
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
        rotator = Rotator(sm, Ledger(table), {arn: Target("dev", "podrel-podinfo-dev")}, _gate_invoker(port),
                          lambda target: ["1"], settle_seconds=2, poll_seconds=0.05)
        for step in STEPS:
            assert rotator.rotate(step, arn, token)["environment"] == "dev"
        assert {v: s for v, s in staging_labels(sm, arn).items() if s} == {old_version: ["AWSPREVIOUS"], token: ["AWSCURRENT"]}
        new_value = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])["jwt-secret"]
        assert new_value != FIRST

        issued_after = json.loads(_call(port, podinfo.request("/token", "POST", body="after"))["body"])["token"]
        assert check_token(issued_after, [new_value])["name"] == "after"
        assert verify_token(issued_after, [FIRST]) is None
        for accepted in (issued_before, issued_after):  # previous and current
            reply = _call(port, podinfo.request("/token/validate", headers=podinfo.bearer(accepted)))
            assert reply["statusCode"] == 200, reply
        forged, _ = sign_token("not-a-staged-value-" + uuid.uuid4().hex)
        refused = _call(port, podinfo.request("/token/validate", headers=podinfo.bearer(forged)))
        assert (refused["statusCode"], json.loads(refused["body"])) == (401, {"code": 401, "message": "signature is invalid"})
    finally:
        gate.shutdown()
        gate.server_close()
