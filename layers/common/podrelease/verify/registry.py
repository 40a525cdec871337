"""A small, read-only OCI registry reader for the signature gate.

Three questions are asked of a registry, and only these:

- `get_manifest(repository, reference)`: the manifest bytes for a digest or a tag;
- `get_blob(repository, digest)`: a blob's bytes (size-capped);
- `list_referrers(repository, digest)`: the OCI 1.1 referrers of a digest (their descriptors).

Everything read is content-addressed and checked: a manifest fetched by digest and every blob must
hash to the digest asked for, and nothing larger than a cap is read. Content that fails the check is
a `MalformedSignature` (retrying will not fix it); a registry that cannot be reached or refuses the
request is a `RegistryError` (transient, the state machine retries).

`EcrRegistry` reads Amazon ECR (manifests through `BatchGetImage`, blobs through
`GetDownloadUrlForLayer` and the pre-signed URL, referrers through the registry's `/v2/` API with a
Basic token from `GetAuthorizationToken`, falling back to the referrers tag schema).
(An in-memory registry for tests and the local demo is `local.registry.MemoryRegistry`.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from podrelease.core.errors import MalformedSignature, RegistryError
from podrelease.core.obs import get_logger, register_secret
from podrelease.verify.decoding import json_object

logger = get_logger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

#: Registries must accept manifests up to 4 MiB (OCI distribution spec); we read no more.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Default cap for one blob: signature payloads and bundles are a few KiB; 4 MiB is generous.
MAX_BLOB_BYTES = 4 * 1024 * 1024
#: A referrers index listing more than this is refused rather than read to the end.
MAX_REFERRERS = 256
#: Pages of a paginated referrers response followed at most.
MAX_REFERRER_PAGES = 8

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# Repository names and tags as the OCI distribution spec defines them.
REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def sha256_digest(data: bytes) -> str:
    """The OCI digest (`sha256:<hex>`) of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(reference: str) -> bool:
    return bool(DIGEST_RE.match(reference))


def require_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:<64 lowercase hex>`, else raise MalformedSignature."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        shown = digest[:80] if isinstance(digest, str) else type(digest).__name__
        msg = f"{shown!r} is not a sha256 digest (sha256:<64 hex>)"
        raise MalformedSignature(msg)
    return digest


def secure_url(url: str) -> bool:
    """https, or plain http to the loopback address only (the local runtime's registry).

    ECR itself only ever hands out https URLs; loopback http cannot leave the machine.
    """
    return url.startswith(("https://", "http://127.0.0.1:", "http://127.0.0.1/"))


def referrers_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema tag of `digest` (`sha256-<hex>`); cosign's legacy
    signature tag is this plus `.sig`."""
    return require_digest(digest).replace(":", "-", 1)


def check_repository(repository: str) -> None:
    """RegistryError unless `repository` is a repository name as the distribution spec defines it."""
    if not isinstance(repository, str) or len(repository) > 256 or not REPOSITORY_RE.match(repository):
        msg = f"{str(repository)[:80]!r} is not a valid repository name"
        raise RegistryError(msg)


def check_reference(reference: str) -> None:
    """RegistryError unless `reference` is a sha256 digest or a valid tag."""
    if not isinstance(reference, str) or not (DIGEST_RE.match(reference) or TAG_RE.match(reference)):
        msg = f"{str(reference)[:80]!r} is neither a sha256 digest nor a valid tag"
        raise RegistryError(msg)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stored it: the raw bytes are what the digest covers."""

    raw: bytes
    media_type: str
    digest: str

    @classmethod
    def from_raw(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        if len(raw) > MAX_MANIFEST_BYTES:
            msg = f"manifest of {len(raw)} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit"
            raise MalformedSignature(msg)
        return cls(raw=raw, media_type=media_type or _media_type_of(raw), digest=sha256_digest(raw))

    def json(self) -> dict[str, Any]:
        """The manifest as a JSON object; anything else is a MalformedSignature."""
        return json_object(self.raw, f"manifest {self.digest}", limit=MAX_MANIFEST_BYTES)


def _media_type_of(raw: bytes) -> str:
    """A manifest's media type from its own `mediaType`, or from its shape (OCI allows omitting it)."""
    try:
        value = json_object(raw, "manifest", limit=MAX_MANIFEST_BYTES)
    except MalformedSignature:
        return ""
    declared = value.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return OCI_INDEX if "manifests" in value else OCI_MANIFEST


def checked_manifest(raw: bytes, media_type: str | None, reference: str) -> Manifest:
    """The manifest of `raw`; MalformedSignature when asked by digest and `raw` hashes to another."""
    manifest = Manifest.from_raw(raw, media_type)
    if is_digest(reference) and manifest.digest != reference:
        msg = f"the registry returned a manifest hashing to {manifest.digest} when asked for {reference}"
        raise MalformedSignature(msg)
    return manifest


def checked_blob(data: bytes, digest: str, max_bytes: int) -> bytes:
    """`data`, if it is at most `max_bytes` and hashes to `digest`; else MalformedSignature."""
    if len(data) > max_bytes:
        msg = f"blob {digest} is larger than the {max_bytes}-byte limit"
        raise MalformedSignature(msg)
    actual = sha256_digest(data)
    if actual != digest:
        msg = f"blob {digest} has content hashing to {actual}: corrupt or substituted"
        raise MalformedSignature(msg)
    return data


def _descriptors_of_index(index: dict[str, Any], source: str) -> list[dict[str, Any]]:
    manifests = index.get("manifests", [])
    if not isinstance(manifests, list):
        msg = f"{source}: 'manifests' is not a list"
        raise MalformedSignature(msg)
    if len(manifests) > MAX_REFERRERS:
        msg = f"{source} lists {len(manifests)} referrers, more than the {MAX_REFERRERS} read"
        raise MalformedSignature(msg)
    out: list[dict[str, Any]] = []
    for entry in manifests:
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str) and is_digest(entry["digest"]):
            out.append(entry)
        else:
            logger.warning("skipping a malformed referrer descriptor", extra={"source": source})
    return out


class Registry(Protocol):
    """What the signature gate needs from a registry."""

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest for a digest (`sha256:...`) or a tag; None when there is none."""
        ...

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
        """A blob's bytes, checked against `digest`; MalformedSignature when over `max_bytes`."""
        ...

    def list_referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        """OCI descriptors (with `artifactType`) of the manifests whose `subject` is `digest`."""
        ...


def referrers_from_tag_schema(registry: Registry, repository: str, digest: str) -> list[dict[str, Any]]:
    """Referrers by the OCI 1.1 tag schema: an index tagged `sha256-<hex>` lists them."""
    index = registry.get_manifest(repository, referrers_tag(digest))
    if index is None:
        return []
    if index.media_type not in (OCI_INDEX, DOCKER_LIST):
        logger.warning("referrers tag does not point at an index", extra={"media_type": index.media_type})
        return []
    return _descriptors_of_index(index.json(), f"referrers tag index of {digest}")


# --- Amazon ECR ---------------------------------------------------------------------------------


#: `urllib.request.urlopen`-like: `opener(request, timeout=...)`; raises HTTPError for 4xx/5xx.
Opener = Callable[..., Any]

_NOT_FOUND = 404
_OK = 200


class EcrRegistry:
    """Reads Amazon ECR with an injected boto3 ECR client (and an optional `urlopen`-like opener).

    The authorization token is only ever put in a request header; it is registered with the
    redacting logger so it cannot reach a log line even by accident.
    """

    def __init__(
        self,
        ecr_client: Any,
        *,
        registry_id: str | None = None,
        opener: Opener | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._ecr = ecr_client
        self._registry_id = registry_id
        self._open: Opener = opener or urllib.request.urlopen
        self._timeout = timeout
        self._auth: tuple[str, str] | None = None  # (proxyEndpoint, token), fetched once

    # -- AWS API calls --------------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        if self._registry_id:
            kwargs["registryId"] = self._registry_id
        try:
            return getattr(self._ecr, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            msg = f"ECR {operation} failed: {code}"
            raise RegistryError(msg) from exc
        except BotoCoreError as exc:
            msg = f"ECR {operation} failed: {type(exc).__name__}"
            raise RegistryError(msg) from exc

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        check_repository(repository)
        check_reference(reference)
        image_id = {"imageDigest": reference} if is_digest(reference) else {"imageTag": reference}
        reply = self._call(
            "batch_get_image",
            repositoryName=repository,
            imageIds=[image_id],
            acceptedMediaTypes=list(MANIFEST_MEDIA_TYPES),
        )
        images = reply.get("images") or []
        if not images:
            failures = reply.get("failures") or []
            codes = {f.get("failureCode") for f in failures if isinstance(f, dict)}
            if not failures or codes <= {"ImageNotFound", "ImageTagDoesNotMatchDigest"}:
                return None
            msg = f"ECR BatchGetImage failed for {repository}: {sorted(str(c) for c in codes)}"
            raise RegistryError(msg)
        image = images[0]
        body = image.get("imageManifest")
        if body is None:
            return None
        raw = body.encode() if isinstance(body, str) else bytes(body)
        return checked_manifest(raw, image.get("imageManifestMediaType"), reference)

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
        check_repository(repository)
        require_digest(digest)
        reply = self._call("get_download_url_for_layer", repositoryName=repository, layerDigest=digest)
        url = reply.get("downloadUrl")
        if not isinstance(url, str) or not secure_url(url):
            msg = f"ECR gave no https download URL for blob {digest}"
            raise RegistryError(msg)
        status, data, _ = self._get(url, {}, max_bytes)
        if status != _OK:
            msg = f"downloading blob {digest} returned HTTP {status}"
            raise RegistryError(msg)
        return checked_blob(data, digest, max_bytes)

    def list_referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        check_repository(repository)
        require_digest(digest)
        endpoint, token = self._authorization()
        url: str | None = f"{endpoint}/v2/{repository}/referrers/{digest}"
        headers = {"Authorization": f"Basic {token}", "Accept": OCI_INDEX}
        found: list[dict[str, Any]] = []
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_REFERRER_PAGES:
                msg = f"referrers of {digest} span more than {MAX_REFERRER_PAGES} pages"
                raise MalformedSignature(msg)
            status, data, link = self._get(url, headers, MAX_MANIFEST_BYTES)
            if status == _NOT_FOUND:
                # The distribution spec: a registry that supports the API never answers 404, so a
                # 404 means no referrers API; the tag schema is then where clients keep the list.
                logger.info("referrers API absent; reading the referrers tag schema")
                return referrers_from_tag_schema(self, repository, digest)
            if status != _OK:
                msg = f"referrers API for {repository} returned HTTP {status}"
                raise RegistryError(msg)
            index = json_object(data, "referrers index", limit=MAX_MANIFEST_BYTES)
            found.extend(_descriptors_of_index(index, f"referrers of {digest}"))
            if len(found) > MAX_REFERRERS:
                msg = f"{digest} has more than {MAX_REFERRERS} referrers"
                raise MalformedSignature(msg)
            url = _next_link(link, endpoint)
        return found

    # -- plumbing --------------------------------------------------------------------------------
    def _authorization(self) -> tuple[str, str]:
        if self._auth is None:
            reply = self._call_auth()
            data = (reply.get("authorizationData") or [{}])[0]
            endpoint = str(data.get("proxyEndpoint") or "").rstrip("/")
            token = str(data.get("authorizationToken") or "")
            if not secure_url(endpoint) or not token:
                msg = "ECR GetAuthorizationToken returned no https endpoint or no token"
                raise RegistryError(msg)
            register_secret(token)
            with contextlib.suppress(ValueError):  # decoded it is "AWS:<password>"; mask that too
                register_secret(base64.b64decode(token, validate=False).partition(b":")[2])
            self._auth = (endpoint, token)
        return self._auth

    def _call_auth(self) -> Any:
        # GetAuthorizationToken takes `registryIds` (a list), not `registryId`.
        kwargs: dict[str, Any] = {}
        if self._registry_id:
            kwargs["registryIds"] = [self._registry_id]
        try:
            return self._ecr.get_authorization_token(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            msg = f"ECR GetAuthorizationToken failed: {type(exc).__name__}"
            raise RegistryError(msg) from exc

    def _get(self, url: str, headers: dict[str, str], max_bytes: int) -> tuple[int, bytes, str]:
        """GET `url`; return (status, body of at most max_bytes + 1 bytes, Link header)."""
        request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - https checked by callers
        try:
            with self._open(request, timeout=self._timeout) as response:
                status = int(getattr(response, "status", _OK))
                body = response.read(max_bytes + 1)
                link = ""
                hdrs = getattr(response, "headers", None)
                if hdrs is not None:
                    link = str(hdrs.get("Link") or "")
        except urllib.error.HTTPError as exc:
            return exc.code, b"", ""
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            host = urllib.parse.urlsplit(url).netloc
            msg = f"GET from {host} failed: {type(exc).__name__}"
            raise RegistryError(msg) from exc
        if len(body) > max_bytes:
            msg = f"response from {urllib.parse.urlsplit(url).netloc} exceeds {max_bytes} bytes"
            raise MalformedSignature(msg)
        return status, bytes(body), link


def _next_link(link: str, endpoint: str) -> str | None:
    """The `rel="next"` target of a Link header, kept on the registry's own host."""
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    if not match:
        return None
    target: str = urllib.parse.urljoin(endpoint + "/", str(match.group(1)))
    if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(endpoint).netloc:
        msg = "referrers pagination pointed at another host"
        raise RegistryError(msg)
    return target
