"""A simulated EKS Anywhere controller for the test world: EKS-A Clusters come up as emulated API servers.

It watches ``anywhere.eks.amazonaws.com/v1alpha1`` ``Cluster`` objects (and
the machine and datacenter configs they name) on the management emulator and
does, in small, what the EKS-A cluster controller does, with the status shape
it writes (Cluster API style conditions, ``failureMessage``):

* a Cluster whose datacenter config and machine configs all exist, with a
  supported ``kubernetesVersion`` (a string ``"X.Y"``) and a control-plane
  endpoint of its own, becomes Ready after ``provision_delay``: a new
  :class:`KubeEmulator` is started for it at its version and its kubeconfig
  Secret is written to ``eksa-system/<name>-kubeconfig`` (key ``value``);
  conditions ControlPlaneInitialized, ControlPlaneReady, DefaultCNIConfigured,
  WorkersReady and Ready turn True at the current ``observedGeneration``;
* clusters that exist when the controller starts (blue) are adopted the same
  way, without the delay: they were already running;
* what EKS-A would refuse gives ``Ready=False`` and ``status.failureMessage``:
  a missing machine or datacenter config, a version that is not a string
  ``"X.Y"``, no endpoint where the provider needs one, and an endpoint host
  another Cluster already holds (first come, first served; released when that
  cluster is gone). Fixing the cause clears the failure;
* a new ``kubernetesVersion`` on a running cluster rolls: Ready=False
  (RollingUpgradeInProgress) at the new generation for ``rollout_delay``,
  then the emulator reports the new version and Ready=True;
* EKS-A's Cluster webhook is emulated on the management emulator's writes: a
  ``kubernetesVersion`` lowered, or raised by more than one minor, is refused
  with a 422 in EKS-A's words (nothing is written, no failureMessage);
* the webhook also refuses (422) worker node groups with the same name, and a
  group ``kubernetesVersion`` above the cluster's or more than two minors below it;
* with ``simulate_nodes``, every running cluster's workload emulator gets a
  :class:`~bluegreen.sim.nodes.ClusterSimulator` and each worker node group
  (``count``) its Machines (``cluster.x-k8s.io/v1beta1`` in ``eksa-system``) and
  Nodes (see :mod:`bluegreen.sim.machines`), synced on every reconcile of a
  Cluster EKS-A accepts (one with a failureMessage keeps the machines it has);
  an adopted cluster's are there at once;
* a release (:func:`seed_release`: an ``EKSARelease`` in ``eksa-system`` naming
  a ``Bundles`` object) is optional per world; where a Cluster's
  ``eksaVersion`` has one, a ``kubernetesVersion`` its Bundles do not list is a
  failure, as EKS-A reports it;
* a Cluster carries EKS-A's finalizer; deleting it shows Ready=False
  (Deleting), stops the emulator after ``delete_delay``, removes the
  kubeconfig Secret (in another namespace, so no owner reference can) and
  releases the finalizer. Machine configs are left to whoever deletes the
  Cluster, as EKS-A does.

``on_ready(name, emulator)`` and ``on_deleted(name)`` let the world start and
stop what belongs to a cluster; ``clusters`` maps the name of every running
cluster to its emulator, the shape :mod:`bluegreen.sim.flux` reads.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import yaml

from bluegreen.api import versions
from bluegreen.kube import mergepatch
from bluegreen.sim import kube_store, machines, nodes
from bluegreen.sim.controllers import KeyedWorkers
from bluegreen.sim.kube import KubeEmulator, ResourceInfo

logger = logging.getLogger(__name__)

GROUP = "anywhere.eks.amazonaws.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "clusters.anywhere.eks.amazonaws.com/finalizer"
KUBECONFIG_NAMESPACE = "eksa-system"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
SECRETS = "v1/secrets"
BUNDLES = f"{API_VERSION}/bundles"
WEBHOOK = "validation.cluster.anywhere.amazonaws.com"
DEFAULT_EKSA_VERSION = "v0.22.0"
DEFAULT_KUBE_VERSIONS = ("1.28", "1.29", "1.30", "1.31", "1.32")
DEFAULT_ENDPOINT_HOST = "198.51.100.10"  # TEST-NET-2: never a real address
_VERSION_FORM = re.compile(r"^[0-9]+\.[0-9]+$")

OnReady = Callable[[str, KubeEmulator], Awaitable[None] | None]
OnDeleted = Callable[[str], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True)
class Provider:
    """One EKS-A infrastructure provider as far as the simulation needs it."""

    datacenter_kind: str
    machine_config_kind: str | None  # Docker has none
    needs_endpoint: bool
    datacenter_spec: Mapping[str, Any]
    machine_spec: Mapping[str, Any]


PROVIDERS: dict[str, Provider] = {
    "vsphere": Provider(
        "VSphereDatacenterConfig", "VSphereMachineConfig", True,
        {"datacenter": "Datacenter", "network": "/Datacenter/network/VM Network", "server": "vcenter.example.net",
         "insecure": False, "thumbprint": ""},
        {"datastore": "/Datacenter/datastore/ds1", "folder": "/Datacenter/vm/eksa", "memoryMiB": 8192,
         "numCPUs": 2, "diskGiB": 25, "osFamily": "bottlerocket", "resourcePool": "/Datacenter/host/Cluster/Resources",
         "users": [{"name": "ec2-user", "sshAuthorizedKeys": ["ssh-ed25519 AAAA... fleet"]}]},
    ),
    "nutanix": Provider(
        "NutanixDatacenterConfig", "NutanixMachineConfig", True,
        {"endpoint": "prism.example.net", "port": 9440, "credentialRef": {"kind": "Secret", "name": "nutanix-creds"}},
        {"vcpusPerSocket": 1, "vcpuSockets": 2, "memorySize": "8Gi", "systemDiskSize": "40Gi", "osFamily": "ubuntu",
         "cluster": {"type": "name", "name": "pe-cluster"}, "subnet": {"type": "name", "name": "vlan-10"},
         "users": [{"name": "eksa", "sshAuthorizedKeys": ["ssh-ed25519 AAAA... fleet"]}]},
    ),
    "cloudstack": Provider(
        "CloudStackDatacenterConfig", "CloudStackMachineConfig", True,
        {"availabilityZones": [{"name": "az-1", "credentialsRef": "global", "zone": {"name": "zone1"},
                                "domain": "eksa", "account": "admin",
                                "managementApiEndpoint": "https://cloudstack.example.net/client/api"}]},
        {"computeOffering": {"name": "m4-large"}, "template": {"name": "rhel8-kube"},
         "users": [{"name": "capc", "sshAuthorizedKeys": ["ssh-ed25519 AAAA... fleet"]}]},
    ),
    "tinkerbell": Provider(
        "TinkerbellDatacenterConfig", "TinkerbellMachineConfig", True,
        {"tinkerbellIP": "198.51.100.5"},
        {"hardwareSelector": {"type": "cp"}, "osFamily": "bottlerocket",
         "users": [{"name": "ec2-user", "sshAuthorizedKeys": ["ssh-ed25519 AAAA... fleet"]}]},
    ),
    "snow": Provider(
        "SnowDatacenterConfig", "SnowMachineConfig", True,
        {"identityRef": {"kind": "Secret", "name": "snow-credentials"}},
        {"instanceType": "sbe-c.large", "osFamily": "ubuntu", "devices": ["192.0.2.21"],
         "containersVolume": {"size": 25}},
    ),
    "docker": Provider("DockerDatacenterConfig", None, False, {}, {}),
}
DATACENTER_KINDS = tuple(provider.datacenter_kind for provider in PROVIDERS.values())
MACHINE_CONFIG_KINDS = tuple(p.machine_config_kind for p in PROVIDERS.values() if p.machine_config_kind)
MACHINE_API_VERSION = "v1beta1"  # the Cluster API version EKS-A's management clusters serve Machines at
_ENDPOINTLESS = frozenset(p.datacenter_kind for p in PROVIDERS.values() if not p.needs_endpoint)


def resource(kind: str) -> str:
    """The emulator's name for an EKS-A kind: ``anywhere.eks.amazonaws.com/v1alpha1/vspheremachineconfigs``."""
    return f"{API_VERSION}/{kind.lower()}s"


def cluster_resource() -> str:
    return resource("Cluster")


def install(management: KubeEmulator) -> None:
    """Declare EKS-A's resources (Cluster, machine and datacenter configs, FluxConfig), Cluster API's
    Machines and ``eksa-system``."""
    management.add_resource(
        group=GROUP, version=VERSION, plural="clusters", kind="Cluster",
        printer_columns=(
            {"name": "Version", "type": "string", "jsonPath": ".spec.kubernetesVersion"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Failure", "type": "string", "jsonPath": ".status.failureMessage"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    )
    for kind in (*MACHINE_CONFIG_KINDS, *DATACENTER_KINDS, "FluxConfig", "GitOpsConfig",
                 "TinkerbellTemplateConfig", "SnowIPPool"):
        management.add_resource(group=GROUP, version=VERSION, plural=f"{kind.lower()}s", kind=kind)
    management.add_resource(group=GROUP, version=VERSION, plural="bundles", kind="Bundles")
    management.add_resource(group=GROUP, version=VERSION, plural="eksareleases", kind="EKSARelease")
    machines.install(management, api_version=MACHINE_API_VERSION)
    if management.get("v1/namespaces", None, KUBECONFIG_NAMESPACE) is None:
        management.create("v1/namespaces", {"metadata": {"name": KUBECONFIG_NAMESPACE}})


def release_name(eksa_version: str) -> str:
    return "eksa-" + eksa_version.replace(".", "-").replace("+", "-").lower()


def seed_release(
    management: KubeEmulator,
    *,
    eksa_version: str = DEFAULT_EKSA_VERSION,
    kube_versions: tuple[str, ...] = DEFAULT_KUBE_VERSIONS,
    bundles_name: str = "bundles-1",
) -> dict[str, Any]:
    """An EKS-A release on the management cluster: its ``Bundles`` (one versionsBundle per Kubernetes version)
    and the ``EKSARelease`` that maps ``eksa_version`` to them, both in ``eksa-system``."""
    bundles = management.create(BUNDLES, {
        "apiVersion": API_VERSION, "kind": "Bundles",
        "metadata": {"name": bundles_name, "namespace": KUBECONFIG_NAMESPACE},
        "spec": {"number": 1, "cliMinVersion": eksa_version, "cliMaxVersion": eksa_version,
                 "versionsBundles": [{"kubeVersion": version, "eksD": {"name": f"kubernetes-{version}-eks"}}
                                     for version in kube_versions]},
    })
    management.create(resource("EKSARelease"), {
        "apiVersion": API_VERSION, "kind": "EKSARelease",
        "metadata": {"name": release_name(eksa_version), "namespace": KUBECONFIG_NAMESPACE},
        "spec": {"version": eksa_version, "bundleManifestUrl": f"https://example.net/{bundles_name}.yaml",
                 "bundlesRef": {"apiVersion": API_VERSION, "name": bundles_name,
                                "namespace": KUBECONFIG_NAMESPACE}},
    })
    return bundles


def _object(kind: str, *, namespace: str, name: str, spec: Mapping[str, Any],
            labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": dict(spec)}


def cluster_manifest(
    *,
    namespace: str,
    name: str,
    version: str,
    datacenter: str = "vsphere",
    datacenter_name: str | None = None,
    endpoint_host: str | None = DEFAULT_ENDPOINT_HOST,
    control_plane_config: str | None = None,
    worker_configs: Mapping[str, str] | None = None,
    worker_count: int = 2,
    etcd_config: str | None = None,
    management_cluster: str = "management",
    flux_config: str | None = "fleet-gitops",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An EKS-A Cluster as ``eksctl anywhere generate clusterconfig`` writes one (machine config names given)."""
    provider = PROVIDERS[datacenter]
    kind = provider.machine_config_kind

    def ref(config: str | None) -> dict[str, Any]:
        return {"machineGroupRef": {"kind": kind, "name": config}} if kind and config else {}

    control_plane: dict[str, Any] = {"count": 1, **ref(control_plane_config)}
    if provider.needs_endpoint and endpoint_host:
        control_plane["endpoint"] = {"host": endpoint_host}
    spec: dict[str, Any] = {
        "kubernetesVersion": version,
        "clusterNetwork": {"cniConfig": {"cilium": {}}, "pods": {"cidrBlocks": ["192.168.0.0/16"]},
                           "services": {"cidrBlocks": ["10.96.0.0/12"]}},
        "controlPlaneConfiguration": control_plane,
        "workerNodeGroupConfigurations": [
            {"name": group, "count": worker_count, **ref(config)}
            for group, config in (worker_configs or {"md-0": ""}).items()
        ],
        "datacenterRef": {"kind": provider.datacenter_kind, "name": datacenter_name or f"{datacenter}-datacenter"},
        "managementCluster": {"name": management_cluster},
        "eksaVersion": "v0.22.0",
    }
    if etcd_config:
        spec["externalEtcdConfiguration"] = {"count": 3, **ref(etcd_config)}
    if flux_config:
        spec["gitOpsRef"] = {"kind": "FluxConfig", "name": flux_config}
    return _object("Cluster", namespace=namespace, name=name, spec=spec, labels=labels)


def seed_cluster(
    management: KubeEmulator,
    *,
    namespace: str,
    name: str,
    version: str,
    datacenter: str = "vsphere",
    endpoint_host: str | None = DEFAULT_ENDPOINT_HOST,
    worker_groups: tuple[str, ...] = ("md-0",),
    worker_count: int = 2,
    shared_machine_config: bool = False,
    external_etcd: bool = False,
    management_cluster: str = "management",
    flux_config: str | None = "fleet-gitops",
    repository_url: str = "ssh://git@git.example.net/fleet/environment.git",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create an EKS-A Cluster with its datacenter config, machine configs and FluxConfig (shared ones if missing).

    Machine configs are ``<name>-cp``, ``<name>-<group>`` and ``<name>-etcd``,
    or one ``<name>-machines`` for every role with ``shared_machine_config``.
    """
    provider = PROVIDERS[datacenter]
    if management.get("v1/namespaces", None, namespace) is None:
        management.create("v1/namespaces", {"metadata": {"name": namespace}})
    datacenter_name = f"{datacenter}-datacenter"
    if management.get(resource(provider.datacenter_kind), namespace, datacenter_name) is None:
        management.create(resource(provider.datacenter_kind), _object(
            provider.datacenter_kind, namespace=namespace, name=datacenter_name, spec=provider.datacenter_spec))
    if flux_config and management.get(resource("FluxConfig"), namespace, flux_config) is None:
        management.create(resource("FluxConfig"), _object("FluxConfig", namespace=namespace, name=flux_config, spec={
            "systemNamespace": "flux-system", "clusterConfigPath": f"clusters/{management_cluster}",
            "branch": "main", "git": {"repositoryUrl": repository_url, "sshKeyAlgorithm": "ecdsa"},
        }))

    def config_name(role: str) -> str:
        return f"{name}-machines" if shared_machine_config else f"{name}-{role}"

    roles = ["cp", *worker_groups, *(["etcd"] if external_etcd else [])]
    if provider.machine_config_kind is not None:
        for config in dict.fromkeys(config_name(role) for role in roles):
            management.create(resource(provider.machine_config_kind), _object(
                provider.machine_config_kind, namespace=namespace, name=config, spec=provider.machine_spec))
    manifest = cluster_manifest(
        namespace=namespace, name=name, version=version, datacenter=datacenter, datacenter_name=datacenter_name,
        endpoint_host=endpoint_host, control_plane_config=config_name("cp"),
        worker_configs={group: config_name(group) for group in worker_groups}, worker_count=worker_count,
        etcd_config=config_name("etcd") if external_etcd else None,
        management_cluster=management_cluster, flux_config=flux_config, labels=labels,
    )
    return management.create(cluster_resource(), manifest)


# --- status --------------------------------------------------------------------------------------


def _condition(previous: Mapping[str, Mapping[str, Any]], type_: str, status: bool, reason: str = "",
               message: str = "") -> dict[str, Any]:
    value = "True" if status else "False"
    before = previous.get(type_)
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    condition: dict[str, Any] = {"type": type_, "status": value,
                                 "lastTransitionTime": since or kube_store.now_rfc3339()}
    if not status:
        condition.update(reason=reason, severity="Error" if reason == "Failed" else "Info", message=message)
    return condition


def cluster_status(
    cluster: Mapping[str, Any],
    *,
    provisioned: bool,
    rolling: bool = False,
    deleting: bool = False,
    failure: str | None = None,
) -> dict[str, Any]:
    """The status the EKS-A controller writes for a cluster in that state."""
    generation = int(cluster["metadata"].get("generation") or 1)
    old = cluster.get("status") or {}
    previous = {item["type"]: item for item in old.get("conditions") or () if isinstance(item, dict)}
    if deleting:
        why, text = "Deleting", "the cluster is being deleted"
    elif failure:
        why, text = "Failed", failure
    elif rolling:
        why, text = "RollingUpgradeInProgress", "control plane and workers are being upgraded"
    elif not provisioned:
        why, text = "ControlPlaneInitializationInProgress", "the first control plane instance is not ready yet"
    else:
        why, text = "", ""
    ready = not why
    conditions = [
        _condition(previous, "ControlPlaneInitialized", provisioned, why, text),
        _condition(previous, "ControlPlaneReady", ready, why, text),
        _condition(previous, "DefaultCNIConfigured", provisioned, why, text),
        _condition(previous, "WorkersReady", ready, why, text),
        _condition(previous, "Ready", ready, why, text),
    ]
    status: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
    if failure and not deleting:
        status.update(failureMessage=failure, failureReason="ClusterInvalid")
    return status


def kubeconfig_secret(cluster: Mapping[str, Any], emulator: KubeEmulator) -> dict[str, Any]:
    """The kubeconfig Secret of an EKS-A cluster: ``eksa-system/<name>-kubeconfig``, key ``value``."""
    name = cluster["metadata"]["name"]
    value = base64.b64encode(yaml.safe_dump(emulator.kubeconfig()).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-kubeconfig", "namespace": KUBECONFIG_NAMESPACE,
                     "labels": {CLUSTER_NAME_LABEL: name}},
        "type": "cluster.x-k8s.io/secret",
        "data": {"value": value},
    }


def _refs(cluster: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, name, field) of every object the Cluster names that must exist."""
    spec = cluster.get("spec") or {}
    found: list[tuple[str, str, str]] = []
    datacenter = spec.get("datacenterRef") or {}
    if datacenter.get("kind") and datacenter.get("name"):
        found.append((str(datacenter["kind"]), str(datacenter["name"]), "datacenterRef"))
    nodes = [("controlPlaneConfiguration", spec.get("controlPlaneConfiguration")),
             ("externalEtcdConfiguration", spec.get("externalEtcdConfiguration"))]
    nodes += [(f"workerNodeGroupConfigurations[{index}]", group)
              for index, group in enumerate(spec.get("workerNodeGroupConfigurations") or [])]
    for field, node in nodes:
        ref = (node or {}).get("machineGroupRef") if isinstance(node, dict) else None
        if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
            found.append((str(ref["kind"]), str(ref["name"]), f"{field}.machineGroupRef"))
    return found


def version_change_problem(before: Any, after: Any) -> str | None:
    """What EKS-A's webhook says about changing ``kubernetesVersion`` (None: it allows it, or leaves a malformed
    value to the controller's failureMessage)."""
    if not isinstance(before, str) or not isinstance(after, str) or before == after:
        return None
    if not _VERSION_FORM.match(before) or not _VERSION_FORM.match(after):
        return None
    old, new = versions.parse_version(before), versions.parse_version(after)
    if new.minor_key < old.minor_key:
        return f"kubernetes version downgrade is not supported ({before}) -> ({after})"
    skew = new.minor - old.minor if new.major == old.major else 99
    if skew > 1:
        return f"only +1 minor version skew is supported, minor version skew detected {skew}"
    return None


def workers_problem(cluster: Mapping[str, Any]) -> str | None:
    """What EKS-A's webhook says about a Cluster's worker node groups (None: it allows them, or leaves a
    malformed version to the controller's failureMessage)."""
    spec = cluster.get("spec") or {}
    groups = [group for group in spec.get("workerNodeGroupConfigurations") or () if isinstance(group, dict)]
    seen: set[str] = set()
    for group in groups:
        name = str(group.get("name") or "")
        if name in seen:
            return f'worker node group names must be unique: "{name}" is used more than once'
        seen.add(name)
    version = spec.get("kubernetesVersion")
    if not isinstance(version, str) or not _VERSION_FORM.match(version):
        return None
    cluster_version = versions.parse_version(version)
    for index, group in enumerate(groups):
        pinned = group.get("kubernetesVersion")
        if not isinstance(pinned, str) or not _VERSION_FORM.match(pinned):
            continue
        worker = versions.parse_version(pinned)
        field = f"spec.workerNodeGroupConfigurations[{index}].kubernetesVersion"
        if worker.minor_key > cluster_version.minor_key:
            return (f'{field}: Invalid value: "{pinned}": a worker node group cannot run a newer Kubernetes '
                    f"version than the cluster ({version})")
        lag = cluster_version.minor - worker.minor if worker.major == cluster_version.major else 99
        if lag > 2:
            return (f'{field}: Invalid value: "{pinned}": a worker node group may lag the cluster\'s '
                    f"kubernetesVersion ({version}) by at most 2 minor versions, not {lag}")
    return None


def worker_pools(cluster: Mapping[str, Any]) -> list[machines.Pool]:
    """The worker node groups of an EKS-A Cluster as pools (``count``, at the group's own version if pinned)."""
    spec = cluster.get("spec") or {}
    found: list[machines.Pool] = []
    for group in spec.get("workerNodeGroupConfigurations") or ():
        if not isinstance(group, dict) or not group.get("name"):
            continue
        count = group.get("count")
        if not isinstance(count, int):
            # An autoscaled group starts at its minimum; EKS-A defaults a missing count to 1.
            count = int(((group.get("autoscalingConfiguration") or {}).get("minCount")) or 1)
        version = str(group.get("kubernetesVersion") or spec.get("kubernetesVersion") or "")
        found.append(machines.Pool(name=str(group["name"]), replicas=count, version=f"v{version}.0"))
    return found


def _endpoint(cluster: Mapping[str, Any]) -> str | None:
    host = (((cluster.get("spec") or {}).get("controlPlaneConfiguration") or {}).get("endpoint") or {}).get("host")
    return str(host) if host else None


async def _call(callback: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class EksaController:
    """The simulated EKS-A cluster controller (and the Cluster API machinery under it) in one."""

    def __init__(
        self,
        *,
        management: KubeEmulator,
        provision_delay: float = 1.0,
        rollout_delay: float = 0.5,
        delete_delay: float = 0.2,
        on_ready: OnReady | None = None,
        on_deleted: OnDeleted | None = None,
        simulate_nodes: bool = False,
        machine_delay: float = 0.2,
    ) -> None:
        self.management = management
        self.resource = cluster_resource()
        self.simulate_nodes = simulate_nodes  # each cluster gets sim.nodes and its groups Machines and Nodes
        self.machine_delay = machine_delay
        self.provision_delay = provision_delay
        self.rollout_delay = rollout_delay
        self.delete_delay = delete_delay
        self.on_ready = on_ready
        self.on_deleted = on_deleted
        self._emulators: dict[tuple[str, str], KubeEmulator] = {}
        self._ready: dict[tuple[str, str], asyncio.Event] = {}
        self._adopting: set[tuple[str, str]] = set()
        self._endpoints: dict[str, tuple[str, str]] = {}  # host -> the cluster that holds it
        self._machines: dict[tuple[str, str], machines.WorkerMachines] = {}
        self._workers: KeyedWorkers[tuple[str, str]] = KeyedWorkers(self._reconcile, name="eksa")
        self._watch_tasks: list[asyncio.Task[None]] = []

    @property
    def clusters(self) -> dict[str, KubeEmulator]:
        """Running clusters by name."""
        return {name: emulator for (_, name), emulator in self._emulators.items()}

    def emulator(self, namespace: str, name: str) -> KubeEmulator | None:
        return self._emulators.get((namespace, name))

    async def start(self) -> None:
        self.management.store.admission.append(self._admit)
        # Watch first, then list: nothing created in between is missed.
        loop = asyncio.get_running_loop()
        watch = self.management.watch(self.resource)
        dependents = [self.management.watch(resource(kind)) for kind in (*MACHINE_CONFIG_KINDS, *DATACENTER_KINDS)]
        for cluster in self.management.list(self.resource):
            key = (cluster["metadata"]["namespace"], cluster["metadata"]["name"])
            self._adopting.add(key)
            self._workers.enqueue(key)
        self._watch_tasks.append(loop.create_task(self._follow(watch, self._on_cluster), name="eksa-watch"))
        for dependent in dependents:
            self._watch_tasks.append(loop.create_task(self._follow(dependent, self._on_dependent),
                                                      name="eksa-watch-configs"))

    async def _follow(self, watch: Any, handler: Callable[[dict[str, Any]], None]) -> None:
        try:
            async for _, obj in watch:
                handler(obj)
        finally:
            await watch.aclose()

    def _on_cluster(self, cluster: dict[str, Any]) -> None:
        meta = cluster.get("metadata") or {}
        self._workers.enqueue((meta.get("namespace", ""), meta.get("name", "")))

    def _on_dependent(self, obj: dict[str, Any]) -> None:
        """A config appeared, changed or went: look again at the Clusters of its namespace."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        for cluster in self.management.list(self.resource, namespace):
            self._workers.enqueue((namespace or "", cluster["metadata"]["name"]))

    async def stop(self) -> None:
        if self._admit in self.management.store.admission:
            self.management.store.admission.remove(self._admit)
        for task in self._watch_tasks:
            task.cancel()
        await asyncio.gather(*self._watch_tasks, return_exceptions=True)
        self._watch_tasks.clear()
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

    # --- reconcile ---------------------------------------------------------------------------

    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self.management.get(self.resource, key[0], key[1])

    def _write_status(self, cluster: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        status = cluster_status(cluster, **kwargs)
        patch = mergepatch.merge_diff(cluster.get("status") or {}, status)
        if not patch:
            return cluster
        meta = cluster["metadata"]
        return self.management.patch(self.resource, meta["namespace"], meta["name"], {"status": patch},
                                     subresource="status")

    def _admit(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if info.group != GROUP or info.plural != "clusters":
            return
        workers = workers_problem(new)
        if workers is not None:
            raise kube_store.webhook_denied(WEBHOOK, f"Cluster.{GROUP}", new["metadata"]["name"], workers)
        if old is None:
            return
        before = (old.get("spec") or {}).get("kubernetesVersion")
        after = (new.get("spec") or {}).get("kubernetesVersion")
        problem = version_change_problem(before, after)
        if problem is not None:
            raise kube_store.webhook_denied(WEBHOOK, f"Cluster.{GROUP}", old["metadata"]["name"],
                                             f'spec: Invalid value: "{after}": {problem}')

    def _offered(self, cluster: Mapping[str, Any]) -> list[str] | None:
        """The kubeVersions of the Bundles the Cluster's eksaVersion maps to; None without such a release."""
        eksa_version = (cluster.get("spec") or {}).get("eksaVersion")
        if not eksa_version:
            return None
        release = self.management.get(resource("EKSARelease"), KUBECONFIG_NAMESPACE, release_name(str(eksa_version)))
        ref = ((release or {}).get("spec") or {}).get("bundlesRef") or {}
        if not ref.get("name"):
            return None
        bundles = self.management.get(BUNDLES, ref.get("namespace") or KUBECONFIG_NAMESPACE, ref["name"])
        if bundles is None:
            return None
        return [str(item.get("kubeVersion")) for item in (bundles.get("spec") or {}).get("versionsBundles") or ()]

    def _problem(self, key: tuple[str, str], cluster: Mapping[str, Any]) -> str | None:
        """Why EKS-A would refuse the Cluster as it is, in the words of a failureMessage; None if it would not."""
        missing = [f'{kind}.{GROUP} "{name}" not found ({field})' for kind, name, field in _refs(cluster)
                   if self.management.get(resource(kind), key[0], name) is None]
        if missing:
            return f"Dependent cluster objects don't exist: {'; '.join(missing)}"
        version = (cluster.get("spec") or {}).get("kubernetesVersion")
        if not isinstance(version, str) or not _VERSION_FORM.match(version):
            return f'unsupported kubernetesVersion {version!r}: write it as a string "X.Y", e.g. "1.31"'
        offered = self._offered(cluster)
        if offered is not None and version not in offered:
            return f"kubernetes version {version} is not supported by bundles (they offer {', '.join(offered)})"
        datacenter = str(((cluster.get("spec") or {}).get("datacenterRef") or {}).get("kind") or "")
        host = _endpoint(cluster)
        if datacenter in _ENDPOINTLESS:
            return "specifying endpoint host configuration in Cluster is not supported" if host else None
        if not host:
            return "cluster controlPlaneConfiguration.Endpoint.Host is not set or is empty"
        holder = self._endpoints.get(host)
        if holder is not None and holder != key:
            return (f"cluster controlPlaneConfiguration.Endpoint.Host {host} is already in use by "
                    f"cluster {holder[0]}/{holder[1]}")
        self._endpoints[host] = key
        return None

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
        emulator = self._emulators.get(key)
        problem = self._problem(key, cluster)
        if problem is not None:
            self._write_status(cluster, provisioned=emulator is not None, failure=problem)
            return
        version = str(cluster["spec"]["kubernetesVersion"])
        if emulator is None:
            await self._provision(key, cluster)
            return
        workers = self._machines.get(key)
        if workers is not None:
            workers.set_pools(worker_pools(cluster))
        if version != emulator.kubernetes_version:
            await self._roll_out(key, cluster, emulator)
            return
        self._write_status(cluster, provisioned=True)
        self._ensure_kubeconfig(cluster, emulator)

    async def _provision(self, key: tuple[str, str], cluster: dict[str, Any]) -> None:
        adopting = key in self._adopting
        self._adopting.discard(key)
        if not adopting:
            self._write_status(cluster, provisioned=False)
            await asyncio.sleep(self.provision_delay)
            latest = self._get(key)
            if latest is None or latest["metadata"].get("deletionTimestamp"):
                return  # deleted while provisioning: the next pass finishes the deletion
            problem = self._problem(key, latest)
            if problem is not None:
                self._write_status(latest, provisioned=False, failure=problem)
                return
            cluster = latest
        version = str(cluster["spec"]["kubernetesVersion"])
        emulator = KubeEmulator(name=key[1], kubernetes_version=version, token=secrets.token_urlsafe(24))
        await emulator.start()
        self._emulators[key] = emulator
        if self.simulate_nodes:
            await self._start_machines(key, cluster, emulator, adopting=adopting)
        self._ensure_kubeconfig(cluster, emulator)
        self._write_status(cluster, provisioned=True)
        logger.info("EKS-A cluster %s/%s is ready at %s (%s)", key[0], key[1], version, emulator.url)
        await _call(self.on_ready, key[1], emulator)
        self._ready.setdefault(key, asyncio.Event()).set()

    async def _start_machines(self, key: tuple[str, str], cluster: dict[str, Any], emulator: KubeEmulator, *,
                              adopting: bool) -> None:
        workers = machines.WorkerMachines(
            management=self.management, api_version=MACHINE_API_VERSION, namespace=KUBECONFIG_NAMESPACE,
            cluster=key[1], scheme=machines.LabelScheme.EKSA, simulator=nodes.attach(emulator),
            machine_delay=self.machine_delay)
        self._machines[key] = workers
        workers.start()
        workers.set_pools(worker_pools(cluster), at_once=adopting)
        if adopting:
            await workers.idle()  # blue's nodes were running before the world started

    async def _roll_out(self, key: tuple[str, str], cluster: dict[str, Any], emulator: KubeEmulator) -> None:
        self._write_status(cluster, provisioned=True, rolling=True)
        await asyncio.sleep(self.rollout_delay)
        latest = self._get(key)
        if latest is None or latest["metadata"].get("deletionTimestamp"):
            return
        emulator.kubernetes_version = str(latest["spec"]["kubernetesVersion"])
        self._write_status(latest, provisioned=True)

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
        self._write_status(cluster, provisioned=key in self._emulators, deleting=True)
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
        released = [host for host, holder in self._endpoints.items() if holder == key]
        for host in released:
            del self._endpoints[host]
        try:
            self.management.delete(SECRETS, KUBECONFIG_NAMESPACE, f"{key[1]}-kubeconfig")
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
        workers = self._machines.pop(key, None)
        if workers is not None:
            await workers.stop()
            workers.remove_all()
        emulator = self._emulators.pop(key, None)
        if released:
            # A cluster refused for wanting this endpoint may have it now.
            for cluster in self.management.list(self.resource):
                other = (cluster["metadata"]["namespace"], cluster["metadata"]["name"])
                if other != key:
                    self._workers.enqueue(other)
        if emulator is None:
            return
        await emulator.stop()
        logger.info("EKS-A cluster %s/%s is gone", key[0], key[1])
        await _call(self.on_deleted, key[1])
