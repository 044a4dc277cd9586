"""Workloads that must not run on blue and green at the same time, found before green exists.

A blue/green upgrade runs every workload twice for a while. For most that is the
point; for some it is harm:

* a StatefulSet with ``volumeClaimTemplates`` keeps its data on volumes bound to
  blue (block volumes cannot be attached to two clusters), so green's copy starts
  empty or fights over the data;
* a CronJob fires on both clusters at once: two backups, two invoices;
* singletons the user declares (a leader-elected controller whose lease lives in
  one cluster, a consumer that must be alone on a queue) run twice.

This scan only lists them, with a reason a person can act on; the policy (Block,
Warn, Handoff) is decided elsewhere. ``kube-system`` is skipped: it belongs to the
cluster, and each cluster brings its own. A declared singleton that is not on the
cluster is reported separately, since a typo there would otherwise quietly turn
off the protection the user asked for. Results are sorted so status does not churn.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bluegreen.kube.client import KubeClient, Resource

STATEFULSETS = Resource("apps", "v1", "statefulsets")
CRONJOBS = Resource("batch", "v1", "cronjobs")
SKIPPED_NAMESPACES = frozenset({"kube-system"})
SINGLETON_REASON = "declared a singleton: it must run on one cluster only"

SINGLETON_KINDS: Mapping[str, Resource] = {
    "Deployment": Resource("apps", "v1", "deployments"),
    "StatefulSet": STATEFULSETS,
    "DaemonSet": Resource("apps", "v1", "daemonsets"),
    "ReplicaSet": Resource("apps", "v1", "replicasets"),
    "CronJob": CRONJOBS,
    "Job": Resource("batch", "v1", "jobs"),
}
"""The kinds a declared singleton may have: the ones that run pods."""


@dataclasses.dataclass(frozen=True)
class StatefulWorkload:
    """One workload that must not run on both clusters; ``reason`` says why, for status and people."""

    kind: str
    namespace: str
    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class StatefulScan:
    """What :func:`scan_stateful` found: the workloads, and the declared singletons absent from the cluster."""

    workloads: list[StatefulWorkload]
    missing: list[StatefulWorkload]


async def scan_stateful(client: KubeClient, *, singletons: Sequence[tuple[str, str, str]] = ()) -> StatefulScan:
    """List the cluster's StatefulSets with volume claims, its CronJobs, and the declared ``singletons``.

    ``singletons`` are ``(kind, namespace, name)``; a kind outside :data:`SINGLETON_KINDS` raises
    ValueError naming the accepted kinds. A declared singleton is looked up wherever it is, even in
    kube-system, because the user named it. One that is also found by the scan is listed once,
    with both reasons. API failures are raised (the caller retries and shows them).
    """
    for kind, _, _ in singletons:
        if kind not in SINGLETON_KINDS:
            raise ValueError(f"singleton kind {kind!r} is not one of {', '.join(SINGLETON_KINDS)}")
    statefulsets, cronjobs, *declared = await asyncio.gather(
        client.list(STATEFULSETS),
        client.list(CRONJOBS),
        *(client.get(SINGLETON_KINDS[kind], namespace=namespace, name=name) for kind, namespace, name in singletons),
    )
    found: dict[tuple[str, str, str], StatefulWorkload] = {}
    for obj in statefulsets:
        reason = _statefulset_reason(obj)
        if reason is not None and _namespace(obj) not in SKIPPED_NAMESPACES:
            _add(found, _workload("StatefulSet", obj, reason))
    for obj in cronjobs:
        if _namespace(obj) not in SKIPPED_NAMESPACES:
            _add(found, _workload("CronJob", obj, _cronjob_reason(obj)))
    missing: list[StatefulWorkload] = []
    for (kind, namespace, name), obj in zip(singletons, declared, strict=True):
        if obj is None:
            missing.append(StatefulWorkload(
                kind, namespace, name,
                f"declared a singleton, but there is no {kind} {namespace}/{name} on the cluster: "
                f"check the kind, namespace and name",
            ))
        else:
            _add(found, StatefulWorkload(kind, namespace, name, SINGLETON_REASON))
    return StatefulScan(workloads=sorted(found.values(), key=_key), missing=sorted(set(missing), key=_key))


def _add(found: dict[tuple[str, str, str], StatefulWorkload], workload: StatefulWorkload) -> None:
    key = _key(workload)
    earlier = found.get(key)
    if earlier is None:
        found[key] = workload
    elif workload.reason not in earlier.reason:
        found[key] = dataclasses.replace(earlier, reason=f"{earlier.reason}; {workload.reason}")


def _key(workload: StatefulWorkload) -> tuple[str, str, str]:
    return (workload.kind, workload.namespace, workload.name)


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _workload(kind: str, obj: Mapping[str, Any], reason: str) -> StatefulWorkload:
    return StatefulWorkload(kind, _namespace(obj), str(obj["metadata"]["name"]), reason)


def _statefulset_reason(obj: Mapping[str, Any]) -> str | None:
    templates = (obj.get("spec") or {}).get("volumeClaimTemplates") or []
    if not templates:
        return None
    claims = ", ".join(_claim(template) for template in templates)
    return f"volume claims {claims}: the data stays on this cluster's volumes"


def _claim(template: Mapping[str, Any]) -> str:
    name = str((template.get("metadata") or {}).get("name") or "?")
    spec = template.get("spec") or {}
    details = []
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if size:
        details.append(str(size))
    storage_class = spec.get("storageClassName")
    details.append(f"storage class {storage_class}" if storage_class else "default storage class")
    return f"{name} ({', '.join(details)})"


def _cronjob_reason(obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec") or {}
    schedule = spec.get("schedule")
    reason = "would run on both clusters at once"
    if schedule:
        reason += f" (schedule {schedule!r})"
    if spec.get("suspend"):
        reason += "; suspended here, but green's copy may not be"
    return reason
