#!/usr/bin/env bash
# Remove what hack/kind-up.sh made: the workload clusters first (through Cluster
# API, so CAPD removes their containers), then the kind management cluster.
# Binaries: --kind/--kubectl, else KIND/KUBECTL, else PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND="${KIND:-}"
KUBECTL="${KUBECTL:-}"
MGMT_CLUSTER="${MGMT_CLUSTER:-bluegreen-e2e}"
NAMESPACE="${NAMESPACE:-fleet}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --kind) KIND="$2"; shift 2 ;;
    --kubectl) KUBECTL="$2"; shift 2 ;;
    --name) MGMT_CLUSTER="$2"; shift 2 ;;
    --namespace) NAMESPACE="$2"; shift 2 ;;
    -h|--help) echo "Usage: hack/kind-down.sh [--kind PATH] [--kubectl PATH] [--name NAME] [--namespace NS]"; exit 0 ;;
    *) echo "kind-down: unknown argument $1" >&2; exit 2 ;;
  esac
done
KIND="${KIND:-$(command -v kind || true)}"
KUBECTL="${KUBECTL:-$(command -v kubectl || true)}"
[[ -x "$KIND" ]] || { echo "kind-down: kind not found (--kind PATH, KIND or PATH)" >&2; exit 1; }

if ! "$KIND" get clusters 2>/dev/null | grep -qx "$MGMT_CLUSTER"; then
  echo "kind-down: no cluster $MGMT_CLUSTER" >&2
  exit 0
fi
kubeconfig="$(mktemp)"
trap 'rm -f "$kubeconfig"' EXIT
"$KIND" get kubeconfig --name "$MGMT_CLUSTER" >"$kubeconfig"
if [[ -x "$KUBECTL" ]]; then
  # Deleting the Clusters lets CAPD remove their node containers; deleting only
  # the kind cluster would leave them running.
  "$KUBECTL" --kubeconfig "$kubeconfig" delete clusters.cluster.x-k8s.io --all -n "$NAMESPACE" \
    --wait --timeout=10m || echo "kind-down: workload clusters not all deleted; remove their containers by hand" >&2
fi
"$KIND" delete cluster --name "$MGMT_CLUSTER"
rm -f "$ROOT/.e2e/$MGMT_CLUSTER.kubeconfig"
