"""The WorkloadSync protocol: how the same workloads get onto green, and how parity is judged.

Flux remote mode (Kustomizations on the management cluster that apply to a
remote cluster through ``kubeConfig.secretRef``) is :mod:`.flux_remote`.
Methods are idempotent.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from bluegreen.engine.types import WorkloadsObservation
from bluegreen.kube.client import Resource


@dataclasses.dataclass(frozen=True)
class RemoteWatch:
    """Objects on a workload cluster whose changes must wake the upgrade (no kopf watch reaches them)."""

    kubeconfig: tuple[str, str, str]  # (namespace, Secret name, key) on the management cluster
    resource: Resource
    namespace: str | None


class WorkloadSync(Protocol):
    async def observe(self, *, blue_name: str, green_name: str) -> WorkloadsObservation:
        """Blue's Kustomizations, green's copies, and which copies are still missing."""
        ...

    def remote_watches(self, *, blue_name: str, green_name: str) -> list[RemoteWatch]:
        """What to watch on the workload clusters while green syncs and serves; empty if nothing."""
        ...

    async def preflight(self, *, blue_name: str, green_name: str) -> list[str]:
        """What stops green's workloads from being synced (credentials, reachability), each naming the fix."""
        ...

    async def sync_green(
        self, *, blue_name: str, green_name: str, kubeconfig_secret: tuple[str, str, str]
    ) -> list[str]:
        """Create or update green's copies of blue's Kustomizations; return what changed (for the journal)."""
        ...

    async def delete(self, *, side: str, blue_name: str, green_name: str) -> list[str]:
        """Remove one side's Kustomizations; return what was deleted."""
        ...
