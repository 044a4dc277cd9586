#!/usr/bin/env bash
# Build the operator image from the repository's Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-bluegreen-operator:$(git describe --tags --always --dirty)}"
if ! docker info >/dev/null 2>&1; then
  echo "docker info fails: no Docker engine here, so no image can be built on this machine" >&2
  exit 1
fi
docker build -t "$tag" .
echo "$tag"
