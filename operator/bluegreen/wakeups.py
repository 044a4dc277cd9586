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
from collections.abc import Hashable, Mapping
from typing import Any

UpgradeKey = tuple[str, str]  # (namespace, name)
Labels = frozenset[tuple[str, str]]  # labels an object must all carry


@dataclasses.dataclass(frozen=True)
class Interests:
    # Cluster names (blue and green). By name only: a cluster's kubeconfig Secret may live in
    # another namespace than its Cluster object (EKS Anywhere keeps them in eksa-system).
    clusters: frozenset[str]
    flux_namespaces: frozenset[str]
    # Which Kustomizations in those namespaces matter: one that carries all the labels of any set here (blue's
    # selector, green's copies). Empty: every one. With a fleet's upgrades in one namespace, a change to one
    # cluster's Kustomization must not wake them all.
    kustomizations: frozenset[Labels] = frozenset()


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
        self._changes: collections.Counter[UpgradeKey] = collections.Counter()
        self._interests: dict[UpgradeKey, Interests] = {}
        self._by_cluster: dict[str, set[UpgradeKey]] = collections.defaultdict(set)
        self._by_flux_namespace: dict[str, set[UpgradeKey]] = collections.defaultdict(set)  # any Kustomization
        # (namespace, label, value) -> upgrades with a label set holding that label, and the set
        self._by_kustomization_label: dict[tuple[str, str, str], set[tuple[UpgradeKey, Labels]]] = \
            collections.defaultdict(set)

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
            if not interests.kustomizations or frozenset() in interests.kustomizations:
                self._by_flux_namespace[namespace].add(key)
                continue
            for labels in interests.kustomizations:
                self._by_kustomization_label[_indexed(namespace, labels)].add((key, labels))

    def forget(self, key: UpgradeKey) -> None:
        self._drop_interests(key)
        self._events.pop(key, None)
        self._seen.pop(key, None)
        self._changes.pop(key, None)

    def upgrade_changed(self, key: UpgradeKey, *, fingerprint: Hashable = None) -> None:
        """The upgrade's object changed. With a fingerprint of what a person can change (spec generation,
        annotations, deletion), a change of status alone, the loop's own write, wakes nothing: otherwise
        each write would start the next pass at once and a failure's backoff would never be waited out.
        """
        if fingerprint is not None:
            if self._seen.get(key) == fingerprint:
                return
            self._seen[key] = fingerprint
        self._changes[key] += 1
        self.event(key).set()

    def changes(self, key: UpgradeKey) -> int:
        """How many changes by others (see :meth:`upgrade_changed`) the upgrade has had: a body the loop read
        (or wrote) is still current for the loop's next pass while this stays the same."""
        return self._changes[key]

    def cluster_changed(self, name: str) -> None:
        for key in self._by_cluster.get(name, ()):
            self.event(key).set()

    def kustomization_changed(self, namespace: str, labels: Mapping[str, str] | None = None) -> None:
        for key in self._by_flux_namespace.get(namespace, ()):
            self.event(key).set()
        carried = (labels or {}).items()
        for label, value in carried:
            for key, wanted in self._by_kustomization_label.get((namespace, label, value), ()):
                if wanted <= carried:
                    self.event(key).set()

    def _drop_interests(self, key: UpgradeKey) -> None:
        old = self._interests.pop(key, None)
        if old is None:
            return
        for cluster in old.clusters:
            _discard(self._by_cluster, cluster, key)
        for namespace in old.flux_namespaces:
            _discard(self._by_flux_namespace, namespace, key)
            for labels in old.kustomizations:
                if labels:
                    _discard(self._by_kustomization_label, _indexed(namespace, labels), (key, labels))


def _indexed(namespace: str, labels: Labels) -> tuple[str, str, str]:
    """Where a label set is filed: under one of its labels (any would do; the least, so always the same)."""
    label, value = min(labels)
    return (namespace, label, value)


def _discard(index: dict[Any, set[Any]], at: Any, item: Any) -> None:
    found = index.get(at)
    if found is not None:
        found.discard(item)
        if not found:
            del index[at]
