"""Cluster API Machines: the machines (and so the Nodes) behind a worker pool, for both providers.

Both providers run Cluster API underneath, so a worker pool's machines are
``cluster.x-k8s.io`` Machines on the management cluster whatever wrote the pool
(a topology machineDeployment, an EKS Anywhere worker node group). Counting
machines, not Nodes, is what tells a pool that is still being built (a machine
without a Node yet) from one that is done, and the Node names come from the
machines' ``status.nodeRef``, never from labels on the Nodes: the workload
cluster's Nodes carry nothing that names the pool they belong to.

Which API version serves Machines is learnt from discovery, v1beta2 first, and
kept once found; a management cluster that serves neither is an error that says
so (and is asked again next time: Cluster API may be being installed).

A machine being deleted (``deletionTimestamp`` set) still counts: its Node is
still there until Cluster API has drained and removed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.clusters.base import ClusterProviderError
from bluegreen.kube import client as kubeclient
from bluegreen.kube import objects

GROUP = "cluster.x-k8s.io"
SUPPORTED_VERSIONS = ("v1beta2", "v1beta1")  # in order of preference
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
# The MachineDeployment a machine belongs to: set by the topology controller on machines of a
# topology machineDeployment (the entry's name), and by MachineDeployments themselves (their object's name).
TOPOLOGY_DEPLOYMENT_LABEL = "topology.cluster.x-k8s.io/deployment-name"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"


class Machines:
    """Lists Machines on one management cluster, at the version it serves."""

    def __init__(self, *, client: kubeclient.KubeClient, api_version: str | None = None) -> None:
        if api_version is not None and api_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"api_version must be one of {SUPPORTED_VERSIONS}, not {api_version!r}")
        self._client = client
        self._version = api_version

    async def api_version(self) -> str:
        """The version Machines are served at (v1beta2 preferred); ClusterProviderError when none is."""
        if self._version is None:
            for version in SUPPORTED_VERSIONS:
                served = await self._client.resources(f"{GROUP}/{version}")
                if served and any(resource.get("name") == "machines" for resource in served):
                    self._version = version
                    break
            else:
                raise ClusterProviderError(
                    f"the management cluster serves no Cluster API Machines (neither {GROUP}/v1beta2 nor "
                    f"{GROUP}/v1beta1 machines), so a worker pool's nodes cannot be found; check that Cluster API "
                    "is installed there"
                )
        return self._version

    async def select(self, *, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """The Machines in ``namespace`` whose labels match ``selector``, in creation order."""
        resource = kubeclient.Resource(GROUP, await self.api_version(), "machines")
        found = await self._client.list(resource, namespace=namespace, label_selector=dict(selector))
        return sorted(found, key=creation_order)

    async def by_label(self, *, namespace: str, selector: Mapping[str, str],
                       label: str) -> dict[str, list[dict[str, Any]]]:
        """The Machines matching ``selector``, grouped by the value of ``label`` (machines without it left out)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for machine in await self.select(namespace=namespace, selector=selector):
            value = objects.labels(machine).get(label)
            if value is not None:
                groups.setdefault(value, []).append(machine)
        return groups


def creation_order(machine: Mapping[str, Any]) -> tuple[str, str]:
    """Sort key: ``creationTimestamp`` (whole seconds, RFC 3339, so text order is time order), then name."""
    meta = objects.metadata(machine)
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def node_names(machines: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The Node names of ``machines`` (``status.nodeRef.name``) in creation order; machines without one skipped."""
    names: list[str] = []
    for machine in sorted(machines, key=creation_order):
        status = machine.get("status")
        node_ref = status.get("nodeRef") if isinstance(status, dict) else None
        name = node_ref.get("name") if isinstance(node_ref, dict) else None
        if name:
            names.append(str(name))
    return tuple(names)
