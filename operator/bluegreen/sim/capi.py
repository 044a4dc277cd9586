"""A simulated Cluster API controller for the test world: Clusters come up as emulated API servers.

It watches ``Cluster`` objects on the management emulator and does, in small,
what the Cluster API controllers do, with the status shapes they write:

* a new Cluster goes ``Provisioning`` -> ``Provisioned`` after
  ``provision_delay``: a new :class:`KubeEmulator` is started for it (at the
  topology version, with its own token), the ``<name>-kubeconfig`` Secret is
  written (key ``value``, label ``cluster.x-k8s.io/cluster-name``, owned by
  the Cluster), and the conditions say Available (v1beta2) / Ready (v1beta1);
* clusters that exist when the controller starts (blue) are adopted the same
  way, without the delay: they were already running;
* a new ``spec.topology.version`` on a provisioned cluster rolls out:
  ``RollingOut=True`` for ``rollout_delay``, then the emulator reports the new
  version and ``RollingOut=False``;
* the Cluster webhook is emulated on the management emulator's writes: a
  version decreased, increased by two minors or more, or increased by a minor
  while the previous upgrade still rolls out is refused with a 422, in the words
  Cluster API uses;
* the webhook also refuses (422) two ``spec.topology.workers.machineDeployments``
  entries with the same name, and an entry whose ``class`` the Cluster's
  ClusterClass does not list under ``spec.workers.machineDeployments`` (when it
  lists any);
* with ``simulate_nodes``, every running cluster's workload emulator gets a
  :class:`~bluegreen.sim.nodes.ClusterSimulator` and each topology
  machineDeployment its Machines and Nodes (see :mod:`bluegreen.sim.machines`),
  synced on every reconcile of the Cluster; an adopted cluster's are there at once;
* a Cluster carries the ``cluster.cluster.x-k8s.io`` finalizer; deleting it
  shows phase ``Deleting``, stops the emulator after ``delete_delay`` and then
  releases the finalizer (the owned kubeconfig Secret is garbage-collected,
  its Machines are removed).

``on_ready(name, emulator)`` and ``on_deleted(name)`` let the world start and
stop what belongs to a cluster (its ingress backend). ``clusters`` maps the
name of every running cluster to its emulator.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import yaml

from bluegreen.api import versions
from bluegreen.sim import kube_store, machines, nodes
from bluegreen.sim.controllers import KeyedWorkers
from bluegreen.sim.kube import KubeEmulator, ResourceInfo

logger = logging.getLogger(__name__)

GROUP = "cluster.x-k8s.io"
FINALIZER = "cluster.cluster.x-k8s.io"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
SECRETS = "v1/secrets"
WEBHOOK = "validation.cluster.cluster.x-k8s.io"

OnReady = Callable[[str, KubeEmulator], Awaitable[None] | None]
OnDeleted = Callable[[str], Awaitable[None] | None]


def cluster_resource(api_version: str = "v1beta2") -> str:
    """The emulator's name for the Cluster resource at that version: ``cluster.x-k8s.io/v1beta2/clusters``."""
    return f"{GROUP}/{api_version}/clusters"


def install(management: KubeEmulator, *, api_version: str = "v1beta2", also_serve: tuple[str, ...] = ()) -> None:
    """Declare Cluster API's resources (Cluster, ClusterClass, Machine) at ``api_version`` (and ``also_serve``)."""
    for version in (api_version, *also_serve):
        management.add_resource(
            group=GROUP, version=version, plural="clusters", kind="Cluster", short_names=("cl",),
            printer_columns=(
                {"name": "ClusterClass", "type": "string", "jsonPath": ".spec.topology.classRef.name"
                 if version != "v1beta1" else ".spec.topology.class"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                {"name": "Version", "type": "string", "jsonPath": ".spec.topology.version"},
            ),
        )
        management.add_resource(group=GROUP, version=version, plural="clusterclasses", kind="ClusterClass",
                                short_names=("cc",))
        machines.install(management, api_version=version)


def cluster_manifest(
    *,
    namespace: str,
    name: str,
    version: str,
    api_version: str = "v1beta2",
    cluster_class: str = "quick-start",
    control_plane_replicas: int = 1,
    worker_replicas: int = 2,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ClusterClass-topology Cluster in the shape of ``api_version`` (what ``clusterctl generate`` writes)."""
    topology: dict[str, Any] = {
        "version": version,
        "controlPlane": {"replicas": control_plane_replicas},
        "workers": {"machineDeployments": [{"class": "default-worker", "name": "md-0", "replicas": worker_replicas}]},
    }
    if api_version == "v1beta1":
        topology["class"] = cluster_class
        topology["classNamespace"] = namespace
    else:
        topology["classRef"] = {"name": cluster_class, "namespace": namespace}
    return {
        "apiVersion": f"{GROUP}/{api_version}",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {
            "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]},
                               "services": {"cidrBlocks": ["10.128.0.0/12"]}},
            "topology": topology,
        },
    }


def seed_cluster(
    management: KubeEmulator,
    *,
    namespace: str,
    name: str,
    version: str,
    api_version: str = "v1beta2",
    cluster_class: str = "quick-start",
    worker_replicas: int = 2,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create a Cluster (and its ClusterClass, with worker class ``default-worker``, if missing)."""
    if management.get(f"{GROUP}/{api_version}/clusterclasses", namespace, cluster_class) is None:
        management.create(f"{GROUP}/{api_version}/clusterclasses", {
            "apiVersion": f"{GROUP}/{api_version}", "kind": "ClusterClass",
            "metadata": {"name": cluster_class, "namespace": namespace},
            "spec": {"workers": {"machineDeployments": [{"class": "default-worker"}]}},
        })
    manifest = cluster_manifest(namespace=namespace, name=name, version=version, api_version=api_version,
                                cluster_class=cluster_class, worker_replicas=worker_replicas, labels=labels)
    return management.create(cluster_resource(api_version), manifest)


def _condition(
    previous: Mapping[str, Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    *,
    v1beta1: bool = False,
    generation: int | None = None,
) -> dict[str, Any]:
    value = "True" if status else "False"
    before = previous.get(type_)
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    condition: dict[str, Any] = {"type": type_, "status": value, "reason": reason, "message": message,
                                 "lastTransitionTime": since or kube_store.now_rfc3339()}
    if v1beta1:
        if not status:
            condition["severity"] = "Info"
    elif generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _by_type(conditions: Any) -> dict[str, dict[str, Any]]:
    return {item["type"]: item for item in conditions or () if isinstance(item, dict) and "type" in item}


def cluster_status(
    cluster: Mapping[str, Any],
    *,
    api_version: str,
    phase: str,
    rolling_out: bool = False,
) -> dict[str, Any]:
    """The status the Cluster API controllers write for that phase, in that API version's shape."""
    generation = int(cluster["metadata"].get("generation") or 1)
    old = cluster.get("status") or {}
    provisioned = phase == "Provisioned"
    deleting = phase == "Deleting"
    available = provisioned
    if api_version == "v1beta1":
        previous = _by_type(old.get("conditions"))
        previous_v1beta2 = _by_type((old.get("v1beta2") or {}).get("conditions"))
    else:
        previous = _by_type(old.get("conditions"))
        previous_v1beta2 = _by_type(((old.get("deprecated") or {}).get("v1beta1") or {}).get("conditions"))

    why_not = "Cluster is being deleted" if deleting else "* InfrastructureReady: waiting for infrastructure\n" \
        "* ControlPlaneAvailable: control plane is not available yet"
    replicas = int(((cluster.get("spec") or {}).get("topology") or {}).get("controlPlane", {}).get("replicas", 1))
    current = [
        ("Available", available, "Available" if available else "NotAvailable", "" if available else why_not),
        ("InfrastructureReady", provisioned or deleting, "Ready" if provisioned else "NotReady", ""),
        ("ControlPlaneInitialized", provisioned or deleting, "Initialized" if provisioned else "NotInitialized", ""),
        ("ControlPlaneAvailable", available, "Available" if available else "NotAvailable", ""),
        ("WorkersAvailable", available, "Available" if available else "NotAvailable", ""),
        ("RollingOut", rolling_out, "RollingOut" if rolling_out else "NotRollingOut",
         "Rolling out the control plane to the new version" if rolling_out else ""),
        ("Deleting", deleting, "Deleting" if deleting else "NotDeleting", ""),
    ]
    legacy = [
        ("Ready", available and not rolling_out, "Ready" if available and not rolling_out
         else ("RollingUpdateInProgress" if rolling_out else ("Deleting" if deleting else "WaitingForControlPlane")),
         "" if available and not rolling_out else ("rolling out" if rolling_out else why_not.replace("\n", " "))),
        ("ControlPlaneReady", available and not rolling_out,
         "Ready" if available and not rolling_out else "RollingUpdateInProgress" if rolling_out else "NotReady", ""),
        ("InfrastructureReady", provisioned or deleting, "Ready" if provisioned else "NotReady", ""),
    ]
    if api_version == "v1beta1":
        return {
            "phase": phase,
            "observedGeneration": generation,
            "infrastructureReady": provisioned or deleting,
            "controlPlaneReady": provisioned or deleting,
            "conditions": [_condition(previous, *item, v1beta1=True) for item in legacy],
            "v1beta2": {"conditions": [_condition(previous_v1beta2, *item, generation=generation)
                                       for item in current]},
        }
    return {
        "phase": phase,
        "observedGeneration": generation,
        "initialization": {"infrastructureProvisioned": provisioned or deleting,
                           "controlPlaneInitialized": provisioned or deleting},
        "controlPlane": {"desiredReplicas": replicas, "replicas": replicas if provisioned else 0,
                         "readyReplicas": replicas if available else 0,
                         "availableReplicas": replicas if available else 0,
                         "upToDateReplicas": replicas if provisioned and not rolling_out else 0},
        "conditions": [_condition(previous, *item, generation=generation) for item in current],
        "deprecated": {"v1beta1": {"conditions": [_condition(previous_v1beta2, *item, v1beta1=True)
                                                  for item in legacy]}},
    }


def topology_version_problem(before: str, after: str) -> str | None:
    """What Cluster API's webhook says about changing ``spec.topology.version`` (None: it allows it)."""
    try:
        old, new = versions.parse_version(before), versions.parse_version(after)
    except ValueError as exc:
        return str(exc)
    old_semver, new_semver = _semver(old), _semver(new)
    if (new.major, new.minor, new.patch or 0) < (old.major, old.minor, old.patch or 0):
        return f'version cannot be decreased from "{old_semver}" to "{new_semver}"'
    if (new.major, new.minor) >= (old.major, old.minor + 2):
        return f'version cannot be increased from "{old_semver}" to "{new_semver}"'
    return None


def worker_pools(cluster: Mapping[str, Any]) -> list[machines.Pool]:
    """The machineDeployments of a topology Cluster as pools (replicas default to 1, as Cluster API's do)."""
    topology = (cluster.get("spec") or {}).get("topology") or {}
    version = str(topology.get("version") or "")
    found: list[machines.Pool] = []
    for entry in ((topology.get("workers") or {}).get("machineDeployments") or ()):
        if isinstance(entry, dict) and entry.get("name"):
            replicas = entry.get("replicas")
            found.append(machines.Pool(name=str(entry["name"]), version=version,
                                       replicas=replicas if isinstance(replicas, int) else 1))
    return found


def workers_problem(cluster: Mapping[str, Any], cluster_class: Mapping[str, Any] | None) -> str | None:
    """What Cluster API's webhook says about a topology's machineDeployments (None: it allows them)."""
    entries = [entry for entry in ((((cluster.get("spec") or {}).get("topology") or {}).get("workers") or {})
                                   .get("machineDeployments") or ()) if isinstance(entry, dict)]
    seen: set[str] = set()
    for entry in entries:
        name = str(entry.get("name") or "")
        if name in seen:
            return (f'spec.topology.workers.machineDeployments: Invalid value: "{name}": MachineDeployment names '
                    f'should be unique. MachineDeployment with name "{name}" is defined more than once')
        seen.add(name)
    if cluster_class is None:
        return None
    declared = ((cluster_class.get("spec") or {}).get("workers") or {}).get("machineDeployments")
    if not declared:
        return None  # a ClusterClass that lists no worker classes: nothing to check against
    classes = {str(item.get("class")) for item in declared if isinstance(item, dict)}
    for index, entry in enumerate(entries):
        wanted = str(entry.get("class") or "")
        if wanted not in classes:
            return (f'spec.topology.workers.machineDeployments[{index}].class: Invalid value: "{wanted}": '
                    f'MachineDeploymentClass with name "{wanted}" does not exist in ClusterClass '
                    f'"{cluster_class["metadata"]["name"]}"')
    return None


def _class_ref(cluster: Mapping[str, Any]) -> tuple[str, str] | None:
    topology = (cluster.get("spec") or {}).get("topology") or {}
    namespace = str((cluster.get("metadata") or {}).get("namespace") or "default")
    ref = topology.get("classRef")
    if isinstance(ref, dict) and ref.get("name"):
        return str(ref.get("namespace") or namespace), str(ref["name"])
    if topology.get("class"):
        return str(topology.get("classNamespace") or namespace), str(topology["class"])
    return None


def _semver(version: versions.KubeVersion) -> str:
    return f"{version.major}.{version.minor}.{version.patch or 0}"


def _same_status(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    return dict(old or {}) == dict(new)


_KUBECONFIGS: weakref.WeakKeyDictionary[KubeEmulator, str] = weakref.WeakKeyDictionary()


def kubeconfig_secret(cluster: Mapping[str, Any], emulator: KubeEmulator) -> dict[str, Any]:
    """The Secret Cluster API writes for a cluster: its kubeconfig under ``value``, owned by the Cluster."""
    meta = cluster["metadata"]
    value = _KUBECONFIGS.get(emulator)
    if value is None:  # each reconcile compares the Secret with this: YAML once per cluster, not per reconcile
        value = _KUBECONFIGS[emulator] = base64.b64encode(yaml.safe_dump(emulator.kubeconfig()).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{meta['name']}-kubeconfig",
            "namespace": meta["namespace"],
            "labels": {CLUSTER_NAME_LABEL: meta["name"]},
            "ownerReferences": [{"apiVersion": cluster.get("apiVersion"), "kind": "Cluster", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "type": "cluster.x-k8s.io/secret",
        "data": {"value": value},
    }


async def _call(callback: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class CapiController:
    """The simulated Cluster API controllers (topology, control plane, infrastructure) in one."""

    def __init__(
        self,
        *,
        management: KubeEmulator,
        api_version: str = "v1beta2",
        provision_delay: float = 1.0,
        rollout_delay: float = 0.5,
        delete_delay: float = 0.2,
        on_ready: OnReady | None = None,
        on_deleted: OnDeleted | None = None,
        simulate_nodes: bool = False,
        machine_delay: float = 0.2,
    ) -> None:
        self.management = management
        self.api_version = api_version
        self.simulate_nodes = simulate_nodes  # each cluster gets sim.nodes and its pools Machines and Nodes
        self.machine_delay = machine_delay
        self.resource = cluster_resource(api_version)
        self.provision_delay = provision_delay
        self.rollout_delay = rollout_delay
        self.delete_delay = delete_delay
        self.on_ready = on_ready
        self.on_deleted = on_deleted
        self._emulators: dict[tuple[str, str], KubeEmulator] = {}
        self._ready: dict[tuple[str, str], asyncio.Event] = {}
        self._adopting: set[tuple[str, str]] = set()
        self._machines: dict[tuple[str, str], machines.WorkerMachines] = {}
        self._workers: KeyedWorkers[tuple[str, str]] = KeyedWorkers(self._reconcile, name="capi")
        self._watch_task: asyncio.Task[None] | None = None

    @property
    def clusters(self) -> dict[str, KubeEmulator]:
        """Running clusters by name."""
        return {name: emulator for (_, name), emulator in self._emulators.items()}

    def emulator(self, namespace: str, name: str) -> KubeEmulator | None:
        return self._emulators.get((namespace, name))

    async def start(self) -> None:
        self.management.store.admission.append(self._admit)
        # Watch first, then list: nothing created in between is missed.
        watch = self.management.watch(self.resource)
        for cluster in self.management.list(self.resource):
            key = (cluster["metadata"]["namespace"], cluster["metadata"]["name"])
            self._adopting.add(key)
            self._workers.enqueue(key)
        self._watch_task = asyncio.get_running_loop().create_task(self._follow(watch), name="capi-watch")

    async def _follow(self, watch: Any) -> None:
        try:
            async for _, cluster in watch:
                meta = cluster.get("metadata") or {}
                self._workers.enqueue((meta.get("namespace", ""), meta.get("name", "")))
        finally:
            await watch.aclose()

    async def stop(self) -> None:
        if self._admit in self.management.store.admission:
            self.management.store.admission.remove(self._admit)
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        await self._workers.close()
        for workers in list(self._machines.values()):
            await workers.stop()
        self._machines.clear()
        emulators = list(self._emulators.values())
        self._emulators.clear()
        for emulator in emulators:
            await emulator.stop()

    async def idle(self) -> None:
        """Wait until no reconcile is running."""
        await self._workers.idle()

    async def wait_ready(self, namespace: str, name: str) -> KubeEmulator:
        """Wait until the cluster is provisioned; its emulator. (Callers bound the wait themselves.)"""
        event = self._ready.setdefault((namespace, name), asyncio.Event())
        await event.wait()
        return self._emulators[(namespace, name)]

    # --- webhook -----------------------------------------------------------------------------

    def _admit(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if info.group != GROUP or info.plural != "clusters":
            return
        class_ref = _class_ref(new)
        cluster_class = None if class_ref is None else self.management.get(
            f"{GROUP}/{info.version}/clusterclasses", *class_ref)
        workers = workers_problem(new, cluster_class)
        if workers is not None:
            raise kube_store.webhook_denied(WEBHOOK, f"Cluster.{GROUP}", new["metadata"]["name"], workers)
        if old is None:
            return
        before = str(((old.get("spec") or {}).get("topology") or {}).get("version") or "")
        after = str(((new.get("spec") or {}).get("topology") or {}).get("version") or "")
        if not before or not after or before == after:
            return
        problem = topology_version_problem(before, after)
        emulator = self._emulators.get((old["metadata"].get("namespace", ""), old["metadata"]["name"]))
        still_rolling = emulator is not None and emulator.kubernetes_version != before
        if problem is None and still_rolling and (
            versions.parse_version(after).minor_key > versions.parse_version(before).minor_key
        ):
            problem = ("minor version update cannot happen at this time: blocking version update due to "
                       "ControlPlane version check: ControlPlane is still completing a previous upgrade")
        if problem is not None:
            raise kube_store.webhook_denied(WEBHOOK, f"Cluster.{GROUP}", old["metadata"]["name"],
                                             f'spec.topology.version: Invalid value: "{after}": {problem}')

    # --- reconcile ---------------------------------------------------------------------------

    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self.management.get(self.resource, key[0], key[1])

    def _write_status(self, cluster: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        status = cluster_status(cluster, api_version=self.api_version, **kwargs)
        if _same_status(cluster.get("status"), status):
            return cluster
        meta = cluster["metadata"]
        return self.management.patch(self.resource, meta["namespace"], meta["name"], {"status": status},
                                     subresource="status")

    async def _reconcile(self, key: tuple[str, str]) -> None:
        cluster = self._get(key)
        if cluster is None:
            await self._teardown(key)
            return
        meta = cluster["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            await self._delete(key, cluster, finalizers)
            return
        if FINALIZER not in finalizers:
            cluster = self.management.patch(self.resource, key[0], key[1],
                                             {"metadata": {"finalizers": [*finalizers, FINALIZER]}})
        version = str(((cluster.get("spec") or {}).get("topology") or {}).get("version") or "")
        emulator = self._emulators.get(key)
        if emulator is None:
            await self._provision(key, cluster, version)
            return
        workers = self._machines.get(key)
        if workers is not None:
            workers.set_pools(worker_pools(cluster))
        if version and version != emulator.kubernetes_version:
            await self._roll_out(key, cluster, emulator, version)
            return
        self._write_status(cluster, phase="Provisioned")
        self._ensure_kubeconfig(cluster, emulator)

    async def _provision(self, key: tuple[str, str], cluster: dict[str, Any], version: str) -> None:
        adopting = key in self._adopting
        self._adopting.discard(key)
        if not adopting:
            self._write_status(cluster, phase="Provisioning")
            await asyncio.sleep(self.provision_delay)
            latest = self._get(key)
            if latest is None or latest["metadata"].get("deletionTimestamp"):
                return  # deleted while provisioning: the next pass finishes the deletion
            cluster = latest
            version = str(cluster["spec"]["topology"].get("version") or version)
        emulator = KubeEmulator(name=key[1], kubernetes_version=version or "1.30", token=secrets.token_urlsafe(24))
        await emulator.start()
        self._emulators[key] = emulator
        if self.simulate_nodes:
            await self._start_machines(key, cluster, emulator, adopting=adopting)
        self._ensure_kubeconfig(cluster, emulator)
        self._write_status(cluster, phase="Provisioned")
        logger.info("cluster %s/%s is provisioned at %s (%s)", key[0], key[1], version, emulator.url)
        await _call(self.on_ready, key[1], emulator)
        self._ready.setdefault(key, asyncio.Event()).set()

    async def _start_machines(self, key: tuple[str, str], cluster: dict[str, Any], emulator: KubeEmulator, *,
                              adopting: bool) -> None:
        workers = machines.WorkerMachines(
            management=self.management, api_version=self.api_version, namespace=key[0], cluster=key[1],
            scheme=machines.LabelScheme.CAPI_TOPOLOGY, simulator=nodes.attach(emulator),
            machine_delay=self.machine_delay)
        self._machines[key] = workers
        workers.start()
        workers.set_pools(worker_pools(cluster), at_once=adopting)
        if adopting:
            await workers.idle()  # blue's nodes were running before the world started

    async def _roll_out(
        self, key: tuple[str, str], cluster: dict[str, Any], emulator: KubeEmulator, version: str
    ) -> None:
        self._write_status(cluster, phase="Provisioned", rolling_out=True)
        await asyncio.sleep(self.rollout_delay)
        latest = self._get(key)
        if latest is None or latest["metadata"].get("deletionTimestamp"):
            return
        emulator.kubernetes_version = str(latest["spec"]["topology"].get("version") or version)
        self._write_status(latest, phase="Provisioned")

    def _ensure_kubeconfig(self, cluster: dict[str, Any], emulator: KubeEmulator) -> None:
        desired = kubeconfig_secret(cluster, emulator)
        meta = desired["metadata"]
        current = self.management.get(SECRETS, meta["namespace"], meta["name"])
        if current is None:
            self.management.create(SECRETS, desired)
        elif current.get("data") != desired["data"]:
            self.management.patch(SECRETS, meta["namespace"], meta["name"], {"data": desired["data"]})

    async def _delete(self, key: tuple[str, str], cluster: dict[str, Any], finalizers: list[str]) -> None:
        if FINALIZER not in finalizers:
            return  # someone else holds it; nothing of ours is left
        self._write_status(cluster, phase="Deleting")
        await asyncio.sleep(self.delete_delay)
        await self._teardown(key)
        remaining = [finalizer for finalizer in finalizers if finalizer != FINALIZER]
        try:
            self.management.patch(self.resource, key[0], key[1], {"metadata": {"finalizers": remaining or None}})
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise

    async def _teardown(self, key: tuple[str, str]) -> None:
        self._adopting.discard(key)
        ready = self._ready.get(key)
        if ready is not None:
            ready.clear()
        workers = self._machines.pop(key, None)
        if workers is not None:
            await workers.stop()
            workers.remove_all()
        emulator = self._emulators.pop(key, None)
        if emulator is None:
            return
        await emulator.stop()
        logger.info("cluster %s/%s is gone", key[0], key[1])
        await _call(self.on_deleted, key[1])
