"""ECR: what moto's ECR lacks for pushing and pulling real images.

Layer blobs (upload, availability, download URL), the OCI `/v2/` read API with referrers (served by
`Emulation.start_registry`), an `ImageDigestDoesNotMatch` check on PutImage, and the `ECR Image
Action` push event that real ECR sends to EventBridge.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from moto.ecr.models import ECRBackend, ecr_backends
from moto.ecr.responses import ECRResponse
from werkzeug.wrappers import Request, Response

from local.emulation.base import Current, LocalError, Patches, Timeline, error_response


class EcrExtension:
    """Layer blobs, the OCI read API (with referrers), digest checks and push events for moto's ECR."""

    PART_SIZE = 20 * 1024 * 1024  # what InitiateLayerUpload tells clients, and the most UploadLayerPart takes

    def __init__(self, account: str, region: str, timeline: Timeline) -> None:
        self.account, self.region = account, region
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.registry_url = ""
        self.timeline = timeline

    @property
    def backend(self) -> ECRBackend:
        return ecr_backends[self.account][self.region]

    # --- state helpers -------------------------------------------------------------------------------
    def find_image(self, repository: str, reference: str) -> Any | None:
        repo = self.backend.repositories.get(repository)
        if repo is None:
            return None
        for image in repo.images:
            if image.image_digest == reference or reference in (image.image_tags or []):
                return image
        return None

    def labels_of(self, image_uri: str) -> dict[str, str]:
        """The config labels of `registry/repo@digest` (empty when unknown)."""
        match = re.match(r"^[^/]+/(?P<repo>.+)@(?P<digest>sha256:[0-9a-f]{64})$", image_uri)
        if not match:
            return {}
        image = self.find_image(match["repo"], match["digest"])
        if image is None:
            return {}
        manifest = json.loads(image.image_manifest)
        config = self.blobs.get((match["repo"], manifest.get("config", {}).get("digest", "")))
        if not config:
            return {}
        return dict(json.loads(config).get("config", {}).get("Labels") or {})

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[(repository, digest)] = data
        return digest

    # --- API handlers (installed on moto's ECRResponse) ----------------------------------------------
    def batch_check_layer_availability(self, params: dict[str, Any]) -> dict[str, Any]:
        repo = params["repositoryName"]
        layers, failures = [], []
        for digest in params.get("layerDigests", []):
            if (repo, digest) in self.blobs:
                layers.append({"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": len(self.blobs[(repo, digest)])})
            else:
                failures.append({"layerDigest": digest, "failureCode": "MissingLayerDigest", "failureReason": "not in this repository"})
        return {"layers": layers, "failures": failures}

    def get_download_url_for_layer(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, digest = params["repositoryName"], params["layerDigest"]
        if (repo, digest) not in self.blobs:
            raise LocalError("LayersNotFoundException", f"layer {digest} is not in repository {repo}")
        return {"downloadUrl": f"{self.registry_url}/local-blobs/{repo}/{digest}", "layerDigest": digest}

    def initiate_layer_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = (params["repositoryName"], bytearray())
        return {"uploadId": upload_id, "partSize": self.PART_SIZE}

    def upload_layer_part(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, data = self.uploads[params["uploadId"]]
        part = base64.b64decode(params["layerPartBlob"])
        if len(part) > self.PART_SIZE:
            raise LocalError("LayerPartTooLargeException", f"a layer part is at most {self.PART_SIZE} bytes, got {len(part)}")
        if int(params["partFirstByte"]) != len(data):
            raise LocalError("InvalidLayerPartException", f"part starts at {params['partFirstByte']}, expected {len(data)}")
        data[int(params["partFirstByte"]):] = part
        return {"registryId": self.account, "repositoryName": repo, "uploadId": params["uploadId"], "lastByteReceived": len(data) - 1}

    def complete_layer_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        repo, data = self.uploads.pop(params["uploadId"])
        digest = "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
        expected = params["layerDigests"][0]
        if digest != expected:
            raise LocalError("InvalidLayerException", f"uploaded bytes hash to {digest}, not {expected}")
        self.blobs[(repo, digest)] = bytes(data)
        return {"registryId": self.account, "repositoryName": repo, "uploadId": params["uploadId"], "layerDigest": digest}

    def get_authorization_token(self, params: dict[str, Any]) -> dict[str, Any]:
        token = base64.b64encode(b"AWS:local-registry-password").decode()
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": time.time() + 43200, "proxyEndpoint": self.registry_url}]}

    def check_put_image(self, repository: str, manifest: str, digest: str | None) -> None:
        actual = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        if digest and digest != actual:
            raise LocalError("ImageDigestDoesNotMatchException", f"the manifest's digest is {actual}, not {digest}")
        parsed = json.loads(manifest)
        missing = [d for d in ([parsed["config"]["digest"]] if "config" in parsed else []) + [x["digest"] for x in parsed.get("layers", [])]
                   if (repository, d) not in self.blobs]
        if missing:
            raise LocalError("LayersNotFoundException", f"layers not uploaded to {repository}: {', '.join(missing)}")

    def push_event(self, repository: str, image: Any, tag: str | None) -> dict[str, Any]:
        manifest = json.loads(image.image_manifest)
        detail: dict[str, Any] = {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": image.image_digest,
            "action-type": "PUSH",
            "manifest-media-type": image.image_manifest_media_type or manifest.get("mediaType"),
        }
        artifact = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        if artifact:
            detail["artifact-media-type"] = artifact
        if tag:
            detail["image-tag"] = tag
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "ECR Image Action", "source": "aws.ecr",
            "account": self.account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": self.region,
            "resources": [], "detail": detail,
        }

    # --- OCI distribution read API --------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._route(request)
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        path = request.path
        blob = re.match(r"^/local-blobs/(?P<repo>.+)/(?P<digest>sha256:[0-9a-f]{64})$", path)
        if blob:
            data = self.blobs.get((blob["repo"], blob["digest"]))
            return Response(data, mimetype="application/octet-stream") if data is not None else Response("not found", 404)
        if not path.startswith("/v2/"):
            return Response("not found", 404)
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return Response(json.dumps({"errors": [{"code": "DENIED", "message": "Not Authorized"}]}), 401, mimetype="application/json")
        if path == "/v2/":
            return Response("{}", mimetype="application/json")
        match = re.match(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$", path)
        if not match:
            return Response("not found", 404)
        repo, kind, ref = match["repo"], match["kind"], match["ref"]
        if kind == "blobs":
            data = self.blobs.get((repo, ref))
            return Response(data, mimetype="application/octet-stream") if data is not None else Response("not found", 404)
        if kind == "manifests":
            image = self.find_image(repo, ref)
            if image is None:
                return Response(json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}), 404, mimetype="application/json")
            media = image.image_manifest_media_type or json.loads(image.image_manifest).get("mediaType")
            return Response(image.image_manifest, mimetype=media, headers={"Docker-Content-Digest": image.image_digest})
        return self._referrers(repo, ref, request.args.get("artifactType"))

    def _referrers(self, repo: str, digest: str, artifact_type: str | None) -> Response:
        repository = self.backend.repositories.get(repo)
        descriptors = []
        for image in repository.images if repository else []:
            manifest = json.loads(image.image_manifest)
            if manifest.get("subject", {}).get("digest") != digest:
                continue
            kind = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
            if artifact_type and kind != artifact_type:
                continue
            descriptors.append({
                "mediaType": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                "digest": image.image_digest, "size": len(image.image_manifest.encode()),
                "artifactType": kind, "annotations": manifest.get("annotations", {}),
            })
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors}
        return Response(json.dumps(index), mimetype="application/vnd.oci.image.index.v1+json")


_patches = Patches()


def install(current: Current) -> None:
    """The layer API and auth token on moto's ECRResponse; PutImage checks the digest and sends the push event."""

    def json_action(handler_name: str) -> Callable[[ECRResponse], Any]:
        def action(self: ECRResponse) -> Any:
            try:
                return 200, {}, json.dumps(getattr(current().ecr, handler_name)(json.loads(self.body or "{}")), default=str)
            except LocalError as exc:
                return error_response(exc)
        return action

    for name in ("batch_check_layer_availability", "get_download_url_for_layer", "initiate_layer_upload",
                 "upload_layer_part", "complete_layer_upload", "get_authorization_token"):
        _patches.patch(ECRResponse, name, json_action(name))

    original_put_image = ECRResponse.put_image

    def put_image(self: ECRResponse) -> Any:
        params = json.loads(self.body or "{}")
        emulation = current()
        try:
            emulation.ecr.check_put_image(params["repositoryName"], params["imageManifest"], params.get("imageDigest"))
        except LocalError as exc:
            return error_response(exc)
        result = original_put_image(self)
        image = emulation.ecr.find_image(params["repositoryName"], params.get("imageDigest") or "")
        if image is not None:
            # DescribeImages' artifactMediaType, as ECR reports it (moto leaves it out).
            manifest = json.loads(image.image_manifest)
            image.artifact_media_type = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
            emulation.on_image_pushed(params["repositoryName"], image, params.get("imageTag"))
        return result

    _patches.patch(ECRResponse, "put_image", put_image)


def uninstall() -> None:
    _patches.restore()
