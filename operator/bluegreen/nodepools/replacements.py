"""Have the evicted pods come back, Running and Ready, on nodes that are staying?

Lumo's rule for rotating workers: drain one node, *check the pods came up*, only
then the next. An eviction only removes a pod; its controller makes the
replacement, which the scheduler may place on another old node (cordoning stops
that, but a node cordoned by hand may be uncordoned by someone) or cannot place
at all (the new pool is full). Moving to the next node before the replacements
are Ready stacks disruptions and can take a workload below what its
PodDisruptionBudget was protecting in the first place.

"Back" is judged per controller (ownerReference kind and name), because the
replacement is a new pod with a new name (a ReplicaSet's) or the same name and a
new uid (a StatefulSet's). Each journal entry (:class:`EvictedPod`) records,
just before its eviction, how many of its controller's pods were Running and
Ready in the whole cluster (``ready_before``) and how many of those were on
nodes not being drained (``ready_elsewhere_before``). For a controller with
``k`` evicted pods, taking the figures of its first eviction, the drain waits
for::

    min(ready_elsewhere_before + k, ready_before)

Ready pods on nodes outside ``draining_nodes``: what was already on new nodes
plus one per evicted pod, but never more than were Ready before (a pod evicted
while crash-looping will not come back Ready). Pods still on other old nodes
count in neither figure's "elsewhere", so a workload spread over several old
nodes is judged node by node.

The caller must pass the same ``draining_nodes`` (all old nodes) it drained
with. If the controller was scaled down or deleted meanwhile the count may
never be reached; the message names what is missing, and the caller's
deadline turns that into a condition a person can see.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bluegreen.nodepools.plan import ControllerRef, PodRef, controller_of, is_running_and_ready

__all__ = ["EvictedPod", "count_ready", "replacements_ready"]


@dataclasses.dataclass(frozen=True)
class EvictedPod:
    """One entry of the eviction journal."""

    pod: PodRef
    node: str
    controller: ControllerRef
    at: datetime.datetime
    ready_before: int
    """The controller's Running and Ready pods, anywhere, just before this eviction."""
    ready_elsewhere_before: int
    """Of those, the ones on nodes not being drained."""

    def to_status(self) -> dict[str, Any]:
        return {
            "pod": self.pod.to_status(),
            "node": self.node,
            "controller": self.controller.to_status(),
            "at": self.at.isoformat(),
            "readyBefore": self.ready_before,
            "readyElsewhereBefore": self.ready_elsewhere_before,
        }

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> EvictedPod:
        """The journal entry back from status, where the operator keeps it between passes."""
        return cls(
            pod=PodRef.from_status(entry["pod"]),
            node=str(entry["node"]),
            controller=ControllerRef.from_status(entry["controller"]),
            at=datetime.datetime.fromisoformat(str(entry["at"])),
            ready_before=int(entry["readyBefore"]),
            ready_elsewhere_before=int(entry["readyElsewhereBefore"]),
        )


def count_ready(controller: ControllerRef, pods: Sequence[Mapping[str, Any]], *,
                excluding_nodes: Collection[str] = ()) -> int:
    """The controller's Running and Ready pods, on bound nodes other than ``excluding_nodes``."""
    count = 0
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node not in excluding_nodes and controller_of(pod) == controller and is_running_and_ready(pod):
            count += 1
    return count


def replacements_ready(evicted: Sequence[EvictedPod], pods_now: Sequence[Mapping[str, Any]], *,
                       draining_nodes: Collection[str]) -> tuple[bool, str]:
    """True when every evicted pod's controller is back to strength on non-draining nodes; and why not."""
    if not evicted:
        return True, "no pods were evicted"
    first: dict[ControllerRef, EvictedPod] = {}
    pods_evicted: dict[ControllerRef, set[tuple[str, str, str]]] = {}
    for entry in evicted:
        first.setdefault(entry.controller, entry)
        # By uid too: a StatefulSet's replacement has the evicted pod's name, and evicting it is another eviction.
        pods_evicted.setdefault(entry.controller, set()).add((entry.pod.namespace, entry.pod.name, entry.pod.uid))
    missing: list[str] = []
    reached: list[str] = []
    for controller, entry in first.items():
        wanted = min(entry.ready_elsewhere_before + len(pods_evicted[controller]), entry.ready_before)
        ready = count_ready(controller, pods_now, excluding_nodes=draining_nodes)
        line = f"{controller}: {ready} of {wanted} Ready on new nodes"
        (reached if ready >= wanted else missing).append(line)
    if missing:
        return False, "; ".join(missing)
    return True, "; ".join(reached)
