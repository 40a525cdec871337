"""A local stack that stays up: `make up`, `make push`, `make down`; `podrelease --local` talks to it.

    python -m local.serve up      # start the local runtime in the background, print its endpoints
    python -m local.serve push    # push a signed demo image to it (a release starts)
    python -m local.serve down    # stop it

`up` starts `python -m local.serve run` as a process of its own (its output in `runtime.log` beside
the state file), waits until the runtime is ready and prints what it wrote to the state file
(`.demo/up/state.json`): the AWS endpoint and keys, the stack's outputs and resources (what
`podrelease --local` resolves the stack from), the approval page, the outbox folder. The demo signing
key (a throw-away local key) is kept beside it, readable by its owner only, for `push`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from local.images import Pusher
from local.runtime import ACCOUNT, REGION, WORKLOAD_REPOSITORY, LocalRuntime
from podrelease_cli.target import process_alive

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".demo" / "up" / "state.json"
KEY_FILE = "signing-key.pem"


def state_of(env: LocalRuntime) -> dict[str, Any]:
    """What a client of the running local stack needs (the state file's content; `podrelease_cli.target.from_state`)."""
    return {
        "stack": env.stack.name, "region": REGION, "account": ACCOUNT, "endpoint": env.endpoint,
        "access_key": "local", "secret_key": "local",  # the local operator's keys (local.iam), not a secret
        "outputs": dict(env.stack.outputs), "physical": dict(env.stack.physical),
        "approval_page": env.stack.outputs.get("ApprovalPageUrl", ""),
        "outbox": str(env.work_dir / "outbox"), "registry": env.registry_host, "pid": os.getpid(),
    }


def serve(state_file: Path, minute_seconds: float, approval_timeout: int) -> int:
    """Run the local runtime until SIGTERM or SIGINT; the state file exists exactly while it is up."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    work = state_file.parent / "runtime"
    env = LocalRuntime.start(work, minute_seconds=minute_seconds, approval_timeout=approval_timeout)
    try:
        key = env.signing_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        key_path = state_file.parent / KEY_FILE
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        env.emulation.timeline.listeners.append(lambda e: print(" ".join(str(p) for p in e[1:4]), flush=True))
        state_file.write_text(json.dumps(state_of(env), indent=2))
        print(f"local runtime up: {env.endpoint}", flush=True)
        stop.wait()
    finally:
        state_file.unlink(missing_ok=True)
        env.stop()
    return 0


def up(state_file: Path, minute_seconds: float, approval_timeout: int, timeout: float = 600) -> int:
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if process_alive(int(state.get("pid", 0))):
            print(f"already up (pid {state['pid']}); `make down` stops it", file=sys.stderr)
            _print(state, state_file)
            return 0
        state_file.unlink()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    log = (state_file.parent / "runtime.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "local.serve", "run", "--state", str(state_file), "--minute-seconds", f"{minute_seconds:g}",
         "--approval-timeout", str(approval_timeout)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env=os.environ | {"PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"},
    )
    deadline = time.time() + timeout
    while not state_file.exists():
        if process.poll() is not None:
            print(f"the local runtime did not start (exit {process.returncode}); see {log.name}", file=sys.stderr)
            return 1
        if time.time() > deadline:
            process.terminate()
            print(f"the local runtime was not up after {timeout:g}s; see {log.name}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    _print(json.loads(state_file.read_text()), state_file)
    return 0


def _print(state: dict[str, Any], state_file: Path) -> None:
    print(f"AWS endpoint     {state['endpoint']}  (keys local/local, region {state['region']})")
    print(f"approval page    {state['approval_page']}")
    print(f"outbox folder    {state['outbox']}")
    print(f"state file       {state_file}  (pid {state['pid']})")
    print("next             make push   (a signed image; a release starts) / .venv/bin/python -m podrelease --local status")


def down(state_file: Path, timeout: float = 120) -> int:
    if not state_file.exists():
        print("not up")
        return 0
    pid = int(json.loads(state_file.read_text()).get("pid", 0))
    if pid and process_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while process_alive(pid) and time.time() < deadline:
            time.sleep(0.3)
        if process_alive(pid):
            print(f"the local runtime (pid {pid}) did not stop within {timeout:g}s", file=sys.stderr)
            return 1
    state_file.unlink(missing_ok=True)
    print("local runtime stopped")
    return 0


def push(state_file: Path, version: str, fault: str = "") -> int:
    """Push a podinfo image signed with the demo key (cosign's legacy tag and a bundle), as the demo does."""
    if not state_file.exists():
        print("no local runtime: `make up` first", file=sys.stderr)
        return 1
    import boto3  # the operator's client of the running stack

    state = json.loads(state_file.read_text())
    key = serialization.load_pem_private_key((state_file.parent / KEY_FILE).read_bytes(), password=None)
    ecr = boto3.client("ecr", region_name=state["region"], endpoint_url=state["endpoint"],
                       aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"])
    pusher = Pusher(ecr, state["registry"])
    image = pusher.push_podinfo(WORKLOAD_REPOSITORY, version, tag=version, fault=fault)
    pusher.sign_legacy(key, image)
    pusher.sign_bundle(key, image)
    print(f"pushed {WORKLOAD_REPOSITORY}@{image.digest} ({version}), signed; its release: "
          ".venv/bin/python -m podrelease --local releases")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "push", "run"])
    parser.add_argument("--state", type=Path, default=STATE)
    parser.add_argument("--minute-seconds", type=float, default=1.0, help="how long one canary bake minute lasts locally")
    parser.add_argument("--approval-timeout", type=int, default=3600)
    parser.add_argument("--version", default=time.strftime("6.9.%H%M%S"), help="push: the podinfo version label (tag)")
    parser.add_argument("--fault", default="", help="push: the stand-in's fault (unready, errors) for a failing release")
    args = parser.parse_args(argv)
    if args.action == "run":
        return serve(args.state, args.minute_seconds, args.approval_timeout)
    if args.action == "up":
        return up(args.state, args.minute_seconds, args.approval_timeout)
    if args.action == "down":
        return down(args.state)
    return push(args.state, args.version, args.fault)


if __name__ == "__main__":
    sys.exit(main())
