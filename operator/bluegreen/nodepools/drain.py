"""Cordon, evict, and one drain pass over one node: the I/O half of the node drain.

Pods leave through the Eviction API (``POST pods/{name}/eviction``, a
``policy/v1`` Eviction), never DELETE, because only an eviction consults the
PodDisruptionBudgets: the API server refuses it with 429 while the budget allows
no disruption, and that refusal is the whole point of draining gently.

:func:`drain_step` does *one* thing per call (cordon and evict the next pod, or
report why not) and keeps nothing between calls: the node and its pods are read
afresh every time, and what must survive a restart (the eviction journal, when a
budget started blocking) comes back from the caller, who keeps it in status. So
a pass interrupted anywhere is simply run again:

* cordoning an unschedulable node changes nothing;
* an evicted pod is terminating on the next read and is skipped, not evicted twice;
* an eviction names the pod's uid as a precondition, so a StatefulSet's
  replacement that took the same name is never evicted by a stale request
  (the API answers 409, reported as :attr:`EvictionResult.GONE`).

Pacing, deadlines and the pause between nodes are the caller's: this module
never sleeps. A 429 is an answer (:attr:`EvictionResult.BLOCKED_BY_BUDGET`, with
the budget's name, its message and the server's retry-after), not an error.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bluegreen.kube import client as kubeclient
from bluegreen.kube.client import KubeClient, Resource
from bluegreen.nodepools.plan import (
    LocalStoragePolicy,
    NodeDrain,
    PodRef,
    SkipReason,
    controller_of,
    plan_node,
)
from bluegreen.nodepools.replacements import EvictedPod, count_ready

__all__ = [
    "NODES",
    "PODS",
    "DrainOutcome",
    "DrainProgress",
    "Eviction",
    "EvictionResult",
    "cordon",
    "drain_step",
    "evict",
    "uncordon",
]

NODES = Resource("", "v1", "nodes", namespaced=False)
PODS = Resource("", "v1", "pods")
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
# The API server's words in a DisruptionBudget cause: "The disruption budget NAME needs ... / does not allow ...".
_BUDGET_NAME = re.compile(r"^The disruption budget (\S+) ")


# --- cordon --------------------------------------------------------------------------------------

async def cordon(client: KubeClient, node: str, *, unschedulable: bool = True) -> bool:
    """Mark ``node`` unschedulable (or, with False, schedulable again); True if it changed.

    A merge patch of ``spec.unschedulable`` sent only when the node differs; uncordoning
    removes the field, as a node that was never cordoned has none. A missing node is a
    :class:`~bluegreen.kube.client.NotFoundError`.
    """
    current = await client.get(NODES, name=node)
    if current is None:
        raise kubeclient.NotFoundError(404, "NotFound", f'nodes "{node}" not found', method="GET",
                                       path=NODES.path(name=node))
    if bool((current.get("spec") or {}).get("unschedulable")) == unschedulable:
        return False
    await client.patch(NODES, name=node, body={"spec": {"unschedulable": True if unschedulable else None}})
    return True


async def uncordon(client: KubeClient, node: str) -> bool:
    """:func:`cordon` undone: the node is schedulable again (what an abort does to every old node)."""
    return await cordon(client, node, unschedulable=False)


# --- eviction ------------------------------------------------------------------------------------

class EvictionResult(enum.StrEnum):
    EVICTED = "Evicted"
    """The API server accepted the eviction; the pod is terminating."""
    GONE = "Gone"
    """The pod was already gone (404), or its name now belongs to a replacement (409 on the uid precondition)."""
    BLOCKED_BY_BUDGET = "BlockedByBudget"
    """429: a PodDisruptionBudget allows no disruption now (or the budget is still being processed)."""


@dataclasses.dataclass(frozen=True)
class Eviction:
    pod: PodRef
    result: EvictionResult
    message: str = ""
    budget: str | None = None
    """The blocking PodDisruptionBudget's name, from the 429's ``details.causes``."""
    retry_after: float | None = None
    """Seconds the API server suggests waiting (``Retry-After`` or ``details.retryAfterSeconds``)."""

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"pod": str(self.pod), "result": self.result.value}
        if self.message:
            entry["message"] = self.message
        if self.budget:
            entry["budget"] = self.budget
        if self.retry_after is not None:
            entry["retryAfterSeconds"] = self.retry_after
        return entry


async def evict(client: KubeClient, pod: Mapping[str, Any] | PodRef, *,
                grace_period_seconds: int | None = None) -> Eviction:
    """Ask the API server to evict one pod; every answer but 201/404/429 (and 409 on the uid) is raised."""
    ref = pod if isinstance(pod, PodRef) else PodRef.of(pod)
    try:
        await client.evict(ref.namespace, ref.name, uid=ref.uid or None, grace_period_seconds=grace_period_seconds)
    except kubeclient.NotFoundError as exc:
        return Eviction(ref, EvictionResult.GONE, exc.message)
    except kubeclient.ConflictError as exc:
        if ref.uid and "precondition" in exc.message.lower():  # a new pod of the same name: ours is gone
            return Eviction(ref, EvictionResult.GONE, exc.message)
        raise
    except kubeclient.EvictionBlockedError as exc:
        return _blocked(ref, exc)
    return Eviction(ref, EvictionResult.EVICTED)


def _blocked(ref: PodRef, error: kubeclient.EvictionBlockedError) -> Eviction:
    budget: str | None = None
    messages = [error.message or "TooManyRequests"]
    for cause in error.details.get("causes") or ():
        if not isinstance(cause, dict) or cause.get("reason") != DISRUPTION_BUDGET_CAUSE:
            continue
        cause_message = str(cause.get("message") or "")
        messages.append(cause_message)
        match = _BUDGET_NAME.match(cause_message)
        if match and budget is None:
            budget = match.group(1)
    return Eviction(ref, EvictionResult.BLOCKED_BY_BUDGET, " ".join(messages), budget=budget,
                    retry_after=error.retry_after)


# --- one pass over one node ----------------------------------------------------------------------

class DrainOutcome(enum.StrEnum):
    """What one :func:`drain_step` did or found; only ``Done`` ends the node's drain."""

    DONE = "Done"
    """Nothing left to evict, and the pods this drain evicted have finished terminating."""
    EVICTED = "Evicted"
    """One pod was evicted (``evicted`` is its journal entry); call again."""
    POD_GONE = "PodGone"
    """The next pod vanished between the read and the eviction; nothing evicted, call again."""
    WAITING_FOR_TERMINATION = "WaitingForTermination"
    """Nothing left to evict, but pods this drain evicted are still terminating on the node."""
    BLOCKED_BY_BUDGET = "BlockedByBudget"
    """A PodDisruptionBudget refused the eviction; ``since`` says how long, the caller's deadline judges."""
    BLOCKED_BY_POLICY = "BlockedByPolicy"
    """A pod must not be evicted as the spec stands (no controller, local storage under ``Block``)."""


@dataclasses.dataclass(frozen=True)
class DrainProgress:
    node: str
    outcome: DrainOutcome
    message: str
    cordoned: bool = False
    """This pass cordoned the node."""
    pod: PodRef | None = None
    """The pod evicted, or the one blocking."""
    evicted: EvictedPod | None = None
    budget: str | None = None
    since: datetime.datetime | None = None
    """When the current block by a budget began (kept across passes while the same pod stays blocked)."""
    retry_after: float | None = None
    remaining: int = 0
    """Pods still to evict from the node after this pass."""

    @property
    def done(self) -> bool:
        return self.outcome is DrainOutcome.DONE

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"node": self.node, "outcome": self.outcome.value, "message": self.message,
                                 "remaining": self.remaining}
        if self.pod is not None:
            entry["pod"] = self.pod.to_status()
        if self.budget:
            entry["budget"] = self.budget
        if self.since is not None:
            entry["since"] = self.since.isoformat()
        if self.retry_after is not None:
            entry["retryAfterSeconds"] = self.retry_after
        return entry

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> DrainProgress:
        """Enough of a previous pass, from status, for the next to know how long a budget has blocked."""
        since = entry.get("since")
        return cls(
            node=str(entry["node"]), outcome=DrainOutcome(entry["outcome"]), message=str(entry.get("message") or ""),
            pod=PodRef.from_status(entry["pod"]) if entry.get("pod") else None,
            budget=entry.get("budget") or None,
            since=datetime.datetime.fromisoformat(str(since)) if since else None,
            retry_after=entry.get("retryAfterSeconds"),
            remaining=int(entry.get("remaining") or 0),
        )


async def drain_step(
    client: KubeClient,
    node_name: str,
    *,
    local_storage: LocalStoragePolicy,
    evicted_so_far: Sequence[EvictedPod],
    now: datetime.datetime,
    previous: DrainProgress | None = None,
    draining_nodes: Collection[str] | None = None,
    grace_period_seconds: int | None = None,
) -> DrainProgress:
    """One pass of the drain of ``node_name``: cordon if needed, then evict at most one pod, or say why not.

    ``evicted_so_far`` is the journal (this node's entries at least): the pass waits for those
    pods to finish terminating before it reports Done. ``previous`` is the last pass's progress,
    so that a budget blocking the same pod keeps its ``since``. ``draining_nodes`` are all the
    nodes being drained (the old pool); by default, every cordoned node and this one. They decide
    which of a controller's Ready pods count as "elsewhere" in the journal entry, and must be the
    ones later given to :func:`~bluegreen.nodepools.replacements.replacements_ready`.
    ``grace_period_seconds`` overrides the pods' own termination grace period.
    """
    node = await client.get(NODES, name=node_name)
    if node is None:
        return DrainProgress(node_name, DrainOutcome.DONE, f"node {node_name} is gone: nothing left to drain")
    cordoned = await cordon(client, node_name)
    pods = await _pods_on(client, node_name)
    plan = plan_node(node, pods, local_storage=local_storage)
    if plan.is_blocked:
        return DrainProgress(node_name, DrainOutcome.BLOCKED_BY_POLICY, plan.blocked_message, cordoned=cordoned,
                             pod=plan.blocked[0].pod, remaining=len(plan.evict))
    if not plan.evict:
        return _finished(plan, evicted_so_far, cordoned=cordoned)
    target_ref = plan.evict[0]
    target = next(pod for pod in pods if PodRef.of(pod) == target_ref)
    controller = controller_of(target)
    assert controller is not None  # plan_node blocks pods without one
    siblings = await client.list(PODS, namespace=controller.namespace)
    excluded = set(draining_nodes) if draining_nodes is not None else await _cordoned_nodes(client)
    excluded.add(node_name)
    ready_before = count_ready(controller, siblings)
    ready_elsewhere = count_ready(controller, siblings, excluding_nodes=excluded)

    eviction = await evict(client, target_ref, grace_period_seconds=grace_period_seconds)
    remaining = len(plan.evict) - 1
    if eviction.result is EvictionResult.EVICTED:
        entry = EvictedPod(pod=target_ref, node=node_name, controller=controller, at=now,
                           ready_before=ready_before, ready_elsewhere_before=ready_elsewhere)
        return DrainProgress(node_name, DrainOutcome.EVICTED, f"evicted {target_ref} ({controller})",
                             cordoned=cordoned, pod=target_ref, evicted=entry, remaining=remaining)
    if eviction.result is EvictionResult.GONE:
        return DrainProgress(node_name, DrainOutcome.POD_GONE, f"pod {target_ref} was already gone",
                             cordoned=cordoned, pod=target_ref, remaining=remaining)
    since = now
    if (previous is not None and previous.outcome is DrainOutcome.BLOCKED_BY_BUDGET and previous.node == node_name
            and previous.pod == target_ref and previous.since is not None):
        since = previous.since
    budget = f"PodDisruptionBudget {target_ref.namespace}/{eviction.budget}" if eviction.budget else "a budget"
    message = f"eviction of {target_ref} refused by {budget} since {since.isoformat()}: {eviction.message}"
    return DrainProgress(node_name, DrainOutcome.BLOCKED_BY_BUDGET, message, cordoned=cordoned, pod=target_ref,
                         budget=eviction.budget, since=since, retry_after=eviction.retry_after,
                         remaining=len(plan.evict))


def _finished(plan: NodeDrain, evicted_so_far: Sequence[EvictedPod], *, cordoned: bool) -> DrainProgress:
    ours = {(entry.pod.namespace, entry.pod.name, entry.pod.uid) for entry in evicted_so_far}
    leaving = [skipped.pod for skipped in plan.skipped if skipped.reason is SkipReason.TERMINATING
               and (skipped.pod.namespace, skipped.pod.name, skipped.pod.uid) in ours]
    if leaving:
        names = ", ".join(str(pod) for pod in leaving)
        return DrainProgress(plan.node, DrainOutcome.WAITING_FOR_TERMINATION,
                             f"waiting for {len(leaving)} evicted pod(s) to terminate on {plan.node}: {names}",
                             cordoned=cordoned, pod=leaving[0])
    left = f" ({len(plan.skipped)} pod(s) left: DaemonSet, mirror, finished or terminating)" if plan.skipped else ""
    return DrainProgress(plan.node, DrainOutcome.DONE, f"node {plan.node} drained{left}", cordoned=cordoned)


async def _pods_on(client: KubeClient, node_name: str) -> list[dict[str, Any]]:
    return [pod async for page in client.pages(PODS, field_selector=f"spec.nodeName={node_name}") for pod in page]


async def _cordoned_nodes(client: KubeClient) -> set[str]:
    return {str(node["metadata"]["name"]) for node in await client.list(NODES)
            if (node.get("spec") or {}).get("unschedulable")}
