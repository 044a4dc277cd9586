"""The removed-API scan of what runs on blue, read through the API server itself.

Flux strips the ``kubectl.kubernetes.io/last-applied-configuration`` annotation,
so the version an object was written with cannot be read from the object.
Instead discovery says which removed group/versions blue still serves, and
every object is listed through exactly those.

What that reports, honestly: the API server stores a resource once and serves
it at every version it has, so an object written as ``batch/v1`` CronJob is also
listed through ``batch/v1beta1`` while that is served. The live scan therefore
reports every object of a kind that blue still serves at a version the target
removes, once per such served version (an HPA may appear under both
``autoscaling/v2beta1`` and ``autoscaling/v2beta2``). A live finding means
"this object is reachable through a version the target drops", not "this
object was written through it": whether a writer still uses the old version
is what the manifest scan of Flux's source answers (and, per REFERENCE.md, the
apiserver's ``apiserver_requested_deprecated_apis`` metric where available).
"""

from __future__ import annotations

from typing import Any

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.removed_apis import Removal, removals_up_to

__all__ = ["scan_live"]


async def scan_live(client: KubeClient, *, cluster: str, current: str, target: str) -> list[Finding]:
    """Objects on ``cluster`` listed through a group/version it serves and ``target`` removes.

    Discovery failures other than "not served" (and list failures) are raised:
    a scan that silently saw nothing would let a Block policy pass.
    """
    by_group_version: dict[str, list[Removal]] = {}
    for removal in removals_up_to(current=current, target=target):
        by_group_version.setdefault(removal.api_version, []).append(removal)
    where = f"live on {cluster}"
    findings: list[Finding] = []
    for group_version, removals in by_group_version.items():
        served = await client.resources(group_version)
        if not served:
            continue
        for removal in removals:
            resource = _listable(served, removal)
            if resource is None:
                continue
            for obj in await client.list(resource):
                metadata = obj.get("metadata") or {}
                findings.append(Finding.of(removal, namespace=metadata.get("namespace"),
                                           name=str(metadata.get("name", "")), where=where))
    return findings


def _listable(served: list[dict[str, Any]], removal: Removal) -> Resource | None:
    """The served resource of ``removal.kind``, if it can be listed (reviews, for one, cannot)."""
    for entry in served:
        name = str(entry.get("name", ""))
        if entry.get("kind") != removal.kind or "/" in name or "list" not in (entry.get("verbs") or ()):
            continue
        return Resource(removal.group, removal.version, name, namespaced=bool(entry.get("namespaced", True)))
    return None
