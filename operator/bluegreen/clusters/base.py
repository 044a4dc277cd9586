"""The ClusterProvider protocol: how bluegreen creates, watches and deletes clusters.

One module per provider (``capi.py``, ``eksa.py``), chosen through the explicit
registry in :mod:`bluegreen.clusters`; an unknown provider is a validation
error, never a fallback. Every method is idempotent: calling it again after a
crash, with the same arguments, changes nothing more.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from bluegreen.api.spec import NodePool
from bluegreen.engine.types import ClusterObservation


class ClusterProviderError(Exception):
    """A cluster cannot be handled as asked (e.g. blue cannot be cloned); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class WorkerCapacity:
    """The worker capacity a cluster definition asks for, summed over its worker groups.

    ``cpu_millis``/``memory_bytes`` are None when the definition does not say how big a machine is
    (e.g. a Docker machine template); ``detail`` says how the figures were reached, or why they are unknown.
    """

    nodes: int
    cpu_millis: int | None
    memory_bytes: int | None
    detail: str


@dataclasses.dataclass(frozen=True)
class WorkerPool:
    """One worker pool of a cluster's definition, and the machines it has.

    ``nodes`` are the Node names of its machines (the machines' ``status.nodeRef.name``), in the machines'
    creation order; a machine without a Node yet counts in ``machines`` only.
    """

    name: str
    replicas: int
    machines: int
    nodes: tuple[str, ...]
    template: str  # CAPI: the machineDeployment class; EKS-A: the machine config's kind/name
    version: str | None = None  # EKS-A: the group's own kubernetesVersion, when pinned


class ClusterProvider(Protocol):
    async def observe(self, *, namespace: str, name: str) -> ClusterObservation:
        """Report whether the cluster exists, is ready, its version, and its kubeconfig Secret."""
        ...

    async def preflight(
        self, *, namespace: str, blue_name: str, green_name: str, overrides: dict[str, Any]
    ) -> list[str]:
        """What stops green from being created as asked, each naming the fix; empty when nothing does."""
        ...

    async def provision_green(
        self,
        *,
        namespace: str,
        blue_name: str,
        green_name: str,
        version: str,
        overrides: dict[str, Any],
        labels: dict[str, str],
    ) -> str | None:
        """Create green as a clone of blue at ``version``; return a journal detail, None if it existed."""
        ...

    async def set_version(self, *, namespace: str, name: str, version: str) -> str | None:
        """InPlace: ask the cluster itself for ``version`` (one minor up); a journal detail, None if already asked."""
        ...

    async def green_capacity(self, *, namespace: str, blue_name: str, overrides: dict[str, Any]) -> WorkerCapacity:
        """The worker capacity green would have: blue's definition with ``overrides`` applied."""
        ...

    async def worker_pools(self, *, namespace: str, name: str) -> dict[str, WorkerPool]:
        """NodePools: every worker pool of the cluster (entry name -> pool); {} when the cluster does not exist."""
        ...

    async def pool_problems(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                            version: str) -> list[str]:
        """NodePools: what stops ``new`` from being made from ``source`` with ``pool``'s changes at ``version``
        (a class the ClusterClass lacks, a machine config that is missing, a version outside the skew rules)."""
        ...

    async def ensure_pool(self, *, namespace: str, name: str, pool: NodePool, source: str, new: str,
                          version: str, replicas: int) -> str | None:
        """NodePools: make worker pool ``new`` a copy of ``source`` with ``pool``'s changes, at ``replicas`` and
        ``version``; a journal detail, None when it was already so."""
        ...

    async def scale_pool(self, *, namespace: str, name: str, pool: str, replicas: int) -> str | None:
        """NodePools: set worker pool ``pool``'s replicas; a journal detail, None when it was already so."""
        ...

    async def delete(self, *, namespace: str, name: str) -> str | None:
        """Delete the cluster (and what the operator created for it); None if already gone."""
        ...

    def kubeconfig_secret_ref(self, *, namespace: str, name: str) -> tuple[str, str, str]:
        """Where the provider keeps the cluster's kubeconfig: (namespace, secret name, key)."""
        ...
