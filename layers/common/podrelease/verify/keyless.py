"""Keyless cosign verification: Fulcio certificates, a pinned trusted root, identity policy.

A keyless signature is made with a short-lived key whose certificate Fulcio issued for an OIDC
identity (a person's email, a CI workflow's URI), and logged in Rekor. It is trusted when, and only
when, all of these hold (`FulcioVerifier.signing_key`):

1. **Signing time.** At least one verified time: the transparency-log entry's `integratedTime`
   authenticated by the log's signed entry timestamp (SET, Rekor v1), and/or RFC 3161 timestamps
   over the signature from a timestamp authority of the trusted root (`podrelease.verify.timestamp`;
   Rekor v2 entries carry no time at all). No verified time is a refusal (`NO_VERIFIED_TIME`), and
   a timestamp that does not verify is a refusal too. The log entry is authenticated by its SET or,
   without one, by its inclusion proof and signed checkpoint (checked whenever present).
2. **Log entry binding.** The entry body (hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2, intoto
   0.0.2) names this signature, this certificate and the digest of what was signed (for a DSSE
   envelope in a Rekor v2 hashedrekord entry: of its PAE), so an entry for something else counts
   for nothing.
3. **Certificate chain.** The certificate chains to a Fulcio CA of the trusted root (issuer name and
   signature, each CA a CA, every certificate and the CA's `validFor` covering every verified time), has
   key usage digitalSignature and extended key usage codeSigning. Fulcio certificates live ten
   minutes, so "valid" means valid *at the signing time*, never now.
4. **Identity.** One of the policy's `Identity` rules matches: the OIDC issuer (Fulcio extension
   1.3.6.1.4.1.57264.1.8, or the older .1.1) exactly, and a certificate SAN (email, URI or Fulcio
   other name) exactly or by a fully-matched regular expression.

Where the material comes from:

- **Legacy `.sig` layers** (cosign's keyless format before bundles): the layer annotations
  `dev.sigstore.cosign/certificate` (PEM), `dev.sigstore.cosign/chain` (PEM; ignored: only the
  trusted root's CAs are trusted) and `dev.sigstore.cosign/bundle` (JSON `{"SignedEntryTimestamp",
  "Payload": {"body", "integratedTime", "logIndex", "logID"}}`). The SET is the log key's ECDSA
  signature over the canonical JSON (sorted keys, no whitespace) of `Payload`.
- **Sigstore bundles** (v0.1-v0.3): `verificationMaterial.certificate` (or the first certificate of
  `x509CertificateChain`) and `tlogEntries[0]` (`inclusionPromise.signedEntryTimestamp`,
  `inclusionProof` with its `checkpoint`, `canonicalizedBody`).

For bundles, `check_bundle` additionally runs sigstore-python's `Verifier` over the whole bundle
with the same pinned root and identity rules (it also checks the certificate's SCT against the CT
logs of the root); sigstore is imported there, only then, because its import costs hundreds of
milliseconds of cold start. A root without CT logs (the local demo instance) skips that step; the
checks above still run. sigstore-python 4.5.1 refuses two things the specification accepts: log
entries of kind `dsse` 0.0.2 and `intoto` 0.0.2 (it reads `hashedrekord` and `dsse` 0.0.1 only),
and a timestamp at the very end of its authority's validity (it treats the end as exclusive). When
it refuses a bundle that has one of these (`sigstore_gaps`), its refusal is set aside and the
checks above decide alone; every other refusal of sigstore-python stands.

The trusted root is a sigstore `trusted_root.json` shipped with the function
(`podrelease/verify/trust/trusted_root.json`, see the README beside it); it is never fetched here.

This module puts the checks together; each lives beside its data: the root in
`podrelease.verify.trusted_root`, 1 and 2 in `podrelease.verify.transparency_log`, 3 and 4 in
`podrelease.verify.certificates`. `kms_policy` builds a TrustPolicy of AWS KMS keys
(`podrelease.verify.kms`), optionally with a keyless verifier.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from podrelease.core.errors import MalformedSignature, PolicyError, SignatureInvalid
from podrelease.verify.attachments import CERTIFICATE_ANNOTATION
from podrelease.verify.certificates import (
    MAX_CERTIFICATE_BYTES,
    Identity,
    certificate_issuer,
    certificate_sans,
    check_code_signing,
    load_certificate,
    verify_chain,
)
from podrelease.verify.decoding import base64_bytes
from podrelease.verify.kms import kms_trusted_key
from podrelease.verify.timestamp import material_timestamps, timestamp_time, verified_timestamps
from podrelease.verify.transparency_log import (
    BUNDLE_ANNOTATION,
    LogEntry,
    bundle_log_entry,
    check_entry_binding,
    legacy_log_entry,
    verify_log_entry,
)
from podrelease.verify.trust_policy import TrustedKey, TrustPolicy
from podrelease.verify.trusted_root import SigstoreTrustRoot

#: The named reason of a certificate-based signature with no verified time.
NO_VERIFIED_TIME = "no verified time"
#: Log entry kinds sigstore-python 4.5.1 reads.
SIGSTORE_PYTHON_KINDS = frozenset({("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1")})

#: Legacy layers' certificate chain annotation: ignored, only the trusted root's CAs are trusted.
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"


def material_certificate_and_entries(material: Mapping[str, Any]) -> tuple[x509.Certificate, list[LogEntry]]:
    """The leaf certificate and log entries of a bundle's verificationMaterial or legacy annotations."""
    if CERTIFICATE_ANNOTATION in material:
        pem = material[CERTIFICATE_ANNOTATION]
        if not isinstance(pem, str):
            msg = f"{CERTIFICATE_ANNOTATION} is not a string"
            raise MalformedSignature(msg)
        certificate = load_certificate(pem.encode(), pem=True)
        if BUNDLE_ANNOTATION not in material:
            return certificate, []
        return certificate, [legacy_log_entry(material[BUNDLE_ANNOTATION])]
    raw: Any = None
    if isinstance(material.get("certificate"), Mapping):
        raw = material["certificate"].get("rawBytes")
    elif isinstance(material.get("x509CertificateChain"), Mapping):
        chain = material["x509CertificateChain"].get("certificates")
        if isinstance(chain, list) and chain and isinstance(chain[0], Mapping):
            raw = chain[0].get("rawBytes")
    certificate = load_certificate(
        base64_bytes(raw, "the bundle certificate", MAX_CERTIFICATE_BYTES, urlsafe=False), pem=False
    )
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list):
        msg = "tlogEntries is not a list"
        raise MalformedSignature(msg)
    return certificate, [bundle_log_entry(e) for e in entries[:4]]



# --- the verifier --------------------------------------------------------------------------------


@dataclass
class FulcioVerifier:
    """`podrelease.verify.signatures.KeylessVerifier` for Fulcio certificates under a pinned trusted root.

    `use_sigstore`: run sigstore-python over whole bundles too (`check_bundle`); by default on
    when the root has CT logs (sigstore-python verifies the certificate's SCT with them)."""

    root: SigstoreTrustRoot
    identities: tuple[Identity, ...]
    use_sigstore: bool | None = None
    _sigstore: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.identities = tuple(self.identities)
        if not self.identities:
            msg = "a keyless policy needs at least one identity (issuer + subject): nothing could be allowed"
            raise PolicyError(msg)
        if self.use_sigstore is None:
            self.use_sigstore = bool(self.root.ctlogs) and bool(self.root.raw)

    def _identity(self, certificate: x509.Certificate) -> tuple[str, str]:
        sans = certificate_sans(certificate)
        issuer = certificate_issuer(certificate)
        for rule in self.identities:
            if rule.matches(sans, issuer):
                subject = next(s for s in sans if rule.matches([s], issuer))
                return subject, issuer or ""
        allowed = "; ".join(rule.describe() for rule in self.identities[:4])
        msg = (
            f"certificate identity {', '.join(sans)[:200] or '(none)'} from issuer {issuer or '(none)'} "
            f"is not allowed by the policy ({allowed})"
        )
        raise SignatureInvalid(msg)

    def signing_key(
        self,
        verification_material: Mapping[str, Any],
        signature: bytes,
        *,
        signed_sha256: str,
        pae_sha256: str | None = None,
    ) -> TrustedKey:
        certificate, entries = material_certificate_and_entries(verification_material)
        if not entries:
            msg = "keyless signature without transparency-log evidence (no Rekor entry): refused"
            raise SignatureInvalid(msg)
        entry = entries[0]
        check_entry_binding(entry.body, certificate, signature, signed_sha256, pae_sha256=pae_sha256)
        stamped = verified_timestamps(material_timestamps(verification_material), signature, self.root)
        logged = verify_log_entry(entry, self.root, stamped)
        times = ([logged] if logged is not None else []) + stamped
        if not times:
            msg = (
                f"{NO_VERIFIED_TIME}: the log entry has no integrated time (a Rekor v2 entry) and the signature "
                "carries no RFC 3161 timestamp, so nothing says when the short-lived certificate was used"
            )
            raise SignatureInvalid(msg)
        for when in times:
            verify_chain(certificate, self.root, when)
        check_code_signing(certificate)
        subject, issuer = self._identity(certificate)
        key = TrustedKey.from_public_key(certificate.public_key())
        return TrustedKey(
            key=key.key,
            key_id=key.key_id,
            signer={
                "identity": subject,
                "issuer": issuer,
                "signed_at": min(times).isoformat(),
                "time_source": "transparency log" if logged is not None else "timestamp authority",
                "log_index": entry.log_index,
                "log_id": entry.log_id,
                "certificate_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
            },
        )

    # -- sigstore-python, for whole bundles --

    def _sigstore_verifier(self) -> Any:
        if self._sigstore is None:
            from sigstore.models import TrustedRoot  # noqa: PLC0415 - lazy: costly import, keyless only
            from sigstore.verify import Verifier  # noqa: PLC0415
            from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootMessage  # noqa: PLC0415

            self._sigstore = Verifier(trusted_root=TrustedRoot(TrustedRootMessage.from_json(self.root.raw)))
        return self._sigstore

    def check_bundle(self, bundle_json: bytes, expected_digest: str) -> None:
        if not self.use_sigstore:
            return
        from sigstore.errors import Error as SigstoreError  # noqa: PLC0415 - lazy
        from sigstore.hashes import Hashed  # noqa: PLC0415
        from sigstore.models import Bundle  # noqa: PLC0415
        from sigstore_models.common.v1 import HashAlgorithm  # noqa: PLC0415

        verifier = self._sigstore_verifier()
        try:
            bundle = Bundle.from_json(bundle_json)
        except (SigstoreError, ValueError) as exc:
            msg = f"sigstore-python cannot read the bundle: {str(exc)[:200]}"
            raise MalformedSignature(msg) from exc
        policy = _SigstorePolicy(self)
        try:
            if bundle._dsse_envelope is not None:  # noqa: SLF001 - no public accessor in sigstore 4.x
                verifier.verify_dsse(bundle, policy)
            else:
                digest = bytes.fromhex(expected_digest.removeprefix("sha256:"))
                verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, policy)
        except (SigstoreError, ValueError) as exc:
            if isinstance(exc.__cause__, SignatureInvalid):
                raise exc.__cause__ from exc
            if sigstore_gaps(bundle_json, self.root):
                return  # a case sigstore-python does not implement: the gate's own checks decide
            msg = f"sigstore-python refused the bundle: {str(exc)[:300]}"
            raise SignatureInvalid(msg) from exc


def sigstore_gaps(bundle_json: bytes, root: SigstoreTrustRoot) -> list[str]:
    """What in a bundle sigstore-python 4.5.1 refuses though the specification accepts it: a log
    entry kind it does not read, a timestamp at the (inclusive) end of its authority's validity.
    Read without verifying: only to decide whether sigstore-python's refusal is final."""
    from podrelease.verify.decoding import json_object  # noqa: PLC0415
    from podrelease.verify.envelopes import MAX_SIGNATURE_BYTES  # noqa: PLC0415

    gaps: list[str] = []
    try:
        material = json_object(bundle_json, "the sigstore bundle", limit=MAX_SIGNATURE_BYTES).get("verificationMaterial") or {}
        for entry in material.get("tlogEntries") or []:
            kind = (entry.get("kindVersion") or {}) if isinstance(entry, Mapping) else {}
            if (kind.get("kind"), kind.get("version")) not in SIGSTORE_PYTHON_KINDS:
                gaps.append(f"log entry kind {kind.get('kind')} {kind.get('version')}")
        ends = {tsa.validity.end for tsa in root.timestamp_authorities if tsa.validity.end is not None}
        gaps += [
            "timestamp at its authority's validity end"
            for token in material_timestamps(material)
            if timestamp_time(token) in ends
        ]
    except (MalformedSignature, AttributeError, TypeError):
        return []
    return gaps


class _SigstorePolicy:
    """Our identity rules as a sigstore-python `VerificationPolicy` (one set of rules, two engines)."""

    def __init__(self, verifier: FulcioVerifier) -> None:
        self._verifier = verifier

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError  # noqa: PLC0415 - lazy

        try:
            self._verifier._identity(cert)  # noqa: SLF001 - same module
        except SignatureInvalid as exc:
            raise VerificationError(str(exc)) from exc


# --- policy construction -------------------------------------------------------------------------


def keyless_policy(
    identities: Sequence[Identity | Mapping[str, Any]],
    *,
    root: SigstoreTrustRoot | None = None,
    keys: Sequence[TrustedKey] = (),
    use_sigstore: bool | None = None,
) -> TrustPolicy:
    """A TrustPolicy accepting keyless signatures by `identities` under `root` (default: the pinned
    production root), plus any `keys`."""
    rules = tuple(i if isinstance(i, Identity) else Identity.from_dict(i) for i in identities)
    verifier = FulcioVerifier(root=root or SigstoreTrustRoot.production(), identities=rules, use_sigstore=use_sigstore)
    return TrustPolicy(keys=tuple(keys), keyless=verifier)


#: Environment variable naming a trusted_root.json to use instead of the pinned production root
#: (the local demo's sigstore instance); set by the template or the local runtime, never by events.
TRUSTED_ROOT_ENV = "SIGSTORE_TRUSTED_ROOT"


def verifier_for(identities: Sequence[Any], *, root: SigstoreTrustRoot | None = None) -> FulcioVerifier:
    """The keyless verifier for `podrelease.verify.policy`'s keyless identities (objects with `issuer`,
    `identity`, `identity_regex`), or `Identity` values. The root: `root`, else the file named by
    SIGSTORE_TRUSTED_ROOT, else the pinned production root."""
    rules: list[Identity] = []
    for item in identities:
        if isinstance(item, Identity):
            rules.append(item)
        else:
            rules.append(
                Identity(
                    issuer=getattr(item, "issuer", ""),
                    subject=getattr(item, "identity", None),
                    subject_regex=getattr(item, "identity_regex", None),
                )
            )
    if root is None:
        path = os.environ.get(TRUSTED_ROOT_ENV, "").strip()
        root = SigstoreTrustRoot.from_file(path) if path else SigstoreTrustRoot.production()
    return FulcioVerifier(root=root, identities=tuple(rules))



# --- AWS KMS ---------------------------------------------------------------------------------------


def kms_policy(kms_client: Any, key_ids: Sequence[str], *, keyless: FulcioVerifier | None = None) -> TrustPolicy:
    """A TrustPolicy of KMS keys (and optionally a keyless verifier)."""
    keys = tuple(kms_trusted_key(kms_client, key_id) for key_id in key_ids)
    return TrustPolicy(keys=keys, keyless=keyless)
