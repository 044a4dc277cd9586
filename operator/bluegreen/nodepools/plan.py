"""Which pods of a node a drain evicts, which it leaves, and what stops it: a pure function.

The rules are ``kubectl drain``'s, because that is what operators expect a drain
to do, with the flags a careful person would pass:

* **DaemonSet pods are left** (``--ignore-daemonsets``): their controller ignores
  the cordon and would start them again on the same node at once; they go when
  the node goes.
* **Mirror pods are left**: the kubelet's static pods, shown in the API with the
  ``kubernetes.io/config.mirror`` annotation, cannot be removed through the API.
* **Terminating pods** (``metadata.deletionTimestamp`` set) are already leaving;
  **finished pods** (Succeeded, Failed) hold no resources. Neither is evicted.
* **Pods with local storage** (an ``emptyDir`` volume) lose their data when
  evicted. ``LocalStoragePolicy.Evict`` accepts that (``--delete-emptydir-data``);
  ``Block`` stops the drain and names the pod and the field to change.
* **Pods without a controller** (no ownerReference with ``controller: true``)
  would be deleted for good, since nothing recreates them. ``kubectl drain``
  refuses them unless given ``--force``; here they always block, with a message:
  a blue/green rotation must not lose a workload silently.

Like ``kubectl drain``, one blocking pod stops the whole node *before* anything
is evicted from it: half a drained node helps nobody and costs disruptions.

Order of eviction, so a drain that is interrupted has done the least harm:
lower ``spec.priority`` first (as the kubelet's graceful node shutdown does),
then pods that are not Ready (their eviction costs no availability), then by
namespace and name so that every pass, after a restart too, picks the same pod.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MIRROR_ANNOTATION",
    "BlockedPod",
    "ControllerRef",
    "LocalStoragePolicy",
    "NodeDrain",
    "PodRef",
    "SkipReason",
    "SkippedPod",
    "controller_of",
    "is_running_and_ready",
    "plan_node",
]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
LOCAL_STORAGE_FIELD = "spec.nodePools.localStorage"


class LocalStoragePolicy(enum.StrEnum):
    """What a drain does with a pod that has an ``emptyDir`` volume."""

    EVICT = "Evict"
    """Evict it; the volume's data is lost (``kubectl drain --delete-emptydir-data``)."""
    BLOCK = "Block"
    """Stop the drain of its node, naming the pod, until a person decides."""


class SkipReason(enum.StrEnum):
    """Why a pod on a draining node is left where it is."""

    DAEMON_SET = "DaemonSet"
    """Owned by a DaemonSet, which would put it straight back; it goes with the node."""
    MIRROR = "Mirror"
    """A static pod's mirror; the API cannot remove it."""
    TERMINATING = "Terminating"
    """Already being deleted."""
    FINISHED = "Finished"
    """Succeeded or Failed; it holds nothing."""


@dataclasses.dataclass(frozen=True, order=True)
class PodRef:
    namespace: str
    name: str
    uid: str = dataclasses.field(default="", compare=False)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodRef:
        metadata = pod.get("metadata") or {}
        return cls(namespace=str(metadata.get("namespace") or "default"), name=str(metadata.get("name") or ""),
                   uid=str(metadata.get("uid") or ""))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_status(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, **({"uid": self.uid} if self.uid else {})}

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> PodRef:
        return cls(namespace=str(entry["namespace"]), name=str(entry["name"]), uid=str(entry.get("uid") or ""))


@dataclasses.dataclass(frozen=True)
class ControllerRef:
    """A pod's controller, by kind and name (a ReplicaSet, a StatefulSet, a Job...)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_status(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> ControllerRef:
        return cls(kind=str(entry["kind"]), namespace=str(entry["namespace"]), name=str(entry["name"]))


@dataclasses.dataclass(frozen=True)
class SkippedPod:
    pod: PodRef
    reason: SkipReason

    def to_status(self) -> dict[str, Any]:
        return {"pod": str(self.pod), "reason": self.reason.value}


@dataclasses.dataclass(frozen=True)
class BlockedPod:
    """A pod that stops the drain of its node; ``message`` names the fix."""

    pod: PodRef
    message: str

    def to_status(self) -> dict[str, Any]:
        return {"pod": str(self.pod), "message": self.message}


@dataclasses.dataclass(frozen=True)
class NodeDrain:
    """The plan for one node: ``evict`` in order, unless ``blocked`` is not empty."""

    node: str
    evict: tuple[PodRef, ...]
    skipped: tuple[SkippedPod, ...]
    blocked: tuple[BlockedPod, ...]

    @property
    def is_blocked(self) -> bool:
        return bool(self.blocked)

    @property
    def blocked_message(self) -> str:
        return "; ".join(blocked.message for blocked in self.blocked)

    def to_status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "evict": [str(pod) for pod in self.evict],
            "skipped": [skipped.to_status() for skipped in self.skipped],
            "blocked": [blocked.to_status() for blocked in self.blocked],
        }


def controller_of(pod: Mapping[str, Any]) -> ControllerRef | None:
    """The ownerReference with ``controller: true``, or None for a bare pod."""
    metadata = pod.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or ():
        if owner.get("controller") is True:
            return ControllerRef(kind=str(owner.get("kind") or ""),
                                 namespace=str(metadata.get("namespace") or "default"),
                                 name=str(owner.get("name") or ""))
    return None


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    """Running, condition Ready True, and not being deleted."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in status.get("conditions") or ())


def _skip_reason(pod: Mapping[str, Any]) -> SkipReason | None:
    metadata = pod.get("metadata") or {}
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return SkipReason.FINISHED
    if metadata.get("deletionTimestamp"):
        return SkipReason.TERMINATING
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
        return SkipReason.MIRROR
    controller = controller_of(pod)
    if controller is not None and controller.kind == "DaemonSet":
        return SkipReason.DAEMON_SET
    return None


def _empty_dirs(pod: Mapping[str, Any]) -> list[str]:
    return [str(volume.get("name")) for volume in (pod.get("spec") or {}).get("volumes") or ()
            if "emptyDir" in volume]


def _blocker(pod: Mapping[str, Any], ref: PodRef, *, local_storage: LocalStoragePolicy) -> BlockedPod | None:
    if controller_of(pod) is None:
        return BlockedPod(ref, (
            f"pod {ref} has no controller (no ownerReference with controller: true), so evicting it would delete "
            "it for good; kubectl drain refuses such pods without --force, and so does this drain. Run it under a "
            "Deployment or StatefulSet, or delete it yourself; the drain then continues"))
    volumes = _empty_dirs(pod)
    if volumes and local_storage is LocalStoragePolicy.BLOCK:
        return BlockedPod(ref, (
            f"pod {ref} has local storage (emptyDir {', '.join(volumes)}) that eviction would lose; set "
            f"{LOCAL_STORAGE_FIELD}: {LocalStoragePolicy.EVICT.value} to evict it anyway (like kubectl drain "
            "--delete-emptydir-data), or move the data to a persistent volume"))
    return None


def _eviction_order(pod: Mapping[str, Any]) -> tuple[int, bool, str, str]:
    ref = PodRef.of(pod)
    priority = (pod.get("spec") or {}).get("priority")
    return (int(priority) if isinstance(priority, int) else 0, is_running_and_ready(pod), ref.namespace, ref.name)


def plan_node(node: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *,
              local_storage: LocalStoragePolicy) -> NodeDrain:
    """Plan the drain of ``node`` from the pods bound to it (others in ``pods`` are ignored)."""
    node_name = str((node.get("metadata") or {}).get("name") or "")
    to_evict: list[Mapping[str, Any]] = []
    skipped: list[SkippedPod] = []
    blocked: list[BlockedPod] = []
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") != node_name:
            continue
        ref = PodRef.of(pod)
        reason = _skip_reason(pod)
        if reason is not None:
            skipped.append(SkippedPod(ref, reason))
            continue
        blocker = _blocker(pod, ref, local_storage=local_storage)
        if blocker is not None:
            blocked.append(blocker)
            continue
        to_evict.append(pod)
    return NodeDrain(
        node=node_name,
        evict=tuple(PodRef.of(pod) for pod in sorted(to_evict, key=_eviction_order)),
        skipped=tuple(sorted(skipped, key=lambda skip: skip.pod)),
        blocked=tuple(sorted(blocked, key=lambda block: block.pod)),
    )
