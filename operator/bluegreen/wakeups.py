"""Who to wake when something changes in the world.

Each ClusterUpgrade's loop waits on one asyncio.Event. Watch handlers for the
objects an upgrade depends on (its own resource, blue's and green's Cluster
objects and kubeconfig Secrets, the Kustomizations in its Flux namespace) call
into this registry, which sets the events of the upgrades that care. This is
how a change reaches the right upgrade at once with no polling and no list.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Hashable

UpgradeKey = tuple[str, str]  # (namespace, name)


@dataclasses.dataclass(frozen=True)
class Interests:
    # Cluster names (blue and green). By name only: a cluster's kubeconfig Secret may live in
    # another namespace than its Cluster object (EKS Anywhere keeps them in eksa-system).
    clusters: frozenset[str]
    flux_namespaces: frozenset[str]


class WakeEvent(asyncio.Event):
    """An upgrade's wake-up that remembers when it was first set since last cleared: what woke a pass, when
    (time.monotonic()), for the reconcile latency metric."""

    def __init__(self) -> None:
        super().__init__()
        self.set_at: float | None = None

    def set(self) -> None:
        if self.set_at is None:
            self.set_at = time.monotonic()
        super().set()

    def clear(self) -> None:
        self.set_at = None
        super().clear()


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[UpgradeKey, WakeEvent] = {}
        self._seen: dict[UpgradeKey, Hashable] = {}
        self._interests: dict[UpgradeKey, Interests] = {}
        self._by_cluster: dict[str, set[UpgradeKey]] = collections.defaultdict(set)
        self._by_flux_namespace: dict[str, set[UpgradeKey]] = collections.defaultdict(set)

    def event(self, key: UpgradeKey) -> WakeEvent:
        """The event an upgrade's loop waits on (created on first use)."""
        return self._events.setdefault(key, WakeEvent())

    def register(self, key: UpgradeKey, interests: Interests) -> None:
        """Declare (or update) what an upgrade depends on."""
        if self._interests.get(key) == interests:
            return
        self._drop_interests(key)
        self._interests[key] = interests
        for cluster in interests.clusters:
            self._by_cluster[cluster].add(key)
        for namespace in interests.flux_namespaces:
            self._by_flux_namespace[namespace].add(key)

    def forget(self, key: UpgradeKey) -> None:
        self._drop_interests(key)
        self._events.pop(key, None)
        self._seen.pop(key, None)

    def upgrade_changed(self, key: UpgradeKey, *, fingerprint: Hashable = None) -> None:
        """The upgrade's object changed. With a fingerprint of what a person can change (spec generation,
        annotations, deletion), a change of status alone, the loop's own write, wakes nothing: otherwise
        each write would start the next pass at once and a failure's backoff would never be waited out.
        """
        if fingerprint is not None:
            if self._seen.get(key) == fingerprint:
                return
            self._seen[key] = fingerprint
        self.event(key).set()

    def cluster_changed(self, name: str) -> None:
        for key in self._by_cluster.get(name, ()):
            self.event(key).set()

    def kustomization_changed(self, namespace: str) -> None:
        for key in self._by_flux_namespace.get(namespace, ()):
            self.event(key).set()

    def _drop_interests(self, key: UpgradeKey) -> None:
        old = self._interests.pop(key, None)
        if old is None:
            return
        for cluster in old.clusters:
            self._by_cluster[cluster].discard(key)
            if not self._by_cluster[cluster]:
                del self._by_cluster[cluster]
        for namespace in old.flux_namespaces:
            self._by_flux_namespace[namespace].discard(key)
            if not self._by_flux_namespace[namespace]:
                del self._by_flux_namespace[namespace]
