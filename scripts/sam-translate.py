#!/usr/bin/env python3
"""Print template.yaml as the CloudFormation JSON the SAM transform makes of it (for checkov).

Uses the local runtime's own `translate()`, so checkov sees exactly what `make demo` creates.
Run from the repository root:  PYTHONPATH=layers/common:. python scripts/sam-translate.py > out.json
Parameters without a default get harmless sample values; override any with NAME=VALUE arguments.
"""

from __future__ import annotations

import json
import sys

from local.template import translate

SAMPLE_PARAMETERS = {
    "BootstrapImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/podinfo@sha256:" + "0" * 64,
    "ReleasePolicyParameter": "/podinfo-release/release-policy",
    "ApproverEmails": "approver@example.com",
    "NotifyEmail": "releases@example.com",
}


def main(argv: list[str]) -> int:
    parameters = dict(SAMPLE_PARAMETERS)
    for argument in argv:
        name, sep, value = argument.partition("=")
        if not sep:
            sys.stderr.write(f"usage: sam-translate.py [NAME=VALUE ...] (got {argument!r})\n")
            return 2
        parameters[name] = value
    translated, _, _ = translate(parameters)
    json.dump(translated, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
