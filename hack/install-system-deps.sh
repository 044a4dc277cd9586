#!/usr/bin/env bash
# Install the Debian packages the emulated world needs, only when missing.
# haproxy: the real top-level load balancer; prometheus: the real metrics
# server for analysis; git: Flux git mode and the environment repository.
set -euo pipefail
missing=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v git >/dev/null 2>&1 || missing+=(git)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps it small; the services are started by hand, never by the package.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
