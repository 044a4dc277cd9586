#!/usr/bin/env bash
# Install the Debian packages the emulated world needs, only when missing.
# haproxy: the real top-level load balancer; prometheus: the real metrics
# server for analysis; git: Flux git mode and the environment repository;
# openssh-server: the environment repository's SSH variant in the git-mode tests
# (sshd is started by hand on 127.0.0.1 by the test world, never as a service).
set -euo pipefail
missing=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v git >/dev/null 2>&1 || missing+=(git)
if ! [ -x /usr/sbin/sshd ] && ! command -v sshd >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    # Under systemd the package would also enable an sshd service on port 22: not for a test.
    echo "openssh-server is not installed; the git-mode SSH tests are skipped (install it to run them)"
  else
    missing+=(openssh-server)
  fi
fi
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
