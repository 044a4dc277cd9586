"""A simulated disruption controller: PodDisruptionBudgets' status follows their pods, as the real one's does.

The Eviction API (``sim.eviction``) decides from a budget's status alone, so without this
controller every budget would block forever (``disruptionsAllowed`` absent is 0). What it
writes, as the upstream controller does:

- ``expectedPods``: with an integer ``minAvailable``, the number of selected pods; otherwise
  (a percentage, or ``maxUnavailable``) the sum of the ``spec.replicas`` of the pods'
  controllers (a Deployment through its ReplicaSet, a ReplicaSet, a StatefulSet);
- ``desiredHealthy``: ``minAvailable`` (a percentage of expectedPods, rounded up), or
  expectedPods - ``maxUnavailable`` (a percentage rounded up), never below 0;
- ``currentHealthy``: selected pods that are Ready, not terminating and not recorded in
  ``disruptedPods`` (an eviction the controller has not yet seen through);
- ``disruptionsAllowed`` = max(0, currentHealthy - desiredHealthy); ``observedGeneration``;
  the ``DisruptionAllowed`` condition (SufficientPods / InsufficientPods);
- ``disruptedPods`` entries are dropped once their pod is gone or terminating, or after
  two minutes (the upstream DeletionTimeout).

A namespace is recomputed whenever one of its pods, budgets or workloads changes.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.sim import eviction, kube_store
from bluegreen.sim.controllers import WatchingController
from bluegreen.sim.kube import KubeEmulator

PODS = "v1/pods"
WATCHED = (PODS, "apps/v1/replicasets", "apps/v1/deployments", "apps/v1/statefulsets")
DELETION_TIMEOUT = datetime.timedelta(minutes=2)

_attached: dict[int, DisruptionController] = {}


def attach(emulator: KubeEmulator) -> DisruptionController:
    """Keep ``emulator``'s PodDisruptionBudgets' status from now until it stops."""
    controller = _attached.get(id(emulator))
    if controller is None or controller.emulator is not emulator or controller.done:
        controller = DisruptionController(emulator)
        _attached[id(emulator)] = controller
        controller.start()
        emulator.on_stop(controller.stop)
    return controller


def _budgets_resource(emulator: KubeEmulator) -> str:
    for version in ("v1", "v1beta1"):
        if emulator.store.resolve("policy", version, "poddisruptionbudgets") is not None:
            return f"policy/{version}/poddisruptionbudgets"
    raise RuntimeError(f"emulator {emulator.name!r} serves no PodDisruptionBudgets")


def _scaled(value: Any, total: int) -> int | None:
    """An IntOrString against ``total``: a percentage rounds up, as the controller does."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * total / 100)
    return None


def _parse_time(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class DisruptionController(WatchingController[str]):
    """The disruption controller of one emulator; a reconcile key is a namespace."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.budgets = _budgets_resource(emulator)
        super().__init__(emulator, name="disruption", watched=(self.budgets, *WATCHED), registry=_attached)

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[str]:
        namespace = (obj.get("metadata") or {}).get("namespace")
        return (str(namespace),) if namespace else ()

    async def _sync(self, namespace: str) -> None:
        pods = self.emulator.list(PODS, namespace)
        earliest_expiry: float | None = None
        for pdb in self.emulator.list(self.budgets, namespace):
            status, expiry = self._status(pdb, pods)
            if expiry is not None:
                earliest_expiry = expiry if earliest_expiry is None else min(earliest_expiry, expiry)
            if status != (pdb.get("status") or {}):
                try:
                    self.emulator.patch(self.budgets, namespace, pdb["metadata"]["name"], {"status": status},
                                        subresource="status")
                except kube_store.KubeApiError as exc:
                    if exc.status != 404:
                        raise
        if earliest_expiry is not None:
            self._workers.enqueue_later(namespace, earliest_expiry)

    def _status(self, pdb: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[dict[str, Any], float | None]:
        spec = pdb.get("spec") or {}
        old = dict(pdb.get("status") or {})
        empty_matches_all = self.budgets.startswith("policy/v1/")
        selected = [pod for pod in pods if eviction.selector_matches(
            spec.get("selector"), (pod.get("metadata") or {}).get("labels") or {},
            empty_matches_all=empty_matches_all)]
        now = datetime.datetime.now(datetime.UTC)
        by_name = {pod["metadata"]["name"]: pod for pod in selected}
        disrupted: dict[str, str] = {}
        expiry: float | None = None
        for name, when in (old.get("disruptedPods") or {}).items():
            pod = by_name.get(name)
            started = _parse_time(str(when))
            if pod is None or pod["metadata"].get("deletionTimestamp") or started is None:
                continue
            left = (started + DELETION_TIMEOUT - now).total_seconds()
            if left <= 0:
                continue
            disrupted[name] = when
            expiry = left if expiry is None else min(expiry, left)
        healthy = sum(1 for pod in selected if eviction.pod_ready(pod)
                      and not pod["metadata"].get("deletionTimestamp") and pod["metadata"]["name"] not in disrupted)
        min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
        if isinstance(min_available, int) and not isinstance(min_available, bool):
            expected, desired = len(selected), min_available
        else:
            expected = self._expected_from_controllers(selected)
            if min_available is not None:
                desired = _scaled(min_available, expected) or 0
            elif max_unavailable is not None:
                desired = max(0, expected - (_scaled(max_unavailable, expected) or 0))
            else:
                desired = 0
        allowed = max(0, healthy - desired)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        status: dict[str, Any] = {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "conditions": eviction.with_disruption_condition(old.get("conditions") or [], allowed=allowed > 0,
                                                             now=stamp),
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        return status, expiry

    def _expected_from_controllers(self, pods: list[dict[str, Any]]) -> int:
        seen: set[str] = set()
        total = 0
        for pod in pods:
            owner = next((ref for ref in pod["metadata"].get("ownerReferences") or () if ref.get("controller")), None)
            if owner is None or str(owner.get("uid")) in seen:
                continue
            seen.add(str(owner.get("uid")))
            total += self._replicas_of(str(pod["metadata"]["namespace"]), owner)
        return total

    def _replicas_of(self, namespace: str, owner: dict[str, Any]) -> int:
        kind, name = owner.get("kind"), str(owner.get("name"))
        resource = {"ReplicaSet": "apps/v1/replicasets", "StatefulSet": "apps/v1/statefulsets",
                    "Deployment": "apps/v1/deployments"}.get(str(kind))
        if resource is None:
            return 0
        obj = self.emulator.get(resource, namespace, name)
        if obj is None:
            return 0
        if kind == "ReplicaSet":
            parent = next((ref for ref in obj["metadata"].get("ownerReferences") or ()
                           if ref.get("controller") and ref.get("kind") == "Deployment"), None)
            if parent is not None:
                return self._replicas_of(namespace, parent)
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        return replicas if isinstance(replicas, int) else 1
