"""The WorkloadSync of an upgrade that moves no workloads between clusters (strategy NodePools).

A NodePools rotation stays inside one cluster: the workloads stay where Flux put
them and move between nodes by eviction. Nothing is synced, so there is nothing
to observe, check, copy or delete; this object says so instead of every caller
asking whether ``spec.workloads`` was given.
"""

from __future__ import annotations

from bluegreen.engine.types import WorkloadsObservation
from bluegreen.workloads.base import RemoteWatch


class NoWorkloads:
    async def observe(self, *, blue_name: str, green_name: str) -> WorkloadsObservation:
        return WorkloadsObservation()

    def remote_watches(self, *, blue_name: str, green_name: str) -> list[RemoteWatch]:
        return []

    async def preflight(self, *, blue_name: str, green_name: str) -> list[str]:
        return []

    async def sync_green(
        self, *, blue_name: str, green_name: str, kubeconfig_secret: tuple[str, str, str]
    ) -> list[str]:
        raise RuntimeError("strategy NodePools syncs no workloads to another cluster")

    async def delete(self, *, side: str, blue_name: str, green_name: str) -> list[str]:
        return []
