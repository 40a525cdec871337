"""Transparency-log entry bodies as Rekor writes them, for the LOCAL sigstore instance
(`local.sigstore_local`): what a keyless DSSE signature is logged as, in each kind the gate reads.

- `dsse` 0.0.1 (Rekor v1, cosign v3's default there): payload hash, envelope hash, signatures with
  a base64 PEM verifier;
- `intoto` 0.0.2 (Rekor v1, older cosign attestations): payload hash, envelope hash, the envelope
  without its payload, each signature base64 twice, the verifier a base64 PEM;
- `hashedrekord` 0.0.2 (Rekor v2, a DSSE envelope logged over its PAE): the SHA-256 of the PAE,
  the signature, a DER certificate verifier;
- `dsse` 0.0.2 (Rekor v2): the payload's SHA-256, signatures with DER certificate verifiers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from podrelease.verify.envelopes import INTOTO_PAYLOAD_TYPE, dsse_pae

#: (kind, version) -> which log takes it: "v1" (SET, integrated time) or "v2" (no time).
KINDS = {
    ("dsse", "0.0.1"): "v1",
    ("intoto", "0.0.2"): "v1",
    ("hashedrekord", "0.0.2"): "v2",
    ("dsse", "0.0.2"): "v2",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _v2_verifier(certificate: x509.Certificate) -> dict[str, Any]:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {"x509Certificate": {"rawBytes": _b64(der)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}


def entry_body(kind: str, version: str, envelope: dict[str, Any], payload: bytes, signature: bytes,
               certificate: x509.Certificate) -> bytes:
    """The canonicalized body of a `kind` `version` entry for a DSSE `envelope` over in-toto `payload`."""
    pem_b64 = _b64(certificate.public_bytes(serialization.Encoding.PEM))
    payload_sha256 = hashlib.sha256(payload).digest()
    if (kind, version) == ("dsse", "0.0.1"):
        spec: dict[str, Any] = {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(_compact(envelope)).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": payload_sha256.hex()},
            "signatures": [{"signature": _b64(signature), "verifier": pem_b64}],
        }
    elif (kind, version) == ("intoto", "0.0.2"):
        spec = {
            "content": {
                "envelope": {
                    "payloadType": INTOTO_PAYLOAD_TYPE,
                    "signatures": [{"publicKey": pem_b64, "sig": _b64(_b64(signature).encode())}],
                },
                "hash": {"algorithm": "sha256", "value": hashlib.sha256(_compact(envelope)).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": payload_sha256.hex()},
            }
        }
    elif (kind, version) == ("hashedrekord", "0.0.2"):
        pae = dsse_pae(INTOTO_PAYLOAD_TYPE, payload)
        spec = {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(pae).digest())},
                "signature": {"content": _b64(signature), "verifier": _v2_verifier(certificate)},
            }
        }
    elif (kind, version) == ("dsse", "0.0.2"):
        spec = {
            "dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": _b64(payload_sha256)},
                "signatures": [{"content": _b64(signature), "verifier": _v2_verifier(certificate)}],
            }
        }
    else:
        msg = f"no local entry body for {kind} {version}"
        raise ValueError(msg)
    return _compact({"apiVersion": version, "kind": kind, "spec": spec})
