"""Will green's workers hold what blue runs? Judged before green is created.

Green is built from blue's definition with ``spec.target.overrides`` applied, so
a change of worker count or machine size there can leave green too small; the
upgrade would then stall in Syncing with pods Pending, after a cluster has been
paid for. This check compares, per resource (CPU, memory):

* green: the worker capacity the provider reads from the definition
  (:class:`~bluegreen.clusters.base.WorkerCapacity`: machine sizes, not what
  the kubelet will offer);
* blue: what its pods *request* now, on worker nodes. That is what the
  scheduler must place on green. Blue's allocatable is reported alongside for
  comparison, but green need not match it: spare room on blue is not demand.

Machine size overstates what pods get: each kubelet keeps some back (system and
kube reservations, the eviction threshold). Blue shows how much, node by node
(``capacity`` minus ``allocatable``), so green's usable figure is its machine
size less blue's average reservation per worker times green's worker count.
This errs small for bigger machines (reservations grow slower than machines),
which is the safe side for a check that may block.

What counts on blue, as the scheduler counts it:

* worker nodes only: a node labelled ``node-role.kubernetes.io/control-plane``
  (or the pre-1.24 ``.../master``) belongs to the control plane, which green
  brings its own of, and so do the pods bound to it (static pods, DaemonSet
  copies there);
* every pod not Succeeded or Failed, Pending ones included (they want a place
  too), DaemonSet pods included (green runs its own copies);
* a pod's request per resource is the larger of its containers' sum (with
  sidecars, i.e. init containers with ``restartPolicy: Always``) and its
  largest init container's (plus the sidecars started before it), plus
  ``spec.overhead``; a pod-level ``spec.resources`` request replaces the
  containers' sum; a container with a limit and no request requests its limit,
  as the API server defaults it.

Cordoned workers' pods count, but their allocatable does not: they are
usually on their way out and offer no room. Pods are read a page at a time, so
a cluster of many thousand pods is summed without holding them all.
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from bluegreen.api.status import CapacityStatus, CapacityVerdict
from bluegreen.clusters.base import WorkerCapacity
from bluegreen.kube.client import KubeClient, KubeError, Resource
from bluegreen.kube.quantity import to_bytes, to_millis

__all__ = ["BlueUsage", "check_capacity", "judge", "measure_blue", "pod_requests"]

NODES = Resource("", "v1", "nodes", namespaced=False)
PODS = Resource("", "v1", "pods")
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
PAGE_SIZE = 500
RUNNING_PODS = "status.phase!=Succeeded,status.phase!=Failed"
_DONE_PHASES = frozenset({"Succeeded", "Failed"})
FIX = ("add workers or use bigger machines through spec.target.overrides (the worker groups' count or "
       "machine template), or set spec.preflight.capacity: Warn to go on anyway")


@dataclasses.dataclass(frozen=True)
class Resources:
    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_bytes - other.memory_bytes)

    @classmethod
    def largest(cls, items: Iterable[Resources]) -> Resources:
        """Per resource, the largest (the scheduler takes the max of CPU and of memory separately)."""
        cpu = memory = 0
        for item in items:
            cpu, memory = max(cpu, item.cpu_millis), max(memory, item.memory_bytes)
        return cls(cpu, memory)


@dataclasses.dataclass(frozen=True)
class BlueUsage:
    """Blue's workers and what its pods request on them (see the module docstring for what counts)."""

    workers: int
    cordoned: int
    allocatable: Resources  # schedulable workers only
    reserved_per_worker: Resources | None  # average capacity - allocatable; None when no worker says
    requested: Resources
    pods: int
    unscheduled_pods: int


async def check_capacity(*, green: WorkerCapacity, blue: KubeClient) -> CapacityStatus:
    """Judge ``green`` against what runs on ``blue`` now. Never raises for the cluster's answers:
    blue unreadable is an Unknown verdict saying why (cancellation still propagates)."""
    try:
        usage = await measure_blue(blue)
    except (KubeError, ValueError) as exc:
        return CapacityStatus(
            verdict=CapacityVerdict.UNKNOWN, green_cpu_millis=green.cpu_millis, green_memory_bytes=green.memory_bytes,
            message=f"blue's size could not be read: {exc}; the capacity check needs to list blue's Nodes and Pods",
        )
    return judge(green=green, blue=usage)


async def measure_blue(client: KubeClient) -> BlueUsage:
    """Blue's worker nodes and its pods' requests. API failures raise; a quantity that does not parse
    raises ValueError naming the object."""
    control_plane: set[str] = set()
    workers = cordoned = 0
    allocatable = capacity_total = allocatable_reporting = Resources()
    reporting = 0
    async for page in client.pages(NODES, limit=PAGE_SIZE):
        for node in page:
            metadata = node.get("metadata") or {}
            name = str(metadata.get("name", ""))
            if any(label in (metadata.get("labels") or {}) for label in CONTROL_PLANE_LABELS):
                control_plane.add(name)
                continue
            workers += 1
            status = node.get("status") or {}
            node_allocatable = _resources(status.get("allocatable"), where=f"node {name} allocatable")
            node_capacity = _resources(status.get("capacity"), where=f"node {name} capacity")
            if (node.get("spec") or {}).get("unschedulable"):
                cordoned += 1
            else:
                allocatable += node_allocatable
            if status.get("allocatable") and status.get("capacity"):
                reporting += 1
                capacity_total += node_capacity
                allocatable_reporting += node_allocatable
    requested = Resources()
    pods = unscheduled = 0
    async for page in client.pages(PODS, field_selector=RUNNING_PODS, limit=PAGE_SIZE):
        for pod in page:
            if (pod.get("status") or {}).get("phase") in _DONE_PHASES:
                continue  # a server that ignores the field selector
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name in control_plane:
                continue
            pods += 1
            unscheduled += not node_name
            requested += pod_requests(pod)
    reserved = None
    if reporting:
        total = capacity_total - allocatable_reporting
        reserved = Resources(max(0, total.cpu_millis // reporting), max(0, total.memory_bytes // reporting))
    return BlueUsage(workers=workers, cordoned=cordoned, allocatable=allocatable, reserved_per_worker=reserved,
                     requested=requested, pods=pods, unscheduled_pods=unscheduled)


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for ``pod`` (Kubernetes' effective request, with sidecars and overhead)."""
    metadata = pod.get("metadata") or {}
    where = f"pod {metadata.get('namespace', '')}/{metadata.get('name', '')}"
    spec = pod.get("spec") or {}
    sidecars_so_far = Resources()
    init_peak = Resources()
    for container in spec.get("initContainers") or []:
        request = _container_request(container, where=where)
        if container.get("restartPolicy") == "Always":
            sidecars_so_far += request
            init_peak = Resources.largest([init_peak, sidecars_so_far])
        else:
            init_peak = Resources.largest([init_peak, sidecars_so_far + request])
    regular = Resources()
    for container in spec.get("containers") or []:
        regular += _container_request(container, where=where)
    effective = Resources.largest([regular + sidecars_so_far, init_peak])
    pod_level = (spec.get("resources") or {}).get("requests") or {}
    if pod_level:
        # A pod-level request (PodLevelResources) is the pod's request for that resource, init included.
        given = _resources(pod_level, where=f"{where} spec.resources")
        effective = Resources(given.cpu_millis if "cpu" in pod_level else effective.cpu_millis,
                              given.memory_bytes if "memory" in pod_level else effective.memory_bytes)
    return effective + _resources(spec.get("overhead"), where=f"{where} overhead")


def judge(*, green: WorkerCapacity, blue: BlueUsage) -> CapacityStatus:
    """The verdict and its message; pure. TooSmall when a resource green knows is short, Unknown when
    nothing is short but a size is unknown, Enough otherwise."""
    figures: dict[str, Any] = {
        "green_cpu_millis": green.cpu_millis, "green_memory_bytes": green.memory_bytes,
        "blue_allocatable_cpu_millis": blue.allocatable.cpu_millis,
        "blue_allocatable_memory_bytes": blue.allocatable.memory_bytes,
        "blue_requested_cpu_millis": blue.requested.cpu_millis,
        "blue_requested_memory_bytes": blue.requested.memory_bytes,
    }
    reserved = blue.reserved_per_worker or Resources()
    usable_cpu = None if green.cpu_millis is None else max(0, green.cpu_millis - green.nodes * reserved.cpu_millis)
    usable_memory = (None if green.memory_bytes is None
                     else max(0, green.memory_bytes - green.nodes * reserved.memory_bytes))
    requested = f"{_cpu(blue.requested.cpu_millis)}, {_memory(blue.requested.memory_bytes)}"
    if blue.unscheduled_pods:
        requested += f"; {blue.unscheduled_pods} of {blue.pods} pods are not scheduled yet and count too"
    blue_side = f"blue's {_workers(blue.workers)} have {_cpu(blue.allocatable.cpu_millis)}, " \
                f"{_memory(blue.allocatable.memory_bytes)} allocatable"
    if blue.cordoned:
        blue_side += f" ({blue.cordoned} cordoned, not counted)"
    green_side = _green(green, usable_cpu=usable_cpu, usable_memory=usable_memory,
                        reserved=blue.reserved_per_worker is not None)

    short: list[str] = []
    spare: list[str] = []
    unknown: list[str] = []
    for label, usable, wanted, show in (("CPU", usable_cpu, blue.requested.cpu_millis, _cpu),
                                        ("memory", usable_memory, blue.requested.memory_bytes, _memory)):
        if usable is None:
            unknown.append(label)
        elif usable < wanted:
            short.append(show(wanted - usable, up=True) + (" of memory" if label == "memory" else ""))
        else:
            spare.append(show(usable - wanted))

    if short:
        message = (f"green is too small: {green_side} cannot hold what blue's pods request ({requested}); "
                   f"short by {' and '.join(short)}")
        if unknown:
            message += f" ({' and '.join(unknown)} unknown: {green.detail})"
        message += f". For comparison, {blue_side}. Fix: {FIX}."
        return CapacityStatus(verdict=CapacityVerdict.TOO_SMALL, message=message, **figures)
    if unknown:
        message = (f"green's {' and '.join(unknown)} cannot be told: {green.detail}. Blue's pods request "
                   f"{requested}; {blue_side}. Give the worker machines a size green's definition states, or set "
                   f"spec.preflight.capacity: Off.")
        return CapacityStatus(verdict=CapacityVerdict.UNKNOWN, message=message, **figures)
    holds = "holds" if green.nodes == 1 else "hold"
    message = (f"green is big enough: {green_side} {holds} what blue's pods request ({requested}), with "
               f"{', '.join(spare)} to spare; {blue_side}.")
    return CapacityStatus(verdict=CapacityVerdict.ENOUGH, message=message, **figures)


def _green(green: WorkerCapacity, *, usable_cpu: int | None, usable_memory: int | None, reserved: bool) -> str:
    sizes = ", ".join(part for part in (
        None if green.cpu_millis is None else _cpu(green.cpu_millis),
        None if green.memory_bytes is None else _memory(green.memory_bytes),
    ) if part is not None)
    text = f"green's {_workers(green.nodes)}" + (f" ({sizes}" if sizes else "")
    usable = [part for part in (
        None if usable_cpu is None or usable_cpu == green.cpu_millis else _cpu(usable_cpu),
        None if usable_memory is None or usable_memory == green.memory_bytes else _memory(usable_memory),
    ) if part is not None]
    if usable and reserved:
        text += f"; about {', '.join(usable)} after what blue's kubelets reserve per node"
    return text + (")" if sizes else "")


def _container_request(container: Mapping[str, Any], *, where: str) -> Resources:
    resources = container.get("resources") or {}
    # The API server defaults a missing request to the limit; pods created before that (or in
    # an emulator) may not show it, so it is applied here too.
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return _resources(merged, where=f"{where} container {container.get('name', '?')}")


def _resources(quantities: Mapping[str, Any] | None, *, where: str) -> Resources:
    if not quantities:
        return Resources()
    try:
        return Resources(to_millis(quantities["cpu"]) if "cpu" in quantities else 0,
                         to_bytes(quantities["memory"]) if "memory" in quantities else 0)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _workers(count: int) -> str:
    return f"{count} worker" + ("" if count == 1 else "s")


def _cpu(millis: int, *, up: bool = False) -> str:
    return f"{_trim(Decimal(millis) / 1000, places=2, up=up)} CPU"


def _memory(size: int, *, up: bool = False) -> str:
    gib = Decimal(size) / 2 ** 30
    if gib >= 1:
        return f"{_trim(gib, places=1, up=up)} GiB"
    return f"{_trim(Decimal(size) / 2 ** 20, places=0 if size >= 2 ** 20 else 2, up=up)} MiB"


def _trim(value: Decimal, *, places: int, up: bool) -> str:
    # A shortfall is rounded up, so that it never reads as 0.
    rounding = decimal.ROUND_CEILING if up else decimal.ROUND_HALF_EVEN
    text = f"{value.quantize(Decimal(1).scaleb(-places), rounding=rounding):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
