#!/usr/bin/env bash
# A real management cluster for bluegreen on one machine with Docker:
#   kind management cluster (Docker socket mounted) -> Cluster API with the
#   Docker provider (ClusterClass on) -> Flux -> a CNI for every workload
#   cluster (a ClusterResourceSet) -> a blue workload cluster (flavor
#   development) -> blue's workloads through a Flux Kustomization -> the
#   ClusterUpgrade CRD.
#
# Used by the e2e (tests/e2e, .github/workflows/e2e.yml) and by people who want
# to try the operator for real. Each step is skipped when already done, so it
# can be run again after a failure.
#
# Binaries: flags, else the KIND, CLUSTERCTL, FLUX and KUBECTL variables, else
# PATH. This script installs none of them.
#
# Downloads: the CNI manifest (Calico) is read from CNI_MANIFEST; when that
# file is missing, the script downloads it from CNI_URL, unless --offline (or
# BLUEGREEN_OFFLINE=1) is given, as the e2e tests do: then it stops instead.
# Cluster images (kindest/node, CAPD's, Flux's) are pulled by Docker and the
# clusters as usual.
#
# Blue's workloads come from a Git repository Flux can clone: GIT_URL and
# GIT_REF (on GitHub Actions: this repository at the commit under test).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

KIND="${KIND:-}"
CLUSTERCTL="${CLUSTERCTL:-}"
FLUX="${FLUX:-}"
KUBECTL="${KUBECTL:-}"
MGMT_CLUSTER="${MGMT_CLUSTER:-bluegreen-e2e}"
BLUE_CLUSTER="${BLUE_CLUSTER:-e2e-blue}"
NAMESPACE="${NAMESPACE:-fleet}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.30.0}"
KUBECONFIG_OUT="${KUBECONFIG_OUT:-$ROOT/.e2e/$MGMT_CLUSTER.kubeconfig}"
CNI_MANIFEST="${CNI_MANIFEST:-$ROOT/.e2e/calico.yaml}"
CNI_URL="${CNI_URL:-https://raw.githubusercontent.com/projectcalico/calico/v3.28.1/manifests/calico.yaml}"
OFFLINE="${BLUEGREEN_OFFLINE:-0}"
if [[ -n "${GITHUB_REPOSITORY:-}" ]]; then
  GIT_URL="${GIT_URL:-${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY}"
  GIT_REF="${GIT_REF:-${GITHUB_SHA:-}}"
fi
GIT_URL="${GIT_URL:-}"
GIT_REF="${GIT_REF:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)}"
WAIT="${WAIT:-30m}"

usage() {
  cat <<EOF
Usage: hack/kind-up.sh [options]
  --kind PATH --clusterctl PATH --flux PATH --kubectl PATH   binaries (default: \$KIND ... or PATH)
  --name NAME                 management cluster (default: $MGMT_CLUSTER)
  --blue NAME                 blue workload cluster (default: $BLUE_CLUSTER)
  --namespace NS              namespace of the workload clusters (default: $NAMESPACE)
  --kubernetes-version vX.Y.Z blue's version (default: $KUBERNETES_VERSION)
  --kubeconfig PATH           where the management kubeconfig is written (default: $KUBECONFIG_OUT)
  --cni-manifest PATH         the CNI manifest applied to every workload cluster (default: $CNI_MANIFEST)
  --git-url URL --git-ref SHA where Flux reads blue's workloads (tests/e2e/workload)
  --offline                   never download (the CNI manifest must exist)
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --kind) KIND="$2"; shift 2 ;;
    --clusterctl) CLUSTERCTL="$2"; shift 2 ;;
    --flux) FLUX="$2"; shift 2 ;;
    --kubectl) KUBECTL="$2"; shift 2 ;;
    --name) MGMT_CLUSTER="$2"; shift 2 ;;
    --blue) BLUE_CLUSTER="$2"; shift 2 ;;
    --namespace) NAMESPACE="$2"; shift 2 ;;
    --kubernetes-version) KUBERNETES_VERSION="$2"; shift 2 ;;
    --kubeconfig) KUBECONFIG_OUT="$2"; shift 2 ;;
    --cni-manifest) CNI_MANIFEST="$2"; shift 2 ;;
    --git-url) GIT_URL="$2"; shift 2 ;;
    --git-ref) GIT_REF="$2"; shift 2 ;;
    --offline) OFFLINE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kind-up: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { echo "kind-up: $*" >&2; }
die() { say "$*"; exit 1; }

# A binary from its flag or variable, else PATH; never fetched.
resolve() {
  local name="$1" given="$2" found
  if [[ -n "$given" ]]; then
    [[ -x "$given" ]] || die "$name: $given is not an executable file"
    echo "$given"
  elif found="$(command -v "$name")"; then
    echo "$found"
  else
    die "$name not found: give --$name PATH, set ${name^^}, or put it on PATH"
  fi
}
KIND="$(resolve kind "$KIND")"
CLUSTERCTL="$(resolve clusterctl "$CLUSTERCTL")"
FLUX="$(resolve flux "$FLUX")"
KUBECTL="$(resolve kubectl "$KUBECTL")"

docker info >/dev/null 2>&1 || die "docker info fails: a running Docker engine is needed (kind and CAPD run clusters as containers)"
[[ -n "$GIT_URL" ]] || die "no GIT_URL: Flux must clone blue's workloads (tests/e2e/workload) from a repository it can reach"
[[ -n "$GIT_REF" ]] || die "no GIT_REF: the commit Flux checks out (it must be pushed to GIT_URL)"

if [[ ! -f "$CNI_MANIFEST" ]]; then
  [[ "$OFFLINE" == 1 ]] && die "CNI manifest $CNI_MANIFEST is missing and downloads are off (--offline)"
  say "downloading the CNI manifest $CNI_URL -> $CNI_MANIFEST"
  mkdir -p "$(dirname "$CNI_MANIFEST")"
  curl -fsSL --retry 3 -o "$CNI_MANIFEST.tmp" "$CNI_URL"
  mv "$CNI_MANIFEST.tmp" "$CNI_MANIFEST"
fi

mkdir -p "$(dirname "$KUBECONFIG_OUT")"
if "$KIND" get clusters 2>/dev/null | grep -qx "$MGMT_CLUSTER"; then
  say "management cluster $MGMT_CLUSTER exists"
  "$KIND" get kubeconfig --name "$MGMT_CLUSTER" >"$KUBECONFIG_OUT"
else
  say "creating the management cluster $MGMT_CLUSTER"
  "$KIND" create cluster --name "$MGMT_CLUSTER" --config "$ROOT/hack/kind/management.yaml" \
    --kubeconfig "$KUBECONFIG_OUT" --wait 5m
fi
export KUBECONFIG="$KUBECONFIG_OUT"
k() { "$KUBECTL" "$@"; }

if k get namespace capd-system >/dev/null 2>&1; then
  say "Cluster API is installed"
else
  say "clusterctl init --infrastructure docker"
  # ClusterClass (topology) is what bluegreen clones; ClusterResourceSet installs the CNI.
  CLUSTER_TOPOLOGY=true EXP_CLUSTER_RESOURCE_SET=true \
    "$CLUSTERCTL" init --infrastructure docker --wait-providers
fi

say "flux install"
"$FLUX" install --components=source-controller,kustomize-controller,helm-controller,notification-controller

k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f -

# The CNI reaches every cluster labelled cni=calico, green included: green is a
# copy of blue's Cluster, labels and all, and its control plane is only Ready
# once a CNI runs. Server-side apply: the manifest is larger than the
# last-applied annotation may be.
say "CNI for the workload clusters (ClusterResourceSet from $CNI_MANIFEST)"
k create configmap calico-cni -n "$NAMESPACE" --from-file=calico.yaml="$CNI_MANIFEST" --dry-run=client -o yaml \
  | k apply --server-side --force-conflicts -f -
k apply -f - <<EOF
apiVersion: addons.cluster.x-k8s.io/v1beta1
kind: ClusterResourceSet
metadata:
  name: calico-cni
  namespace: $NAMESPACE
spec:
  strategy: ApplyOnce
  clusterSelector:
    matchLabels:
      cni: calico
  resources:
    - kind: ConfigMap
      name: calico-cni
EOF

if k get cluster "$BLUE_CLUSTER" -n "$NAMESPACE" >/dev/null 2>&1; then
  say "blue cluster $BLUE_CLUSTER exists"
else
  say "blue cluster $BLUE_CLUSTER at $KUBERNETES_VERSION (flavor development)"
  "$CLUSTERCTL" generate cluster "$BLUE_CLUSTER" --flavor development --infrastructure docker \
    --kubernetes-version "$KUBERNETES_VERSION" --control-plane-machine-count 1 --worker-machine-count 1 \
    --target-namespace "$NAMESPACE" >"$(dirname "$KUBECONFIG_OUT")/$BLUE_CLUSTER.yaml"
  k apply -f "$(dirname "$KUBECONFIG_OUT")/$BLUE_CLUSTER.yaml"
fi
k label cluster "$BLUE_CLUSTER" -n "$NAMESPACE" cni=calico --overwrite

say "waiting for $BLUE_CLUSTER (control plane, CNI, workers; up to $WAIT)"
k wait cluster "$BLUE_CLUSTER" -n "$NAMESPACE" --for=condition=ControlPlaneInitialized --timeout="$WAIT"
k wait cluster "$BLUE_CLUSTER" -n "$NAMESPACE" --for=condition=Ready --timeout="$WAIT"
k wait machinedeployment -n "$NAMESPACE" -l "cluster.x-k8s.io/cluster-name=$BLUE_CLUSTER" \
  --for=condition=Available --timeout="$WAIT"

# Blue's workloads the way the operator expects them (workloads.flux.mode
# remote): a Kustomization on the management cluster, applying to blue through
# Cluster API's kubeconfig Secret, labelled with blue's name.
say "blue's workloads: Flux from $GIT_URL at $GIT_REF"
k apply -f - <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: e2e-workloads
  namespace: $NAMESPACE
spec:
  interval: 10m
  url: $GIT_URL
  ref:
    commit: $GIT_REF
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: $BLUE_CLUSTER-app
  namespace: $NAMESPACE
  labels:
    bluegreen.io/cluster: $BLUE_CLUSTER
spec:
  interval: 5m
  sourceRef:
    kind: GitRepository
    name: e2e-workloads
  path: ./tests/e2e/workload
  prune: true
  wait: true
  timeout: 5m
  kubeConfig:
    secretRef:
      name: $BLUE_CLUSTER-kubeconfig
      key: value
EOF
k wait kustomization "$BLUE_CLUSTER-app" -n "$NAMESPACE" --for=condition=Ready --timeout=10m

say "the ClusterUpgrade CRD"
k apply --server-side -k "$ROOT/crds"
k wait crd clusterupgrades.bluegreen.io --for=condition=Established --timeout=1m

say "ready: export KUBECONFIG=$KUBECONFIG_OUT"
