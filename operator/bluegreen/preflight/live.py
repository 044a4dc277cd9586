"""The removed-API scan of what runs on blue, read through the API server itself.

The API server stores an object once and serves it at every version it has, so
listing through ``batch/v1beta1`` also returns CronJobs written as ``batch/v1``:
whether an object is *reachable* through a removed version says nothing about
its writer. Flux strips the ``kubectl.kubernetes.io/last-applied-configuration``
annotation, so the object's own text does not say either. What does is
``metadata.managedFields``: the API server records, per manager and operation,
the ``apiVersion`` of the request URL (Flux's kustomize-controller appears there
as manager ``kustomize-controller``).

So each kind a removal in the window touches is listed once, through a version
blue serves (the replacement when served, so the scan itself does not count as a
deprecated-API request), and an object is reported once per removed apiVersion
that one of its managedFields entries names, with the managers in ``where``.
An object with no managedFields at all (stripped by a client, or older than the
field) cannot be told apart: it is reported under each removed version blue
still serves for its kind, and ``where`` says that it cannot tell. Whether a
writer will keep using the old version is what the manifest scan of Flux's
source answers.
"""

from __future__ import annotations

from typing import Any

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.removed_apis import Removal, removals_up_to

__all__ = ["scan_live"]


async def scan_live(client: KubeClient, *, cluster: str, current: str, target: str) -> list[Finding]:
    """Objects on ``cluster`` that a writer wrote through a group/version ``target`` removes.

    Discovery failures other than "not served" (and list failures) are raised:
    a scan that silently saw nothing would let a Block policy pass.
    """
    by_kind: dict[str, list[Removal]] = {}
    for removal in removals_up_to(current=current, target=target):
        by_kind.setdefault(removal.kind, []).append(removal)
    discovery = _Discovery(client)
    findings: list[Finding] = []
    for kind, removals in by_kind.items():
        still_served = [removal for removal in removals
                        if await discovery.listable(removal.api_version, kind) is not None]
        resource = await _listing(discovery, kind, removals, still_served)
        if resource is None:
            continue
        for obj in await client.list(resource):
            findings.extend(_findings(obj, cluster=cluster, removals=removals, still_served=still_served))
    return findings


class _Discovery:
    """Discovery answers, asked once per group/version."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._served: dict[str, list[dict[str, Any]] | None] = {}

    async def listable(self, group_version: str, kind: str) -> Resource | None:
        """The resource of ``kind`` served at ``group_version`` if it can be listed (reviews, for one, cannot)."""
        if group_version not in self._served:
            self._served[group_version] = await self._client.resources(group_version)
        group, _, version = group_version.rpartition("/")
        for entry in self._served[group_version] or ():
            name = str(entry.get("name", ""))
            if entry.get("kind") != kind or "/" in name or "list" not in (entry.get("verbs") or ()):
                continue
            return Resource(group, version, name, namespaced=bool(entry.get("namespaced", True)))
        return None


async def _listing(discovery: _Discovery, kind: str, removals: list[Removal],
                   still_served: list[Removal]) -> Resource | None:
    """Where to list ``kind``: a served replacement, else a removed version still served, else nothing."""
    for removal in removals:
        replacement = removal.replacement
        if " " in replacement or "/" not in replacement:
            continue  # "none (use Pod Security Admission)": no such version to read through
        resource = await discovery.listable(replacement, kind)
        if resource is not None:
            return resource
    if still_served:
        return await discovery.listable(still_served[0].api_version, kind)
    return None


def _findings(obj: dict[str, Any], *, cluster: str, removals: list[Removal],
              still_served: list[Removal]) -> list[Finding]:
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), str(metadata.get("name", ""))
    entries = [entry for entry in metadata.get("managedFields") or () if isinstance(entry, dict)]
    if not entries:
        return [Finding.of(removal, namespace=namespace, name=name,
                           where=f"live on {cluster}, no managedFields: cannot tell whether it was written "
                                 f"through {removal.api_version}")
                for removal in still_served]
    findings: list[Finding] = []
    for removal in removals:
        managers = sorted({str(entry.get("manager") or "an unnamed manager") for entry in entries
                           if entry.get("apiVersion") == removal.api_version})
        if managers:
            findings.append(Finding.of(removal, namespace=namespace, name=name,
                                       where=f"live on {cluster}, written through {removal.api_version} "
                                             f"by {', '.join(managers)}"))
    return findings
