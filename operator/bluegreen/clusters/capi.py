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
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bluegreen.api import versions
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import mergepatch, objects

GROUP = "cluster.x-k8s.io"
SUPPORTED_VERSIONS = ("v1beta2", "v1beta1")  # in order of preference
SECRETS = kubeclient.Resource("", "v1", "secrets")
KUBECONFIG_KEY = "value"
CLONED_FROM = objects.CLONED_FROM
_OPERATOR_SET_LABELS = (LABEL_UPGRADE,)


def cluster_resource(version: str) -> kubeclient.Resource:
    return kubeclient.Resource(GROUP, version, "clusters")


def kubeconfig_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-kubeconfig"


class CapiClusterProvider:
    """ClusterProvider for Cluster API ``Cluster`` objects on the management cluster."""

    def __init__(self, *, client: kubeclient.KubeClient, api_version: str | None = None) -> None:
        if api_version is not None and api_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"api_version must be one of {SUPPORTED_VERSIONS}, not {api_version!r}")
        self._client = client
        self._version = api_version

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
        cluster = await self._client.get(await self._resource(), namespace=namespace, name=name)
        if cluster is None:
            return ClusterObservation(name=name, exists=False, reason=f"Cluster {namespace}/{name} does not exist")
        secret_name = kubeconfig_secret_name(name)
        secret = await self._client.get(SECRETS, namespace=namespace, name=secret_name)
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
        raise ClusterProviderError("in-place upgrades are being built (issue 6)")  # replaced by the provider work

    async def green_capacity(self, *, namespace: str, blue_name: str, overrides: dict[str, Any]) -> WorkerCapacity:
        raise ClusterProviderError("the capacity check is being built (issue 6)")  # replaced by the provider work

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
    )
