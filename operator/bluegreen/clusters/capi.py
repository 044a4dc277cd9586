"""Cluster API provider: green is a clone of blue's ClusterClass-based ``Cluster``.

Only topology clusters (built from a ClusterClass) can be cloned: their whole
shape is in ``spec.topology`` and the topology controller creates every
machine, template and control plane from it. A cluster assembled by hand from
separate objects has no single definition to copy; it is refused with a
message that says so.

Both API versions are handled: ``cluster.x-k8s.io/v1beta2`` (current, class in
``spec.topology.classRef``, readiness in condition ``Available``) and
``v1beta1`` (deprecated, ``spec.topology.class``/``classNamespace``, condition
``Ready``). Which one to use is learnt once from discovery, v1beta2 first; the
object is then read and written at that version, so it is cloned in the shape
it was read.

What a clone leaves behind: status, server-set metadata, ``controlPlaneEndpoint``
(each cluster gets its own), and ``controlPlaneRef``/``infrastructureRef``
(set by the topology controller to blue's generated objects: copying them would
hand blue's control plane to green).

In place (strategy InPlace), the one field that changes is
``spec.topology.version``, written in blue's own style (``v1.30.4`` -> ``v1.31.0``),
one minor at a time: Cluster API's webhook refuses a downgrade and a jump of two
minors, and refuses a minor bump while the previous one still rolls out. A rollout
is seen in condition ``RollingOut`` (v1beta2, or ``status.v1beta2`` on v1beta1),
in ``TopologyReconciled`` reasons that say an upgrade is pending, in up-to-date
replica counts behind the desired ones, and in an ``observedGeneration`` behind.
Worker versions are not reported: a topology has no per-MachineDeployment version
(a deferred MachineDeployment lags by one minor at most, the webhook blocks the next).

Green's worker capacity is counted from the cluster-autoscaler's scale-from-zero
annotations (``capacity.cluster-autoscaler.kubernetes.io/cpu`` and ``/memory``) on
each machineDeployment topology's metadata, falling back to its ClusterClass
class's template metadata: machine templates are infrastructure-specific and
often say nothing about size, and these annotations are the one place a CAPI
user already writes it down.

Worker pools (strategy NodePools) are the entries of
``spec.topology.workers.machineDeployments``: a new pool is a copy of the old
entry under the new name, with ``nodePools.pools[].class`` and ``overrides``
applied, added to the same list (an entry of that name, the spare pool of an
earlier rotation, is rewritten where it stands). The topology controller makes
the MachineDeployment and its machines. A topology entry has no version of its
own, so a pool can only be rotated at the cluster's minor. Every write of the
list carries the resourceVersion read, so a concurrent change to the Cluster
is a conflict (retried by the next pass), never overwritten. Machines are found
by the labels the topology controller puts on them (see ``machines.py``).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from bluegreen.api import versions
from bluegreen.api.spec import NodePool
from bluegreen.clusters import machines as capi_machines
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity, WorkerPool
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import mergepatch, objects, quantity
from bluegreen.preflight import versions as version_rules

GROUP = "cluster.x-k8s.io"
SUPPORTED_VERSIONS = ("v1beta2", "v1beta1")  # in order of preference
SECRETS = kubeclient.Resource("", "v1", "secrets")
KUBECONFIG_KEY = "value"
CLONED_FROM = objects.CLONED_FROM
_OPERATOR_SET_LABELS = (LABEL_UPGRADE,)
VERSION_FIELD = "spec.topology.version"
CAPACITY_CPU = "capacity.cluster-autoscaler.kubernetes.io/cpu"
CAPACITY_MEMORY = "capacity.cluster-autoscaler.kubernetes.io/memory"
AUTOSCALER_MIN_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
AUTOSCALER_MAX_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
POOLS_FIELD = "spec.topology.workers.machineDeployments"
# TopologyReconciled=False for these reasons: the topology controller holds back part of a version change.
_UPGRADE_PENDING_REASONS = frozenset({
    "ClusterUpgrading", "ControlPlaneUpgradePending", "MachineDeploymentsUpgradePending",
    "MachineDeploymentsUpgradeDeferred", "MachinePoolsUpgradePending", "MachinePoolsUpgradeDeferred",
})


def cluster_resource(version: str) -> kubeclient.Resource:
    return kubeclient.Resource(GROUP, version, "clusters")


def cluster_class_resource(version: str) -> kubeclient.Resource:
    return kubeclient.Resource(GROUP, version, "clusterclasses")


def kubeconfig_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-kubeconfig"


class CapiClusterProvider:
    """ClusterProvider for Cluster API ``Cluster`` objects on the management cluster."""

    def __init__(self, *, client: kubeclient.KubeClient, api_version: str | None = None) -> None:
        if api_version is not None and api_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"api_version must be one of {SUPPORTED_VERSIONS}, not {api_version!r}")
        self._client = client
        self._version = api_version
        self._machines = capi_machines.Machines(client=client)

    async def api_version(self) -> str:
        """The Cluster API version served by the management cluster (v1beta2 preferred)."""
        if self._version is None:
            for version in SUPPORTED_VERSIONS:
                served = await self._client.resources(f"{GROUP}/{version}")
                if served and any(resource.get("name") == "clusters" for resource in served):
                    self._version = version
                    break
            else:
                raise ClusterProviderError(
                    f"Cluster API is not installed on the management cluster: neither {GROUP}/v1beta2 nor "
                    f"{GROUP}/v1beta1 serves clusters; install it (clusterctl init) or use another provider"
                )
        return self._version

    async def _resource(self) -> kubeclient.Resource:
        return cluster_resource(await self.api_version())

    async def observe(self, *, namespace: str, name: str) -> ClusterObservation:
        secret_name = kubeconfig_secret_name(name)
        # Both at once: one round trip of a pass instead of two (the Secret read is wasted only for a cluster
        # that does not exist).
        cluster, secret = await asyncio.gather(
            self._client.get(await self._resource(), namespace=namespace, name=name),
            self._client.get(SECRETS, namespace=namespace, name=secret_name),
        )
        if cluster is None:
            return ClusterObservation(name=name, exists=False, reason=f"Cluster {namespace}/{name} does not exist")
        has_kubeconfig = secret is not None and KUBECONFIG_KEY in (secret.get("data") or {})
        return observe_cluster(cluster, kubeconfig_secret=secret_name if has_kubeconfig else None)

    async def preflight(
        self, *, namespace: str, blue_name: str, green_name: str, overrides: dict[str, Any]
    ) -> list[str]:
        blue = await self._client.get(await self._resource(), namespace=namespace, name=blue_name)
        if blue is None:
            return []  # the engine reports a missing blue itself
        if topology_class(blue) is None:
            return [
                f"Cluster {namespace}/{blue_name} has no spec.topology (ClusterClass); bluegreen clones "
                "topology clusters only: move it to a ClusterClass, or create green yourself and upgrade "
                "with spec.target.greenName pointing at it"
            ]
        return []

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
        resource = await self._resource()
        if await self._client.get(resource, namespace=namespace, name=green_name) is not None:
            return None
        blue = await self._client.get(resource, namespace=namespace, name=blue_name)
        if blue is None:
            raise ClusterProviderError(
                f"blue Cluster {namespace}/{blue_name} does not exist; check spec.cluster.name and "
                "spec.cluster.namespace"
            )
        green = clone_cluster(blue, green_name=green_name, version=version, overrides=overrides, labels=labels)
        try:
            await self._client.create(resource, green, namespace=namespace)
        except kubeclient.ConflictError:
            return None  # created by an earlier pass whose answer was lost
        green_version = green["spec"]["topology"]["version"]
        return f"created Cluster {namespace}/{green_name} at {green_version}, cloned from {blue_name}"

    async def set_version(self, *, namespace: str, name: str, version: str) -> str | None:
        resource = await self._resource()
        cluster = await self._client.get(resource, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        wanted = next_version(cluster, version)
        if wanted is None:
            return None
        current = cluster["spec"]["topology"]["version"]
        # With the resourceVersion read, a change made since is a conflict (retried), not overwritten.
        await self._client.patch(resource, namespace=namespace, name=name, body={
            "metadata": {"resourceVersion": objects.metadata(cluster).get("resourceVersion")},
            "spec": {"topology": {"version": wanted}},
        })
        return f"set {VERSION_FIELD} of Cluster {namespace}/{name} from {current} to {wanted}"

    async def green_capacity(self, *, namespace: str, blue_name: str, overrides: dict[str, Any]) -> WorkerCapacity:
        api_version = await self.api_version()
        blue = await self._client.get(cluster_resource(api_version), namespace=namespace, name=blue_name)
        if blue is None:
            raise ClusterProviderError(
                f"blue Cluster {namespace}/{blue_name} does not exist; check spec.cluster.name and "
                "spec.cluster.namespace"
            )
        version = str(((blue.get("spec") or {}).get("topology") or {}).get("version") or "")
        green = clone_cluster(blue, green_name=f"{blue_name}-green", version=version, overrides=overrides, labels={})
        class_ref = topology_class_ref(green, namespace=namespace)
        cluster_class = None
        if class_ref is not None:
            cluster_class = await self._client.get(cluster_class_resource(api_version), namespace=class_ref[0],
                                                   name=class_ref[1])
        return worker_capacity(green, cluster_class=cluster_class)

    async def worker_pools(self, *, namespace: str, name: str) -> dict[str, WorkerPool]:
        cluster = await self._client.get(await self._resource(), namespace=namespace, name=name)
        if cluster is None:
            return {}
        entries = machine_deployments(cluster)
        if not entries:
            return {}
        found = await self._machines.by_label(namespace=namespace, selector={capi_machines.CLUSTER_NAME_LABEL: name},
                                              label=capi_machines.TOPOLOGY_DEPLOYMENT_LABEL)
        pools: dict[str, WorkerPool] = {}
        for entry in entries:
            entry_name = str(entry.get("name") or "")
            machines = found.get(entry_name, [])
            replicas = entry.get("replicas")
            # An entry without replicas leaves them to the cluster autoscaler: what exists is what it asked for.
            pools[entry_name] = WorkerPool(
                name=entry_name, replicas=replicas if isinstance(replicas, int) else len(machines),
                machines=len(machines), nodes=capi_machines.node_names(machines),
                template=str(entry.get("class") or ""),
            )
        return pools

    async def pool_problems(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                            version: str) -> list[str]:
        api_version = await self.api_version()
        cluster = await self._client.get(cluster_resource(api_version), namespace=namespace, name=name)
        if cluster is None:
            return [f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"]
        problems = pool_problems(cluster, pool=pool, source=source, new=new, version=version)
        if problems:
            return problems
        entry = pool_entry(cluster, pool=pool, source=source, new=new, replicas=0)
        wanted_class = str(entry.get("class") or "")
        if wanted_class == str(source_entry(cluster, source).get("class") or ""):
            return []  # the old pool's class: the ClusterClass has it already
        class_ref = topology_class_ref(cluster, namespace=namespace)
        assert class_ref is not None  # pool_problems refused a cluster without one
        cluster_class = await self._client.get(cluster_class_resource(api_version), namespace=class_ref[0],
                                               name=class_ref[1])
        if cluster_class is None:
            return []  # not readable here; the topology controller's own validation still stands
        classes = worker_classes(cluster_class)
        if wanted_class not in classes:
            return [
                f"spec.nodePools.pools[{pool.name}] asks for machineDeployment class {wanted_class!r}, which "
                f"ClusterClass {class_ref[0]}/{class_ref[1]} does not define (spec.workers.machineDeployments[]"
                f".class: {', '.join(classes) or 'none'}); use one of those or add it to the ClusterClass"
            ]
        return []

    async def ensure_pool(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                          version: str, replicas: int) -> str | None:
        resource = await self._resource()
        cluster = await self._client.get(resource, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        problems = pool_problems(cluster, pool=pool, source=source, new=new, version=version)
        if problems:
            raise ClusterProviderError("; ".join(problems))
        entry = pool_entry(cluster, pool=pool, source=source, new=new, replicas=replicas)
        entries = machine_deployments(cluster)
        existing = next((item for item in entries if item.get("name") == new), None)
        if existing == entry:
            return None
        await self._write_entries(cluster, resource, replace_entry(entries, entry))
        where = f"{POOLS_FIELD} of Cluster {namespace}/{name}"
        shape = f"class {entry.get('class')}, {replicas} replicas"
        if existing is None:
            return f"added pool {new} to {where} ({shape}), copied from {source}"
        return f"rewrote pool {new} in {where} as a copy of {source} ({shape})"

    async def scale_pool(self, *, namespace: str, name: str, pool: str, replicas: int) -> str | None:
        resource = await self._resource()
        cluster = await self._client.get(resource, namespace=namespace, name=name)
        if cluster is None:
            raise ClusterProviderError(
                f"Cluster {namespace}/{name} does not exist; check spec.cluster.name and spec.cluster.namespace"
            )
        entries = machine_deployments(cluster)
        entry = next((item for item in entries if item.get("name") == pool), None)
        if entry is None:
            raise ClusterProviderError(f"Cluster {namespace}/{name}: {_missing_entry(cluster, pool)}")
        if entry.get("replicas") == replicas:
            return None
        before = entry.get("replicas")
        await self._write_entries(cluster, resource, replace_entry(entries, {**entry, "replicas": replicas}))
        return (f"scaled pool {pool} of Cluster {namespace}/{name} from {before if before is not None else 'unset'} "
                f"to {replicas} replicas ({POOLS_FIELD}[].replicas)")

    async def _write_entries(self, cluster: Mapping[str, Any], resource: kubeclient.Resource,
                             entries: list[dict[str, Any]]) -> None:
        meta = objects.metadata(cluster)
        # A merge patch replaces the list whole; with the resourceVersion read, a change made since
        # (another entry added, a replica count moved) is a conflict, retried, not overwritten.
        await self._client.patch(resource, namespace=str(meta.get("namespace") or ""), name=str(meta["name"]), body={
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "spec": {"topology": {"workers": {"machineDeployments": entries}}},
        })

    async def delete(self, *, namespace: str, name: str) -> str | None:
        resource = await self._resource()
        cluster = await self._client.get(resource, namespace=namespace, name=name)
        if cluster is None or objects.metadata(cluster).get("deletionTimestamp"):
            return None
        # Background: the Cluster's own finalizer makes the controllers tear
        # the machines down; the owned kubeconfig Secret goes with it.
        if not await self._client.delete(resource, namespace=namespace, name=name, propagation_policy="Background"):
            return None
        return f"deleted Cluster {namespace}/{name}"

    def kubeconfig_secret_ref(self, *, namespace: str, name: str) -> tuple[str, str, str]:
        return (namespace, kubeconfig_secret_name(name), KUBECONFIG_KEY)


# --- pure parts ----------------------------------------------------------------------------------


def topology_class(cluster: Mapping[str, Any]) -> str | None:
    """The ClusterClass a cluster is built from (either API version's field), or None."""
    topology = (cluster.get("spec") or {}).get("topology")
    if not isinstance(topology, dict):
        return None
    class_ref = topology.get("classRef")
    if isinstance(class_ref, dict) and class_ref.get("name"):
        return str(class_ref["name"])
    if topology.get("class"):
        return str(topology["class"])
    return None


def clone_cluster(
    blue: Mapping[str, Any],
    *,
    green_name: str,
    version: str,
    overrides: Mapping[str, Any],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Green's Cluster: blue's definition under ``green_name`` at ``version`` (see the module docstring)."""
    blue_meta = objects.metadata(blue)
    blue_name = str(blue_meta.get("name", ""))
    where = f"Cluster {blue_meta.get('namespace', '')}/{blue_name}"
    if topology_class(blue) is None:
        raise ClusterProviderError(
            f"{where} has no spec.topology with a ClusterClass, so it cannot be cloned: bluegreen copies "
            "ClusterClass-based clusters only. Move the cluster to a ClusterClass (spec.topology.classRef), "
            "or use strategy InPlace"
        )
    blue_version = blue["spec"]["topology"].get("version")
    if not blue_version:
        raise ClusterProviderError(f"{where} has no spec.topology.version; set it on blue first")

    green = objects.clone_metadata(blue, new_name=green_name, blue_name=blue_name, green_name=green_name,
                                   labels=labels, cloned_from=blue_name, drop_labels=_OPERATOR_SET_LABELS)

    spec = copy.deepcopy(green.get("spec") or {})
    for generated in ("controlPlaneEndpoint", "controlPlaneRef", "infrastructureRef"):
        spec.pop(generated, None)
    spec["topology"]["version"] = versions.with_version_style(str(blue_version), versions.parse_version(version))
    patched = mergepatch.merge_patch(spec, dict(overrides)) if overrides else spec
    if not isinstance(patched, dict) or not isinstance(patched.get("topology"), dict):
        raise ClusterProviderError("spec.target.overrides must not remove spec.topology from the cloned Cluster")
    green["spec"] = patched
    return green


def observe_cluster(cluster: Mapping[str, Any], *, kubeconfig_secret: str | None) -> ClusterObservation:
    """Judge a Cluster object as read, in either API version's shape."""
    meta = objects.metadata(cluster)
    status = cluster.get("status") if isinstance(cluster.get("status"), dict) else {}
    assert isinstance(status, dict)
    phase = str(status.get("phase") or "")
    topology = (cluster.get("spec") or {}).get("topology") or {}
    version = topology.get("version") if isinstance(topology, dict) else None

    # v1beta2 reports Available; v1beta1 reports Ready (and, since CAPI 1.9,
    # the v1beta2 conditions under status.v1beta2). Take what the shape offers.
    api_version = str(cluster.get("apiVersion", ""))
    if api_version.endswith("/v1beta1"):
        ready_type = "Ready"
        ready_condition = objects.condition(cluster, "Ready")
        if ready_condition is None:
            ready_type = "Available"
            ready_condition = objects.condition(cluster, "Available", path=("status", "v1beta2"))
    else:
        ready_type = "Available"
        ready_condition = objects.condition(cluster, "Available")
        if ready_condition is None and objects.condition(cluster, "Ready") is not None:
            ready_type = "Ready"
            ready_condition = objects.condition(cluster, "Ready")
    condition_true = ready_condition is not None and ready_condition.get("status") == "True"
    observed = objects.generation_observed(cluster)
    deleting = bool(meta.get("deletionTimestamp"))
    failed = phase == "Failed"
    ready = condition_true and observed and not deleting and not failed

    reasons: list[str] = []
    if not ready:
        if deleting:
            reasons.append("being deleted")
        if phase:
            reasons.append(f"phase {phase}")
        if not condition_true:
            reasons.append(objects.condition_text(ready_condition, ready_type))
        if not observed:
            reasons.append(
                f"the Cluster controller has not yet observed generation {meta.get('generation')} "
                f"(status is for {status.get('observedGeneration', 'none')})"
            )
        failure = status.get("failureMessage") or status.get("failureReason")
        if failure:
            reasons.append(f"failure: {failure}")
    rollout = rollout_reasons(cluster)
    if rollout and not deleting:
        reasons.append(f"rolling out {version}: {'; '.join(rollout)}")
    labels = objects.labels(cluster)
    return ClusterObservation(
        name=str(meta.get("name", "")),
        exists=True,
        ready=ready,
        version=str(version) if version else None,
        reason="; ".join(reasons),
        kubeconfig_secret=kubeconfig_secret,
        deleting=deleting,
        failed=failed,
        managed_by=labels.get(LABEL_UPGRADE),
        rolling_out=bool(rollout) and not deleting,
    )


def rollout_reasons(cluster: Mapping[str, Any]) -> list[str]:
    """Why the Cluster's last version change is not finished, in words; empty when nothing rolls out.

    Only a provisioned cluster rolls out: while it is first built, the same signals mean provisioning.
    """
    status = cluster.get("status")
    if not isinstance(status, dict) or str(status.get("phase") or "") not in ("Provisioned", ""):
        return []
    # The v1beta2 shape lives in status (v1beta2) or in status.v1beta2 (v1beta1 from CAPI 1.9 on).
    v1beta1 = str(cluster.get("apiVersion", "")).endswith("/v1beta1")
    path = ("status", "v1beta2") if v1beta1 else ("status",)
    current: Any = status.get("v1beta2") if v1beta1 else status
    current = current if isinstance(current, dict) else {}
    reasons: list[str] = []
    rolling = objects.condition(cluster, "RollingOut", path=path)
    if rolling is not None and rolling.get("status") == "True":
        reasons.append(objects.condition_text(rolling, "RollingOut"))
    topology = objects.condition(cluster, "TopologyReconciled", path=path)
    if topology is None and v1beta1:
        topology = objects.condition(cluster, "TopologyReconciled")
    pending = topology is not None and topology.get("reason") in _UPGRADE_PENDING_REASONS
    if topology is not None and pending and topology.get("status") == "False":
        reasons.append(objects.condition_text(topology, "TopologyReconciled"))
    for part, what in (("controlPlane", "control plane"), ("workers", "worker")):
        counts = current.get(part)
        if not isinstance(counts, dict):
            continue
        desired, up_to_date = counts.get("desiredReplicas"), counts.get("upToDateReplicas")
        if isinstance(desired, int) and isinstance(up_to_date, int) and up_to_date < desired:
            reasons.append(f"{up_to_date} of {desired} {what} machines up to date")
    if not objects.generation_observed(cluster):
        reasons.append("the topology controller has not yet observed the latest change")
    return reasons


def next_version(cluster: Mapping[str, Any], version: str) -> str | None:
    """What to write to ``spec.topology.version`` for ``version`` in place, in the cluster's style; None if
    the cluster already asks for it. Raises ClusterProviderError for what Cluster API would refuse."""
    meta = objects.metadata(cluster)
    where = f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}"
    topology = (cluster.get("spec") or {}).get("topology")
    current = topology.get("version") if isinstance(topology, dict) else None
    if not current:
        raise ClusterProviderError(
            f"{where} has no {VERSION_FIELD}: only ClusterClass (topology) clusters are upgraded in place by "
            "bluegreen; move it to a ClusterClass, or upgrade its control plane and MachineDeployments yourself"
        )
    current = str(current)
    try:
        here, there = versions.parse_version(current), versions.parse_version(version)
    except ValueError as exc:
        raise ClusterProviderError(f"{where}: {exc}") from None
    if there.minor_key == here.minor_key:
        if there.patch is None or there.patch == here.patch:
            return None
        if here.patch is not None and there.patch < here.patch:
            raise ClusterProviderError(
                f"{where} runs {current}; {version} would be a downgrade, which Cluster API refuses "
                f"({VERSION_FIELD}): set spec.target.kubernetesVersion to {current} or newer"
            )
        return versions.with_version_style(current, there)
    try:
        path = version_rules.in_place_path(current=current, target=version)
    except ValueError as exc:
        raise ClusterProviderError(f"{where}: {exc}") from None
    if len(path) > 1:
        raise ClusterProviderError(
            f"{where} runs {current}; {version} is {len(path)} minors up and Cluster API refuses more than one "
            f"minor at once ({VERSION_FIELD}): go through {', '.join(path)} one at a time (strategy InPlace "
            "does), or use strategy BlueGreen to start green at the target directly"
        )
    return versions.with_version_style(current, there)


def topology_class_ref(cluster: Mapping[str, Any], *, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Cluster's ClusterClass, in either API version's fields."""
    topology = (cluster.get("spec") or {}).get("topology")
    if not isinstance(topology, dict):
        return None
    class_ref = topology.get("classRef")
    if isinstance(class_ref, dict) and class_ref.get("name"):
        return (str(class_ref.get("namespace") or namespace), str(class_ref["name"]))
    if topology.get("class"):
        return (str(topology.get("classNamespace") or namespace), str(topology["class"]))
    return None


@dataclasses.dataclass(frozen=True)
class _GroupSize:
    name: str
    nodes: int
    cpu_millis: int | None
    memory_bytes: int | None
    problems: tuple[str, ...]


def _annotations(node: Any) -> dict[str, Any]:
    found = node.get("annotations") if isinstance(node, dict) else None
    return found if isinstance(found, dict) else {}


def _class_annotations(cluster_class: Mapping[str, Any] | None, class_name: str, *, pools: bool) -> dict[str, Any]:
    """The metadata annotations a ClusterClass gives a worker class (v1beta1 ``template.metadata``,
    v1beta2 ``metadata``)."""
    workers = ((cluster_class or {}).get("spec") or {}).get("workers") or {}
    for item in workers.get("machinePools" if pools else "machineDeployments") or []:
        if isinstance(item, dict) and item.get("class") == class_name:
            return {**_annotations((item.get("template") or {}).get("metadata")), **_annotations(item.get("metadata"))}
    return {}


def _group_size(group: Mapping[str, Any], *, cluster_class: Mapping[str, Any] | None, pools: bool,
                field: str) -> _GroupSize:
    annotations = {**_class_annotations(cluster_class, str(group.get("class") or ""), pools=pools),
                   **_annotations(group.get("metadata"))}
    problems: list[str] = []
    replicas = group.get("replicas")
    if not isinstance(replicas, int):
        # Autoscaled groups leave replicas to the autoscaler: it starts from its min size (CAPI's default 1).
        try:
            replicas = int(annotations.get(AUTOSCALER_MIN_SIZE, 1))
        except (TypeError, ValueError):
            replicas = 1
    sizes: list[int | None] = []
    for key, parse in ((CAPACITY_CPU, quantity.to_millis), (CAPACITY_MEMORY, quantity.to_bytes)):
        raw = annotations.get(key)
        if raw is None:
            sizes.append(None)
            problems.append(f"{field} has no {key} annotation")
            continue
        try:
            sizes.append(parse(raw))
        except ValueError as exc:
            sizes.append(None)
            problems.append(f"{field} annotation {key}: {exc}")
    return _GroupSize(name=str(group.get("name") or "?"), nodes=replicas, cpu_millis=sizes[0],
                      memory_bytes=sizes[1], problems=tuple(problems))


def worker_capacity(cluster: Mapping[str, Any], *, cluster_class: Mapping[str, Any] | None) -> WorkerCapacity:
    """The workers a topology Cluster asks for: replicas times the size its capacity annotations state."""
    workers = (((cluster.get("spec") or {}).get("topology") or {}).get("workers")) or {}
    groups: list[_GroupSize] = []
    for pools, key in ((False, "machineDeployments"), (True, "machinePools")):
        for index, group in enumerate(workers.get(key) or []):
            if isinstance(group, dict):
                groups.append(_group_size(group, cluster_class=cluster_class, pools=pools,
                                          field=f"spec.topology.workers.{key}[{index}] ({group.get('name')})"))
    nodes = sum(group.nodes for group in groups)
    if not groups:
        return WorkerCapacity(nodes=0, cpu_millis=0, memory_bytes=0,
                              detail="spec.topology.workers has no machineDeployments or machinePools")
    cpu = None if any(g.cpu_millis is None for g in groups) else sum(g.nodes * (g.cpu_millis or 0) for g in groups)
    memory = (None if any(g.memory_bytes is None for g in groups)
              else sum(g.nodes * (g.memory_bytes or 0) for g in groups))
    problems = [problem for group in groups for problem in group.problems]
    counted = ", ".join(f"{g.name}: {g.nodes} x ({_cpu_text(g.cpu_millis)}, {_memory_text(g.memory_bytes)})"
                        for g in groups)
    detail = f"from the machineDeployments' cluster-autoscaler capacity annotations: {counted}"
    if problems:
        detail += (f"; unknown because {'; '.join(problems)}: set {CAPACITY_CPU} and {CAPACITY_MEMORY} in "
                   "spec.topology.workers.machineDeployments[].metadata.annotations (or on the ClusterClass)")
    return WorkerCapacity(nodes=nodes, cpu_millis=cpu, memory_bytes=memory, detail=detail)


def _cpu_text(millis: int | None) -> str:
    return "cpu ?" if millis is None else f"{millis}m cpu"


def _memory_text(size: int | None) -> str:
    return "memory ?" if size is None else f"{size / 2**30:g}Gi memory"


# --- worker pools (NodePools) --------------------------------------------------------------------


def machine_deployments(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Cluster's ``spec.topology.workers.machineDeployments`` entries, as read (copies)."""
    topology = (cluster.get("spec") or {}).get("topology")
    workers = topology.get("workers") if isinstance(topology, dict) else None
    entries = workers.get("machineDeployments") if isinstance(workers, dict) else None
    return [copy.deepcopy(entry) for entry in entries or [] if isinstance(entry, dict)]


def source_entry(cluster: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The entry named ``source``; ClusterProviderError naming the entries there are when it is missing."""
    for entry in machine_deployments(cluster):
        if entry.get("name") == source:
            return entry
    meta = objects.metadata(cluster)
    raise ClusterProviderError(f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}: "
                               f"{_missing_entry(cluster, source)}")


def _missing_entry(cluster: Mapping[str, Any], entry: str) -> str:
    names = [str(item.get("name")) for item in machine_deployments(cluster)]
    return (f"{POOLS_FIELD} has no entry named {entry} (entries: {', '.join(names) or 'none'}); check "
            "spec.nodePools.pools[].name")


def pool_problems(cluster: Mapping[str, Any], *, pool: NodePool, source: str, new: str, version: str) -> list[str]:
    """What stops pool ``new`` from being made from ``source`` at ``version``, read from the Cluster alone."""
    meta = objects.metadata(cluster)
    where = f"Cluster {meta.get('namespace', '')}/{meta.get('name', '')}"
    if topology_class(cluster) is None:
        return [
            f"{where} has no spec.topology with a ClusterClass: NodePools rotates topology machineDeployments "
            f"({POOLS_FIELD}) only; move the cluster to a ClusterClass, or rotate its MachineDeployments yourself"
        ]
    if not any(entry.get("name") == source for entry in machine_deployments(cluster)):
        return [f"{where}: {_missing_entry(cluster, source)}"]
    problems: list[str] = []
    current = str(cluster["spec"]["topology"].get("version") or "")
    try:
        here, there = versions.parse_version(current), versions.parse_version(version)
    except ValueError as exc:
        problems.append(f"{where}: {VERSION_FIELD} {current!r} or spec.target.kubernetesVersion: {exc}")
    else:
        if here.minor_key != there.minor_key:
            problems.append(
                f"{where} runs {current} ({VERSION_FIELD}), and a topology machineDeployment has no version of its "
                f"own: new pools are made at the cluster's minor only, not {version}. Upgrade the control plane "
                "with strategy InPlace (the workers follow) or BlueGreen, or set spec.target.kubernetesVersion to "
                f"{here.major}.{here.minor} to rotate the pools at the version they run"
            )
    for key, why in (("name", f"the pools are named {pool.family}-blue and {pool.family}-green by bluegreen"),
                     ("replicas", "the new pool gets as many replicas as the old one has")):
        if key in pool.overrides:
            problems.append(f"{pool.field('overrides.' + key)}: {why}; remove it from the overrides")
    if not problems:
        entry = pool_entry(cluster, pool=pool, source=source, new=new, replicas=0)
        scaled_by = sorted(key for key in (AUTOSCALER_MIN_SIZE, AUTOSCALER_MAX_SIZE)
                           if key in _annotations(entry.get("metadata")))
        if scaled_by:
            problems.append(
                f"{where}: {POOLS_FIELD} entry {source} is scaled by the cluster autoscaler "
                f"(metadata.annotations {', '.join(scaled_by)}), which would resize the pools while bluegreen "
                "moves the nodes; remove those annotations for the rotation (set them to null in "
                f"{pool.field('overrides')} for the new pool) and put them back afterwards"
            )
    return problems


def pool_entry(cluster: Mapping[str, Any], *, pool: NodePool, source: str, new: str, replicas: int) -> dict[str, Any]:
    """Entry ``new``: a copy of entry ``source`` under the new name, at ``replicas``, with ``pool``'s class and
    ``overrides`` (a JSON merge patch on the entry; it cannot rename or resize it)."""
    entry = source_entry(cluster, source)
    entry["name"] = new
    entry["replicas"] = replicas
    if pool.class_:
        entry["class"] = pool.class_
    patched = mergepatch.merge_patch(entry, dict(pool.overrides)) if pool.overrides else entry
    if not isinstance(patched, dict) or not patched.get("class"):
        raise ClusterProviderError(f"{pool.field('overrides')} must not remove the entry's class")
    patched["name"] = new
    patched["replicas"] = replicas
    return patched


def replace_entry(entries: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``entries`` with ``entry`` in place of the one of its name, or appended when there is none."""
    if any(item.get("name") == entry.get("name") for item in entries):
        return [entry if item.get("name") == entry.get("name") else item for item in entries]
    return [*entries, entry]


def worker_classes(cluster_class: Mapping[str, Any]) -> list[str]:
    """The machineDeployment classes a ClusterClass defines (``spec.workers.machineDeployments[].class``)."""
    workers = (cluster_class.get("spec") or {}).get("workers") or {}
    return [str(item["class"]) for item in workers.get("machineDeployments") or []
            if isinstance(item, dict) and item.get("class")]
