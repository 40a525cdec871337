"""Verify before you push: the gate's own verification code, from a terminal.

    python -m podrelease.verify.cli verify-bundle --bundle sig.sigstore.json \\
        --certificate-identity https://github.com/acme/podinfo/.github/workflows/build.yml@refs/heads/main \\
        --certificate-oidc-issuer https://token.actions.githubusercontent.com  FILE | sha256:<hex>
    python -m podrelease.verify.cli verify-bundle --bundle sig.sigstore.json --key cosign.pub FILE | sha256:<hex>
    python -m podrelease.verify.cli verify-image --repository podinfo --digest sha256:<hex> \\
        (--key cosign.pub | --certificate-identity[-regexp] ... --certificate-oidc-issuer ... | --policy FILE --environment prod)

`verify-bundle` checks one sigstore bundle over a file (its SHA-256) or a digest, with
`podrelease.verify.signatures.verify_bundle` (any in-toto predicate; the subject must be the artifact).
`verify-image` reads Amazon ECR through boto3 (the usual AWS credential chain) and runs
`podrelease.verify.signatures.verify_image`, or, with `--policy`, the whole environment gate
(`podrelease.verify.gate.enforce`: signature, SBOM, provenance, scan), exactly as the verify function does.

Keyless policies use the pinned production trusted root shipped in the package unless
`--trusted-root` names another (`--staging` has no pinned root: pass `--trusted-root`). Nothing is
fetched from sigstore's services.

Exit codes: 0 verified; 1 refused (the named reason is printed); 2 usage or policy error (nothing
was verified); 3 registry or AWS error (try again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError

from podrelease.core.errors import PolicyError, RegistryError, ReleaseError, VerificationFailed
from podrelease.verify.envelopes import verify_bundle
from podrelease.verify.trust_policy import TrustedKey, TrustPolicy

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_REGISTRY = 3

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_ARTIFACT_READ = 1 << 20


def artifact_digest(value: str) -> str:
    """`sha256:<hex>` as given, or the SHA-256 of the file at `value` (streamed)."""
    if _DIGEST.match(value):
        return value
    path = Path(value)
    if not path.is_file():
        msg = f"{value[:200]} is neither a sha256:<64 hex> digest nor a readable file"
        raise PolicyError(msg)
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(MAX_ARTIFACT_READ):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def build_policy(args: argparse.Namespace) -> TrustPolicy:
    """A TrustPolicy from --key and/or --certificate-identity[-regexp] + --certificate-oidc-issuer."""
    keys: tuple[TrustedKey, ...] = ()
    if args.key:
        try:
            pem = Path(args.key).read_bytes()
        except OSError as exc:
            msg = f"the key file {args.key[:200]} cannot be read"
            raise PolicyError(msg) from exc
        keys = TrustPolicy.from_pem(pem).keys
    identity = getattr(args, "certificate_identity", None)
    pattern = getattr(args, "certificate_identity_regexp", None)
    issuer = getattr(args, "certificate_oidc_issuer", None)
    if identity is None and pattern is None:
        if issuer is not None:
            msg = "--certificate-oidc-issuer needs --certificate-identity or --certificate-identity-regexp"
            raise PolicyError(msg)
        return TrustPolicy(keys=keys)
    if not issuer:
        msg = "a certificate identity needs --certificate-oidc-issuer"
        raise PolicyError(msg)
    # sigstore is imported (through podrelease.verify.keyless) only on this path.
    from podrelease.verify.certificates import Identity  # noqa: PLC0415
    from podrelease.verify.keyless import keyless_policy  # noqa: PLC0415
    from podrelease.verify.trusted_root import SigstoreTrustRoot  # noqa: PLC0415

    if args.trusted_root:
        root = SigstoreTrustRoot.from_file(args.trusted_root)
    elif getattr(args, "staging", False):
        msg = "no staging trusted root is pinned here: pass --trusted-root (nothing is fetched)"
        raise PolicyError(msg)
    else:
        root = SigstoreTrustRoot.production()
    rule = Identity(issuer=issuer, subject=identity, subject_regex=pattern if identity is None else None)
    return keyless_policy([rule], root=root, keys=keys)


def cmd_verify_bundle(args: argparse.Namespace) -> dict[str, Any]:
    digest = artifact_digest(args.artifact)
    policy = build_policy(args)
    try:
        bundle = Path(args.bundle).read_bytes()
    except OSError as exc:
        msg = f"the bundle {args.bundle[:200]} cannot be read"
        raise PolicyError(msg) from exc
    evidence = verify_bundle(bundle, policy, digest, predicate_type=None)
    return {"verified": True, "artifact": digest, "signature": evidence.to_dict()}


def cmd_verify_image(args: argparse.Namespace) -> dict[str, Any]:
    import boto3  # noqa: PLC0415 - only this command talks to AWS

    from podrelease.verify.registry import EcrRegistry  # noqa: PLC0415

    session = boto3.session.Session(region_name=args.region) if args.region else boto3.session.Session()
    ecr = session.client("ecr")
    registry = EcrRegistry(ecr, registry_id=args.registry_id) if args.registry_id else EcrRegistry(ecr)
    if args.policy:
        from podrelease.verify.gate import enforce  # noqa: PLC0415
        from podrelease.verify.policy import installed_keyless_factory, parse_policy  # noqa: PLC0415

        try:
            document = Path(args.policy).read_bytes()
        except OSError as exc:
            msg = f"the policy file {args.policy[:200]} cannot be read"
            raise PolicyError(msg) from exc
        environment = parse_policy(document, keyless_factory=installed_keyless_factory).environment(args.environment)
        evidence: dict[str, Any] = enforce(registry, ecr, args.repository, args.digest, environment, 0, attestation_wait=0)
        return evidence
    from podrelease.verify.signatures import verify_image  # noqa: PLC0415

    return verify_image(registry, args.repository, args.digest, build_policy(args)).evidence


def _identity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", help="PEM public key(s) trusted for key-based signatures")
    parser.add_argument("--certificate-identity", help="exact certificate SAN (keyless)")
    parser.add_argument("--certificate-identity-regexp", help="regular expression over the whole SAN (keyless)")
    parser.add_argument("--certificate-oidc-issuer", help="exact OIDC issuer (keyless)")
    parser.add_argument("--trusted-root", help="sigstore trusted_root.json (default: the pinned production root)")
    parser.add_argument("--staging", action="store_true", help="staging instance (needs --trusted-root)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="podrelease", description="Verify cosign signatures with the release gate's code.")
    commands = top.add_subparsers(dest="command", required=True)
    bundle = commands.add_parser("verify-bundle", help="verify a sigstore bundle over a file or a digest")
    bundle.add_argument("--bundle", required=True)
    _identity_options(bundle)
    bundle.add_argument("artifact", metavar="FILE_OR_DIGEST")
    image = commands.add_parser("verify-image", help="verify an ECR image by digest (boto3, AWS credentials)")
    image.add_argument("--repository", required=True)
    image.add_argument("--digest", required=True)
    image.add_argument("--region")
    image.add_argument("--registry-id")
    image.add_argument("--policy", help="release policy JSON (podrelease.verify.policy); runs the whole gate")
    image.add_argument("--environment", default="prod", help="the policy's environment (default prod)")
    _identity_options(image)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = cmd_verify_bundle if args.command == "verify-bundle" else cmd_verify_image
    try:
        result = handler(args)
    except PolicyError as exc:  # before VerificationFailed: PolicyError is one of its subclasses
        sys.stderr.write(f"error: {exc.name}: {exc}" + "\n")
        return EXIT_USAGE
    except VerificationFailed as exc:
        sys.stderr.write(f"refused: {exc.name}: {exc}" + "\n")
        return EXIT_REFUSED
    except RegistryError as exc:
        sys.stderr.write(f"registry error: {exc}" + "\n")
        return EXIT_REGISTRY
    except ReleaseError as exc:
        sys.stderr.write(f"error: {exc.name}: {exc}" + "\n")
        return EXIT_USAGE
    except BotoCoreError as exc:  # no region, no credentials, endpoint unreachable
        sys.stderr.write(f"AWS error: {exc}" + "\n")
        return EXIT_REGISTRY
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
