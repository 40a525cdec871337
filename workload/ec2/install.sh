#!/bin/bash
# Installs the release's podinfo on an EC2 host (Amazon Linux 2023), run as root by the instance's
# user data after it pulled the image by digest and copied /opt/podinfo-host/ out of it:
#
#   IMAGE=<repo>@sha256:<digest> SECRET_ID=<secret ARN> AWS_REGION=<region> /opt/podinfo-host/install.sh
#
# It creates the service user podinfo (uid/gid 9898, no login), installs podinfo-secret-fetch and
# the systemd units, fetches the JWT secret once (must succeed), then (re)starts podinfo.service on
# IMAGE and waits for /readyz. Running it again with another IMAGE moves the host to that image.
# Optional: SECRET_CACHE_SECONDS (default 10), READY_TIMEOUT (seconds, default 120).
set -euo pipefail

log() { echo "podinfo-install: $*"; }
die() { echo "podinfo-install: error: $*" >&2; exit 1; }

[[ ${EUID} -eq 0 ]] || die "run as root"
: "${IMAGE:?IMAGE (<repository>@sha256:<digest>) is required}"
: "${SECRET_ID:?SECRET_ID (the secret ARN of the environment) is required}"
: "${AWS_REGION:?AWS_REGION is required}"
SECRET_CACHE_SECONDS=${SECRET_CACHE_SECONDS:-10}
READY_TIMEOUT=${READY_TIMEOUT:-120}

[[ ${IMAGE} =~ ^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$ ]] \
  || die "IMAGE must be pinned by digest (<repository>@sha256:<64 hex>), got: ${IMAGE}"
[[ ${SECRET_ID} =~ ^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$ ]] \
  || die "SECRET_ID must be a Secrets Manager secret ARN, got: ${SECRET_ID}"
[[ ${AWS_REGION} =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "AWS_REGION is not a region: ${AWS_REGION}"
[[ ${SECRET_CACHE_SECONDS} =~ ^[0-9]+$ ]] || die "SECRET_CACHE_SECONDS must be a number of seconds"
[[ ${READY_TIMEOUT} =~ ^[0-9]+$ ]] || die "READY_TIMEOUT must be a number of seconds"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for f in podinfo-secret-fetch systemd/podinfo-secret-fetch.service systemd/podinfo-secret-fetch.timer \
         systemd/podinfo.service tmpfiles/podinfo-secret.conf; do
  [[ -f ${here}/${f} ]] || die "${here}/${f} is missing: copy all of /opt/podinfo-host/ out of the image"
done
command -v docker >/dev/null || die "docker is required (the user data pulled the image with it)"

# 1. The service user: no home, no shell, the uid the container runs as.
getent group podinfo >/dev/null || groupadd --system --gid 9898 podinfo
id -u podinfo >/dev/null 2>&1 \
  || useradd --system --uid 9898 --gid 9898 --no-create-home --home-dir /nonexistent --shell /sbin/nologin podinfo
[[ $(id -u podinfo):$(id -g podinfo) == 9898:9898 ]] \
  || die "user podinfo exists as $(id -u podinfo):$(id -g podinfo), expected 9898:9898"

# 2. The fetcher's runtime: Python 3 and boto3 from the distribution (AL2023: python3-boto3).
if ! python3 -c 'import boto3' 2>/dev/null; then
  log "installing python3-boto3"
  dnf install -y -q python3-boto3
fi

# 3. Files. The environment file names the image and the secret; it holds no secret value.
install -D -m 0755 -o root -g root "${here}/podinfo-secret-fetch" /usr/local/bin/podinfo-secret-fetch
install -m 0644 -o root -g root "${here}"/systemd/podinfo-secret-fetch.service "${here}"/systemd/podinfo-secret-fetch.timer \
  "${here}"/systemd/podinfo.service /etc/systemd/system/
install -D -m 0644 -o root -g root "${here}/tmpfiles/podinfo-secret.conf" /etc/tmpfiles.d/podinfo-secret.conf
install -d -m 0755 -o root -g root /etc/podinfo
env_file=$(mktemp /etc/podinfo/.podinfo.env.XXXXXX)
printf 'IMAGE=%s\nSECRET_ID=%s\nAWS_REGION=%s\nSECRET_CACHE_SECONDS=%s\n' \
  "${IMAGE}" "${SECRET_ID}" "${AWS_REGION}" "${SECRET_CACHE_SECONDS}" > "${env_file}"
chmod 0644 "${env_file}"
mv -f "${env_file}" /etc/podinfo/podinfo.env
systemd-tmpfiles --create /etc/tmpfiles.d/podinfo-secret.conf
systemctl daemon-reload

# 4. The first fetch must succeed: podinfo never starts without the secret.
if ! systemctl start podinfo-secret-fetch.service; then
  journalctl --unit podinfo-secret-fetch.service --lines 20 --no-pager >&2 || true
  die "the first secret fetch failed (see above); podinfo is not started"
fi
systemctl enable --now podinfo-secret-fetch.timer

# 5. podinfo on IMAGE (a restart moves a running host to the new digest).
systemctl enable podinfo.service
systemctl restart podinfo.service
for ((i = 0; i < READY_TIMEOUT; i++)); do
  if curl --fail --silent --show-error --max-time 2 --output /dev/null http://127.0.0.1/readyz 2>/dev/null; then
    log "podinfo ${IMAGE##*@} ready on :80 (secret ${SECRET_ID##*:secret:}, refreshed every 60 s)"
    exit 0
  fi
  sleep 1
done
journalctl --unit podinfo.service --lines 30 --no-pager >&2 || true
die "podinfo did not answer /readyz on :80 within ${READY_TIMEOUT}s"
