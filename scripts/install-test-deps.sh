#!/usr/bin/env bash
# Installs the external programs the tests drive (real clients, image builders) on Debian.
# Idempotent; needs root (or sudo) for apt-get.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
# promtool (Debian's prometheus package) checks the /metrics exposition.
for pkg_cmd in skopeo:skopeo podman:podman buildah:buildah umoci:umoci jq:jq curl:curl prometheus:promtool; do
  pkg=${pkg_cmd%%:*}; cmd=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# PostgreSQL server and psql: the metadata contract and the integration suite also run on it.
if ! command -v psql >/dev/null 2>&1 || { ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
  need_apt+=(postgresql postgresql-client)
fi
# podman/buildah need these at run time in a fresh container-less machine.
for pkg in uidmap fuse-overlayfs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" ca-certificates >/dev/null
fi

# Containers tooling policy: skopeo/podman refuse to run without a signature policy file.
if [ ! -f /etc/containers/policy.json ]; then
  $SUDO mkdir -p /etc/containers
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' | $SUDO tee /etc/containers/policy.json >/dev/null
fi

# The AWS tools the control-plane tests drive (boto3, the AWS CLI) and pytest.
if ! python3 -c "import boto3, pytest, requests, cryptography" >/dev/null 2>&1 || ! command -v aws >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/ecr/requirements.txt
fi

# s3s-fs: the S3-compatible server that the S3 blob store tests and the distributed run use.
# 0.14.1 is the last release that builds with our toolchain.
if ! { command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; } \
  || ! cargo install --list | grep -q '^s3s-fs v0.14.1:'; then
  cargo install s3s-fs@0.14.1 --locked --features binary
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
echo "test dependencies ready"
