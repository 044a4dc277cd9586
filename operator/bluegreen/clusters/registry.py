"""The explicit registry of cluster providers: ``spec.cluster.provider`` -> implementation.

An unknown kind is an error that lists the known ones, never a fallback to a
default: a ClusterUpgrade for a provider this build does not carry must stop
before it touches anything.
"""

from __future__ import annotations

from collections.abc import Callable

from bluegreen.clusters.base import ClusterProvider
from bluegreen.clusters.capi import CapiClusterProvider
from bluegreen.clusters.eksa import EksaClusterProvider
from bluegreen.kube.client import KubeClient

_PROVIDERS: dict[str, Callable[[KubeClient], ClusterProvider]] = {
    "capi": lambda client: CapiClusterProvider(client=client),
    "eksa": lambda client: EksaClusterProvider(client=client),
}


class UnknownProviderError(ValueError):
    """``spec.cluster.provider`` names a provider this build does not have."""


def provider_kinds() -> tuple[str, ...]:
    return tuple(sorted(_PROVIDERS))


def build_cluster_provider(kind: str, *, client: KubeClient) -> ClusterProvider:
    """The provider for ``kind`` (``"capi"``, ``"eksa"``), talking to the management cluster through ``client``."""
    factory = _PROVIDERS.get(str(kind))
    if factory is None:
        raise UnknownProviderError(
            f"spec.cluster.provider: {kind!r} is not available in this build; use one of: "
            f"{', '.join(provider_kinds())}"
        )
    return factory(client)
