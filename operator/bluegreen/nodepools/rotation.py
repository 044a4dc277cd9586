"""The I/O of a NodePools rotation: what the reconcile loop observes and does for the engine's node stages.

The engine (:mod:`bluegreen.engine.nodepools`) decides from plain observations; this
module makes them from the provider's worker pools (Machines on the management
cluster) and the rotated cluster's Nodes and Pods, and carries out its node actions
(cordon, uncordon, one drain pass). Which Nodes belong to a pool is learnt from the
pool's Machines (``status.nodeRef``), never from node labels, which differ between
infrastructure providers and can be changed by anyone.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bluegreen.api import spec as api
from bluegreen.api.status import DrainState, EvictionEntry, NodePoolsStatus, PoolRotation
from bluegreen.clusters.base import ClusterProvider
from bluegreen.engine.types import NodeObservation, PoolObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube.client import KubeClient
from bluegreen.nodepools import attachment
from bluegreen.nodepools.drain import NODES, PODS, DrainOutcome, DrainProgress, cordon, drain_step
from bluegreen.nodepools.plan import LocalStoragePolicy
from bluegreen.nodepools.replacements import EvictedPod, replacements_ready


def node_ready(node: dict[str, Any]) -> bool:
    return any(condition.get("type") == "Ready" and condition.get("status") == "True"
               for condition in (node.get("status") or {}).get("conditions") or ())


class Rotation:
    """One upgrade's view of the cluster whose worker pools it rotates."""

    def __init__(self, spec: api.ClusterUpgradeSpec, *, provider: ClusterProvider,
                 cluster_client: Callable[[], Awaitable[KubeClient]]) -> None:
        self._spec = spec
        self._provider = provider
        self._cluster_client = cluster_client

    @property
    def _where(self) -> dict[str, str]:
        return {"namespace": self._spec.cluster.namespace, "name": self._spec.cluster.name}

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """The rotated cluster's Nodes by name: listed once per pass, for :meth:`pools` and :meth:`unattached`."""
        client = await self._cluster_client()
        return {str(node["metadata"]["name"]): node for node in await client.list(NODES)}

    async def pools(self, nodes: Mapping[str, dict[str, Any]]) -> dict[str, PoolObservation]:
        """Every worker pool of the cluster with its machines' Nodes (``nodes``, from :meth:`nodes`)."""
        pools = await self._provider.worker_pools(**self._where)
        if not pools:
            return {}

        def seen(name: str) -> NodeObservation:
            node = nodes.get(name)
            if node is None:
                return NodeObservation(name=name, exists=False)
            return NodeObservation(name=name, ready=node_ready(node),
                                   schedulable=not (node.get("spec") or {}).get("unschedulable"))

        return {name: PoolObservation(name=name, replicas=pool.replicas, machines=pool.machines,
                                      nodes=tuple(seen(node) for node in pool.nodes), template=pool.template)
                for name, pool in pools.items()}

    async def problems(self, rotations: Sequence[PoolRotation]) -> list[str]:
        """What the provider says stops each planned replacement pool from being made."""
        by_name = {pool.name: pool for pool in self._spec.pools.pools}
        found: list[str] = []
        for rotation in rotations:
            found.extend(await self._provider.pool_problems(
                **self._where, pool=by_name[rotation.pool], source=rotation.old, new=rotation.new,
                version=self._spec.target.kubernetes_version))
        return found

    async def ensure_pool(self, *, pool: str, source: str, new: str, replicas: int) -> str | None:
        spec_pool = next(entry for entry in self._spec.pools.pools if entry.name == pool)
        return await self._provider.ensure_pool(**self._where, pool=spec_pool, source=source, new=new,
                                                version=self._spec.target.kubernetes_version, replicas=replicas)

    async def scale_pool(self, *, pool: str, replicas: int) -> str | None:
        return await self._provider.scale_pool(**self._where, pool=pool, replicas=replicas)

    async def unattached(self, state: NodePoolsStatus, nodes: Mapping[str, dict[str, Any]]) -> tuple[str, ...]:
        """The new nodes some load balancer does not have registered and healthy, one line each."""
        new = [nodes[name] for name in state.new_nodes if name in nodes]
        lines = tuple(f"node {name} is gone from the cluster" for name in sorted(set(state.new_nodes) - set(nodes)))
        return lines + tuple(await attachment.unattached(self._spec.pools.load_balancers, new))

    async def replacements(self, state: NodePoolsStatus) -> tuple[bool, str]:
        """Are the pods evicted from the node just drained back, Running and Ready, on nodes that stay?"""
        node = state.old_nodes[state.nodes_drained]
        evicted = [EvictedPod.from_status(entry.model_dump(mode="json", by_alias=True))
                   for entry in state.evictions if entry.node == node]
        if not evicted:
            return True, f"no pod was evicted from {node}"
        client = await self._cluster_client()
        return replacements_ready(evicted, await client.list(PODS), draining_nodes=state.old_nodes)

    async def cordon(self, nodes: Sequence[str], *, unschedulable: bool) -> list[str]:
        """Cordon (or uncordon) each node; a node that is gone is skipped. Journal lines for what changed."""
        client = await self._cluster_client()
        changed: list[str] = []
        for node in nodes:
            try:
                if await cordon(client, node, unschedulable=unschedulable):
                    changed.append(node)
            except kubeclient.NotFoundError:
                continue
        if not changed:
            return []
        verb = "cordoned" if unschedulable else "uncordoned (schedulable again)"
        return [f"{verb}: {', '.join(changed)}"]

    async def drain(self, node: str, state: NodePoolsStatus, *, now: datetime.datetime,
                    ) -> tuple[DrainState, EvictionEntry | None, str | None]:
        """One drain pass of ``node``: its state for status, the journal entry of an eviction, the pod blocking."""
        client = await self._cluster_client()
        previous = None
        if state.current is not None and state.current.node == node:
            previous = DrainProgress.from_status(state.current.model_dump(mode="json", by_alias=True))
        so_far = [EvictedPod.from_status(entry.model_dump(mode="json", by_alias=True))
                  for entry in state.evictions if entry.node == node]
        drain = self._spec.pools.drain
        progress = await drain_step(
            client, node, local_storage=LocalStoragePolicy(drain.local_storage.value), evicted_so_far=so_far,
            now=now, previous=previous, draining_nodes=state.old_nodes,
            grace_period_seconds=drain.grace_period_seconds,
        )
        evicted = None
        if progress.evicted is not None:
            evicted = EvictionEntry.model_validate(progress.evicted.to_status())
        blocking = None
        if progress.outcome in {DrainOutcome.BLOCKED_BY_BUDGET, DrainOutcome.BLOCKED_BY_POLICY} and progress.pod:
            by = f"PodDisruptionBudget {progress.pod.namespace}/{progress.budget}" if progress.budget else (
                "a PodDisruptionBudget" if progress.outcome is DrainOutcome.BLOCKED_BY_BUDGET
                else "spec.nodePools.drain")
            blocking = f"{progress.pod} on {node}, refused by {by}"
        return DrainState.model_validate(progress.to_status()), evicted, blocking
