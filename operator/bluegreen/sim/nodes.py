"""A minimal simulated cluster for node rotations: Nodes, a scheduler, kubelets and the pod-owning controllers.

The NodePools strategy cordons and drains worker nodes and waits for evicted pods'
replacements to run elsewhere. On a real cluster four parts of the control plane make
that observable through the API; this module plays them against one
:class:`~bluegreen.sim.kube.KubeEmulator`, for what a drain can see:

- **node lifecycle**: :meth:`ClusterSimulator.add_nodes` creates Nodes of a pool (label
  ``POOL_LABEL``) that turn Ready after ``node_ready_delay``, with ``allocatable.pods``;
  :meth:`ClusterSimulator.add_node` creates the one Node a machine registers (given name,
  InternalIP, providerID and kubelet version: what ``sim.machines`` drives);
  :meth:`ClusterSimulator.remove_node` takes one away with its pods. Their kubelets
  are registered with the store, so their pods are deleted gracefully (deletionTimestamp
  first, gone once the kubelet confirms);
- **Deployment and ReplicaSet controllers**: a Deployment gets one ReplicaSet
  (``<name>-<hash of the template>``, label ``pod-template-hash``) owning
  ``spec.replicas`` Pods with the template's labels and controller ownerReferences;
  a missing or terminating pod is replaced at once; both report replicas, ready and
  available counts. A changed template is not rolled out (one ReplicaSet per Deployment);
- **DaemonSet controller**: one pod per Node, bound directly (as DaemonSet pods tolerate
  cordons), never rescheduled; :meth:`ClusterSimulator.add_mirror_pod` adds a static pod's
  mirror (annotation ``kubernetes.io/config.mirror``, owned by its Node);
- **scheduler**: binds each Pending pod without ``spec.nodeName`` to the Ready,
  schedulable (not cordoned) node matching its ``nodeSelector`` that has the fewest pods,
  within ``allocatable.pods``; no resources, affinities or taints;
- **kubelet**: a bound pod becomes Running and Ready after ``pod_ready_delay``; a pod
  being deleted is confirmed gone after ``kill_delay`` (not its full grace period).

StatefulSets are left to ``sim.workloads_ctl`` (status only), which must not run on the
same emulator: both would write Deployments' status, so :func:`attach` refuses.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.sim import disruption, eviction, kube_store, workloads_ctl
from bluegreen.sim.controllers import WatchingController
from bluegreen.sim.kube import KubeEmulator
from bluegreen.sim.kube_store import now_rfc3339

PODS = "v1/pods"
NODES = "v1/nodes"
DEPLOYMENTS = "apps/v1/deployments"
REPLICASETS = "apps/v1/replicasets"
DAEMONSETS = "apps/v1/daemonsets"
WATCHED = (PODS, NODES, DEPLOYMENTS, REPLICASETS, DAEMONSETS)
POOL_LABEL = "bluegreen.io/pool"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
TEMPLATE_HASH_LABEL = "pod-template-hash"

_attached: dict[int, ClusterSimulator] = {}
_CLUSTER = "cluster"  # one reconcile key: the clusters simulated here are a handful of nodes


def attach(emulator: KubeEmulator, *, pods_per_node: int = 10, node_ready_delay: float = 0.05,
           pod_ready_delay: float = 0.05, kill_delay: float = 0.02) -> ClusterSimulator:
    """Run nodes, scheduler, kubelets and the pod controllers (and the disruption controller) on ``emulator``."""
    if any(ctl.emulator is emulator and not ctl.done for ctl in workloads_ctl._attached.values()):
        raise RuntimeError(f"sim.workloads_ctl already runs Deployments on {emulator.name!r}")
    simulator = _attached.get(id(emulator))
    if simulator is None or simulator.emulator is not emulator or simulator.done:
        simulator = ClusterSimulator(emulator, pods_per_node=pods_per_node, node_ready_delay=node_ready_delay,
                                     pod_ready_delay=pod_ready_delay, kill_delay=kill_delay)
        _attached[id(emulator)] = simulator
        simulator.start()
        emulator.on_stop(simulator.stop)
    disruption.attach(emulator)
    return simulator


def _controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((ref for ref in (obj.get("metadata") or {}).get("ownerReferences") or () if ref.get("controller")),
                None)


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": "apps/v1", "kind": "", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _terminating(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def node_ready(node: dict[str, Any]) -> bool:
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in (node.get("status") or {}).get("conditions") or ())


def _template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[index:index + 2], 16) % len(alphabet)] for index in range(0, 20, 2))


class ClusterSimulator(WatchingController[str]):
    """Nodes, scheduler, kubelets and the Deployment/ReplicaSet/DaemonSet controllers of one emulator."""

    def __init__(self, emulator: KubeEmulator, *, pods_per_node: int, node_ready_delay: float,
                 pod_ready_delay: float, kill_delay: float) -> None:
        super().__init__(emulator, name="cluster", watched=WATCHED, registry=_attached)
        self.pods_per_node = pods_per_node
        self.node_ready_delay = node_ready_delay
        self.pod_ready_delay = pod_ready_delay
        self.kill_delay = kill_delay
        self._due: dict[str, float] = {}  # uid -> monotonic time a node/pod/deletion step is due

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[str]:
        return (_CLUSTER,)  # the clusters simulated here are a handful of nodes: one pass looks at all

    # --- what a test does ---------------------------------------------------------------------------

    def add_nodes(self, pool: str, count: int, *, prefix: str | None = None) -> list[str]:
        """Create ``count`` Nodes of ``pool``, NotReady until ``node_ready_delay`` has passed; their names."""
        return [self._create_node({"generateName": f"{prefix or pool}-", "labels": {POOL_LABEL: pool}}, spec={},
                                  extra_status={}, ready=False) for _ in range(count)]

    def add_node(self, name: str, *, pool: str, internal_ip: str, provider_id: str,
                 labels: Mapping[str, str] | None = None, kubelet_version: str | None = None,
                 ready: bool = False) -> str:
        """Create the Node a machine registers: its name, pool label (and ``labels``), InternalIP and providerID.

        It turns Ready after ``node_ready_delay``, or at once with ``ready`` (a node that was already running).
        """
        extra_status: dict[str, Any] = {"addresses": [{"type": "InternalIP", "address": internal_ip},
                                                      {"type": "Hostname", "address": name}]}
        if kubelet_version:
            extra_status["nodeInfo"] = {"kubeletVersion": kubelet_version, "kubeProxyVersion": kubelet_version,
                                        "operatingSystem": "linux", "architecture": "amd64",
                                        "containerRuntimeVersion": "containerd://1.7.20"}
        return self._create_node({"name": name, "labels": {**(labels or {}), POOL_LABEL: pool}},
                                 spec={"providerID": provider_id}, extra_status=extra_status, ready=ready)

    def _create_node(self, metadata: dict[str, Any], *, spec: dict[str, Any], extra_status: dict[str, Any],
                     ready: bool) -> str:
        stamp = now_rfc3339()
        condition = ({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "kubelet is posting ready status"} if ready else
                     {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                      "message": "container runtime status check may not have completed yet"})
        node = self.emulator.create(NODES, {
            "metadata": metadata,
            "spec": spec,
            "status": {
                "conditions": [{**condition, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
                "allocatable": {"pods": str(self.pods_per_node), "cpu": "4", "memory": "16Gi"},
                "capacity": {"pods": str(self.pods_per_node), "cpu": "4", "memory": "16Gi"},
                **extra_status,
            },
        })
        name = str(node["metadata"]["name"])
        self.emulator.patch(NODES, None, name, {"metadata": {"labels": {"kubernetes.io/hostname": name}}})
        self.emulator.store.kubelet_nodes.add(name)
        if not ready:
            self._due[str(node["metadata"]["uid"])] = time.monotonic() + self.node_ready_delay
        return name

    def remove_node(self, name: str) -> None:
        """The machine is gone: its Node and every pod bound to it (at once: no kubelet is left)."""
        self.emulator.store.kubelet_nodes.discard(name)
        for pod in self.emulator.list(PODS):
            if (pod.get("spec") or {}).get("nodeName") == name:
                self._delete_pod(pod, grace=0)
        self._delete(NODES, None, name)

    def add_mirror_pod(self, node: str, name: str, *, namespace: str = "kube-system") -> dict[str, Any]:
        """The mirror of a static pod the node's kubelet runs: bound, owned by the Node, never evicted."""
        node_obj = self.emulator.get(NODES, None, node)
        if node_obj is None:
            raise ValueError(f"no node {node!r}")
        pod = self.emulator.create(PODS, {
            "metadata": {"name": f"{name}-{node}", "namespace": namespace, "labels": {"component": name},
                         "annotations": {MIRROR_ANNOTATION: _template_hash(name)},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                                              "uid": node_obj["metadata"]["uid"], "controller": True}]},
            "spec": {"nodeName": node, "containers": [{"name": name, "image": f"registry.k8s.io/{name}"}]},
        })
        self._workers.enqueue(_CLUSTER)
        return pod

    # --- reconciling --------------------------------------------------------------------------------

    async def _sync(self, _: str) -> None:
        now = time.monotonic()
        nodes = self.emulator.list(NODES)
        self._node_lifecycle(nodes, now)
        for deployment in self.emulator.list(DEPLOYMENTS):
            self._sync_deployment(deployment)
        pods = self.emulator.list(PODS)
        for replicaset in self.emulator.list(REPLICASETS):
            self._sync_replicaset(replicaset, pods)
        for daemonset in self.emulator.list(DAEMONSETS):
            self._sync_daemonset(daemonset, nodes, pods)
        pods = self.emulator.list(PODS)
        self._schedule(self.emulator.list(NODES), pods)
        self._kubelets(self.emulator.list(PODS), now)
        live = {str(obj["metadata"]["uid"]) for obj in [*nodes, *pods]}
        for uid in [uid for uid in self._due if uid not in live]:
            self._due.pop(uid)
        pending = [due for due in self._due.values() if due > now]
        if pending:
            self._workers.enqueue_later(_CLUSTER, max(min(pending) - now, 0.001))

    def _node_lifecycle(self, nodes: list[dict[str, Any]], now: float) -> None:
        for node in nodes:
            uid = str(node["metadata"]["uid"])
            due = self._due.get(uid)
            if due is None or node_ready(node) or due > now:
                continue
            self._due.pop(uid)
            stamp = now_rfc3339()
            self.emulator.patch(NODES, None, node["metadata"]["name"], {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}}, subresource="status")

    def _sync_deployment(self, deployment: dict[str, Any]) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        template = spec.get("template") or {}
        pod_hash = _template_hash(template)
        name = f"{meta['name']}-{pod_hash}"
        namespace = meta["namespace"]
        replicas = spec.get("replicas", 1)
        if self.emulator.get(REPLICASETS, namespace, name) is None:
            labels = {**((template.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH_LABEL: pod_hash}
            selector = dict(spec.get("selector") or {})
            selector["matchLabels"] = {**(selector.get("matchLabels") or {}), TEMPLATE_HASH_LABEL: pod_hash}
            owner = dict(_owner(deployment), apiVersion="apps/v1", kind="Deployment")
            self.emulator.create(REPLICASETS, {
                "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
                "spec": {"replicas": replicas, "selector": selector,
                         "template": {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}},
            })
        else:
            self._patch(REPLICASETS, namespace, name, {"spec": {"replicas": replicas}})
        replicaset = self.emulator.get(REPLICASETS, namespace, name)
        status = (replicaset or {}).get("status") or {}
        ready = int(status.get("readyReplicas") or 0)
        available = ready >= replicas
        self._patch_status(DEPLOYMENTS, deployment, {
            "observedGeneration": meta.get("generation"), "replicas": int(status.get("replicas") or 0),
            "updatedReplicas": int(status.get("replicas") or 0), "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": max(replicas - ready, 0),
            "conditions": [{"type": "Available", "status": "True" if available else "False",
                            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                            "message": "Deployment has minimum availability." if available
                            else "Deployment does not have minimum availability."}],
        })

    def _sync_replicaset(self, replicaset: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = replicaset["metadata"], replicaset.get("spec") or {}
        owned = [pod for pod in pods if (_controller_ref(pod) or {}).get("uid") == meta["uid"]]
        active = [pod for pod in owned if not _terminating(pod) and _phase(pod) not in ("Succeeded", "Failed")]
        replicas = spec.get("replicas", 1)
        template = spec.get("template") or {}
        owner = dict(_owner(replicaset), apiVersion="apps/v1", kind="ReplicaSet")
        for _ in range(replicas - len(active)):
            self.emulator.create(PODS, {
                "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                             "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                             "ownerReferences": [owner]},
                "spec": dict(template.get("spec") or {}),
            })
        # Scaling down removes the pods furthest from Ready first, as the ReplicaSet controller ranks them.
        surplus = sorted(active, key=lambda pod: (eviction.pod_ready(pod), bool(pod["spec"].get("nodeName"))))
        for pod in surplus[:max(len(active) - replicas, 0)]:
            self._delete_pod(pod)
        ready = sum(1 for pod in active if eviction.pod_ready(pod))
        self._patch_status(REPLICASETS, replicaset, {
            "observedGeneration": meta.get("generation"), "replicas": len(active), "fullyLabeledReplicas": len(active),
            "readyReplicas": ready, "availableReplicas": ready})

    def _sync_daemonset(self, daemonset: dict[str, Any], nodes: list[dict[str, Any]],
                        pods: list[dict[str, Any]]) -> None:
        meta, spec = daemonset["metadata"], daemonset.get("spec") or {}
        template = spec.get("template") or {}
        owned = [pod for pod in pods if (_controller_ref(pod) or {}).get("uid") == meta["uid"]]
        covered = {pod["spec"].get("nodeName") for pod in owned if not _terminating(pod)}
        owner = dict(_owner(daemonset), apiVersion="apps/v1", kind="DaemonSet")
        for node in nodes:
            name = node["metadata"]["name"]
            if name in covered or _terminating(node):
                continue
            self.emulator.create(PODS, {
                "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                             "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                             "ownerReferences": [owner]},
                "spec": {**(template.get("spec") or {}), "nodeName": name,
                         "tolerations": [*((template.get("spec") or {}).get("tolerations") or ()),
                                         {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                          "effect": "NoSchedule"}]},
            })
        ready = sum(1 for pod in owned if eviction.pod_ready(pod))
        self._patch_status(DAEMONSETS, daemonset, {
            "observedGeneration": meta.get("generation"), "desiredNumberScheduled": len(nodes),
            "currentNumberScheduled": len(covered & {node["metadata"]["name"] for node in nodes}),
            "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": len(owned),
            "numberMisscheduled": 0})

    def _schedule(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        load: dict[str, int] = {node["metadata"]["name"]: 0 for node in nodes}
        for pod in pods:
            bound = (pod.get("spec") or {}).get("nodeName")
            if bound in load and _phase(pod) not in ("Succeeded", "Failed"):
                load[bound] += 1
        for pod in pods:
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or _terminating(pod) or _phase(pod) != "Pending":
                continue
            selector = spec.get("nodeSelector") or {}
            fits = [node for node in nodes
                    if node_ready(node) and not (node.get("spec") or {}).get("unschedulable")
                    and not _terminating(node)
                    and all(node["metadata"].get("labels", {}).get(key) == value for key, value in selector.items())
                    and load[node["metadata"]["name"]] < self._capacity(node)]
            if not fits:
                continue  # stays Pending until a node fits, as with the real scheduler's retries
            node_name = min(fits, key=lambda node: (load[node["metadata"]["name"]], node["metadata"]["name"]))[
                "metadata"]["name"]
            load[node_name] += 1
            self._patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], {"spec": {"nodeName": node_name}})
            self._patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": {"conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}]}},
                subresource="status")

    def _capacity(self, node: dict[str, Any]) -> int:
        value = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
        return int(value) if isinstance(value, str) and value.isdigit() else self.pods_per_node

    def _kubelets(self, pods: list[dict[str, Any]], now: float) -> None:
        kubelet_nodes = self.emulator.store.kubelet_nodes
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            node = spec.get("nodeName")
            if node not in kubelet_nodes:
                continue
            uid = str(meta["uid"])
            if _terminating(pod):
                due = self._due.setdefault(uid, now + self.kill_delay)
                if due <= now:
                    self._delete_pod(pod, grace=0)  # the containers have stopped: confirm the deletion
                continue
            if _phase(pod) != "Pending":
                continue
            due = self._due.setdefault(uid, now + self.pod_ready_delay)
            if due > now:
                continue
            self._due.pop(uid)
            self._patch(PODS, meta["namespace"], meta["name"], {"status": self._running_status(pod)},
                        subresource="status")

    @staticmethod
    def _running_status(pod: dict[str, Any]) -> dict[str, Any]:
        stamp = now_rfc3339()
        conditions = [{"type": kind, "status": "True", "lastTransitionTime": stamp}
                      for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                   "PodScheduled")]
        containers = [{"name": container.get("name"), "image": container.get("image"), "ready": True,
                       "started": True, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
                      for container in (pod.get("spec") or {}).get("containers") or ()]
        address = "10.0.0." + str(int(hashlib.sha256(str(pod["metadata"]["uid"]).encode()).hexdigest(), 16) % 250 + 2)
        return {"phase": "Running", "conditions": conditions, "containerStatuses": containers,
                "hostIP": "192.168.0.1", "podIP": address, "podIPs": [{"ip": address}], "startTime": stamp,
                "qosClass": "BestEffort"}

    # --- writes that tolerate a concurrent delete ---------------------------------------------------

    def _patch(self, resource: str, namespace: str | None, name: str, patch: dict[str, Any], *,
               subresource: str | None = None) -> None:
        try:
            self.emulator.patch(resource, namespace, name, patch, subresource=subresource)
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise

    def _patch_status(self, resource: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if {**(obj.get("status") or {}), **status} != (obj.get("status") or {}):
            self._patch(resource, obj["metadata"]["namespace"], obj["metadata"]["name"], {"status": status},
                        subresource="status")

    def _delete(self, resource: str, namespace: str | None, name: str) -> None:
        try:
            self.emulator.delete(resource, namespace, name)
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise

    def _delete_pod(self, pod: dict[str, Any], *, grace: int | None = None) -> None:
        meta = pod["metadata"]
        info = self.emulator.store.resolve_path(PODS)
        try:
            self.emulator.store.delete(info, meta["namespace"], meta["name"], grace_period=grace)
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
