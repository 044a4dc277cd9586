"""A simulated StatefulSet and Deployment controller for one emulated cluster: replicas come and go.

The emulated workload clusters have no nodes and no controllers, so a
StatefulSet's status would never follow its ``spec.replicas``. A handoff
(``spec.hooks[].handoff``) waits for exactly that: blue's copy to report no
replica left before green's starts, then green's to report its replicas ready.
This module plays the two controllers for what the API shows, one pod at a
time with ``pod_delay`` seconds per step, so a test can see the order things
happen in:

* scaling up, one pod is created (``status.replicas`` + 1), then after a delay
  it is ready (``readyReplicas``, ``availableReplicas`` + 1); the next pod waits
  until this one is ready, as a StatefulSet's OrderedReady policy does;
* scaling down, the highest pod stops being ready, then after a delay it is
  gone (``status.replicas`` - 1), then the next;
* ``status.observedGeneration`` follows ``metadata.generation`` as soon as the
  controller has seen it; ``updatedReplicas`` (and ``currentReplicas`` for
  StatefulSets) equal ``replicas``.

No pods are created (nothing would run them), no rollouts of a changed
template, no ``maxSurge``/``maxUnavailable``, no parallel pod management. A
change of ``spec.replicas`` midway turns the steps around at the next one.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from bluegreen.sim import kube_store
from bluegreen.sim.controllers import WatchingController
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

STATEFULSETS = "apps/v1/statefulsets"
DEPLOYMENTS = "apps/v1/deployments"
RESOURCES = (STATEFULSETS, DEPLOYMENTS)

Key = tuple[str, str, str]  # (resource, namespace, name)
_attached: dict[int, WorkloadController] = {}  # by id(emulator); an entry leaves when its emulator stops


def attach(emulator: KubeEmulator, *, pod_delay: float = 0.05) -> WorkloadController:
    """Run StatefulSets and Deployments on ``emulator`` from now until it stops."""
    controller = _attached.get(id(emulator))
    if controller is None or controller.emulator is not emulator or controller.done:
        controller = WorkloadController(emulator, pod_delay=pod_delay)
        _attached[id(emulator)] = controller
        controller.start()
        emulator.on_stop(controller.stop)
    return controller


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class WorkloadController(WatchingController[Key]):
    """The StatefulSet and Deployment controllers of one emulator (status only)."""

    def __init__(self, emulator: KubeEmulator, *, pod_delay: float = 0.05) -> None:
        super().__init__(emulator, name="workloads", watched=RESOURCES, registry=_attached)
        self.pod_delay = pod_delay

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[Key]:
        return () if event_type == "DELETED" else (_key(resource, obj),)

    async def _sync(self, key: Key) -> None:
        resource, namespace, name = key
        while not self._stopping:
            obj = self.emulator.get(resource, namespace, name)
            if obj is None:
                return
            status = dict(obj.get("status") or {})
            desired = _int((obj.get("spec") or {}).get("replicas"), 1)
            replicas = _int(status.get("replicas"))
            ready = _int(status.get("readyReplicas"))
            generation = obj["metadata"].get("generation")
            ready = min(ready, replicas)
            if ready < replicas and replicas <= desired:
                ready += 1  # the newest pod becomes ready before the next is created
            elif replicas < desired:
                replicas += 1
            elif replicas > desired and ready == replicas:
                ready -= 1  # the highest pod stops being ready, then goes
            elif replicas > desired:
                replicas -= 1
            written = self._write(resource, obj, replicas=replicas, ready=ready, generation=generation)
            if not written:
                return  # nothing left to do
            if (replicas, ready) == (desired, desired):
                return
            await asyncio.sleep(self.pod_delay)

    def _write(self, resource: str, obj: dict[str, Any], *, replicas: int, ready: int, generation: Any) -> bool:
        status = dict(obj.get("status") or {})
        new = {**status, "observedGeneration": generation, "replicas": replicas, "readyReplicas": ready,
               "availableReplicas": ready, "updatedReplicas": replicas}
        if resource == STATEFULSETS:
            new["currentReplicas"] = replicas
        if new == status:
            return False
        meta = obj["metadata"]
        try:
            self.emulator.patch(resource, meta["namespace"], meta["name"], {"status": new}, subresource="status")
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
            return False
        return True


def _key(resource: str, obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (resource, str(meta.get("namespace", "")), str(meta.get("name", "")))
