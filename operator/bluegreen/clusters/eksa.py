"""EKS Anywhere provider: green is a clone of blue's ``Cluster`` and of the machine configs it references.

An EKS Anywhere workload cluster is a ``Cluster`` object (group
``anywhere.eks.amazonaws.com/v1alpha1``) plus the objects it names: one
datacenter config, a machine config per node role (control plane, each worker
node group, external etcd) and maybe a ``FluxConfig``. Green gets:

* its own copies of the machine configs (``<green>-cp``, ``<green>-<group>``,
  ``<green>-etcd``), because machine configs are per cluster and the controller
  rolls the nodes when one changes. A config blue uses for several roles is
  copied once, and green's roles share the copy the same way. Every kind is
  copied the same way (vSphere, Nutanix, Tinkerbell, CloudStack, Snow, ...):
  the spec as it is, under the kind's plural in the same group;
* the same datacenter config, management cluster, ``FluxConfig``, EKS-A
  release and cluster network: those are references to shared things, and
  immutable on a cluster once set;
* ``kubernetesVersion`` as the string ``"X.Y"`` (EKS-A takes nothing else; an
  unquoted ``1.30`` in YAML is the float 1.3), on the Cluster and on every
  worker group that pins its own version;
* ``spec.target.overrides`` as a JSON merge patch on the cloned spec, last.

The control-plane endpoint is the one value that cannot be copied: on every
provider except Docker, ``controlPlaneConfiguration.endpoint.host`` is an
address the cluster owns (a kube-vip VIP on vSphere, Nutanix, CloudStack,
Tinkerbell and Snow; the EKS-A docs call it "a unique IP", and its validation
requires it for every datacenter kind but Docker, which refuses one). So it
must come from the overrides, and :meth:`EksaClusterProvider.preflight` stops
the upgrade before anything is created when it does not, naming the field.

What the clone leaves behind: status, server-set metadata, labels that claim
an owner that does not own the clone (Flux's, an older upgrade's), and EKS-A's
control annotations (paused, managed-by-cli, the Tinkerbell bootstrap IP),
which would keep the controller away from green.

Version-specific fields of machine configs (a vSphere or CloudStack
``template``, a Nutanix ``image``, a Tinkerbell ``osImageURL``) are copied as
they are: EKS-A resolves them from its release bundle when they are empty,
and ``overrides`` patch the Cluster only.

The kubeconfig of an EKS-A cluster is kept by its Cluster API objects in
namespace ``eksa-system``, not in the Cluster's namespace.

In place (strategy InPlace), ``spec.kubernetesVersion`` moves one minor at a
time, never down (EKS-A's webhook refuses anything else). Worker groups that pin
their own ``kubernetesVersion`` are left where they are: moving them is a choice
about those nodes the user made by pinning, so a bump that would leave one more
than two minors behind is refused, naming the group, instead of dragging it
along. A rollout shows as Ready=False with reason ``RollingUpgradeInProgress``
(or ``InPlaceUpgradeInProgress``) and as an ``observedGeneration`` behind.

The versions EKS-A can build are those of its release's ``Bundles``
(``spec.versionsBundles[].kubeVersion``), found through the Cluster's
``bundlesRef`` or its ``eksaVersion``'s ``EKSARelease`` in ``eksa-system``. A
Bundles object never changes once released, so what was read is kept for the
provider's life; a missing one is looked for again after a minute.

Green's worker capacity is each worker group's ``count`` times its machine
config's size: vSphere ``numCPUs``/``memoryMiB``, Nutanix
``vcpusPerSocket`` x ``vcpuSockets``/``memorySize``. CloudStack (a compute
offering), Snow (an instance type), Tinkerbell (the hardware itself) and Docker
(the host) do not state a size in the objects, so there it is unknown and the
detail says why.

Worker pools (strategy NodePools) are entries of
``spec.workerNodeGroupConfigurations``: a new group is a copy of the old one
under the new name at the count asked for, naming the old group's machine
config, an existing one (``machineConfig.name``), or its own copy of the old
group's config (``<cluster>-<group>``, made the way green's copies are, with
``machineConfig.overrides`` merged in). It pins ``kubernetesVersion`` only when
the target is not the cluster's minor (a group may lag by two minors, never
lead). An entry of the new name (the spare group of an earlier rotation, at
count 0, which EKS-A accepts) is rewritten where it stands. The Cluster may have
other writers (eksctl, GitOps), so every write carries the resourceVersion read:
a change made since is a conflict, retried by the next pass. A group's machines
are the Cluster API Machines in ``eksa-system`` labelled with the cluster and
``<cluster>-<group>`` (see ``machines.py``).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bluegreen.api import versions
from bluegreen.api.spec import NodePool
from bluegreen.clusters import machines as eksa_machines
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity, WorkerPool
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import mergepatch, objects, quantity
from bluegreen.preflight import versions as version_rules

GROUP = "anywhere.eks.amazonaws.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTERS = kubeclient.Resource(GROUP, VERSION, "clusters")
SECRETS = kubeclient.Resource("", "v1", "secrets")
BUNDLES = kubeclient.Resource(GROUP, VERSION, "bundles")
RELEASES = kubeclient.Resource(GROUP, VERSION, "eksareleases")
RELEASE_NAMESPACE = "eksa-system"
VERSION_FIELD = "spec.kubernetesVersion"
OFFERED_RETRY_SECONDS = 60.0
# Reasons EKS-A gives Ready/ControlPlaneReady/WorkersReady while nodes move to a new spec.
ROLLING_REASONS = frozenset({"RollingUpgradeInProgress", "InPlaceUpgradeInProgress"})
KUBECONFIG_NAMESPACE = "eksa-system"
KUBECONFIG_KEY = "value"
CLONED_FROM = objects.CLONED_FROM
ENDPOINT_OVERRIDE = "spec.target.overrides.controlPlaneConfiguration.endpoint.host"
GROUPS_FIELD = "spec.workerNodeGroupConfigurations"
MACHINES_NAMESPACE = "eksa-system"  # where EKS-A keeps every cluster's Cluster API objects

# The machine config kinds of the providers EKS-A has today; any other kind a
# Cluster names is copied by the same rule.
MACHINE_CONFIG_KINDS = (
    "VSphereMachineConfig",
    "NutanixMachineConfig",
    "TinkerbellMachineConfig",
    "CloudStackMachineConfig",
    "SnowMachineConfig",
)
# Docker is the one provider without an endpoint of its own (EKS-A refuses one).
DATACENTERS_WITHOUT_ENDPOINT = frozenset({"DockerDatacenterConfig"})

_NOT_CLONED_ANNOTATIONS = (
    "anywhere.eks.amazonaws.com/paused",
    "anywhere.eks.amazonaws.com/managed-by-cli",
    "anywhere.eks.amazonaws.com/tinkerbell-bootstrap-ip",
)
_OPERATOR_SET_LABELS = (LABEL_UPGRADE,)


def kubeconfig_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-kubeconfig"


def machine_config_resource(kind: str) -> kubeclient.Resource:
    """Where a machine config kind is served: its lowercase plural in the EKS-A group."""
    return kubeclient.Resource(GROUP, VERSION, f"{kind.lower()}s")


@dataclasses.dataclass(frozen=True)
class MachineGroupRef:
    """One ``machineGroupRef`` of a Cluster: which config, for which role, written where."""

    kind: str
    name: str
    role: str  # "cp", "etcd" or the worker node group's name
    field: str  # e.g. "spec.workerNodeGroupConfigurations[0].machineGroupRef"

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


class EksaClusterProvider:
    """ClusterProvider for EKS Anywhere ``Cluster`` objects on the management cluster."""

    def __init__(self, *, client: kubeclient.KubeClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._machines = eksa_machines.Machines(client=client)
        # Bundles source (see _bundles_key) -> (kubeVersions or None, when read)
        self._offered: dict[tuple[str, ...], tuple[tuple[str, ...] | None, float]] = {}

    async def observe(self, *, namespace: str, name: str) -> ClusterObservation:
        secret_name = kubeconfig_secret_name(name)
        cluster, secret = await asyncio.gather(  # one round trip, as for Cluster API
            self._client.get(CLUSTERS, namespace=namespace, name=name),
            self._client.get(SECRETS, namespace=KUBECONFIG_NAMESPACE, name=secret_name),
        )
        if cluster is None:
            return ClusterObservation(name=name, exists=False, reason=f"Cluster {namespace}/{name} does not exist")
        has_kubeconfig = secret is not None and KUBECONFIG_KEY in (secret.get("data") or {})
        observation = observe_cluster(cluster, kubeconfig_secret=secret_name if has_kubeconfig else None)
        return dataclasses.replace(observation, offered_versions=await self._offered_versions(cluster))

    async def preflight(
        self, *, namespace: str, blue_name: str, green_name: str, overrides: dict[str, Any]
    ) -> list[str]:
        blue = await self._client.get(CLUSTERS, namespace=namespace, name=blue_name)
        if blue is None:
            return []  # the engine reports a missing blue itself
        problems = blue_problems(blue)
        problems.extend(override_problems(overrides))
        refs = machine_group_refs(blue)
        found = await self._machine_configs(namespace, refs)
        problems.extend(
            f"{ref.kind} {namespace}/{ref.name}, named by Cluster {namespace}/{blue_name} at {ref.field}, "
            "does not exist; create it or correct the reference on blue"
            for ref in _distinct(refs) if found[ref.key] is None
        )
        if problems:
            return problems
        version = str((blue.get("spec") or {}).get("kubernetesVersion") or "")
        try:
            plan = plan_green(blue, machine_configs=found, green_name=green_name, version=version,
                              overrides=overrides, labels={})
        except ClusterProviderError as exc:
            return [str(exc)]
        problems.extend(endpoint_problems(blue, plan.cluster, green_name=green_name))
        problems.extend(await self._endpoint_taken(plan.cluster, blue=blue))
        problems.extend(await self._names_taken(namespace, plan))
        problems.extend(await self._referenced_by_overrides(namespace, plan))
        return problems

    async def provision_green(
        self,
        *,
        namespace: str,
        blue_name: str,
        green_name: str,
        version: str,
        overrides: dict[str, Any],
        labels: dict[str, str],
    ) -> str | None:
        if await self._client.get(CLUSTERS, namespace=namespace, name=green_name) is not None:
            return None
        blue = await self._client.get(CLUSTERS, namespace=namespace, name=blue_name)
        if blue is None:
            raise ClusterProviderError(
                f"blue Cluster {namespace}/{blue_name} does not exist; check spec.cluster.name and "
                "spec.cluster.namespace"
            )
        refs = machine_group_refs(blue)
        found = await self._machine_configs(namespace, refs)
        plan = plan_green(blue, machine_configs=found, green_name=green_name, version=version,
                          overrides=overrides, labels=labels)
        problems = [*blue_problems(blue), *endpoint_problems(blue, plan.cluster, green_name=green_name)]
        if problems:
            raise ClusterProviderError("; ".join(problems))

        # Machine configs first: a Cluster whose configs are missing is marked failed by the controller.
        created: list[str] = []
        for config in plan.machine_configs:
            kind, config_name = str(config["kind"]), objects.name_of(config)
            resource = machine_config_resource(kind)
            existing = await self._client.get(resource, namespace=namespace, name=config_name)
            if existing is not None:
                _check_ours(existing, kind=kind, namespace=namespace, labels=labels)
                continue
            try:
                await self._client.create(resource, config, namespace=namespace)
            except kubeclient.ConflictError:
                continue  # created by an earlier pass whose answer was lost
            created.append(f"{kind} {config_name}")
        try:
            await self._client.create(CLUSTERS, plan.cluster, namespace=namespace)
        except kubeclient.ConflictError:
            return None
        detail = (f"created Cluster {namespace}/{green_name} at {plan.cluster['spec']['kubernetesVersion']}, "
                  f"cloned from {blue_name}")
        if created:
            detail += f", with {', '.join(created)}"
        return detail

    async def set_version(self, *, namespace: str, name: str, version: str) -> str | None:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        wanted = next_version(cluster, version)
        if wanted is None:
            return None
        current = _spec(cluster).get("kubernetesVersion")
        # With the resourceVersion read, a change made since is a conflict (retried), not overwritten.
        await self._client.patch(CLUSTERS, namespace=namespace, name=name, body={
            "metadata": {"resourceVersion": objects.metadata(cluster).get("resourceVersion")},
            "spec": {"kubernetesVersion": wanted},
        })
        return f"set {VERSION_FIELD} of Cluster {namespace}/{name} from {current} to {wanted}"

    async def green_capacity(self, *, namespace: str, blue_name: str, overrides: dict[str, Any]) -> WorkerCapacity:
        blue = await self._client.get(CLUSTERS, namespace=namespace, name=blue_name)
        if blue is None:
            raise ClusterProviderError(
                f"blue Cluster {namespace}/{blue_name} does not exist; check spec.cluster.name and "
                "spec.cluster.namespace"
            )
        found = await self._machine_configs(namespace, machine_group_refs(blue))
        version = str(_spec(blue).get("kubernetesVersion") or "")
        plan = plan_green(blue, machine_configs=found, green_name=f"{blue_name}-green", version=version,
                          overrides=overrides, labels={})
        configs: dict[tuple[str, str], Mapping[str, Any] | None] = {
            (str(config["kind"]), objects.name_of(config)): config for config in plan.machine_configs
        }
        # A group an override points at another, existing config is sized by that config.
        others = [ref for ref in machine_group_refs(plan.cluster) if ref.key not in configs]
        configs.update(await self._machine_configs(namespace, others))
        return worker_capacity(plan.cluster, machine_configs=configs)

    async def worker_pools(self, *, namespace: str, name: str) -> dict[str, WorkerPool]:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            return {}
        groups = worker_groups(cluster)
        if not groups:
            return {}
        found = await self._machines.by_label(namespace=MACHINES_NAMESPACE,
                                              selector={eksa_machines.CLUSTER_NAME_LABEL: name},
                                              label=eksa_machines.DEPLOYMENT_LABEL)
        pools: dict[str, WorkerPool] = {}
        for group in groups:
            group_name = str(group.get("name") or "")
            machines = found.get(deployment_name(name, group_name), [])
            count = group.get("count")
            ref = _ref(group)
            pinned = group.get("kubernetesVersion")
            pools[group_name] = WorkerPool(
                name=group_name, replicas=count if isinstance(count, int) else len(machines),
                machines=len(machines), nodes=eksa_machines.node_names(machines),
                template=f"{ref[0]}/{ref[1]}" if ref else "", version=str(pinned) if pinned is not None else None,
            )
        return pools

    async def pool_problems(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                            version: str) -> list[str]:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            return [f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"]
        problems = pool_problems(cluster, pool=pool, source=source, new=new, version=version)
        if problems:
            return problems
        try:
            await self._pool_machine_config(cluster, pool=pool, source=source, new=new, write=False)
        except ClusterProviderError as exc:
            return [str(exc)]
        return []

    async def ensure_pool(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                          version: str, replicas: int) -> str | None:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        problems = pool_problems(cluster, pool=pool, source=source, new=new, version=version)
        if problems:
            raise ClusterProviderError("; ".join(problems))
        # The machine config first: a group naming a config that does not exist fails the Cluster.
        ref, config_detail = await self._pool_machine_config(cluster, pool=pool, source=source, new=new, write=True)
        group = pool_group(cluster, pool=pool, source=source, new=new, version=version, replicas=replicas,
                           machine_config=ref)
        groups = worker_groups(cluster)
        existing = next((item for item in groups if item.get("name") == new), None)
        parts = [config_detail] if config_detail else []
        if existing != group:
            await self._write_groups(cluster, replace_group(groups, group))
            where = f"{GROUPS_FIELD} of Cluster {namespace}/{name}"
            shape = (f"{ref[0]} {ref[1]}, " if ref else "") + f"count {replicas}"
            if group.get("kubernetesVersion") is not None:
                shape += f", kubernetesVersion {group['kubernetesVersion']}"
            if existing is None:
                parts.insert(0, f"added worker group {new} to {where} ({shape}), copied from {source}")
            else:
                parts.insert(0, f"rewrote worker group {new} in {where} as a copy of {source} ({shape})")
        return "; ".join(parts) or None

    async def scale_pool(self, *, namespace: str, name: str, pool: str, replicas: int) -> str | None:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        groups = worker_groups(cluster)
        group = next((item for item in groups if item.get("name") == pool), None)
        if group is None:
            raise ClusterProviderError(f"Cluster {namespace}/{name}: {_missing_group(cluster, pool)}")
        if group.get("count") == replicas:
            return None
        before = group.get("count")
        await self._write_groups(cluster, replace_group(groups, {**group, "count": replicas}))
        return (f"scaled worker group {pool} of Cluster {namespace}/{name} from count "
                f"{before if before is not None else 'unset'} to {replicas} ({GROUPS_FIELD}[].count)")

    async def _write_groups(self, cluster: Mapping[str, Any], groups: list[dict[str, Any]]) -> None:
        meta = objects.metadata(cluster)
        # The list is replaced whole; with the resourceVersion read, a change made since (by eksctl,
        # by GitOps, by EKS-A's defaulting) is a conflict, retried by the next pass, not overwritten.
        await self._client.patch(CLUSTERS, namespace=str(meta.get("namespace") or ""), name=str(meta["name"]), body={
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "spec": {"workerNodeGroupConfigurations": groups},
        })

    async def _pool_machine_config(self, cluster: Mapping[str, Any], *, pool: NodePool, source: str, new: str,
                                   write: bool) -> tuple[tuple[str, str] | None, str | None]:
        """The machine config group ``new`` names, and (with ``write``) the clone made or updated for it, with a
        journal detail. ClusterProviderError when the config asked for cannot be had."""
        namespace = str(objects.metadata(cluster).get("namespace") or "")
        cluster_name = objects.name_of(cluster)
        source_ref = _ref(source_group(cluster, source))
        change = pool.machine_config
        if change is None or (change.name is None and not change.overrides):
            return source_ref, None
        assert source_ref is not None  # pool_problems refused a change for a group without a machine config
        kind = source_ref[0]
        resource = machine_config_resource(kind)
        if change.name is not None:
            if await self._client.get(resource, namespace=namespace, name=change.name) is None:
                raise ClusterProviderError(
                    f"{pool.field('machineConfig.name')}: {kind} {namespace}/{change.name} does not exist "
                    f"(the new group's config must be of the old group's kind, {kind}); create it or correct the name"
                )
            return (kind, change.name), None

        clone_name = pool_machine_config_name(cluster_name, new)
        users = [ref.field for ref in machine_group_refs(cluster) if ref.key == (kind, clone_name) and ref.role != new]
        if users:
            raise ClusterProviderError(
                f"{kind} {namespace}/{clone_name}, where the new group's copy of its machine config goes, is used by "
                f"{', '.join(users)}: changing it would roll those machines; point them at another config first"
            )
        source_config = await self._client.get(resource, namespace=namespace, name=source_ref[1])
        if source_config is None:
            raise ClusterProviderError(
                f"{kind} {namespace}/{source_ref[1]}, the machine config of worker group {source}, does not exist, "
                f"so there is nothing to copy for {pool.field('machineConfig.overrides')}; create it or name "
                f"an existing config in {pool.field('machineConfig.name')}"
            )
        wanted = pool_machine_config(source_config, cluster=cluster, name=clone_name, overrides=change.overrides)
        existing = await self._client.get(resource, namespace=namespace, name=clone_name)
        if existing is not None and CLONED_FROM not in (objects.metadata(existing).get("annotations") or {}):
            raise ClusterProviderError(
                f"{kind} {namespace}/{clone_name} already exists and was not made by bluegreen (no {CLONED_FROM} "
                f"annotation), and the new group's copy would take its place: rename or delete it, or name it in "
                f"{pool.field('machineConfig.name')} to use it as it is"
            )
        if not write:
            return (kind, clone_name), None
        if existing is None:
            try:
                await self._client.create(resource, wanted, namespace=namespace)
            except kubeclient.ConflictError:
                return (kind, clone_name), None  # created by an earlier pass whose answer was lost; checked next pass
            return (kind, clone_name), f"created {kind} {namespace}/{clone_name}, a copy of {source_ref[1]}"
        spec_change = mergepatch.merge_diff(_spec(existing), _spec(wanted))
        origin = objects.metadata(wanted)["annotations"][CLONED_FROM]
        if not spec_change and objects.metadata(existing)["annotations"].get(CLONED_FROM) == origin:
            return (kind, clone_name), None
        await self._client.patch(resource, namespace=namespace, name=clone_name, body={
            "metadata": {"resourceVersion": objects.metadata(existing).get("resourceVersion"),
                         "annotations": {CLONED_FROM: origin}},
            "spec": spec_change,
        })
        return (kind, clone_name), f"updated {kind} {namespace}/{clone_name} to a copy of {source_ref[1]}"

    async def delete(self, *, namespace: str, name: str) -> str | None:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            return None
        parts: list[str] = []
        if not objects.metadata(cluster).get("deletionTimestamp") and await self._client.delete(
            CLUSTERS, namespace=namespace, name=name, propagation_policy="Background"
        ):
            parts.append(f"deleted Cluster {namespace}/{name}")
        # Its machine configs go too, but only those bluegreen made and nothing else uses:
        # a config a person wrote, or one another Cluster names, stays.
        others: dict[tuple[str, str], str] = {}
        for other in await self._client.list(CLUSTERS, namespace=namespace):
            if objects.name_of(other) != name:
                for ref in machine_group_refs(other):
                    others.setdefault(ref.key, objects.name_of(other))
        deleted: list[str] = []
        kept: list[str] = []
        for ref in _distinct(machine_group_refs(cluster)):
            resource = machine_config_resource(ref.kind)
            config = await self._client.get(resource, namespace=namespace, name=ref.name)
            if config is None:
                continue
            if ref.key in others:
                kept.append(f"{ref.kind} {ref.name} (also used by Cluster {namespace}/{others[ref.key]})")
            elif LABEL_UPGRADE not in objects.labels(config):
                kept.append(f"{ref.kind} {ref.name} (not created by bluegreen)")
            elif await self._client.delete(resource, namespace=namespace, name=ref.name):
                deleted.append(f"{ref.kind} {ref.name}")
        if deleted:
            parts.append(f"deleted {', '.join(deleted)}")
        if kept and parts:
            parts.append(f"kept {', '.join(kept)}")
        return "; ".join(parts) or None

    def kubeconfig_secret_ref(self, *, namespace: str, name: str) -> tuple[str, str, str]:
        return (KUBECONFIG_NAMESPACE, kubeconfig_secret_name(name), KUBECONFIG_KEY)

    # --- reads -----------------------------------------------------------------------------------

    async def _offered_versions(self, cluster: Mapping[str, Any]) -> tuple[str, ...] | None:
        key = bundles_key(cluster)
        if key is None:
            return None
        now = self._clock()
        cached = self._offered.get(key)
        if cached is not None and (cached[0] is not None or now - cached[1] < OFFERED_RETRY_SECONDS):
            return cached[0]
        found = await self._read_offered(key)
        self._offered[key] = (found, now)
        return found

    async def _read_offered(self, key: tuple[str, ...]) -> tuple[str, ...] | None:
        if key[0] == "release":
            release = await self._client.get(RELEASES, namespace=RELEASE_NAMESPACE, name=release_name(key[1]))
            ref = _spec(release or {}).get("bundlesRef")
            if not isinstance(ref, dict) or not ref.get("name"):
                return None
            where = (str(ref.get("namespace") or RELEASE_NAMESPACE), str(ref["name"]))
        else:
            where = (key[1], key[2])
        bundles = await self._client.get(BUNDLES, namespace=where[0], name=where[1])
        return None if bundles is None else offered_kube_versions(bundles)

    async def _machine_configs(
        self, namespace: str, refs: Iterable[MachineGroupRef]
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        found: dict[tuple[str, str], dict[str, Any] | None] = {}
        for ref in _distinct(refs):
            found[ref.key] = await self._client.get(
                machine_config_resource(ref.kind), namespace=namespace, name=ref.name
            )
        return found

    async def _endpoint_taken(self, green: Mapping[str, Any], *, blue: Mapping[str, Any]) -> list[str]:
        host = endpoint_host(green)
        if not host or host == endpoint_host(blue):
            return []  # no endpoint, or blue's: endpoint_problems says so
        green_key = (objects.metadata(green).get("namespace"), objects.name_of(green))
        for other in await self._client.list(CLUSTERS):
            other_key = (objects.metadata(other).get("namespace"), objects.name_of(other))
            if other_key != green_key and endpoint_host(other) == host:
                return [
                    f"{ENDPOINT_OVERRIDE} is {host!r}, already the control-plane endpoint of Cluster "
                    f"{other_key[0]}/{other_key[1]}; pick an address no cluster uses"
                ]
        return []

    async def _names_taken(self, namespace: str, plan: GreenPlan) -> list[str]:
        problems = []
        for config in plan.machine_configs:
            kind, config_name = str(config["kind"]), objects.name_of(config)
            existing = await self._client.get(machine_config_resource(kind), namespace=namespace, name=config_name)
            if existing is not None and LABEL_UPGRADE not in objects.labels(existing):
                problems.append(
                    f"{kind} {namespace}/{config_name} already exists and was not created by bluegreen; green's "
                    "copy would take its place: rename or delete it, or set spec.target.greenName"
                )
        return problems

    async def _referenced_by_overrides(self, namespace: str, plan: GreenPlan) -> list[str]:
        """Configs green names that are not copies of blue's (an override pointed elsewhere) must exist."""
        copies = {(str(config["kind"]), objects.name_of(config)) for config in plan.machine_configs}
        problems = []
        for ref in _distinct(machine_group_refs(plan.cluster)):
            if ref.key in copies:
                continue
            if await self._client.get(machine_config_resource(ref.kind), namespace=namespace, name=ref.name) is None:
                problems.append(
                    f"spec.target.overrides sets {ref.field} to {ref.kind} {namespace}/{ref.name}, which does "
                    "not exist; create it or drop that override"
                )
        return problems


# --- pure parts ----------------------------------------------------------------------------------


def _spec(cluster: Mapping[str, Any]) -> dict[str, Any]:
    spec = cluster.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ref(node: Any) -> tuple[str, str] | None:
    if not isinstance(node, dict):
        return None
    ref = node.get("machineGroupRef")
    if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
        return (str(ref["kind"]), str(ref["name"]))
    return None


def machine_group_refs(cluster: Mapping[str, Any]) -> list[MachineGroupRef]:
    """Every ``machineGroupRef`` of the Cluster: control plane, then external etcd, then worker groups."""
    spec = _spec(cluster)
    refs: list[MachineGroupRef] = []
    control_plane = _ref(spec.get("controlPlaneConfiguration"))
    if control_plane:
        refs.append(MachineGroupRef(*control_plane, role="cp",
                                    field="spec.controlPlaneConfiguration.machineGroupRef"))
    etcd = _ref(spec.get("externalEtcdConfiguration"))
    if etcd:
        refs.append(MachineGroupRef(*etcd, role="etcd", field="spec.externalEtcdConfiguration.machineGroupRef"))
    for index, group in enumerate(spec.get("workerNodeGroupConfigurations") or []):
        worker = _ref(group)
        if worker:
            refs.append(MachineGroupRef(*worker, role=str(group.get("name") or f"md-{index}"),
                                        field=f"spec.workerNodeGroupConfigurations[{index}].machineGroupRef"))
    return refs


def _distinct(refs: Iterable[MachineGroupRef]) -> list[MachineGroupRef]:
    seen: dict[tuple[str, str], MachineGroupRef] = {}
    for ref in refs:
        seen.setdefault(ref.key, ref)
    return list(seen.values())


def green_machine_config_names(refs: Iterable[MachineGroupRef], *, green_name: str) -> dict[tuple[str, str], str]:
    """Green's name for each of blue's machine configs: ``<green>-<role of its first use>``, unique."""
    names: dict[tuple[str, str], str] = {}
    for ref in _distinct(refs):
        candidate = f"{green_name}-{ref.role}"
        suffix = 2
        while candidate in names.values():
            candidate = f"{green_name}-{ref.role}-{suffix}"
            suffix += 1
        names[ref.key] = candidate
    return names


def endpoint_host(cluster: Mapping[str, Any]) -> str | None:
    control_plane = _spec(cluster).get("controlPlaneConfiguration")
    endpoint = control_plane.get("endpoint") if isinstance(control_plane, dict) else None
    host = endpoint.get("host") if isinstance(endpoint, dict) else None
    return str(host) if host else None


def datacenter_kind(cluster: Mapping[str, Any]) -> str:
    ref = _spec(cluster).get("datacenterRef")
    return str(ref.get("kind") or "") if isinstance(ref, dict) else ""


def eksa_version_string(version: str) -> str:
    """``"1.31"`` from any accepted form (``v1.31.2`` too): EKS-A takes major.minor as a string."""
    parsed = versions.parse_version(version)
    return f"{parsed.major}.{parsed.minor}"


def _clone_metadata(
    obj: Mapping[str, Any], *, new_name: str, blue_name: str, green_name: str, labels: Mapping[str, str],
    cloned_from: str,
) -> dict[str, Any]:
    return objects.clone_metadata(obj, new_name=new_name, blue_name=blue_name, green_name=green_name, labels=labels,
                                  cloned_from=cloned_from, drop_labels=_OPERATOR_SET_LABELS,
                                  drop_annotations=_NOT_CLONED_ANNOTATIONS)


@dataclasses.dataclass(frozen=True)
class GreenPlan:
    """What to create for green, in order: the machine configs, then the Cluster."""

    machine_configs: tuple[dict[str, Any], ...]
    cluster: dict[str, Any]


def plan_green(
    blue: Mapping[str, Any],
    *,
    machine_configs: Mapping[tuple[str, str], Mapping[str, Any] | None],
    green_name: str,
    version: str,
    overrides: Mapping[str, Any],
    labels: Mapping[str, str],
) -> GreenPlan:
    """Green's Cluster and machine configs, cloned from blue and its configs (see the module docstring).

    ``machine_configs`` holds blue's configs by (kind, name), None for one that
    does not exist. Only the copies green still names after ``overrides`` are
    planned.
    """
    blue_meta = objects.metadata(blue)
    blue_name = objects.name_of(blue)
    namespace = str(blue_meta.get("namespace") or "")
    refs = machine_group_refs(blue)
    missing = [f"{ref.kind} {namespace}/{ref.name}" for ref in _distinct(refs) if machine_configs.get(ref.key) is None]
    if missing:
        raise ClusterProviderError(
            f"Cluster {namespace}/{blue_name} names machine configs that do not exist: {', '.join(missing)}; "
            "create them or correct blue's machineGroupRefs"
        )
    try:
        green_version = eksa_version_string(version)
    except ValueError as exc:
        raise ClusterProviderError(str(exc)) from None
    renamed = green_machine_config_names(refs, green_name=green_name)

    green = _clone_metadata(blue, new_name=green_name, blue_name=blue_name, green_name=green_name, labels=labels,
                            cloned_from=blue_name)
    spec = copy.deepcopy(_spec(green))
    spec["kubernetesVersion"] = green_version
    for node in (spec.get("controlPlaneConfiguration"), spec.get("externalEtcdConfiguration"),
                 *(spec.get("workerNodeGroupConfigurations") or [])):
        key = _ref(node)
        if key is not None and isinstance(node, dict):
            node["machineGroupRef"] = {**node["machineGroupRef"], "name": renamed[key]}
    for group in spec.get("workerNodeGroupConfigurations") or []:
        if isinstance(group, dict) and group.get("kubernetesVersion") is not None:
            group["kubernetesVersion"] = green_version
    patched = mergepatch.merge_patch(spec, dict(overrides)) if overrides else spec
    if not isinstance(patched, dict) or not isinstance(patched.get("controlPlaneConfiguration"), dict):
        raise ClusterProviderError(
            "spec.target.overrides must not remove spec.controlPlaneConfiguration from the cloned Cluster"
        )
    green["spec"] = patched

    used = {ref.key for ref in machine_group_refs(green)}
    clones = []
    for (kind, blue_config), green_config in renamed.items():
        if (kind, green_config) not in used:
            continue  # an override points green elsewhere
        source = machine_configs[(kind, blue_config)]
        assert source is not None
        clone = _clone_metadata(source, new_name=green_config, blue_name=blue_name, green_name=green_name,
                                labels=labels, cloned_from=blue_config)
        clone["apiVersion"] = str(source.get("apiVersion") or API_VERSION)
        clone["kind"] = kind
        clone["metadata"]["namespace"] = namespace
        clones.append(clone)
    return GreenPlan(machine_configs=tuple(clones), cluster=green)


def blue_problems(blue: Mapping[str, Any]) -> list[str]:
    """What makes blue impossible to clone, each naming the fix."""
    name = objects.name_of(blue)
    where = f"Cluster {objects.metadata(blue).get('namespace', '')}/{name}"
    management = _spec(blue).get("managementCluster")
    manager = management.get("name") if isinstance(management, dict) else None
    if not manager or manager == name:
        # EKS-A defaults managementCluster to the cluster itself.
        return [
            f"{where} is a management cluster (spec.managementCluster.name is {manager or 'unset'}, i.e. itself); "
            "bluegreen replaces workload clusters only: upgrade the management cluster in place "
            "(eksctl anywhere upgrade cluster)"
        ]
    if not isinstance(_spec(blue).get("controlPlaneConfiguration"), dict):
        return [f"{where} has no spec.controlPlaneConfiguration; it cannot be cloned"]
    return []


def override_problems(overrides: Mapping[str, Any]) -> list[str]:
    """Overrides that would contradict the rest of the spec."""
    problems = []
    if "kubernetesVersion" in overrides:
        problems.append("spec.target.overrides.kubernetesVersion: the version comes from "
                        "spec.target.kubernetesVersion; remove it from the overrides")
    if "managementCluster" in overrides:
        problems.append("spec.target.overrides.managementCluster: green is created on, and managed by, blue's "
                        "management cluster; remove it from the overrides")
    for index, group in enumerate(overrides.get("workerNodeGroupConfigurations") or []):
        pinned = group.get("kubernetesVersion") if isinstance(group, dict) else None
        if pinned is not None and not isinstance(pinned, str):
            problems.append(
                f"spec.target.overrides.workerNodeGroupConfigurations[{index}].kubernetesVersion is {pinned!r}, "
                f'not a string: quote it ("1.31"; unquoted YAML turns 1.30 into 1.3)'
            )
    return problems


def endpoint_problems(blue: Mapping[str, Any], green: Mapping[str, Any], *, green_name: str) -> list[str]:
    """Green's control-plane endpoint must be its own wherever the provider gives each cluster one."""
    kind = datacenter_kind(green)
    blue_host = endpoint_host(blue)
    green_host = endpoint_host(green)
    if kind in DATACENTERS_WITHOUT_ENDPOINT:
        if green_host:
            return [f"{kind} clusters take no control-plane endpoint; remove "
                    "spec.target.overrides.controlPlaneConfiguration.endpoint"]
        return []
    if green_host and green_host != blue_host:
        return []
    if not green_host:
        return [
            f"green {green_name} has no control-plane endpoint, and {kind or 'this provider'} clusters need one "
            f"of their own (a VIP the control plane owns); set {ENDPOINT_OVERRIDE} to a free address"
        ]
    return [
        f"green {green_name} would share blue's control-plane endpoint {blue_host!r}: on {kind or 'this provider'} "
        "controlPlaneConfiguration.endpoint.host is a VIP each cluster owns, and it cannot change later; set "
        f"{ENDPOINT_OVERRIDE} to a free address, different from blue's"
    ]


def _check_ours(existing: Mapping[str, Any], *, kind: str, namespace: str, labels: Mapping[str, str]) -> None:
    have = objects.labels(existing)
    if any(have.get(key) != value for key, value in labels.items()):
        raise ClusterProviderError(
            f"{kind} {namespace}/{objects.name_of(existing)} already exists and was not created by this upgrade; "
            "rename or delete it, or set spec.target.greenName"
        )


def observe_cluster(cluster: Mapping[str, Any], *, kubeconfig_secret: str | None) -> ClusterObservation:
    """Judge an EKS-A Cluster as read: ready is generation observed, ``Ready=True`` and no failureMessage."""
    meta = objects.metadata(cluster)
    status = cluster.get("status") if isinstance(cluster.get("status"), dict) else {}
    assert isinstance(status, dict)
    version = _spec(cluster).get("kubernetesVersion")
    ready_condition = objects.condition(cluster, "Ready")
    condition_true = ready_condition is not None and ready_condition.get("status") == "True"
    observed = objects.generation_observed(cluster)
    deleting = bool(meta.get("deletionTimestamp"))
    failure = status.get("failureMessage")
    ready = condition_true and observed and not deleting and not failure

    reasons: list[str] = []
    if failure:
        reason = status.get("failureReason")
        reasons.append(f"failure{f' ({reason})' if reason else ''}: {failure}")
    if not ready:
        if deleting:
            reasons.append("being deleted")
        if not condition_true:
            reasons.append(objects.condition_text(ready_condition, "Ready"))
        if not observed:
            reasons.append(
                f"the EKS-A controller has not yet observed generation {meta.get('generation')} "
                f"(status is for {status.get('observedGeneration', 'none')})"
            )
    return ClusterObservation(
        name=str(meta.get("name", "")),
        exists=True,
        ready=ready,
        version=str(version) if version else None,
        reason="; ".join(reasons),
        kubeconfig_secret=kubeconfig_secret,
        deleting=deleting,
        failed=bool(failure),
        managed_by=objects.labels(cluster).get(LABEL_UPGRADE),
        rolling_out=not deleting and not failure and rolling_out(cluster),
        worker_versions=worker_versions(cluster),
    )


def rolling_out(cluster: Mapping[str, Any]) -> bool:
    """A running cluster moving to a changed spec: a rolling reason, or a generation not yet observed.

    Before the control plane is first initialized the same signals mean the cluster is being built.
    """
    initialized = objects.condition(cluster, "ControlPlaneInitialized")
    if initialized is None or initialized.get("status") != "True":
        return False
    for condition_type in ("Ready", "ControlPlaneReady", "WorkersReady"):
        found = objects.condition(cluster, condition_type)
        if found is not None and found.get("status") != "True" and found.get("reason") in ROLLING_REASONS:
            return True
    return not objects.generation_observed(cluster)


def worker_versions(cluster: Mapping[str, Any]) -> dict[str, str]:
    """Worker groups that pin their own ``kubernetesVersion``, by group name."""
    pinned: dict[str, str] = {}
    for index, group in enumerate(_spec(cluster).get("workerNodeGroupConfigurations") or []):
        if isinstance(group, dict) and group.get("kubernetesVersion") is not None:
            pinned[str(group.get("name") or f"md-{index}")] = str(group["kubernetesVersion"])
    return pinned


def next_version(cluster: Mapping[str, Any], version: str) -> str | None:
    """What to write to ``spec.kubernetesVersion`` for ``version`` in place; None if the cluster already asks
    for that minor. Raises ClusterProviderError for what EKS-A would refuse, and for a bump that would leave a
    pinned worker group too far behind."""
    meta = objects.metadata(cluster)
    where = f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}"
    current = _spec(cluster).get("kubernetesVersion")
    if not isinstance(current, str) or not current:
        raise ClusterProviderError(
            f'{where} has {VERSION_FIELD} {current!r}, not a string "X.Y": quote it on the Cluster first'
        )
    try:
        wanted = eksa_version_string(version)
        if versions.parse_version(current).minor_key == versions.parse_version(wanted).minor_key:
            return None
        path = version_rules.in_place_path(current=current, target=version)
    except ValueError as exc:
        raise ClusterProviderError(f"{where}: {exc}") from None
    if len(path) > 1:
        raise ClusterProviderError(
            f"{where} runs {current}; {wanted} is {len(path)} minors up and EKS Anywhere upgrades one minor at a "
            f"time ({VERSION_FIELD}): go through {', '.join(path)} one at a time (strategy InPlace does), or use "
            "strategy BlueGreen to start green at the target directly"
        )
    lagging = version_rules.check_worker_skew(control_plane=wanted, workers=worker_versions(cluster))
    if lagging:
        raise ClusterProviderError(
            f"{where}: {VERSION_FIELD} {wanted} would leave pinned worker groups behind: {'; '.join(lagging)} "
            "(spec.workerNodeGroupConfigurations[].kubernetesVersion; bluegreen does not move a pinned group)"
        )
    return wanted


def bundles_key(cluster: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Where the Cluster's Bundles are found: ``("bundles", namespace, name)`` from ``spec.bundlesRef``,
    ``("release", eksaVersion)`` through its EKSARelease, or None when the Cluster names neither."""
    spec = _spec(cluster)
    ref = spec.get("bundlesRef")
    if isinstance(ref, dict) and ref.get("name"):
        namespace = ref.get("namespace") or objects.metadata(cluster).get("namespace") or "default"
        return ("bundles", str(namespace), str(ref["name"]))
    if spec.get("eksaVersion"):
        return ("release", str(spec["eksaVersion"]))
    return None


def release_name(eksa_version: str) -> str:
    """The EKSARelease of an EKS-A version: ``v0.22.0`` -> ``eksa-v0-22-0``."""
    return "eksa-" + eksa_version.replace(".", "-").replace("+", "-").lower()


def offered_kube_versions(bundles: Mapping[str, Any]) -> tuple[str, ...]:
    """The Kubernetes versions a Bundles object carries (``spec.versionsBundles[].kubeVersion``), sorted."""
    found = {str(item["kubeVersion"]) for item in _spec(bundles).get("versionsBundles") or []
             if isinstance(item, dict) and item.get("kubeVersion")}
    return tuple(sorted(found, key=_version_order))


def _version_order(text: str) -> tuple[int, int, int, str]:
    try:
        parsed = versions.parse_version(text)
    except ValueError:
        return (1 << 30, 0, 0, text)
    return (parsed.major, parsed.minor, parsed.patch or 0, text)


def machine_size(kind: str, spec: Mapping[str, Any]) -> tuple[int, int] | str:
    """A machine's CPU (millicores) and memory (bytes) from its machine config, or why they are unknown."""
    if kind == "VSphereMachineConfig":
        cpus, memory_mib = spec.get("numCPUs"), spec.get("memoryMiB")
        if isinstance(cpus, int) and isinstance(memory_mib, int):
            return (cpus * 1000, memory_mib * 2**20)
        return "its VSphereMachineConfig does not set numCPUs and memoryMiB"
    if kind == "NutanixMachineConfig":
        per_socket, sockets, memory = spec.get("vcpusPerSocket"), spec.get("vcpuSockets"), spec.get("memorySize")
        if isinstance(per_socket, int) and isinstance(sockets, int) and memory is not None:
            try:
                return (per_socket * sockets * 1000, quantity.to_bytes(memory))
            except ValueError as exc:
                return f"its NutanixMachineConfig memorySize: {exc}"
        return "its NutanixMachineConfig does not set vcpusPerSocket, vcpuSockets and memorySize"
    if kind == "CloudStackMachineConfig":
        offering = spec.get("computeOffering")
        offering = offering.get("name") if isinstance(offering, dict) else None
        return f"CloudStack sizes machines by compute offering ({offering or 'unset'}), which only CloudStack knows"
    if kind == "SnowMachineConfig":
        return f"Snow sizes machines by instance type ({spec.get('instanceType') or 'unset'}), not in the object"
    if kind == "TinkerbellMachineConfig":
        return "Tinkerbell machines are bare metal: their size is the hardware's, not the machine config's"
    return f"bluegreen does not know how {kind} states a machine's size"


def worker_capacity(
    cluster: Mapping[str, Any], *, machine_configs: Mapping[tuple[str, str], Mapping[str, Any] | None]
) -> WorkerCapacity:
    """Worker nodes, CPU and memory a Cluster asks for: each worker group's count times its machine's size."""
    nodes = 0
    cpu: int | None = 0
    memory: int | None = 0
    counted: list[str] = []
    unknown: list[str] = []
    for index, group in enumerate(_spec(cluster).get("workerNodeGroupConfigurations") or []):
        if not isinstance(group, dict):
            continue
        name = str(group.get("name") or f"md-{index}")
        count = group.get("count")
        if not isinstance(count, int):
            # An autoscaled group without count starts at its minCount, as EKS-A defaults it.
            autoscaling = group.get("autoscalingConfiguration")
            minimum = autoscaling.get("minCount") if isinstance(autoscaling, dict) else None
            count = minimum if isinstance(minimum, int) else 1
        nodes += count
        ref = _ref(group)
        if ref is None:
            size: tuple[int, int] | str = (f"{datacenter_kind(cluster) or 'this provider'} machines have no "
                                           "machine config that states their size")
        else:
            config = machine_configs.get(ref)
            size = (f"{ref[0]} {ref[1]} does not exist" if config is None
                    else machine_size(ref[0], _spec(config)))
        if isinstance(size, str):
            unknown.append(f"worker group {name}: {size}")
            counted.append(f"{name}: {count} x (?)")
            continue
        cpu = None if cpu is None else cpu + count * size[0]
        memory = None if memory is None else memory + count * size[1]
        counted.append(f"{name}: {count} x ({size[0]}m cpu, {size[1] / 2**30:g}Gi memory)")
    if unknown:
        cpu = memory = None
    detail = f"from the worker groups' count and machine configs: {', '.join(counted) or 'no worker groups'}"
    if unknown:
        detail += f"; CPU and memory unknown because {'; '.join(unknown)}"
    return WorkerCapacity(nodes=nodes, cpu_millis=cpu, memory_bytes=memory, detail=detail)


# --- worker pools (NodePools) --------------------------------------------------------------------


def worker_groups(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Cluster's ``spec.workerNodeGroupConfigurations``, as read (copies)."""
    return [copy.deepcopy(group) for group in _spec(cluster).get("workerNodeGroupConfigurations") or []
            if isinstance(group, dict)]


def deployment_name(cluster_name: str, group: str) -> str:
    """The MachineDeployment EKS-A makes for a worker group, and the ``cluster.x-k8s.io/deployment-name`` of its
    machines."""
    return f"{cluster_name}-{group}"


def pool_machine_config_name(cluster_name: str, group: str) -> str:
    """Where a worker group's own copy of a machine config goes: ``<cluster>-<group>``, as EKS-A names them."""
    return f"{cluster_name}-{group}"


def source_group(cluster: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The worker group named ``source``; ClusterProviderError naming the groups there are when it is missing."""
    for group in worker_groups(cluster):
        if group.get("name") == source:
            return group
    meta = objects.metadata(cluster)
    raise ClusterProviderError(f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}: "
                               f"{_missing_group(cluster, source)}")


def _missing_group(cluster: Mapping[str, Any], group: str) -> str:
    names = [str(item.get("name")) for item in worker_groups(cluster)]
    return (f"{GROUPS_FIELD} has no worker group named {group} (groups: {', '.join(names) or 'none'}); check "
            "spec.nodePools.pools[].name")


_NOT_OVERRIDDEN = {
    "name": "the groups are named {family}-blue and {family}-green by bluegreen",
    "count": "the new group gets as many nodes as the old one has",
    "machineGroupRef": "set the machine config with machineConfig.name or machineConfig.overrides",
    "kubernetesVersion": "the version comes from spec.target.kubernetesVersion",
    "autoscalingConfiguration": "an autoscaled group is resized by the cluster autoscaler while bluegreen rotates it",
}


def pool_problems(cluster: Mapping[str, Any], *, pool: NodePool, source: str, new: str, version: str) -> list[str]:
    """What stops worker group ``new`` from being made from ``source`` at ``version``, read from the Cluster alone.

    The new group's version may lag the cluster's by two minors at most and never lead it. An autoscaled source
    is refused: EKS-A ignores ``count`` between the autoscaler's bounds, so neither the new group's size nor the
    old group's scale to 0 would hold.
    """
    meta = objects.metadata(cluster)
    where = f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}"
    groups = {str(group.get("name")): group for group in worker_groups(cluster)}
    if source not in groups:
        return [f"{where}: {_missing_group(cluster, source)}"]
    group = groups[source]
    problems: list[str] = []
    for key, why in _NOT_OVERRIDDEN.items():
        if key in pool.overrides:
            problems.append(f"{pool.field('overrides.' + key)}: {why.format(family=pool.family)}; remove it "
                            "from the overrides")
    if group.get("autoscalingConfiguration") is not None:
        problems.append(
            f"{where}: worker group {source} has autoscalingConfiguration ({GROUPS_FIELD}[].autoscalingConfiguration):"
            " the cluster autoscaler sizes it, so bluegreen could neither size the new group nor scale the old one "
            "to 0; remove autoscalingConfiguration (set count) for the rotation and put it back on the new group "
            "afterwards"
        )
    change = pool.machine_config
    if change is not None and (change.name is not None or change.overrides) and _ref(group) is None:
        problems.append(
            f"{pool.field('machineConfig')}: worker group {source} has no machineGroupRef "
            f"({datacenter_kind(cluster) or 'this provider'} groups have no machine config); remove machineConfig"
        )
    current = _spec(cluster).get("kubernetesVersion")
    if not isinstance(current, str) or not current:
        problems.append(f'{where} has {VERSION_FIELD} {current!r}, not a string "X.Y": quote it on the Cluster first')
        return problems
    try:
        eksa_version_string(version)
        lagging = version_rules.check_worker_skew(control_plane=current, workers={new: version})
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return problems
    if lagging:
        problems.append(
            f"{where} runs {current} ({VERSION_FIELD}); spec.target.kubernetesVersion {version} cannot be the new "
            f"worker group's: {'; '.join(lagging)}. A worker group may be up to two minors behind the cluster, never "
            "ahead: upgrade the control plane first (strategy InPlace or BlueGreen)"
        )
    return problems


def pool_group(cluster: Mapping[str, Any], *, pool: NodePool, source: str, new: str, version: str, replicas: int,
               machine_config: tuple[str, str] | None) -> dict[str, Any]:
    """Worker group ``new``: a copy of ``source`` at ``count: replicas`` naming ``machine_config``, with ``pool``'s
    ``overrides``; ``kubernetesVersion`` only where ``version`` is not the cluster's minor."""
    group = source_group(cluster, source)
    group["name"] = new
    group["count"] = replicas
    if machine_config is not None:
        group["machineGroupRef"] = {**(group.get("machineGroupRef") or {}), "kind": machine_config[0],
                                    "name": machine_config[1]}
    patched = mergepatch.merge_patch(group, dict(pool.overrides)) if pool.overrides else group
    if not isinstance(patched, dict):
        raise ClusterProviderError(f"{pool.field('overrides')} must be a mapping")
    patched["name"] = new
    patched["count"] = replicas
    try:
        wanted = eksa_version_string(version)
        same_minor = (versions.parse_version(str(_spec(cluster).get("kubernetesVersion") or "")).minor_key
                      == versions.parse_version(wanted).minor_key)
    except ValueError as exc:
        raise ClusterProviderError(str(exc)) from None
    if same_minor:
        patched.pop("kubernetesVersion", None)
    else:
        patched["kubernetesVersion"] = wanted
    return patched


def replace_group(groups: list[dict[str, Any]], group: dict[str, Any]) -> list[dict[str, Any]]:
    """``groups`` with ``group`` in place of the one of its name, or appended when there is none."""
    if any(item.get("name") == group.get("name") for item in groups):
        return [group if item.get("name") == group.get("name") else item for item in groups]
    return [*groups, group]


def pool_machine_config(source: Mapping[str, Any], *, cluster: Mapping[str, Any], name: str,
                        overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A worker group's own copy of ``source`` under ``name``, with ``overrides`` (a JSON merge patch on the object).

    Its metadata is cloned as green's machine configs are (no paused or CLI annotations, no foreign owners,
    ``bluegreen.io/cloned-from``), and it carries the Cluster's ``bluegreen.io/upgrade`` label when the Cluster has
    one, so that deleting a cluster bluegreen made deletes its pools' configs with it.
    """
    cluster_name = objects.name_of(cluster)
    owner = objects.labels(cluster).get(LABEL_UPGRADE)
    clone = _clone_metadata(source, new_name=name, blue_name=cluster_name, green_name=cluster_name,
                            labels={LABEL_UPGRADE: owner} if owner else {}, cloned_from=objects.name_of(source))
    patched = mergepatch.merge_patch(clone, dict(overrides)) if overrides else clone
    if not isinstance(patched, dict):
        raise ClusterProviderError("spec.nodePools.pools[].machineConfig.overrides must be a mapping")
    meta = patched.setdefault("metadata", {})
    meta.update(name=name, namespace=objects.metadata(cluster).get("namespace"))
    meta.setdefault("annotations", {})[CLONED_FROM] = objects.name_of(source)
    patched["apiVersion"] = str(source.get("apiVersion") or API_VERSION)
    patched["kind"] = str(source.get("kind") or "")
    return patched
