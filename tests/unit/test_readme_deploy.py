"""The deploy commands the README and the docs show do what they say, as a shell runs them.

GIVEN every fenced `make deploy` and `sam deploy` command line of README.md, docs/ENVIRONMENT.md
and docs/policy-gates.md, and the README's variable assignments (REGION=..., IMAGE=...) WHEN bash
runs them in order - `aws` answering the two look-ups the README makes, `make` running the real
Makefile with DRY_RUN=1 (so scripts/deploy.py --dry-run prints the exact `sam deploy` argv), and
`.venv-sam/bin/sam` recording its argv - THEN the values SAM CLI's own `--parameter-overrides`
parser (`samcli.cli.types.CfnParameterOverridesType`, run in `.venv-sam`, where samcli lives) makes
of that argv are exactly what the command meant: samconfig's overrides for the environment plus
every `Name=value` given, the email and the image intact, and the release policy's SSM parameter
when KEYS/POLICY is given (whose document, PEM keys and all, is what the dry run would write).

The negative case shows why the policy goes through SSM: a shell-expanded `Key="a b"` or
`CosignPublicKeys="$(cat cosign.pub)"` reaches SAM CLI's parser as one argument, and the parser cuts
the value at the first space; `make deploy` refuses such a value with a message that says so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from podrelease.verify.policy import keys_document
from scripts.installation import constraint_errors, load_installation, load_template

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "ENVIRONMENT.md", ROOT / "docs" / "policy-gates.md"]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
DEPLOY_LINE = re.compile(r"^(make deploy|(?:\S*/)?sam deploy)\b")
#: A line that only sets a shell variable (a command prefixed with one, like `PYTHONPATH=... cmd`, is not).
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=(\$\(.*\)|\S+)(\s+#.*)?$")
ACCOUNT = "123456789012"
DIGEST = "sha256:" + "4f" * 32
SAM_PARSE = """
import json, sys
from samcli.cli.types import CfnParameterOverridesType
print(json.dumps(CfnParameterOverridesType().convert(tuple(json.load(sys.stdin)), None, None)))
"""
#: What the README's `aws` look-ups answer here (the account, the bootstrap image's digest).
AWS_STUB = f"""aws() {{
  case "$1 $2" in
    "sts get-caller-identity") echo {ACCOUNT} ;;
    "ecr describe-images") echo {DIGEST} ;;
    *) echo "the test does not answer: aws $*" >&2; return 1 ;;
  esac
}}"""


def sam_parse(arguments: list[str]) -> dict[str, str]:
    """What SAM CLI makes of these --parameter-overrides arguments (its own parser, its own venv)."""
    result = subprocess.run([str(SAM_PYTHON), "-c", SAM_PARSE], input=json.dumps(arguments),  # noqa: S603 - fixed code
                            capture_output=True, text=True, check=True)
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def fenced_lines(text: str) -> list[str]:
    """The logical command lines of the ```sh blocks (backslash continuations joined)."""
    lines: list[str] = []
    for block in re.findall(r"^ *```sh\n(.*?)^ *```", text, flags=re.DOTALL | re.MULTILINE):
        logical = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in logical.splitlines() if line.strip()]
    return lines


def overrides_of(argv: list[str]) -> list[str]:
    start = argv.index("--parameter-overrides") + 1
    rest = argv[start:]
    end = next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))
    return rest[:end]


def _mirror(tmp: Path) -> Path:
    """The repository as seen from a directory of its own: every entry linked, except a stand-in
    `.venv-sam/bin/sam` that records its argv, and the files the commands name (cosign.pub)."""
    work = tmp / "repo"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in (".venv-sam", "cosign.pub", "policy.json"):
            continue
        (work / entry.name).symlink_to(entry)
    sam = work / ".venv-sam" / "bin" / "sam"
    sam.parent.mkdir(parents=True)
    (work / ".venv-sam" / ".installed").touch()
    sam.write_text('#!/bin/bash\nn=$(ls "$OUT"/sam-*.argv 2>/dev/null | wc -l)\nprintf \'%s\\0\' "$@" > "$OUT/sam-$((n+1)).argv"\n')
    sam.chmod(0o755)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (work / "cosign.pub").write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return work


def run_shell(tmp: Path, lines: list[str]) -> tuple[Path, Path]:
    """Run the lines in one bash, as the README's reader would; return (outputs folder, repo)."""
    work = _mirror(tmp)
    out = tmp / "out"
    out.mkdir()
    script = "\n".join([
        "set -uo pipefail",
        AWS_STUB,
        "n=0",
        "make() {",
        '  n=$((n+1)); printf "%s\\0" "$@" > "$OUT/make-$n.argv"',
        '  command make --no-print-directory -o .venv/.installed -o .venv-sam/.installed "$@" DRY_RUN=1 '
        '> "$OUT/make-$n.out" 2> "$OUT/make-$n.err"; echo $? > "$OUT/make-$n.rc"',
        "}",
        *lines,
        'for v in REGION WORKLOAD_REPOSITORY PROD_REPOSITORY IMAGE; do printf "%s=%s\\n" "$v" "${!v-}"; done > "$OUT/vars"',
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAKE"))} | {"OUT": str(out)}
    subprocess.run(["bash", "-c", script], cwd=work, env=env, check=True, timeout=600)  # noqa: S603, S607 - the docs' own lines
    return out, work


def _argv(path: Path) -> list[str]:
    return path.read_text().split("\0")[:-1]


def _printed_sam_argv(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith("would run: .venv-sam/bin/sam deploy "))
    return shlex.split(line.removeprefix("would run: "))


def _printed_policy(output: str) -> str:
    """The document under "would write SSM parameter ...", each of its lines indented by four spaces."""
    lines = iter(output.splitlines())
    next(line for line in lines if line.startswith("would write SSM parameter "))
    body: list[str] = []
    for line in lines:
        if not line.startswith("    "):
            break
        body.append(line.removeprefix("    "))
    return "\n".join(body)


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    readme = fenced_lines((ROOT / "README.md").read_text())
    assignments = [line for line in readme if ASSIGNMENT.match(line)]
    deploys = [line for doc in DOCS for line in fenced_lines(doc.read_text()) if DEPLOY_LINE.match(line)]
    out, work = run_shell(tmp_path_factory.mktemp("readme"), assignments + deploys)
    return {"out": out, "work": work, "deploys": deploys,
            "vars": dict(line.split("=", 1) for line in (out / "vars").read_text().splitlines())}


def test_the_docs_show_make_deploy_and_sam_deploy_lines(documented: dict[str, Any]) -> None:
    kinds = [line.split()[0] for line in documented["deploys"]]
    assert kinds.count("make") >= 3
    assert kinds.count(".venv-sam/bin/sam") == 1


def test_the_readmes_names_are_samconfigs(documented: dict[str, Any]) -> None:
    dev = load_installation("dev")
    assert documented["vars"] == {
        "REGION": dev.region,
        "WORKLOAD_REPOSITORY": dev.overrides["WorkloadRepository"],
        "PROD_REPOSITORY": dev.overrides["ProdRepository"],
        "IMAGE": f"{ACCOUNT}.dkr.ecr.{dev.region}.amazonaws.com/{dev.overrides['WorkloadRepository']}@{DIGEST}",
    }


def test_every_make_deploy_line_delivers_what_it_means(documented: dict[str, Any]) -> None:
    template = load_template()
    out: Path = documented["out"]
    runs = sorted(out.glob("make-*.argv"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(runs) == sum(line.startswith("make deploy") for line in documented["deploys"])
    with_keys = 0
    for run in runs:
        stem = run.with_suffix("")
        argv = _argv(run)
        output = Path(f"{stem}.out").read_text()
        assert Path(f"{stem}.rc").read_text().strip() == "0", (argv, Path(f"{stem}.err").read_text())
        given = dict(arg.split("=", 1) for arg in argv[1:])
        inst = load_installation(given.pop("ENV"))
        keys = given.pop("KEYS", None)
        meant = {**inst.overrides, **given}
        if keys is not None:
            meant["ReleasePolicyParameter"] = f"/{inst.stack_name}/release-policy"
            pem = (documented["work"] / keys).read_text()
            assert _printed_policy(output) == keys_document(pem)
            with_keys += 1
        sam_argv = _printed_sam_argv(output)
        assert sam_argv[: sam_argv.index("--parameter-overrides")] == [
            ".venv-sam/bin/sam", "deploy", "--config-env", inst.env, "--template-file", ".aws-sam/build/template.yaml",
            "--stack-name", inst.stack_name, "--region", inst.region, "--capabilities", *inst.capabilities]
        assert sam_parse(overrides_of(sam_argv)) == meant
        assert constraint_errors(template, meant) == []
        assert meant["BootstrapImageUri"] == documented["vars"]["IMAGE"]
    assert with_keys == 1


def test_the_raw_sam_deploy_line_passes_values_intact_and_repeats_samconfigs(documented: dict[str, Any]) -> None:
    (run,) = sorted(documented["out"].glob("sam-*.argv"))
    argv = _argv(run)
    arguments = overrides_of(argv)
    arrived = sam_parse(arguments)
    assert arrived == dict(argument.split("=", 1) for argument in arguments)
    inst = load_installation(argv[argv.index("--config-env") + 1])
    # A --parameter-overrides on the command line replaces samconfig's: the line must repeat them.
    assert {key: arrived.get(key) for key in inst.overrides} == inst.overrides
    assert arrived["BootstrapImageUri"] == documented["vars"]["IMAGE"]
    assert argv[argv.index("--stack-name") + 1] == inst.stack_name
    assert argv[argv.index("--region") + 1] == inst.region
    assert argv[argv.index("--capabilities") + 1: argv.index("--parameter-overrides")] == list(inst.capabilities)
    assert constraint_errors(load_template(), arrived) == []


def test_sams_parser_cuts_shell_expanded_values_with_spaces_so_the_policy_goes_through_ssm(tmp_path: Path) -> None:
    out, work = run_shell(tmp_path, [
        '.venv-sam/bin/sam deploy --config-env dev --parameter-overrides NotifyEmail="releases team@example.com" '
        'CosignPublicKeys="$(cat cosign.pub)"',
        "make deploy ENV=dev BootstrapImageUri=" + f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/podinfo-staging@{DIGEST}"
        ' ApproverEmails=alice@example.com NotifyEmail="releases team@example.com" GitHubOrg=acme GitHubRepo=podinfo-release',
    ])
    argv = _argv(out / "sam-1.argv")
    pem = (work / "cosign.pub").read_text()
    assert overrides_of(argv) == ["NotifyEmail=releases team@example.com", f"CosignPublicKeys={pem.rstrip()}"]
    assert sam_parse(overrides_of(argv)) == {"NotifyEmail": "releases", "CosignPublicKeys": "-----BEGIN"}
    assert (out / "make-1.rc").read_text().strip() == "2"
    assert (out / "make-1.err").read_text().splitlines()[0] == (
        "error: BadParameter: NotifyEmail: the value contains a space; sam deploy's --parameter-overrides parser cuts a "
        "value at the first space, so NotifyEmail would arrive as 'releases'. A list is comma-separated without spaces, "
        "and the release policy or PEM keys go through SSM (make deploy POLICY=policy.json or KEYS=cosign.pub)")
    assert not (out / "make-1.out").read_text().count("would run:")
