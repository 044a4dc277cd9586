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
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.api import versions
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import mergepatch, objects

GROUP = "anywhere.eks.amazonaws.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTERS = kubeclient.Resource(GROUP, VERSION, "clusters")
SECRETS = kubeclient.Resource("", "v1", "secrets")
KUBECONFIG_NAMESPACE = "eksa-system"
KUBECONFIG_KEY = "value"
CLONED_FROM = objects.CLONED_FROM
ENDPOINT_OVERRIDE = "spec.target.overrides.controlPlaneConfiguration.endpoint.host"

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

    def __init__(self, *, client: kubeclient.KubeClient) -> None:
        self._client = client

    async def observe(self, *, namespace: str, name: str) -> ClusterObservation:
        cluster = await self._client.get(CLUSTERS, namespace=namespace, name=name)
        if cluster is None:
            return ClusterObservation(name=name, exists=False, reason=f"Cluster {namespace}/{name} does not exist")
        secret_name = kubeconfig_secret_name(name)
        secret = await self._client.get(SECRETS, namespace=KUBECONFIG_NAMESPACE, name=secret_name)
        has_kubeconfig = secret is not None and KUBECONFIG_KEY in (secret.get("data") or {})
        return observe_cluster(cluster, kubeconfig_secret=secret_name if has_kubeconfig else None)

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
        raise ClusterProviderError("in-place upgrades are being built (issue 6)")  # replaced by the provider work

    async def green_capacity(self, *, namespace: str, blue_name: str, overrides: dict[str, Any]) -> WorkerCapacity:
        raise ClusterProviderError("the capacity check is being built (issue 6)")  # replaced by the provider work

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
    )
