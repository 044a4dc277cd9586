"""Simulated Cluster API machines for the test world: each worker pool gets Machines, each Machine a Node.

Both simulated providers (``sim.capi`` and ``sim.eksa``) run Cluster API underneath,
and the NodePools strategy watches worker pools through what Cluster API writes on the
management cluster: ``Machine`` objects, labelled with their cluster and pool, whose
``status.nodeRef`` names the Node in the workload cluster. :class:`WorkerMachines` plays
the MachineDeployment, MachineSet and Machine controllers of one cluster in small:

* each pool (a topology machineDeployment, or an EKS-A worker node group) is kept at
  its replica count. A new Machine (``<cluster>-<pool>-<5 random>``, labels of the
  provider's :class:`LabelScheme`, ``spec.clusterName``, ``spec.version``, finalizer
  ``machine.cluster.x-k8s.io``) is ``Provisioning`` for ``machine_delay``; then its Node
  is registered in the workload cluster through the :class:`~bluegreen.sim.nodes.ClusterSimulator`
  (Node name = Machine name, label ``bluegreen.io/pool: <pool>``, an InternalIP unique in
  the process, ``127.0.1.N``, and a providerID ``aws:///us-west-2a/i-<17 hex>``, also
  written to the Machine's ``spec.providerID``) and the Machine turns ``Running`` with
  ``status.nodeRef``. The Node is Ready after the simulator's ``node_ready_delay``;
* a pool scaled down loses Machines carrying the ``cluster.x-k8s.io/delete-machine``
  annotation first, then the newest (MachineSet's ``Newest`` deletion order); a pool
  removed from the definition loses all of them. A deleted Machine (also one deleted by
  hand, which the pool then replaces) shows ``deletionTimestamp`` and phase ``Deleting``
  for ``machine_delay``; then its Node is removed (with its pods, at once) and the finalizer
  is released. **Real Cluster API cordons and drains the Node before it deletes the
  Machine; this simulation does not**: bluegreen drains a pool before scaling it down, and a
  test that scales a pool with pods still on it sees them vanish with the Node;
* a pool's machines are created at the version the pool asks for when they are created;
  nothing is rolled when a version or a template changes (no MachineDeployment rollouts,
  no MachineHealthChecks, no infrastructure or bootstrap objects, no owner references);
* a cluster that already ran when the controller started (blue) gets its machines and
  Ready nodes at once (:meth:`WorkerMachines.set_pools` with ``at_once``).

``status.nodeRef`` is ``{apiVersion: v1, kind: Node, name}`` at v1beta1 and ``{name}`` at
v1beta2, as Cluster API writes each. ``creationTimestamp`` has a resolution of one second;
machines created in the same second are ordered by the simulation's own counter.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.sim import kube_store, nodes
from bluegreen.sim.controllers import WatchingController
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

GROUP = "cluster.x-k8s.io"
MACHINE_FINALIZER = "machine.cluster.x-k8s.io"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
TOPOLOGY_DEPLOYMENT_LABEL = "topology.cluster.x-k8s.io/deployment-name"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"
DELETE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet
_KEY = "pools"  # one reconcile key: a cluster's machines are looked at together

_addresses = itertools.count()
_created = itertools.count(1)


def machine_resource(api_version: str) -> str:
    """The emulator's name for Machines at that version: ``cluster.x-k8s.io/v1beta2/machines``."""
    return f"{GROUP}/{api_version}/machines"


def install(management: KubeEmulator, *, api_version: str) -> None:
    """Declare the Machine resource at ``api_version`` (as Cluster API's CRD prints it)."""
    management.add_resource(
        group=GROUP, version=api_version, plural="machines", kind="Machine", short_names=("ma",),
        printer_columns=(
            {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
            {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeRef.name"},
            {"name": "ProviderID", "type": "string", "jsonPath": ".spec.providerID"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        ),
    )


def next_internal_ip() -> str:
    """An address no other simulated node of this process has: 127.0.1.1, 127.0.1.2, ... then 127.0.2.1."""
    index = next(_addresses) % (255 * 254)
    return f"127.0.{1 + index // 254}.{1 + index % 254}"


def new_provider_id() -> str:
    return f"aws:///us-west-2a/i-{secrets.token_hex(9)[:17]}"


class LabelScheme(enum.Enum):
    """How a provider's Machines say which cluster and which worker pool they belong to."""

    CAPI_TOPOLOGY = "capi-topology"  # topology.cluster.x-k8s.io/deployment-name: <entry>
    EKSA = "eksa"  # cluster.x-k8s.io/deployment-name: <cluster>-<group>

    def labels(self, *, cluster: str, entry: str) -> dict[str, str]:
        if self is LabelScheme.EKSA:
            return {CLUSTER_NAME_LABEL: cluster, DEPLOYMENT_LABEL: f"{cluster}-{entry}"}
        return {CLUSTER_NAME_LABEL: cluster, TOPOLOGY_DEPLOYMENT_LABEL: entry}

    def entry_of(self, machine: Mapping[str, Any], *, cluster: str) -> str | None:
        """The pool a Machine of ``cluster`` belongs to; None for another cluster's or an unlabelled one."""
        labels = (machine.get("metadata") or {}).get("labels") or {}
        if labels.get(CLUSTER_NAME_LABEL) != cluster:
            return None
        if self is LabelScheme.EKSA:
            deployment = str(labels.get(DEPLOYMENT_LABEL) or "")
            return deployment[len(cluster) + 1:] if deployment.startswith(f"{cluster}-") else None
        entry = labels.get(TOPOLOGY_DEPLOYMENT_LABEL)
        return str(entry) if entry else None


@dataclasses.dataclass(frozen=True)
class Pool:
    """One worker pool as the cluster's definition asks for it."""

    name: str
    replicas: int
    version: str  # what new machines get in spec.version (and their Node's kubelet)


class WorkerMachines(WatchingController[str]):
    """The Machines of one cluster's worker pools on the management emulator, and a Node for each."""

    def __init__(self, *, management: KubeEmulator, api_version: str, namespace: str, cluster: str,
                 scheme: LabelScheme, simulator: nodes.ClusterSimulator, machine_delay: float = 0.2) -> None:
        self.resource = machine_resource(api_version)
        super().__init__(management, name=f"machines-{cluster}", watched=(self.resource,), registry={})
        self.api_version = api_version
        self.namespace = namespace
        self.cluster = cluster
        self.scheme = scheme
        self.simulator = simulator
        self.machine_delay = machine_delay
        self._pools: dict[str, Pool] | None = None  # None until told: an empty dict would delete every machine
        self._at_once = False
        self._due: dict[str, float] = {}  # machine uid -> monotonic time its provisioning or deletion is done
        self._order: dict[str, int] = {}  # machine uid -> creation counter (creationTimestamp is in seconds)

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[str]:
        mine = ((obj.get("metadata") or {}).get("namespace") == self.namespace
                and self.scheme.entry_of(obj, cluster=self.cluster) is not None)
        return (_KEY,) if mine else ()

    def set_pools(self, pools: Iterable[Pool], *, at_once: bool = False) -> None:
        """What the cluster's definition asks for now; ``at_once``: machines made now are already running."""
        self._pools = {pool.name: pool for pool in pools}
        self._at_once = self._at_once or at_once
        self._workers.enqueue(_KEY)

    def machines(self) -> list[dict[str, Any]]:
        """This cluster's worker Machines, oldest first."""
        found = [machine for machine in self.emulator.list(self.resource, self.namespace,
                                                           label_selector=f"{CLUSTER_NAME_LABEL}={self.cluster}")
                 if self.scheme.entry_of(machine, cluster=self.cluster) is not None]
        return sorted(found, key=self._age_key)

    def remove_all(self) -> None:
        """The cluster is gone: its Machines go at once (their Nodes went with the workload cluster)."""
        for machine in self.machines():
            name = machine["metadata"]["name"]
            try:
                self.emulator.patch(self.resource, self.namespace, name, {"metadata": {"finalizers": None}})
                self.emulator.delete(self.resource, self.namespace, name)
            except kube_store.KubeApiError as exc:
                if exc.status != 404:
                    raise

    # --- reconciling --------------------------------------------------------------------------------

    def _age_key(self, machine: Mapping[str, Any]) -> tuple[str, int]:
        meta = machine["metadata"]
        return str(meta.get("creationTimestamp") or ""), self._order.get(str(meta["uid"]), 0)

    async def _sync(self, _: str) -> None:
        if self._pools is None or self._stopping:
            return
        now = time.monotonic()
        at_once, self._at_once = self._at_once, False
        machines = self.machines()
        active: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for machine in machines:
            if machine["metadata"].get("deletionTimestamp"):
                self._deleting(machine, now)
            else:
                active[str(self.scheme.entry_of(machine, cluster=self.cluster))].append(machine)
        for entry in sorted(set(active) | set(self._pools)):
            pool = self._pools.get(entry)
            current = active.get(entry, [])
            wanted = max(pool.replicas, 0) if pool is not None else 0
            for machine in self._surplus(current, len(current) - wanted):
                current.remove(machine)
                self._delete_machine(machine, now)
            if pool is not None:
                current += [self._create(pool) for _ in range(wanted - len(current))]
            for machine in current:
                self._provision(machine, entry, now, at_once=at_once)
        live = {str(machine["metadata"]["uid"]) for machine in self.machines()}
        for uid in [uid for uid in self._due if uid not in live]:
            self._due.pop(uid)
        pending = [due for due in self._due.values() if due > now]
        if pending:
            self._workers.enqueue_later(_KEY, max(min(pending) - now, 0.001))

    def _surplus(self, machines: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        if count <= 0:
            return []

        def rank(machine: dict[str, Any]) -> tuple[bool, tuple[str, int]]:
            marked = DELETE_ANNOTATION in ((machine["metadata"].get("annotations")) or {})
            return marked, self._age_key(machine)

        return sorted(machines, key=rank, reverse=True)[:count]

    def _create(self, pool: Pool) -> dict[str, Any]:
        while True:
            suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            name = f"{self.cluster}-{pool.name}-{suffix}"
            try:
                machine = self.emulator.create(self.resource, {
                    "apiVersion": f"{GROUP}/{self.api_version}", "kind": "Machine",
                    "metadata": {"name": name, "namespace": self.namespace,
                                 "labels": self.scheme.labels(cluster=self.cluster, entry=pool.name),
                                 "finalizers": [MACHINE_FINALIZER]},
                    "spec": {"clusterName": self.cluster, "version": pool.version},
                })
            except kube_store.KubeApiError as exc:
                if exc.status == 409:
                    continue  # the random suffix is taken: draw another, as generateName would
                raise
            break
        self._order[str(machine["metadata"]["uid"])] = next(_created)
        logger.info("machine %s/%s of pool %s is provisioning", self.namespace, name, pool.name)
        return self._patch_status(machine, {"phase": "Provisioning"}) or machine

    def _provision(self, machine: dict[str, Any], entry: str, now: float, *, at_once: bool) -> None:
        if (machine.get("status") or {}).get("nodeRef"):
            return
        uid = str(machine["metadata"]["uid"])
        due = self._due.setdefault(uid, now if at_once else now + self.machine_delay)
        if due > now or self.simulator.done:
            return
        self._due.pop(uid)
        name = machine["metadata"]["name"]
        version = str((machine.get("spec") or {}).get("version") or "")
        address, provider_id = next_internal_ip(), new_provider_id()
        self.simulator.add_node(name, pool=entry, internal_ip=address, provider_id=provider_id,
                                kubelet_version=version or None, ready=at_once)
        try:
            self.emulator.patch(self.resource, self.namespace, name, {"spec": {"providerID": provider_id}})
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
            return
        node_ref: dict[str, Any] = {"name": name}
        if self.api_version == "v1beta1":
            node_ref = {"apiVersion": "v1", "kind": "Node", **node_ref}
        self._patch_status(machine, {"phase": "Running", "nodeRef": node_ref,
                                     "addresses": [{"type": "InternalIP", "address": address}]})

    def _delete_machine(self, machine: dict[str, Any], now: float) -> None:
        meta = machine["metadata"]
        try:
            self.emulator.delete(self.resource, self.namespace, meta["name"])
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
            return
        deleting = self.emulator.get(self.resource, self.namespace, meta["name"])
        if deleting is not None:
            self._deleting(deleting, now)

    def _deleting(self, machine: dict[str, Any], now: float) -> None:
        meta = machine["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if MACHINE_FINALIZER not in finalizers:
            return  # not ours to finish
        uid = str(meta["uid"])
        due = self._due.setdefault(uid, now + self.machine_delay)
        if (machine.get("status") or {}).get("phase") != "Deleting":
            self._patch_status(machine, {"phase": "Deleting"})
        if due > now:
            return
        self._due.pop(uid)
        node = ((machine.get("status") or {}).get("nodeRef") or {}).get("name")
        if node and not self.simulator.done:
            self.simulator.remove_node(str(node))
        remaining = [item for item in finalizers if item != MACHINE_FINALIZER]
        try:
            self.emulator.patch(self.resource, self.namespace, meta["name"],
                                {"metadata": {"finalizers": remaining or None}})
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
        logger.info("machine %s/%s is gone", self.namespace, meta["name"])

    def _patch_status(self, machine: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.emulator.patch(self.resource, self.namespace, machine["metadata"]["name"],
                                       {"status": status}, subresource="status")
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
            return None
